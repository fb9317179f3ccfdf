"""Top-down keypoint data sets: `build_dataset(cfg, is_train)` picks COCO-format or MPII from the config."""
from __future__ import annotations

import os

from ..codecs import build_codec
from .coco import COCODataset
from .joints_dataset import IMAGE_EXTENSIONS, ImageError, JointsDataset, read_image
from .metainfo import KeypointMeta, check_num_joints, get_metainfo, register_metainfo
from .mpii import MPIIDataset

__all__ = ['build_dataset', 'dataset_root', 'COCODataset', 'MPIIDataset', 'JointsDataset', 'KeypointMeta',
           'get_metainfo', 'register_metainfo', 'read_image', 'ImageError', 'IMAGE_EXTENSIONS', 'DATASETS']

DATASETS = {'coco': COCODataset, 'mpii': MPIIDataset}


def dataset_root(cfg) -> str:
    """DATASET.ROOT, prefixed with DATA_DIR when it is relative."""
    root = cfg.DATASET.ROOT
    return root if os.path.isabs(root) or not cfg.DATA_DIR else os.path.join(cfg.DATA_DIR, root)


def build_dataset(cfg, is_train: bool, use_gt_bbox: bool | None = None) -> JointsDataset:
    """The train (augmented, GT boxes) or test set of a config.

    use_gt_bbox: None -> TEST.USE_GT_BBOX for the test set; the train set always uses GT boxes.
    Seeds nothing: augmentation draws from a per-worker generator seeded from torch (see JointsDataset.rng).
    """
    name = cfg.DATASET.DATASET
    if name not in DATASETS:
        raise ValueError(f"DATASET.DATASET '{name}' is unknown; choose one of {sorted(DATASETS)}")
    meta = get_metainfo(cfg.DATASET.METAINFO)
    check_num_joints(meta, cfg.MODEL.NUM_JOINTS)
    codec = build_codec(cfg)
    root = dataset_root(cfg)
    image_set = cfg.DATASET.TRAIN_SET if is_train else cfg.DATASET.TEST_SET
    if name == 'mpii':
        return MPIIDataset(cfg, root, image_set, is_train, meta, codec)
    if use_gt_bbox is None:
        use_gt_bbox = True if is_train else cfg.TEST.USE_GT_BBOX
    bbox_file = cfg.TEST.COCO_BBOX_FILE
    if bbox_file and not os.path.isabs(bbox_file):
        bbox_file = os.path.join(root, bbox_file)
    return COCODataset(cfg, root, image_set, is_train, meta, codec, use_gt_bbox=use_gt_bbox,
                       bbox_file=bbox_file, image_thre=cfg.TEST.IMAGE_THRE)
