"""Every configuration key, declared once with its default.

Key names follow the HRNet repository (leoxiaobin/deep-high-resolution-net.pytorch) wherever a key
exists there, so HRNet users can read our YAML files without a glossary. YAML files under
`experiments/` override these defaults, and trailing `KEY VALUE` pairs on a tool's command line
override the YAML. Never import `_C` and change it: call `lib.config.load_config` (or `get_cfg`),
which hands out a copy.
"""
from yacs.config import CfgNode as CN

_C = CN()

# ---------------------------------------------------------------------------------------------
# Run-wide settings
_C.OUTPUT_DIR = 'output'  # checkpoints, logs, results: OUTPUT_DIR/<dataset>/<model>/<config name>/
_C.LOG_DIR = 'log'  # TensorBoard event files: LOG_DIR/<dataset>/<model>/<config name>/
_C.DATA_DIR = ''  # prefix joined to DATASET.ROOT when that is relative ('' = current directory)
_C.WORKERS = 4  # data-loader worker processes per training process
_C.PRINT_FREQ = 20  # iterations between log lines
_C.AUTO_RESUME = True  # resume from OUTPUT_DIR/.../checkpoint.pth when it exists
_C.PIN_MEMORY = True
_C.SEED = 0  # base random seed; each distributed rank adds its rank
_C.DETERMINISTIC = False  # torch.use_deterministic_algorithms + cudnn deterministic
_C.CFG_NAME = ''  # set by load_config to the YAML file's stem; names the output folder

_C.CUDNN = CN()
_C.CUDNN.BENCHMARK = True
_C.CUDNN.DETERMINISTIC = False
_C.CUDNN.ENABLED = True

# ---------------------------------------------------------------------------------------------
# Model: the architecture is chosen by name from the variant table in lib/models/litehrnet.py
_C.MODEL = CN()
_C.MODEL.NAME = 'litehrnet_18'  # litehrnet_18 | litehrnet_30 | naive_litehrnet_18 | wider_naive_litehrnet_18
_C.MODEL.NUM_JOINTS = 17
_C.MODEL.IMAGE_SIZE = [192, 256]  # network input, [width, height] as in HRNet
_C.MODEL.HEATMAP_SIZE = [48, 64]  # network output, [width, height]; IMAGE_SIZE / 4
_C.MODEL.SIGMA = 2.0  # Gaussian sigma of the heatmap targets, in heatmap pixels
_C.MODEL.TARGET_TYPE = 'gaussian'
_C.MODEL.INIT = 'official'  # official: N(0, 0.001^2) convs as released | kaiming: faster from scratch
_C.MODEL.PRETRAINED = ''  # weights loaded before training (ours or official mmpose format)
_C.MODEL.WITH_CP = False  # gradient checkpointing of every block: less memory, same numbers
_C.MODEL.NORM_EVAL = False  # keep BatchNorm in eval mode while training (frozen statistics)

# ---------------------------------------------------------------------------------------------
# Loss
_C.LOSS = CN()
_C.LOSS.USE_TARGET_WEIGHT = True
_C.LOSS.USE_DIFFERENT_JOINTS_WEIGHT = False  # multiply target weights by the metainfo joint_weights (HRNet key; official: off)
_C.LOSS.USE_OHKM = False  # online hard keypoint mining
_C.LOSS.TOPK = 8  # joints kept per sample by OHKM
_C.LOSS.LOSS_WEIGHT = 1.0  # multiplies the loss; >1 helps Adam when gradients are tiny at the start

# ---------------------------------------------------------------------------------------------
# Dataset and training augmentation
_C.DATASET = CN()
_C.DATASET.DATASET = 'coco'  # coco | mpii (coco also reads any COCO-format keypoint set)
_C.DATASET.METAINFO = 'coco'  # keypoint table in lib/dataset/metainfo.py: coco | mpii | synthetic...
_C.DATASET.ROOT = 'data/synthetic'
_C.DATASET.TRAIN_SET = 'train2017'
_C.DATASET.TEST_SET = 'val2017'
_C.DATASET.DATA_FORMAT = 'jpg'
_C.DATASET.COLOR_RGB = True  # feed the network RGB (the official models were trained on RGB)
_C.DATASET.FLIP = True  # random horizontal flip, p = 0.5
_C.DATASET.SCALE_FACTOR = 0.25  # random scale s = clip(1 + SCALE_FACTOR * randn, 1 - f, 1 + f)
_C.DATASET.ROT_FACTOR = 30.0  # random rotation r = clip(ROT_FACTOR * randn, -2f, 2f) degrees
_C.DATASET.PROB_ROTATION = 0.6  # probability of applying the random rotation
_C.DATASET.NUM_JOINTS_HALF_BODY = 8  # half-body needs more than this many visible joints
_C.DATASET.PROB_HALF_BODY = 0.3
_C.DATASET.PROB_HALF_BODY_UPPER = 0.5  # choice of upper vs lower body (official code: ~0.69, see README)
_C.DATASET.PROB_BOX_JITTER = 0.0  # COCO: probability of moving the box centre during training
_C.DATASET.BOX_JITTER_FACTOR = 0.2  # ...by up to this fraction of the box width/height
_C.DATASET.SELECT_DATA = False

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
_C.TRAIN.ADAM_EPS = 1e-8
_C.TRAIN.BEGIN_EPOCH = 0
_C.TRAIN.END_EPOCH = 210
_C.TRAIN.BATCH_SIZE_PER_GPU = 64  # per process
_C.TRAIN.SHUFFLE = True
_C.TRAIN.AMP = False  # CUDA mixed precision (loss computed in fp32)
_C.TRAIN.CHANNELS_LAST = False
_C.TRAIN.VAL_INTERVAL = 10  # epochs between validations (and the last epoch always)
_C.TRAIN.VAL_USE_GT_BBOX = True  # validation during training uses GT boxes (official val_data_cfg)
_C.TRAIN.CHECKPOINT_INTERVAL = 1  # epochs between writes of checkpoint.pth
_C.TRAIN.DEBUG_INTERVAL = 0  # iterations between debug images of a training batch (0 = off)
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0  # cap on iterations per epoch (0 = whole data set); for smoke runs

# ---------------------------------------------------------------------------------------------
# Testing / validation
_C.TEST = CN()
_C.TEST.BATCH_SIZE_PER_GPU = 32
_C.TEST.FLIP_TEST = True
_C.TEST.SHIFT_HEATMAP = True  # shift the flipped heatmap 1 px right (official: True)
_C.TEST.POST_PROCESS = True  # quarter-pixel offset towards the higher neighbour
_C.TEST.USE_DARK = False  # distribution-aware (DARK) sub-pixel refinement instead
_C.TEST.BLUR_KERNEL = 11  # Gaussian kernel DARK smooths the heatmap with
_C.TEST.USE_GT_BBOX = True  # True: boxes from the annotations; False: from COCO_BBOX_FILE
_C.TEST.COCO_BBOX_FILE = ''  # person detection results (COCO json list); relative to DATASET.ROOT
_C.TEST.IMAGE_THRE = 0.0  # detection score threshold
_C.TEST.IN_VIS_THRE = 0.2  # rescoring: mean of the joint scores above this
_C.TEST.OKS_THRE = 0.9  # OKS NMS threshold
_C.TEST.SOFT_NMS = False
_C.TEST.NMS_THRE = 1.0  # unused by the OKS path; kept for HRNet compatibility
_C.TEST.BBOX_THRE = 1.0  # unused by the OKS path; kept for HRNet compatibility
_C.TEST.MODEL_FILE = ''  # weights to test (ours or official mmpose format)

# ---------------------------------------------------------------------------------------------
# Debug images
_C.DEBUG = CN()
_C.DEBUG.DEBUG = False
_C.DEBUG.SAVE_BATCH_IMAGES_GT = True
_C.DEBUG.SAVE_BATCH_IMAGES_PRED = True
_C.DEBUG.SAVE_HEATMAPS_GT = True
_C.DEBUG.SAVE_HEATMAPS_PRED = True
