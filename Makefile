# make install     requirements + the Cython NMS extension (needs only a C compiler)
# make test        the whole test suite (installs first)
# make quickstart  synthetic data -> train Lite-HRNet-18 -> test -> ONNX -> demo images
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: all install build test quickstart clean

all: build

install:
	$(PIP) install -r requirements.txt
	$(MAKE) build

build:
	cd lib/nms && $(PYTHON) setup_linux.py build_ext --inplace

test: install
	$(PYTHON) -m pytest -q tests

# Quick start (README): about 15 minutes on a 2-core CPU. Re-running it resumes/reuses what exists.
QS_CFG := experiments/synthetic/quickstart.yaml
QS_OUT := output/coco/litehrnet_18/quickstart
QS_DATA := data/synthetic_quickstart
QS_VAL := $(QS_DATA)/images/val2017
quickstart: install
	test -f $(QS_DATA)/annotations/person_keypoints_val2017.json || \
		$(PYTHON) tools/make_synthetic.py --out $(QS_DATA) --clutter 0.5
	$(PYTHON) tools/train.py --cfg $(QS_CFG)
	$(PYTHON) tools/test.py --cfg $(QS_CFG) TEST.MODEL_FILE $(QS_OUT)/model_best.pth TEST.USE_GT_BBOX False
	if [ -f demo/convert2onnx.py ]; then $(PYTHON) demo/convert2onnx.py --cfg $(QS_CFG) \
		TEST.MODEL_FILE $(QS_OUT)/model_best.pth --output $(QS_OUT)/model_best.onnx --image $(QS_VAL)/000001000000.jpg; fi
	if [ -f demo/demo.py ]; then mkdir -p $(QS_OUT)/demo_input && cp $(QS_VAL)/00000100000[0-3].jpg $(QS_OUT)/demo_input/ && \
		$(PYTHON) demo/demo.py --cfg $(QS_CFG) TEST.MODEL_FILE $(QS_OUT)/model_best.pth --image $(QS_OUT)/demo_input \
		--det-file $(QS_DATA)/person_detection_results/COCO_val2017_detections_AP_H_56_person.json \
		--output $(QS_OUT)/demo && echo "demo images: $(QS_OUT)/demo"; fi

clean:
	rm -rf lib/nms/build lib/nms/*.so lib/nms/cpu_nms.c
