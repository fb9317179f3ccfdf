"""MPII top-down data set in the classic HRNet json format (ROOT/annot/<set>.json, ROOT/images/<image>).

Each entry: {image, center [x, y], scale, joints [[x, y]] * K, joints_vis [0|1] * K}, coordinates
1-based (MATLAB). As HRNet does on loading: centre y += 15 * scale (the MPII centre sits high on the
body), scale *= 1.25, then centre and joints -1 (0-based). `scale` is person height / 200, so the
box is square: scale (s, s). GT boxes are always used. Head boxes for PCKh live in `gt_mat`
(ROOT/annot/gt_<set>.mat); the evaluation reads that file, the dataset does not. A NaN or infinite
number in an entry is an error naming the file and the entry.
"""
from __future__ import annotations

import logging
import math
import os
from collections import Counter
from numbers import Real

import numpy as np

from .coco import _field, load_json, log_counts
from .joints_dataset import JointsDataset

logger = logging.getLogger(__name__)


class MPIIDataset(JointsDataset):
    """MPII single-person-box data set (HRNet json)."""

    name = 'mpii'

    def __init__(self, cfg, root: str, image_set: str, is_train: bool, metainfo, codec) -> None:
        super().__init__(cfg, root, image_set, is_train, metainfo, codec)
        self.ann_file = os.path.join(root, 'annot', f'{image_set}.json')
        self.gt_mat = os.path.join(root, 'annot', f'gt_{image_set}.mat')
        self.image_dir = os.path.join(root, 'images')
        self.db = self._records(load_json(self.ann_file, 'MPII annotation file'))
        log_counts(logger, f'mpii {image_set}', len(self.db), Counter())  # MPII keeps every entry

    def _records(self, entries) -> list[dict]:
        if not isinstance(entries, list):
            raise ValueError(f'{self.ann_file}: expected a json list of people, got {type(entries).__name__}')
        k = self.num_joints
        records = []
        for i, a in enumerate(entries):
            at = f'{self.ann_file}: entry {i}'
            image = _field(a, 'image', at)
            center = np.asarray(_numbers(_field(a, 'center', at), 2, 'center', at), dtype=np.float64)
            s = float(_numbers([_field(a, 'scale', at)], 1, 'scale', at)[0])
            scale = np.array([s, s])
            if center[0] != -1:  # -1 marks "no centre" in the MPII test set
                center[1] += 15 * scale[1]
                scale = scale * 1.25
            center -= 1
            if 'joints' in a or self.image_set != 'test':
                joints = np.asarray(_field(a, 'joints', at), dtype=np.float64)
                vis = np.asarray(_field(a, 'joints_vis', at), dtype=np.float64).reshape(-1)
                if joints.shape != (k, 2) or vis.shape != (k,):
                    raise ValueError(f"{at} ({image}): fields 'joints'/'joints_vis' have shapes {joints.shape}/"
                                     f"{vis.shape}, expected ({k}, 2)/({k},) for metainfo '{self.metainfo.name}'")
                bad_joints = np.flatnonzero(~np.isfinite(np.c_[joints, vis]).all(axis=1))
                if bad_joints.size:  # NaN visibility would read as 'unlabelled', a NaN position poisons the target
                    raise ValueError(f"{at} ({image}): fields 'joints'/'joints_vis' hold NaN or infinite "
                                     f"values (joint {int(bad_joints[0])})")
                joints = joints - 1
            else:
                joints, vis = np.zeros((k, 2)), np.zeros(k)
            records.append(dict(image_file=os.path.join(self.image_dir, image), image_id=i,
                                center=center.astype(np.float32), scale=scale.astype(np.float32),
                                joints=joints.astype(np.float32), visible=np.minimum(vis, 1).astype(np.float32),
                                score=1.0))
        return records


def _numbers(values, n: int, key: str, where: str) -> list[float]:
    if not (isinstance(values, (list, tuple)) and len(values) == n and all(isinstance(v, Real) for v in values)):
        raise ValueError(f"{where}: field '{key}' must be {n} number(s), got {values!r}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: field '{key}' has a NaN or infinite value: {values!r}")
    return [float(v) for v in values]
