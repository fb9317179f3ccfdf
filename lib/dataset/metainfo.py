"""Keypoint metadata written as data: one table per keypoint set, used by datasets, evaluation and drawing.

Values follow HRNet (`lib/dataset/coco.py`, `mpii.py`) and mmpose (`configs/_base_/datasets/*.py`):
flip pairs, upper/lower-body ids for the half-body transform, per-joint loss weights, OKS sigmas and
the drawing skeleton (0-based). Nothing in the pipeline assumes a joint count; a COCO-format data set
with its own keypoints needs only a new table:

    from lib.dataset.metainfo import KeypointMeta, register_metainfo
    register_metainfo(KeypointMeta(name='hand5', joint_names=(...), flip_pairs=(), ...))

and `DATASET.METAINFO: hand5` (plus `MODEL.NUM_JOINTS: 5`) in the YAML.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

__all__ = ['KeypointMeta', 'get_metainfo', 'register_metainfo', 'METAINFO', 'COCO', 'MPII']


@dataclass(frozen=True)
class KeypointMeta:
    """One keypoint set. K = len(joint_names); every id is 0-based."""

    name: str
    joint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]  # (left, right) ids swapped by a horizontal flip
    upper_body_ids: tuple[int, ...]  # half-body transform: the upper set
    lower_body_ids: tuple[int, ...]  # ...and the lower set
    joint_weights: np.ndarray = field(repr=False)  # (K,) loss weights (used when enabled)
    sigmas: np.ndarray = field(repr=False)  # (K,) OKS per-keypoint constants
    skeleton: tuple[tuple[int, int], ...] = ()  # limbs to draw, (a, b) ids

    def __post_init__(self) -> None:
        k = len(self.joint_names)
        # Arrays are stored as read-only float copies so a caller can never change a shared table.
        for attr in ('joint_weights', 'sigmas'):
            arr = np.array(getattr(self, attr), dtype=np.float64).reshape(-1)
            if arr.shape != (k,):
                raise ValueError(f"metainfo '{self.name}': {attr} has {arr.size} values, expected {k} "
                                 f"(one per joint name)")
            arr.setflags(write=False)
            object.__setattr__(self, attr, arr)
        for attr in ('flip_pairs', 'skeleton'):
            pairs = tuple((int(a), int(b)) for a, b in getattr(self, attr))
            object.__setattr__(self, attr, pairs)
            for a, b in pairs:
                if not (0 <= a < k and 0 <= b < k):
                    raise ValueError(f"metainfo '{self.name}': {attr} entry ({a}, {b}) is outside 0..{k - 1}")
        for attr in ('upper_body_ids', 'lower_body_ids'):
            ids = tuple(int(i) for i in getattr(self, attr))
            object.__setattr__(self, attr, ids)
            if any(not 0 <= i < k for i in ids):
                raise ValueError(f"metainfo '{self.name}': {attr} {ids} has ids outside 0..{k - 1}")
        object.__setattr__(self, 'joint_names', tuple(self.joint_names))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def flip_index(self) -> np.ndarray:
        """(K,) permutation: joint j of a flipped image is joint flip_index[j] of the original."""
        perm = np.arange(self.num_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


COCO = KeypointMeta(
    name='coco',
    joint_names=('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip',
                 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    upper_body_ids=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10),
    lower_body_ids=(11, 12, 13, 14, 15, 16),
    joint_weights=np.array([1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5]),
    sigmas=np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89,
                     .89]) / 10.0,
    # The COCO annotation file's skeleton (1-based there), made 0-based.
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
)

MPII = KeypointMeta(
    name='mpii',
    joint_names=('right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle', 'pelvis',
                 'thorax', 'upper_neck', 'head_top', 'right_wrist', 'right_elbow', 'right_shoulder',
                 'left_shoulder', 'left_elbow', 'left_wrist'),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    upper_body_ids=(7, 8, 9, 10, 11, 12, 13, 14, 15),
    lower_body_ids=(0, 1, 2, 3, 4, 5, 6),
    joint_weights=np.array([1.5, 1.2, 1., 1., 1.2, 1.5, 1., 1., 1., 1., 1.5, 1.2, 1., 1., 1.2, 1.5]),
    # mmpose's MPII sigmas (adapted from COCO); MPII itself is scored by PCKh, these only serve OKS NMS.
    sigmas=np.array([.089, .083, .107, .107, .083, .089, .026, .026, .026, .026, .062, .072, .179, .179,
                     .072, .062]),
    skeleton=((0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11),
              (11, 10), (8, 13), (13, 14), (14, 15)),
)

# The registry: a plain dict, name -> table. `register_metainfo` adds a user's own keypoint set.
METAINFO: dict[str, KeypointMeta] = {'coco': COCO, 'mpii': MPII}


def register_metainfo(meta: KeypointMeta, overwrite: bool = False) -> KeypointMeta:
    """Add a keypoint table under `meta.name` so `DATASET.METAINFO: <name>` finds it."""
    if meta.name in METAINFO and not overwrite and METAINFO[meta.name] is not meta:
        raise ValueError(f"metainfo '{meta.name}' is already registered (pass overwrite=True to replace it)")
    METAINFO[meta.name] = meta
    return meta


def get_metainfo(name: str) -> KeypointMeta:
    """The table registered as `name` ('coco', 'mpii', or one added with `register_metainfo`)."""
    try:
        return METAINFO[name]
    except KeyError:
        raise KeyError(f"unknown keypoint metainfo '{name}'; known: {sorted(METAINFO)} "
                       f"(add yours with lib.dataset.metainfo.register_metainfo)") from None


def check_num_joints(meta: KeypointMeta, num_joints: int, source: str = 'MODEL.NUM_JOINTS') -> None:
    """Raise naming both values when a config's joint count disagrees with the keypoint table."""
    if meta.num_joints != num_joints:
        raise ValueError(f"{source} = {num_joints} but keypoint metainfo '{meta.name}' has "
                         f"{meta.num_joints} joints")

