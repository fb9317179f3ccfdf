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

clean:
	rm -rf lib/nms/build lib/nms/*.so lib/nms/cpu_nms.c
