"""PCK on heatmaps: the training-time accuracy monitor (HRNet `core/evaluate.py` `accuracy`).

accuracy() compares the argmax of each predicted heatmap with the argmax of its target heatmap (the
codec's `get_heatmap_maximum`, so decoding and this monitor share one argmax).
The distance is normalised per axis by a (N,2) factor and a joint counts as correct when the
normalised distance is below thr (strict). Joints whose target peak is not at x > 1 and y > 1 are
not counted: all-zero targets (unlabelled joints) have their peak at (0, 0).

Normalisation, decided on purpose: by default the (x, y) offsets are divided by [H/10, W/10] --
x by H/10 and y by W/10 -- the order HRNet's `accuracy` and mmpose's `pose_pck_accuracy` use,
although x is a width coordinate. We keep it so the logged accuracy is the same number as the
official training logs' `acc`/`acc_pose` for the same heatmaps; it is a monitor only and never enters
a reported metric (COCO AP and MPII PCKh are computed in image space). Pass `normalize` to choose
another factor, e.g. `np.array([[W, H]]) / 10` for the axis-consistent version. A sample whose
normaliser is zero (or not finite) on either axis is not counted, rather than counted as a miss
(mmpose's `keypoint_pck_accuracy` rule).

Shapes: N samples, K joints, H x W heatmaps.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from lib.codecs import get_heatmap_maximum


def _to_numpy(x) -> np.ndarray:
    """Accept torch tensors (any device) or arrays."""
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def integer_peaks(heatmaps: np.ndarray) -> np.ndarray:
    """(N,K,H,W) -> the argmax of each map as float64 (x, y) (N,K,2), with HRNet's `get_max_preds` rule:
    a map whose maximum is <= 0 gets (0, 0)."""
    coords, _ = get_heatmap_maximum(heatmaps)
    # The codec marks such a map with -1 ("no detection"); HRNet puts it at (0, 0), which is also what
    # keeps all-zero targets out of the count in `accuracy` (it counts peaks at x > 1 and y > 1 only).
    # Every other coordinate is an index >= 0, so clipping at 0 changes exactly the -1s.
    return np.maximum(coords.astype(np.float64), 0.0)


def normalized_distances(pred: np.ndarray, target: np.ndarray, normalize: np.ndarray,
                         counted: np.ndarray) -> np.ndarray:
    """(N,K,2) pred/target, (N,2) per-axis normaliser, (N,K) bool -> (N,K) distances; -1 where not counted.

    A sample whose normaliser is not positive and finite on both axes is not counted (all -1).
    """
    usable = np.all(np.isfinite(normalize) & (normalize > 0), axis=1)
    safe = np.where(usable[:, None], normalize, 1.0)
    d = np.linalg.norm((pred - target) / safe[:, None, :], axis=-1)
    return np.where(counted & usable[:, None], d, -1.0)


def distance_accuracy(dists: np.ndarray, thr: float = 0.5) -> float:
    """Fraction of counted distances (!= -1) below thr; -1 when none is counted."""
    counted = dists != -1
    if not counted.any():
        return -1.0
    return float(np.mean(dists[counted] < thr))


def accuracy(output, target, thr: float = 0.5,
             normalize: Optional[np.ndarray] = None) -> tuple[np.ndarray, float, int, np.ndarray]:
    """HRNet's heatmap PCK: (acc (K+1,), avg_acc, cnt, pred (N,K,2)).

    output, target: (N,K,H,W) arrays or tensors. acc[1 + j] is joint j's accuracy (-1 if no sample
    counts it), acc[0] the mean over the cnt joints that were counted; pred are the output argmaxes.
    normalize: (N,2) or (2,) per-axis factor; default [H, W] / 10 (see the module note on the order).
    A sample with a zero normaliser is not counted (nor in cnt).
    """
    output, target = _to_numpy(output).astype(np.float64), _to_numpy(target).astype(np.float64)
    if output.shape != target.shape or output.ndim != 4:
        raise ValueError(f'accuracy: output {output.shape} and target {target.shape} must both be (N,K,H,W)')
    n, k, h, w = output.shape
    pred, gt = integer_peaks(output), integer_peaks(target)
    if normalize is None:
        normalize = np.array([h, w], dtype=np.float64) / 10.0  # HRNet/mmpose order, kept on purpose
    normalize = np.broadcast_to(np.asarray(normalize, dtype=np.float64), (n, 2))
    counted = (gt[..., 0] > 1) & (gt[..., 1] > 1)
    dists = normalized_distances(pred, gt, normalize, counted)
    acc = np.zeros(k + 1)
    acc[1:] = [distance_accuracy(dists[:, j], thr) for j in range(k)]
    valid = acc[1:] >= 0
    cnt = int(valid.sum())
    avg_acc = float(acc[1:][valid].mean()) if cnt else 0.0
    if cnt:
        acc[0] = avg_acc
    return acc, avg_acc, cnt, pred
