"""COCO-format top-down keypoint data set: person records from GT boxes or from detector boxes.

Layout (HRNet): ROOT/annotations/person_keypoints_<set>.json, ROOT/images/<set>/<file_name>,
detections in TEST.COCO_BBOX_FILE (relative to ROOT). Any COCO-format keypoint file works when its
keypoint count matches the metainfo table.

GT records follow HRNet/mmpose 0.x: crowd annotations are dropped; the box is clipped to the image
("clean box"); an annotation whose area is 0 or whose clipped box has no width or height is skipped
with a log line; persons with no labelled keypoint (max(keypoints) == 0) are skipped, for training
and for GT-box validation alike, as both classic repos do. Detection records keep every person
detection whose score is >= TEST.IMAGE_THRE (joints unknown, all marked visible as in HRNet).
Annotations and detections count when their category carries keypoints in the file's `categories`
(COCO: person, id 1), so a user's set with other category ids works too.

Every build logs how many records it kept and how many it skipped, by reason. A number that is NaN or
infinite (a keypoint coordinate or visibility flag, a box coordinate, an area, a detection score) is an
error naming the file and the annotation: read as it is, it would become an unlabelled joint or a box
clipped to 0, and training or evaluation would go on silently wrong. Detection scores above 1 are
kept with one warning (some detectors emit logits or unnormalised scores).
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from numbers import Real
from typing import Any

import numpy as np

from .joints_dataset import JointsDataset
from .transforms import PIXEL_STD, box_to_center_scale

logger = logging.getLogger(__name__)


def load_json(path: str, what: str) -> Any:
    """json.load with errors that name the file (missing, truncated or not JSON)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f'{what} {path} is not valid JSON (truncated?): {err}') from None


def _field(entry: dict, key: str, where: str) -> Any:
    if not isinstance(entry, dict) or key not in entry:
        raise ValueError(f"{where}: missing field '{key}'")
    return entry[key]


def _box(entry: dict, where: str) -> list[float]:
    box = _field(entry, 'bbox', where)
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, Real) for v in box)):
        raise ValueError(f"{where}: field 'bbox' must be 4 numbers [x, y, w, h], got {box!r}")
    box = [float(v) for v in box]
    if not all(math.isfinite(v) for v in box):  # max(0, nan) is 0: a NaN would be clipped away silently
        raise ValueError(f"{where}: field 'bbox' has a NaN or infinite coordinate: {box}")
    return box


def _number(entry: dict, key: str, where: str, default: float | None = None) -> float:
    """A finite number field (json.load reads NaN and Infinity literals)."""
    value = entry.get(key, default) if default is not None else _field(entry, key, where)
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{where}: field '{key}' must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: field '{key}' is {value}")
    return float(value)


def log_counts(log: logging.Logger, what: str, kept: int, skipped: Counter) -> None:
    """One line per data set build: '<what>: kept N person records, skipped M (a reason, b reason)'."""
    total = sum(skipped.values())
    reasons = ', '.join(f'{n} {reason}' for reason, n in skipped.most_common() if n)
    log.info('%s: kept %d person records, skipped %d%s', what, kept, total, f' ({reasons})' if total else '')


def clean_box(box_xywh: list[float], width: int, height: int) -> list[float] | None:
    """Clip an (x, y, w, h) box to the image as HRNet/mmpose do; None when nothing is left."""
    x, y, w, h = box_xywh
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 > x1 and y2 > y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


class COCODataset(JointsDataset):
    """COCO top-down data set (GT boxes or detector boxes). `ann_file` is the keypoint json."""

    name = 'coco'

    def __init__(self, cfg, root: str, image_set: str, is_train: bool, metainfo, codec,
                 use_gt_bbox: bool = True, bbox_file: str = '', image_thre: float = 0.0) -> None:
        super().__init__(cfg, root, image_set, is_train, metainfo, codec)
        self.ann_file = os.path.join(root, 'annotations', f'person_keypoints_{image_set}.json')
        self.image_dir = os.path.join(root, 'images', image_set)
        self.use_gt_bbox = use_gt_bbox
        self.bbox_file = bbox_file
        self.image_thre = image_thre
        self.skipped: Counter = Counter()  # reason -> number of annotations / detections left out
        data = load_json(self.ann_file, 'COCO annotation file')
        self.images = self._index_images(data)
        # Categories that carry keypoints (COCO: person, id 1); a user's set may use other ids.
        self.category_ids = {c.get('id') for c in data.get('categories', []) if isinstance(c, dict)
                             and 'keypoints' in c} or {1}
        self.image_ids = sorted(self.images)
        if use_gt_bbox:
            self.db = self._gt_records(data)
        else:
            if not bbox_file:
                raise ValueError('TEST.USE_GT_BBOX is False but TEST.COCO_BBOX_FILE is empty')
            self.db = self._detection_records(load_json(bbox_file, 'person detection file'))
        if is_train and cfg.DATASET.SELECT_DATA:
            before = len(self.db)
            self.db = select_data(self.db)
            self.skipped['off-centre (DATASET.SELECT_DATA)'] += before - len(self.db)
        log_counts(logger, f'{self.name} {image_set} ({"GT" if use_gt_bbox else "detector"} boxes, '
                   f'{len(self.images)} images)', len(self.db), self.skipped)

    def _index_images(self, data: Any) -> dict[int, dict]:
        where = self.ann_file
        if not isinstance(data, dict):
            raise ValueError(f'{where}: expected a COCO json object, got {type(data).__name__}')
        images = {}
        for i, img in enumerate(_field(data, 'images', where)):
            at = f'{where}: images[{i}]'
            image_id = _field(img, 'id', at)
            for key in ('file_name', 'width', 'height'):
                _field(img, key, f'{at} (id {image_id})')
            images[int(image_id)] = img
        return images

    def image_path(self, image_id: int) -> str:
        return os.path.join(self.image_dir, self.images[image_id]['file_name'])

    def _gt_records(self, data: dict) -> list[dict]:
        k = self.num_joints
        records = []
        for i, ann in enumerate(_field(data, 'annotations', self.ann_file)):
            at = f"{self.ann_file}: annotations[{i}] (id {ann.get('id') if isinstance(ann, dict) else '?'})"
            image_id = int(_field(ann, 'image_id', at))
            if image_id not in self.images:
                raise ValueError(f"{at}: field 'image_id' {image_id} is not in 'images'")
            if ann.get('category_id', 1) not in self.category_ids:
                self.skipped['not a keypoint category'] += 1
                continue
            if ann.get('iscrowd', 0):
                self.skipped['crowd'] += 1
                continue
            kpts = _field(ann, 'keypoints', at)
            if not isinstance(kpts, (list, tuple)) or len(kpts) != 3 * k:
                n = len(kpts) if isinstance(kpts, (list, tuple)) else type(kpts).__name__
                raise ValueError(f"{at}: field 'keypoints' has {n} values, expected {3 * k} "
                                 f"(3 per joint of metainfo '{self.metainfo.name}')")
            try:
                kpts = np.asarray(kpts, dtype=np.float32).reshape(k, 3)
            except (TypeError, ValueError):
                raise ValueError(f"{at}: field 'keypoints' must hold numbers, got {kpts!r}") from None
            bad = ~np.isfinite(kpts)
            if bad.any():  # a NaN flag would read as 'unlabelled', a NaN coordinate would poison the target
                joint, col = (int(v) for v in np.argwhere(bad)[0])
                raise ValueError(f"{at}: field 'keypoints' has {kpts[joint, col]} as the "
                                 f"{('x', 'y', 'visibility flag')[col]} of joint {joint} "
                                 f"('{self.metainfo.joint_names[joint]}')")
            img = self.images[image_id]
            box = clean_box(_box(ann, at), img['width'], img['height'])
            if box is None or _number(ann, 'area', at, default=1.0) <= 0:
                logger.info('%s: skipped, zero-size box %s or area %s', at, ann['bbox'], ann.get('area'))
                self.skipped['zero-size box'] += 1
                continue
            if kpts.max() <= 0:
                self.skipped['without keypoints'] += 1
                continue  # no labelled keypoint: nothing to learn or score (HRNet, mmpose)
            center, scale = box_to_center_scale(box, self.aspect_ratio)
            records.append(dict(image_file=self.image_path(image_id), image_id=image_id, center=center,
                                scale=scale, joints=kpts[:, :2].copy(),
                                visible=np.minimum(kpts[:, 2], 1.0), score=1.0))
        return records

    def _detection_records(self, dets: Any) -> list[dict]:
        where = self.bbox_file
        if not isinstance(dets, list):
            raise ValueError(f'{where}: expected a json list of detections, got {type(dets).__name__}')
        k = self.num_joints
        records = []
        above_one = []
        for i, det in enumerate(dets):
            at = f'{where}: entry {i}'
            if _field(det, 'category_id', at) not in self.category_ids:
                self.skipped['not a keypoint category'] += 1
                continue
            score = _number(det, 'score', at)
            if score > 1:
                above_one.append(i)
            if score < self.image_thre:
                self.skipped[f'score below TEST.IMAGE_THRE {self.image_thre:g}'] += 1
                continue
            image_id = int(_field(det, 'image_id', at))
            if image_id not in self.images:
                raise ValueError(f"{at}: image_id {image_id} is not in {self.ann_file}")
            box = _box(det, at)
            if box[2] <= 0 or box[3] <= 0:
                logger.info('%s: skipped, zero-size box %s', at, box)
                self.skipped['zero-size box'] += 1
                continue
            center, scale = box_to_center_scale(box, self.aspect_ratio)
            records.append(dict(image_file=self.image_path(image_id), image_id=image_id, center=center,
                                scale=scale, joints=np.zeros((k, 2), np.float32),
                                visible=np.ones(k, np.float32), score=score))
        if above_one:
            logger.warning('%s: %d detection score(s) above 1 (first: entry %d, score %g); are they '
                           'probabilities? TEST.IMAGE_THRE and OKS rescoring expect scores in [0, 1]',
                           where, len(above_one), above_one[0], float(dets[above_one[0]]['score']))
        return records


def select_data(db: list[dict]) -> list[dict]:
    """HRNet's DATASET.SELECT_DATA: keep records whose visible joints are centred in the box (training only)."""
    kept = []
    for rec in db:
        vis = rec['visible'] > 0
        num_vis = int(vis.sum())
        if num_vis == 0:
            continue
        area = float(np.prod(np.asarray(rec['scale'], np.float64) * PIXEL_STD))
        diff = np.sum((rec['joints'][vis].mean(axis=0) - rec['center']) ** 2)
        ks = np.exp(-diff / (0.2 ** 2 * 2.0 * area))  # diff is already the squared distance
        metric = (0.2 / 16) * num_vis + 0.45 - 0.2 / 16
        if ks > metric:
            kept.append(rec)
    logger.info('select_data: kept %d of %d records', len(kept), len(db))
    return kept
