"""MPII PCKh as pure functions, against a `gt_valid.mat`-style ground-truth file.

PCKh@t: a joint is correct when its distance to the ground truth is at most t x head size, where
head size = 0.6 x the diagonal of the annotated head box (SC_BIAS 0.6 of the MPII toolkit). Only
annotated joints count. Joint groups follow the official MPII MATLAB evaluation (`evaluatePCKh.m`):
Head = mean of upper neck and head top (HRNet's Python port reports head top alone), Shoulder ...
Ankle = mean of the left and right joint, and Mean = all annotated joints except pelvis and thorax
pooled together (each joint weighted by its number of annotations). Mean@0.1 uses exactly t = 0.1;
HRNet prints PCKh@0.11 under that name (row 11 of its 0:0.01:0.5 grid), we do not.

A person whose head size is zero (a degenerate head box) has no PCKh normaliser: none of their joints
is counted, rather than each counting as a miss (mmpose's rule for a zero normaliser); a warning says
how many people were left out. Zero predictions (no labelled person in the set) score 0 everywhere
with one logged warning.

Coordinates: the .mat ground truth is 1-based (MATLAB); predictions are 0-based pixels (as this repo
and HRNet produce them) and get +1 before comparison, as HRNet does.

Shapes: N people, J = 16 MPII joints (annotation order, see lib/dataset/metainfo.py 'mpii').
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import numpy as np

logger = logging.getLogger(__name__)

SC_BIAS = 0.6  # head size = 0.6 x head-box diagonal (MPII toolkit)
NUM_JOINTS = 16
# The joint names the .mat files use (`dataset_joints`), in MPII order = lib.dataset.metainfo 'mpii'.
MAT_JOINT_NAMES = ('rank', 'rkne', 'rhip', 'lhip', 'lkne', 'lank', 'pelv', 'thor', 'neck', 'head', 'rwri', 'relb',
                   'rsho', 'lsho', 'lelb', 'lwri')
# Reported groups, by the joint names of lib.dataset.metainfo 'mpii'.
JOINT_GROUPS = OrderedDict([
    ('Head', ('upper_neck', 'head_top')),
    ('Shoulder', ('left_shoulder', 'right_shoulder')),
    ('Elbow', ('left_elbow', 'right_elbow')),
    ('Wrist', ('left_wrist', 'right_wrist')),
    ('Hip', ('left_hip', 'right_hip')),
    ('Knee', ('left_knee', 'right_knee')),
    ('Ankle', ('left_ankle', 'right_ankle')),
])
EXCLUDED_FROM_MEAN = ('pelvis', 'thorax')  # not in the MPII benchmark's 14 joints
METRIC_NAMES = tuple(JOINT_GROUPS) + ('Mean', 'Mean@0.1')


@dataclass(frozen=True)
class MpiiGroundTruth:
    """gt_valid.mat contents in row-per-person layout.

    joints: (N,16,2) 1-based pixels; missing: (N,16) bool (not annotated); headboxes: (N,2,2) = two
    corners (x,y) of the head box, 1-based.
    """

    joints: np.ndarray
    missing: np.ndarray
    headboxes: np.ndarray

    @property
    def num_people(self) -> int:
        return self.joints.shape[0]


def load_gt_mat(path: str) -> MpiiGroundTruth:
    """Read pos_gt_src (16,2,N), jnt_missing (16,N), headboxes_src (2,2,N) [, dataset_joints] from a .mat.

    Raises FileNotFoundError / ValueError naming the file and the variable at fault.
    """
    from scipy.io import loadmat

    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: ground-truth .mat file not found')
    try:
        mat = loadmat(path)
    except Exception as err:  # scipy raises several types for a corrupt file
        raise ValueError(f'{path}: not a readable .mat file ({err})') from None
    for key in ('pos_gt_src', 'jnt_missing', 'headboxes_src'):
        if key not in mat:
            raise ValueError(f"{path}: variable '{key}' is missing")
    pos, missing, boxes = (np.asarray(mat[k], dtype=np.float64) for k in ('pos_gt_src', 'jnt_missing', 'headboxes_src'))
    n = pos.shape[-1] if pos.ndim == 3 else -1
    expected = {'pos_gt_src': (pos, (NUM_JOINTS, 2, n)), 'jnt_missing': (missing, (NUM_JOINTS, n)),
                'headboxes_src': (boxes, (2, 2, n))}
    for key, (arr, shape) in expected.items():
        if n < 0 or arr.shape != shape:
            raise ValueError(f"{path}: '{key}' has shape {arr.shape}, expected {shape if n >= 0 else '(16, 2, N)'}")
    if 'dataset_joints' in mat:
        names = tuple(str(np.asarray(x).reshape(-1)[0]) for x in np.asarray(mat['dataset_joints']).reshape(-1))
        if names != MAT_JOINT_NAMES:
            raise ValueError(f"{path}: 'dataset_joints' is {names}, expected the MPII order {MAT_JOINT_NAMES}")
    gt = MpiiGroundTruth(joints=np.transpose(pos, (2, 0, 1)), missing=missing.T.astype(bool),
                         headboxes=np.transpose(boxes, (2, 0, 1)))
    bad_joint = ~np.isfinite(gt.joints).all(axis=-1) & ~gt.missing
    bad_box = ~np.isfinite(gt.headboxes).reshape(gt.num_people, -1).all(axis=1)
    for bad, what in ((bad_joint, "an annotated joint in 'pos_gt_src'"), (bad_box, "the head box 'headboxes_src'")):
        if bad.any():
            person = int(np.argwhere(bad)[0][0])
            raise ValueError(f'{path}: person {person} (0-based): {what} is not finite (NaN or inf), '
                             f'for {int(bad.reshape(gt.num_people, -1).any(axis=1).sum())} people')
    return gt


def head_sizes(headboxes: np.ndarray) -> np.ndarray:
    """(N,2,2) head boxes (two corners) -> (N,) PCKh normaliser 0.6 x diagonal length."""
    return SC_BIAS * np.linalg.norm(headboxes[:, 1, :] - headboxes[:, 0, :], axis=-1)


def normalized_errors(preds: np.ndarray, gt: MpiiGroundTruth) -> np.ndarray:
    """(N,16,2) 0-based predictions -> (N,16) distance to the ground truth / head size (+1 to 1-based first).

    NaN for a person whose head size is 0: no normaliser, so not counted (see `countable`).
    """
    err = np.linalg.norm((preds + 1.0) - gt.joints, axis=-1)
    size = head_sizes(gt.headboxes)[:, None]
    return np.divide(err, size, out=np.full(err.shape, np.nan), where=size > 0)


def countable(gt: MpiiGroundTruth) -> np.ndarray:
    """(N,16) bool: the joints PCKh counts -- annotated, of a person whose head size is not 0."""
    return ~gt.missing & (head_sizes(gt.headboxes) > 0)[:, None]


def pckh_per_joint(errors: np.ndarray, annotated: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint PCKh in percent (16,) (NaN for a joint never annotated) and annotation counts (16,).

    A joint is correct when error <= thr (inclusive, as the MPII toolkit); NaN predictions are wrong.
    """
    counts = annotated.sum(axis=0)
    correct = ((errors <= thr) & annotated).sum(axis=0)
    with np.errstate(invalid='ignore', divide='ignore'):
        pck = np.where(counts > 0, 100.0 * correct / counts, np.nan)
    return pck, counts


def check_preds(preds, num_people: int, source: str = 'preds') -> np.ndarray:
    """Validate predictions as (N,16,2) floats for N people; ValueError naming source otherwise."""
    arr = np.asarray(preds, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (NUM_JOINTS, 3):
        arr = arr[..., :2]  # x, y, score: the score is not used by PCKh
    if arr.shape != (num_people, NUM_JOINTS, 2):
        raise ValueError(f'{source}: predictions have shape {arr.shape}, expected ({num_people}, {NUM_JOINTS}, 2) '
                         f'(one row per ground-truth person, 16 joints, x y)')
    return arr


def pckh_metrics(preds: np.ndarray, gt: MpiiGroundTruth, thr: float = 0.5,
                 low_thr: float = 0.1) -> 'OrderedDict[str, float]':
    """Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean (PCKh@thr) and Mean@0.1 (PCKh@low_thr), in percent.

    preds: (N,16,2) 0-based pixels in annotation order. A group is the plain mean of its two joints'
    PCKh; Mean pools all annotated joints but pelvis and thorax. People with a zero head size are not
    counted (a warning gives their number).
    """
    from lib.dataset.metainfo import get_metainfo  # lazy: evaluation does not need the data package at import

    names = get_metainfo('mpii').joint_names
    index = {name: i for i, name in enumerate(names)}
    preds = check_preds(preds, gt.num_people)
    errors = normalized_errors(preds, gt)
    annotated = countable(gt)
    no_head = int((head_sizes(gt.headboxes) <= 0).sum())
    if no_head:
        logger.warning('PCKh: %d of %d people have a zero head size; their joints are not counted', no_head,
                       gt.num_people)
    pck, counts = pckh_per_joint(errors, annotated, thr)
    pck_low, _ = pckh_per_joint(errors, annotated, low_thr)
    in_mean = np.ones(NUM_JOINTS, dtype=bool)
    in_mean[[index[n] for n in EXCLUDED_FROM_MEAN]] = False
    weights = np.where(in_mean, counts, 0).astype(np.float64)
    if weights.sum() == 0:
        raise ValueError('PCKh: no annotated joint to score (every joint is marked missing, or its person '
                         'has a zero head size)')
    weights /= weights.sum()
    metrics = OrderedDict()
    for group, members in JOINT_GROUPS.items():
        vals = pck[[index[m] for m in members]]
        metrics[group] = float(np.mean(vals[~np.isnan(vals)])) if np.any(~np.isnan(vals)) else float('nan')
    metrics['Mean'] = float(np.sum(np.nan_to_num(pck) * weights))
    metrics['Mean@0.1'] = float(np.sum(np.nan_to_num(pck_low) * weights))
    return metrics


def save_pred_mat(preds: np.ndarray, path: str) -> str:
    """Write predictions as HRNet's pred.mat: 'preds' (N,16,2) **1-based** (MATLAB toolkit), 'index_base' 1."""
    from scipy.io import savemat

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    savemat(path, {'preds': np.asarray(preds, dtype=np.float64)[..., :2] + 1.0, 'index_base': 1})
    return path


def evaluate_mpii_predictions(dataset, preds: dict, output_dir: Optional[str]) -> 'OrderedDict[str, float]':
    """PCKh for a data set's predictions. Reads only dataset.gt_mat; preds['keypoints'] (N,16,3) 0-based image px.

    Rows are put in annotation order by preds['index'] (when given) so gathered or shuffled
    predictions score correctly. output_dir/pred.mat is written first (when output_dir is given), so
    a split without ground truth (MPII test) still yields the file to submit before the error.
    Zero predictions (no labelled person) give 0 for every metric with one logged warning, and no file.
    """
    keypoints = np.asarray(preds['keypoints'], dtype=np.float64)
    if len(keypoints) == 0:
        logger.warning('MPII evaluation: no predictions to score (no labelled person); every PCKh is 0')
        return OrderedDict((name, 0.0) for name in METRIC_NAMES)
    if preds.get('index') is not None:
        index = np.asarray(preds['index']).astype(np.int64)
        if sorted(index.tolist()) != list(range(len(keypoints))):
            raise ValueError(f"preds['index'] must hold each of 0..{len(keypoints) - 1} exactly once "
                             f'(one prediction per annotated person)')
        keypoints = keypoints[np.argsort(index)]
    if keypoints.ndim != 3 or keypoints.shape[1:] not in ((NUM_JOINTS, 2), (NUM_JOINTS, 3)):
        raise ValueError(f"preds['keypoints'] has shape {keypoints.shape}, expected (N, {NUM_JOINTS}, 3)")
    coords = keypoints[..., :2]
    if output_dir:
        logger.info('wrote %s', save_pred_mat(coords, os.path.join(output_dir, 'pred.mat')))
    gt = load_gt_mat(dataset.gt_mat)
    return pckh_metrics(check_preds(coords, gt.num_people, f"preds['keypoints'] (for {dataset.gt_mat})"), gt)
