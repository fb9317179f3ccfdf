"""Top-down keypoint dataset: a list of person records -> (image crop, heatmaps, weights, meta).

Subclasses (`coco.py`, `mpii.py`) only load records; this class does the per-sample work:
read the image (OpenCV), draw the training augmentation from a per-worker generator, crop with one
`cv2.warpAffine` straight from the decoded image (a flip is folded into the matrix, so the image is
never copied), move the joints with the same matrix, and encode them with the shared codec.

An image that is missing, unreadable, undecodable or a truncated JPEG stops the run with an error naming
the file and the sample (`read_image`); a tool prints it as one 'error: ...' line, also when a
DataLoader worker raised it.

A record is a dict: 'image_file' str, 'image_id' int, 'center' (2,), 'scale' (2,) [HRNet units],
'joints' (K, 2) image pixels, 'visible' (K,) 0/1, 'score' float (box score, 1 for GT).
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from ..codecs import MSRAHeatmap
from ..utils.logger import UserError
from .metainfo import KeypointMeta
from .transforms import (PIXEL_STD, affine_transform_points, flip_joints, get_affine_transform, half_body_box,
                         normalize_image, random_box_shift, random_scale_rotation, warp_with_matrix)

logger = logging.getLogger(__name__)

# IGNORE_ORIENTATION: COCO boxes refer to the stored pixels, not the EXIF-rotated view (as in HRNet).
IMREAD_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


JPEG_SOI, JPEG_EOI = b'\xff\xd8', b'\xff\xd9'  # a JPEG file starts with SOI and ends with EOI


class ImageError(UserError):
    """An image file that cannot be read or decoded, or a truncated JPEG; the message names the file
    (and the sample). A UserError, so a tool prints one 'error: ...' line and exits with status 2."""


# Image file name endings OpenCV reads that the tools look for in a folder (demo --image DIR, calibration crops).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def read_image(path: str, sample: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 BGR image; raises naming the file (and the data set sample) when it is missing
    (FileNotFoundError), unreadable, undecodable or a truncated JPEG (ImageError)."""
    where = path if sample is None else f'{path} (sample {sample})'
    try:
        data = np.fromfile(path, dtype=np.uint8)  # one read: the bytes are checked, then decoded
    except FileNotFoundError:
        raise FileNotFoundError(f'{where}: image not found') from None
    except OSError as err:  # a folder, no permission, an I/O error
        raise ImageError(f'{where}: cannot read the image ({err.strerror or err})') from None
    if data.size == 0:
        raise ImageError(f'{where}: the image file is empty')
    # libjpeg decodes a truncated JPEG without an error: the missing rows come out grey, and the model
    # would train (or be scored) on a half-grey image with joints on the grey. We stop instead of
    # skipping the sample: a skip would change the data set (and the metric) without anyone noticing,
    # and a truncated file usually means an interrupted download or copy that should be redone.
    if data[:2].tobytes() == JPEG_SOI and data[-2:].tobytes() != JPEG_EOI:
        raise ImageError(f'{where}: truncated JPEG (the file does not end with the end-of-image marker '
                         f'FF D9; {data.size} bytes): copy or download it again')
    image = cv2.imdecode(data, IMREAD_FLAGS)
    if image is None:
        raise ImageError(f'{where}: the image could not be decoded (corrupt or not an image)')
    return image


def tune_malloc() -> bool:
    """Stop glibc from handing each sample's large buffers back to the OS and faulting them in again.

    A sample allocates and frees a few ~0.5-1 MB arrays (decoded image, crop, float input, heatmaps).
    glibc's default thresholds make that churn through mmap/munmap and heap trimming, which costs a
    data-loader worker about a quarter of its time (`tools/benchmark.py data`). Keeping buffers below
    32 MB on the heap and trimming only beyond 128 MB removes it. Called once in each DataLoader
    worker process (never in the main process); returns False where it does not apply (not glibc).
    """
    if not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(libc.mallopt(m_trim_threshold, 128 << 20))
    except (OSError, AttributeError):
        return False


_TUNED_PID: int | None = None


def _tune_malloc_in_worker() -> None:
    """tune_malloc once per DataLoader worker process (the main process is left alone)."""
    global _TUNED_PID
    if _TUNED_PID != os.getpid() and get_worker_info() is not None:
        _TUNED_PID = os.getpid()
        tune_malloc()


class JointsDataset(Dataset):
    """Base top-down dataset; subclasses fill `self.db` with records in `_load_records()`.

    Args:
        cfg: the frozen config (DATASET.* augmentation keys, MODEL.IMAGE_SIZE, DATASET.COLOR_RGB).
        root: data set root folder; image_set: e.g. 'train2017' or 'valid'.
        is_train: apply the random augmentation.
        metainfo: the keypoint table; codec: the heatmap codec (shared with inference).
    """

    name = 'base'

    def __init__(self, cfg, root: str, image_set: str, is_train: bool, metainfo: KeypointMeta,
                 codec: MSRAHeatmap) -> None:
        self.root = root
        self.image_set = image_set
        self.is_train = is_train
        self.metainfo = metainfo
        self.num_joints = metainfo.num_joints
        self.flip_pairs = metainfo.flip_pairs
        self.codec = codec
        self.image_size = np.array(cfg.MODEL.IMAGE_SIZE, dtype=np.int64)  # (W, H)
        self.heatmap_size = np.array(cfg.MODEL.HEATMAP_SIZE, dtype=np.int64)  # (w, h)
        self.aspect_ratio = float(self.image_size[0]) / float(self.image_size[1])
        self.color_rgb = cfg.DATASET.COLOR_RGB
        d = cfg.DATASET
        self.flip = d.FLIP
        self.scale_factor = d.SCALE_FACTOR
        self.rot_factor = d.ROT_FACTOR
        self.prob_rotation = d.PROB_ROTATION
        self.num_joints_half_body = d.NUM_JOINTS_HALF_BODY
        self.prob_half_body = d.PROB_HALF_BODY
        self.prob_half_body_upper = d.PROB_HALF_BODY_UPPER
        self.prob_box_jitter = d.PROB_BOX_JITTER
        self.box_jitter_factor = d.BOX_JITTER_FACTOR
        self.box_jitter_start_epoch = d.BOX_JITTER_START_EPOCH
        self.epoch = 0  # the training epoch (set_epoch): augmentation can depend on it
        self.use_joint_weights = bool(cfg.LOSS.USE_DIFFERENT_JOINTS_WEIGHT)
        self._rng_seed: int | None = None
        self._rng: np.random.Generator | None = None
        self.db: list[dict[str, Any]] = []

    def __len__(self) -> int:
        return len(self.db)

    def set_epoch(self, epoch: int) -> None:
        """The training epoch the next samples belong to (tools/train.py calls it before each epoch).

        Loader workers see it because build_loader's workers are not persistent: each epoch starts
        fresh workers from this object. Box jitter applies from DATASET.BOX_JITTER_START_EPOCH on; the
        augmentation stays a pure function of (seed, epoch), so resumed runs stay exact.
        """
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ randomness
    def rng(self) -> np.random.Generator:
        """This process's augmentation generator, seeded from torch's seed.

        In a DataLoader worker that is the worker's seed (base seed + worker id, fresh each epoch);
        in the main process (num_workers=0) it is torch.initial_seed(). Either way torch.manual_seed
        makes the augmentation reproducible, and `build_dataset` seeds nothing globally.
        """
        info = get_worker_info()
        seed = info.seed if info is not None else torch.initial_seed()
        if seed != self._rng_seed:
            self._rng_seed, self._rng = seed, np.random.default_rng(seed)
        return self._rng

    # ------------------------------------------------------------------ augmentation
    def augment(self, record: dict, image_width: int, rng: np.random.Generator) -> dict:
        """Draw one training augmentation: returns center, scale, rotation, flip, joints, visible."""
        center = np.array(record['center'], dtype=np.float32)
        scale = np.array(record['scale'], dtype=np.float32)
        joints = np.array(record['joints'], dtype=np.float32)
        visible = np.array(record['visible'], dtype=np.float32)
        jitter = self.prob_box_jitter > 0 and self.epoch >= self.box_jitter_start_epoch
        if jitter and rng.random() < self.prob_box_jitter:
            center = random_box_shift(center, scale, rng, self.box_jitter_factor)
        if visible.sum() > self.num_joints_half_body and rng.random() < self.prob_half_body:
            box = half_body_box(joints, visible, self.metainfo.upper_body_ids, self.metainfo.lower_body_ids,
                                self.aspect_ratio, rng, prob_upper=self.prob_half_body_upper)
            if box is not None:
                center, scale = box
        s, rotation = random_scale_rotation(rng, self.scale_factor, self.rot_factor, self.prob_rotation)
        scale = scale * s
        flip = bool(self.flip and rng.random() < 0.5)
        if flip:
            joints, visible = flip_joints(joints, visible, image_width, self.flip_pairs)
            center[0] = image_width - center[0] - 1
        return dict(center=center, scale=scale, rotation=rotation, flip=flip, joints=joints, visible=visible)

    # ------------------------------------------------------------------ one sample
    def __getitem__(self, index: int):
        _tune_malloc_in_worker()
        record = self.db[index]
        image = read_image(record['image_file'], sample=index)
        if self.is_train:
            aug = self.augment(record, image.shape[1], self.rng())
        else:
            aug = dict(center=np.asarray(record['center'], np.float32), scale=np.asarray(record['scale'], np.float32),
                       rotation=0.0, flip=False, joints=np.asarray(record['joints'], np.float32),
                       visible=np.asarray(record['visible'], np.float32))
        mat = get_affine_transform(aug['center'], aug['scale'], aug['rotation'], self.image_size)
        crop = warp_with_matrix(image, mat, self.image_size, flip=aug['flip'])
        visible = aug['visible']
        joints = affine_transform_points(aug['joints'], mat).astype(np.float32)
        joints[visible <= 0] = 0.0  # unlabelled joints carry no position
        target, weight = self.codec.encode(joints, visible)
        if self.use_joint_weights:
            weight = weight * self.metainfo.joint_weights.astype(np.float32)
        meta = {
            'image_file': record['image_file'],
            'image_id': int(record['image_id']),
            'center': aug['center'].astype(np.float32),
            'scale': aug['scale'].astype(np.float32),
            'rotation': float(aug['rotation']),
            'score': float(record['score']),
            # The area evaluation uses for OKS NMS: the (padded) crop box, as HRNet/mmpose compute it.
            'area': float(np.prod(aug['scale'].astype(np.float64) * PIXEL_STD)),
            'joints': np.concatenate([joints, visible[:, None]], axis=1).astype(np.float32),
            'index': int(index),
        }
        return (torch.from_numpy(normalize_image(crop, self.color_rgb)), torch.from_numpy(target),
                torch.from_numpy(weight.reshape(-1, 1).astype(np.float32)), meta)
