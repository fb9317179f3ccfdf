"""Every configuration key, declared once with its default.

Key names follow the HRNet repository (leoxiaobin/deep-high-resolution-net.pytorch) wherever a key
exists there, so HRNet users can read our YAML files without a glossary. YAML files under
`experiments/` override these defaults (most through a recipe in `experiments/_base_/`), and trailing
`KEY VALUE` pairs on a tool's command line override the YAML. Never import `_C` and change it: call
`lib.config.load_config` (or `get_cfg`), which hands out a copy.

Each comment says what the code reading the key does with it. The values a key may take are in RANGES
near the end (load_config checks them, and the rules between keys, before any work). HRNet keys that
nothing here read are not declared; they are listed in REMOVED_KEYS at the end, so a YAML carrying one
gets told what to use.
"""
from yacs.config import CfgNode as CN

_C = CN()

# ---------------------------------------------------------------------------------------------
# Run-wide settings
_C.OUTPUT_DIR = 'output'  # checkpoints, logs, results: OUTPUT_DIR/<dataset>/<model>/<config name>/
_C.LOG_DIR = 'log'  # TensorBoard event files: LOG_DIR/<dataset>/<model>/<config name>/
_C.DATA_DIR = ''  # prefix joined to DATASET.ROOT when that is relative ('' = current directory)
_C.WORKERS = 4  # data-loader worker processes of each train/test loader, in every process
_C.PRINT_FREQ = 20  # training iterations between log lines (the last iteration of an epoch is always logged)
_C.AUTO_RESUME = True  # tools/train.py resumes from OUTPUT_DIR/.../checkpoint.pth when it exists
_C.PIN_MEMORY = True  # pinned host memory in the data loaders, used only when CUDA is available
_C.SEED = 0  # training order shuffled from (SEED, epoch); torch/augmentation seeds from (SEED, epoch, rank)
# tools/train.py: torch.use_deterministic_algorithms(True, warn_only=True) (after setting
# CUBLAS_WORKSPACE_CONFIG=:4096:8 if unset, which CUDA requires), cudnn.deterministic True and
# cudnn.benchmark False, overriding CUDNN.*. warn_only: an op PyTorch has no deterministic CUDA kernel for
# (its list includes the backward of adaptive average pooling and of bilinear upsampling, both in
# Lite-HRNet) logs a warning naming the op instead of stopping the run, so CUDA runs may still differ.
_C.DETERMINISTIC = False
_C.CFG_NAME = ''  # set by load_config to the stem of the file passed in (not its _BASE_); names the output folder

_C.CUDNN = CN()  # tools/train.py only
_C.CUDNN.BENCHMARK = True  # torch.backends.cudnn.benchmark (forced off by DETERMINISTIC)
_C.CUDNN.DETERMINISTIC = False  # torch.backends.cudnn.deterministic (forced on by DETERMINISTIC)

# ---------------------------------------------------------------------------------------------
# Model: the architecture is chosen by name from the variant table in lib/models/litehrnet.py
_C.MODEL = CN()
_C.MODEL.NAME = 'litehrnet_18'  # litehrnet_18 | litehrnet_30 | naive_litehrnet_18 | wider_naive_litehrnet_18
_C.MODEL.NUM_JOINTS = 17
_C.MODEL.IMAGE_SIZE = [192, 256]  # network input, [width, height] as in HRNet
_C.MODEL.HEATMAP_SIZE = [48, 64]  # network output, [width, height]; IMAGE_SIZE / 4
_C.MODEL.SIGMA = 2.0  # Gaussian sigma of the heatmap targets, in heatmap pixels
_C.MODEL.TARGET_TYPE = 'gaussian'  # the only target the codec supports (any other value is an error)
_C.MODEL.SYNC_BN = False  # torchrun on GPUs: BatchNorm statistics over all processes (SyncBatchNorm; official: per GPU)
_C.MODEL.INIT = 'official'  # official: N(0, 0.001^2) convs as released | kaiming: Kaiming convs, N(0, 0.01^2) head
_C.MODEL.PRETRAINED = ''  # weights tools/train.py loads before training (ours or official mmpose format)
_C.MODEL.PRETRAINED_EXCLUDE = []  # parameter-name patterns (fnmatch) not loaded from PRETRAINED, e.g. ['keypoint_head.*'] to fine-tune to another NUM_JOINTS
_C.MODEL.WITH_CP = False  # activation checkpointing of each stage-module block in training: less memory, same output
_C.MODEL.NORM_EVAL = False  # keep BatchNorm in eval mode while training (frozen statistics)

# ---------------------------------------------------------------------------------------------
# Loss
_C.LOSS = CN()
_C.LOSS.USE_TARGET_WEIGHT = True
_C.LOSS.USE_DIFFERENT_JOINTS_WEIGHT = False  # target weights x metainfo joint_weights (HRNet key; official: off)
_C.LOSS.USE_OHKM = False  # online hard keypoint mining
_C.LOSS.TOPK = 8  # joints kept per sample by OHKM
_C.LOSS.LOSS_WEIGHT = 1.0  # multiplies the loss (so the gradients; under Adam that matters only next to ADAM_EPS)

# ---------------------------------------------------------------------------------------------
# Dataset and training augmentation
_C.DATASET = CN()
_C.DATASET.DATASET = 'coco'  # coco | mpii (coco also reads any COCO-format keypoint set)
_C.DATASET.METAINFO = 'coco'  # keypoint table in lib/dataset/metainfo.py: coco | mpii | yours (register_metainfo)
_C.DATASET.ROOT = 'data/synthetic'
_C.DATASET.TRAIN_SET = 'train2017'
_C.DATASET.TEST_SET = 'val2017'
_C.DATASET.COLOR_RGB = True  # feed the network RGB (the official models were trained on RGB)
_C.DATASET.FLIP = True  # random horizontal flip, p = 0.5
_C.DATASET.SCALE_FACTOR = 0.25  # random scale s = clip(1 + SCALE_FACTOR * randn, 1 - f, 1 + f)
_C.DATASET.ROT_FACTOR = 30.0  # random rotation r = clip(ROT_FACTOR * randn, -2f, 2f) degrees
_C.DATASET.PROB_ROTATION = 0.6  # probability of applying the random rotation
_C.DATASET.NUM_JOINTS_HALF_BODY = 8  # half-body needs more than this many visible joints
_C.DATASET.PROB_HALF_BODY = 0.3  # probability of cropping to the upper or lower body
_C.DATASET.PROB_HALF_BODY_UPPER = 0.5  # choice of upper vs lower body (official code: ~0.69, see README)
_C.DATASET.PROB_BOX_JITTER = 0.0  # probability of moving the box centre during training (official: COCO only)
_C.DATASET.BOX_JITTER_FACTOR = 0.2  # ...by up to this fraction of the box width/height
_C.DATASET.BOX_JITTER_START_EPOCH = 0  # ...from this training epoch on (0: all); a late start learns the task on
# GT boxes first, then to be robust to detector boxes (experiments/synthetic/quickstart.yaml)
_C.DATASET.SELECT_DATA = False  # COCO training set: keep only people whose visible joints are centred in the box

# ---------------------------------------------------------------------------------------------
# Training
_C.TRAIN = CN()
_C.TRAIN.OPTIMIZER = 'adam'  # adam | adamw | sgd
_C.TRAIN.LR = 2e-3
_C.TRAIN.LR_SCHEDULE = 'step'  # step (x LR_FACTOR at each LR_STEP epoch) | cosine (to 0 at END_EPOCH)
_C.TRAIN.LR_FACTOR = 0.1
_C.TRAIN.LR_STEP = [170, 200]
_C.TRAIN.WARMUP_ITERS = 500  # linear warmup, in iterations
_C.TRAIN.WARMUP_RATIO = 0.001  # lr at iteration 0 = LR * WARMUP_RATIO
_C.TRAIN.WD = 0.0
_C.TRAIN.MOMENTUM = 0.9  # sgd only
_C.TRAIN.NESTEROV = False  # sgd only
_C.TRAIN.ADAM_EPS = 1e-8  # adam and adamw
_C.TRAIN.BEGIN_EPOCH = 0
_C.TRAIN.END_EPOCH = 210
_C.TRAIN.BATCH_SIZE_PER_GPU = 64  # per process
_C.TRAIN.SHUFFLE = True
_C.TRAIN.AMP = False  # mixed precision for the training forward (loss in fp32; validation runs fp32)
# TRAIN.AMP's autocast type (lib.core.function.amp_dtype): 'float16' (CUDA only, with loss scaling) or 'bfloat16'
# (float32's exponent range, so no loss scaling; CUDA with bf16 support, or a CPU: fast with AMX).
_C.TRAIN.AMP_DTYPE = 'float16'
_C.TRAIN.CHANNELS_LAST = False  # channels_last memory format for training and the validation run inside it
# torch.compile the training model block by block (lib/core/compile.py; eager with one warning without
# a C++ compiler). Off: on 2 CPU threads at 256x192 batch 32 a compiled step ran 0.9x eager after ~80 s of
# compiling (README, Training speed); unmeasured on GPUs, where launch overhead makes it likelier to pay.
_C.TRAIN.COMPILE = False
# torch.compile mode of TRAIN.COMPILE: 'reduce-overhead' adds CUDA graphs (CUDA only; the same as 'default' on CPUs),
# 'max-autotune' tries more kernels and compiles longer. Unmeasured on GPUs so far: try it with tools/benchmark.py.
_C.TRAIN.COMPILE_MODE = 'default'
_C.TRAIN.VAL_INTERVAL = 10  # epochs between validations (and the last epoch always)
_C.TRAIN.VAL_USE_GT_BBOX = True  # validation during training uses GT boxes (official val_data_cfg)
_C.TRAIN.CHECKPOINT_INTERVAL = 1  # epochs between writes of checkpoint.pth
_C.TRAIN.DEBUG_INTERVAL = 0  # iterations between debug images (joints, heatmaps) of a training batch (0 = off)
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0  # cap on iterations per epoch (0 = whole data set); for smoke runs

# ---------------------------------------------------------------------------------------------
# Testing / validation
_C.TEST = CN()
_C.TEST.BATCH_SIZE_PER_GPU = 32  # per process
_C.TEST.FLIP_TEST = True  # average the heatmaps with those of the mirrored crop
_C.TEST.SHIFT_HEATMAP = True  # shift the flipped heatmap 1 px right (official: True)
_C.TEST.POST_PROCESS = True  # quarter-pixel offset towards the higher neighbour
_C.TEST.USE_DARK = False  # distribution-aware (DARK) sub-pixel refinement instead of POST_PROCESS
_C.TEST.BLUR_KERNEL = 11  # Gaussian kernel DARK smooths the heatmap with (odd)
_C.TEST.USE_GT_BBOX = True  # COCO: True: boxes from the annotations; False: from COCO_BBOX_FILE (MPII: always GT)
_C.TEST.COCO_BBOX_FILE = ''  # person detection results (COCO json list); relative to DATASET.ROOT
_C.TEST.IMAGE_THRE = 0.0  # COCO_BBOX_FILE: keep detections scoring at least this
_C.TEST.IN_VIS_THRE = 0.2  # COCO rescoring: box score x mean of the joint scores above this
_C.TEST.OKS_THRE = 0.9  # COCO: per-image OKS NMS threshold
_C.TEST.SOFT_NMS = False  # COCO: soft OKS NMS instead
_C.TEST.MODEL_FILE = ''  # weights to test (ours or official mmpose format)
_C.TEST.CHANNELS_LAST = False  # channels_last memory format for inference in tools/test.py
# torch.compile the network block by block for inference (tools/test.py, PoseEstimator; lib/core/compile.py).
# Off, as the first calls compile: 256x192 on 2 CPU threads, ~80 s per input shape on a cold cache and ~13 s on a
# warm one (later processes reuse inductor's FX graph cache), for ~1.9x at batch 1 and ~2.4x at batch 32 (BN folded)
# over the official forward order afterwards. On CPUs TEST.BACKEND openvino / onnxruntime is faster still and ready
# in seconds (README: "Which inference path pays";
# tools/benchmark.py inference --modes official,compiled_bn_folded,deploy).
_C.TEST.COMPILE = False
_C.TEST.COMPILE_MODE = 'default'  # as TRAIN.COMPILE_MODE ('reduce-overhead': CUDA graphs for batch-1 latency on GPUs)
# Where the network runs (PoseEstimator, tools/test.py, demo; lib/export/backends.py): 'torch' (TEST.MODEL_FILE a
# .pth checkpoint), 'onnxruntime' (a .onnx file from demo/convert2onnx.py, or a .pth exported on the fly) or
# 'openvino' (a .xml, .onnx or .pth). Flip test, decoding and evaluation are the same for every backend.
_C.TEST.BACKEND = 'torch'
# 'fp32'; 'bf16' (OpenVINO on a CPU with bfloat16 support); 'int8' (a file quantised by
# `demo/convert2onnx.py --precision int8`: onnxruntime QDQ .onnx or OpenVINO/NNCF .xml). Must match the file.
_C.TEST.PRECISION = 'fp32'

# ---------------------------------------------------------------------------------------------
# The precisions each TEST.BACKEND runs (lib/export/backends.py; a rule in lib/config): onnxruntime's CPU
# kernels have no bfloat16 convolutions; PyTorch int8/bf16 are not offered (export to a runtime instead).
BACKEND_PRECISIONS = {'torch': ('fp32',), 'onnxruntime': ('fp32', 'int8'), 'openvino': ('fp32', 'bf16', 'int8')}
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')  # torch.compile's modes

# Allowed values, checked by load_config when a config is loaded, so a bad value fails before any work
# instead of after an epoch. A key not listed takes any value of its default's type. Forms: '>= 1',
# '> 0', '[0, 1]' (closed), '[0, 1)' (half-open), or a tuple of the allowed strings. For a list key the
# range applies to each item. Rules between keys (END_EPOCH > BEGIN_EPOCH, ...) are in lib/config.
RANGES = {
    'WORKERS': '>= 0',
    'PRINT_FREQ': '>= 1',
    'SEED': '>= 0',  # numpy's SeedSequence takes no negative seed
    'MODEL.NUM_JOINTS': '>= 1',
    'MODEL.IMAGE_SIZE': '>= 1',
    'MODEL.HEATMAP_SIZE': '>= 1',
    'MODEL.SIGMA': '> 0',
    'MODEL.TARGET_TYPE': ('gaussian',),
    'MODEL.INIT': ('official', 'kaiming'),
    'LOSS.TOPK': '>= 1',
    'LOSS.LOSS_WEIGHT': '> 0',
    'DATASET.SCALE_FACTOR': '[0, 1)',  # 1 - SCALE_FACTOR is the smallest scale: it must stay positive
    'DATASET.ROT_FACTOR': '>= 0',
    'DATASET.PROB_ROTATION': '[0, 1]',
    'DATASET.NUM_JOINTS_HALF_BODY': '>= 0',
    'DATASET.PROB_HALF_BODY': '[0, 1]',
    'DATASET.PROB_HALF_BODY_UPPER': '[0, 1]',
    'DATASET.PROB_BOX_JITTER': '[0, 1]',
    'DATASET.BOX_JITTER_FACTOR': '>= 0',
    'DATASET.BOX_JITTER_START_EPOCH': '>= 0',
    'TRAIN.OPTIMIZER': ('adam', 'adamw', 'sgd'),
    'TRAIN.AMP_DTYPE': ('float16', 'bfloat16'),
    'TRAIN.COMPILE_MODE': COMPILE_MODES,
    'TEST.COMPILE_MODE': COMPILE_MODES,
    'TRAIN.LR': '> 0',
    'TRAIN.LR_SCHEDULE': ('step', 'cosine'),
    'TRAIN.LR_FACTOR': '> 0',
    'TRAIN.LR_STEP': '>= 0',
    'TRAIN.WARMUP_ITERS': '>= 0',
    'TRAIN.WARMUP_RATIO': '[0, 1]',
    'TRAIN.WD': '>= 0',
    'TRAIN.MOMENTUM': '[0, 1)',
    'TRAIN.ADAM_EPS': '> 0',
    'TRAIN.BEGIN_EPOCH': '>= 0',
    'TRAIN.BATCH_SIZE_PER_GPU': '>= 1',
    'TRAIN.VAL_INTERVAL': '>= 1',
    'TRAIN.CHECKPOINT_INTERVAL': '>= 1',
    'TRAIN.DEBUG_INTERVAL': '>= 0',
    'TRAIN.MAX_ITERS_PER_EPOCH': '>= 0',
    'TEST.BATCH_SIZE_PER_GPU': '>= 1',
    'TEST.BLUR_KERNEL': '>= 1',  # and odd (a rule in lib/config)
    'TEST.IMAGE_THRE': '[0, 1]',
    'TEST.IN_VIS_THRE': '[0, 1]',
    'TEST.OKS_THRE': '[0, 1]',
    'TEST.BACKEND': tuple(BACKEND_PRECISIONS),
    'TEST.PRECISION': ('fp32', 'bf16', 'int8'),
}


# The item type of list keys whose default is empty (a non-empty default's items give theirs).
LIST_ITEM_TYPES = {
    'MODEL.PRETRAINED_EXCLUDE': str,
}

# ---------------------------------------------------------------------------------------------
# HRNet keys that nothing here reads: load_config rejects them with the hint below instead of the
# generic unknown-key message. A group name ('DEBUG') covers every key inside it.
REMOVED_KEYS = {
    'CUDNN.ENABLED': "nothing read it; cuDNN stays at PyTorch's default (on). Delete the line "
                     "(CUDNN.BENCHMARK and DETERMINISTIC remain)",
    'DATASET.DATA_FORMAT': "nothing read it; images are read from their files by OpenCV (HRNet's 'zip' "
                           "archives are not supported). Delete the line",
    'TEST.NMS_THRE': 'nothing read it; poses are suppressed by OKS NMS at TEST.OKS_THRE. Delete the line',
    'TEST.BBOX_THRE': 'nothing read it; detector boxes are kept by score with TEST.IMAGE_THRE. Delete the line',
    'DEBUG': 'the DEBUG.* group did nothing; TRAIN.DEBUG_INTERVAL N writes GT and predicted joints and heatmaps '
             'of a training batch every N iterations (0 = off). Delete the DEBUG group',
}
