"""PCK on heatmaps: the training-time accuracy monitor (HRNet `core/evaluate.py` `accuracy`).

accuracy() compares the argmax of each predicted heatmap with the argmax of its target heatmap.
The distance is normalised per axis by a (N,2) factor and a joint counts as correct when the
normalised distance is below thr (strict). Joints whose target peak is not at x > 1 and y > 1 are
not counted: all-zero targets (unlabelled joints) have their peak at (0, 0).

Normalisation, decided on purpose: by default the (x, y) offsets are divided by [H/10, W/10] --
x by H/10 and y by W/10 -- the order HRNet's `accuracy` and mmpose's `pose_pck_accuracy` use,
although x is a width coordinate. We keep it so the logged accuracy is the same number as the
official training logs' `acc`/`acc_pose` for the same heatmaps; it is a monitor only and never enters
a reported metric (COCO AP and MPII PCKh are computed in image space). Pass `normalize` to choose
another factor, e.g. `np.array([[W, H]]) / 10` for the axis-consistent version.

Shapes: N samples, K joints, H x W heatmaps.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def _to_numpy(x) -> np.ndarray:
    """Accept torch tensors (any device) or arrays."""
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def heatmap_argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,K,H,W) -> integer peak coordinates (N,K,2) as float (x, y) and peak values (N,K).

    A map whose maximum is <= 0 gets coordinates (0, 0), as in HRNet's get_max_preds.
    """
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords[maxvals <= 0] = 0.0
    return coords, maxvals


def normalized_distances(pred: np.ndarray, target: np.ndarray, normalize: np.ndarray,
                         counted: np.ndarray) -> np.ndarray:
    """(N,K,2) pred/target, (N,2) per-axis normaliser, (N,K) bool -> (N,K) distances; -1 where not counted."""
    d = np.linalg.norm((pred - target) / normalize[:, None, :], axis=-1)
    return np.where(counted, d, -1.0)


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
    """
    output, target = _to_numpy(output).astype(np.float64), _to_numpy(target).astype(np.float64)
    if output.shape != target.shape or output.ndim != 4:
        raise ValueError(f'accuracy: output {output.shape} and target {target.shape} must both be (N,K,H,W)')
    n, k, h, w = output.shape
    pred, _ = heatmap_argmax(output)
    gt, _ = heatmap_argmax(target)
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
