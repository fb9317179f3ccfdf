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

`accuracy_on_device` is the same computation in torch, on the tensors' own device and without a host
copy, for the training loop (which reads the accumulated values only every PRINT_FREQ steps). It gives
the same bits as `accuracy`: integer argmaxes and counts, float64 distances with the same operations,
and the mean over joints summed left to right in both (tests/test_evaluation.py checks equality).

Shapes: N samples, K joints, H x W heatmaps.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

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
    avg_acc = _sum_left_to_right(acc[1:][valid]) / cnt if cnt else 0.0
    if cnt:
        acc[0] = avg_acc
    return acc, avg_acc, cnt, pred


def _sum_left_to_right(values: np.ndarray) -> float:
    """((v0 + v1) + v2) + ...: a fixed order (np.sum's pairwise order is its own), which
    `accuracy_on_device` repeats so that both give the same bits."""
    total = 0.0
    for value in values.tolist():
        total += value
    return total


def integer_peaks_on_device(heatmaps: torch.Tensor) -> torch.Tensor:
    """`integer_peaks` in torch: (N,K,H,W) -> float64 (x, y) (N,K,2) on the heatmaps' device; (0, 0)
    where a map's maximum is <= 0. torch.argmax, like np.argmax, takes the first maximum (and the first
    NaN) in row-major order."""
    n, k, h, w = heatmaps.shape
    if heatmaps.dtype in (torch.float16, torch.bfloat16):
        heatmaps = heatmaps.float()  # exact, so the argmax is unchanged (numpy sees float64)
    flat = heatmaps.reshape(n, k, h * w)
    idx = flat.argmax(dim=2)
    maxvals = flat.gather(2, idx[..., None])[..., 0]
    coords = torch.stack([idx % w, idx // w], dim=-1).to(torch.float64)
    return torch.where((maxvals <= 0)[..., None], 0.0, coords)


def accuracy_on_device(output: torch.Tensor, target: torch.Tensor, thr: float = 0.5,
                       normalize=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`accuracy` without leaving the device: (acc (K+1,) float64, avg_acc () float64, cnt () int64,
    pred (N,K,2) float64), all tensors on output's device, equal to `accuracy`'s numbers bit for bit.

    No host synchronisation (no .item(), no data-dependent shapes), so the training loop can call it
    every step and read the result later. normalize: as in `accuracy`, a (N,2) or (2,) array/tensor.
    """
    if output.shape != target.shape or output.dim() != 4:
        raise ValueError(f'accuracy: output {tuple(output.shape)} and target {tuple(target.shape)} must both be '
                         f'(N,K,H,W)')
    n, k, h, w = output.shape
    device = output.device
    pred, gt = integer_peaks_on_device(output.detach()), integer_peaks_on_device(target.detach())
    if normalize is None:
        normalize = torch.tensor([h, w], dtype=torch.float64, device=device) / 10.0  # HRNet/mmpose order
    normalize = torch.as_tensor(normalize, dtype=torch.float64, device=device).broadcast_to((n, 2))
    usable = (torch.isfinite(normalize) & (normalize > 0)).all(dim=1)  # (N,)
    safe = torch.where(usable[:, None], normalize, 1.0)
    counted = (gt[..., 0] > 1) & (gt[..., 1] > 1) & usable[:, None]  # (N,K)
    offset = (pred - gt) / safe[:, None, :]
    dists = torch.sqrt(offset[..., 0] * offset[..., 0] + offset[..., 1] * offset[..., 1])  # as np.linalg.norm
    n_counted = counted.sum(dim=0)  # (K,)
    n_hit = (counted & (dists < thr)).sum(dim=0)
    per_joint = torch.where(n_counted > 0, n_hit.to(torch.float64) / n_counted.clamp(min=1).to(torch.float64),
                            -1.0)
    valid = per_joint >= 0
    cnt = valid.sum()
    total = torch.zeros((), dtype=torch.float64, device=device)
    for j in range(k):  # left to right, as _sum_left_to_right (K tiny kernels; x + 0.0 == x skips a joint)
        total = total + torch.where(valid[j], per_joint[j], 0.0)
    avg_acc = torch.where(cnt > 0, total / cnt.clamp(min=1).to(torch.float64), 0.0)
    acc = torch.cat([avg_acc[None], per_joint])
    return acc, avg_acc, cnt, pred
