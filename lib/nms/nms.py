"""OKS non-maximum suppression in NumPy: the reference implementation and the fallback backend.

Semantics follow HRNet (`lib/nms/nms.py`: `oks_iou`, `oks_nms`, `soft_oks_nms`), with two decisions
made on purpose and shared with the Cython backend (`cpu_nms.pyx`) so both give the same answer:

* Order: descending score, ties broken by the earlier position (a *stable* sort). HRNet's
  `argsort()[::-1]` leaves tie order to the sort algorithm; a stable order is reproducible.
* `in_vis_thre`: a joint counts towards OKS only when it is above the threshold in *both* poses.
  HRNet writes `list(vg > t) and list(vd > t)`, which Python evaluates to the second list alone
  (only the candidate's visibility counts); mmpose 1.x fixed it to the element-wise AND we use.
  The evaluation path passes `in_vis_thre=None` as HRNet and mmpose do, so this never changes AP.

Shapes: N poses, K joints. `kpts` (N,K,3) = x, y, score; `areas` (N,); `scores` (N,); `sigmas` (K,).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

# HRNet adds np.spacing(1) to the mean area so OKS stays finite for zero-area boxes.
AREA_EPS = float(np.spacing(1))
SOFT_METHODS = ('gaussian', 'linear')


def prepare(kpts_db: Sequence[dict], sigmas) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HRNet kpts_db (list of {'keypoints' (K,3) or flat K*3, 'area', 'score'}) -> contiguous float64 arrays.

    Returns (kpts (N,K,3), areas (N,), scores (N,), sigmas (K,)). Raises ValueError naming the entry at fault.
    """
    sig = np.ascontiguousarray(np.asarray(sigmas, dtype=np.float64).reshape(-1))
    k = sig.size
    if k == 0 or not np.all(sig > 0):
        raise ValueError(f'OKS NMS: sigmas must be {k} positive numbers, got {sig.tolist()}')
    kpts = np.empty((len(kpts_db), k, 3), dtype=np.float64)
    areas = np.empty(len(kpts_db), dtype=np.float64)
    scores = np.empty(len(kpts_db), dtype=np.float64)
    for i, det in enumerate(kpts_db):
        try:
            flat = np.asarray(det['keypoints'], dtype=np.float64).reshape(-1)
            areas[i] = float(det['area'])
            scores[i] = float(det['score'])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"OKS NMS: kpts_db[{i}] needs 'keypoints', 'area' and 'score' numbers ({err})") from None
        if flat.size != 3 * k:
            raise ValueError(f"OKS NMS: kpts_db[{i}]['keypoints'] has {flat.size} values, expected {k} joints x 3 "
                             f"(one per sigma)")
        kpts[i] = flat.reshape(k, 3)
    if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(areas))):
        bad = int(np.flatnonzero(~(np.isfinite(scores) & np.isfinite(areas)))[0])
        raise ValueError(f"OKS NMS: kpts_db[{bad}] has a non-finite score or area")
    return kpts, areas, scores, sig


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; equal scores keep their input order (stable)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind='stable').astype(np.intp)


def oks_iou(g: np.ndarray, d: np.ndarray, area_g: float, area_d: np.ndarray, sigmas: np.ndarray,
            in_vis_thre: Optional[float] = None) -> np.ndarray:
    """OKS between one pose g (K,3) and M poses d (M,K,3) with areas area_g and area_d (M,) -> (M,).

    OKS = mean over counted joints of exp(-d^2 / (2 * mean_area * (2 sigma)^2)); the mean area of the
    two poses is used, as in HRNet. With in_vis_thre, joints at or below it in either pose are not
    counted, and a pair with no counted joint has OKS 0.
    """
    variances = (2.0 * sigmas) ** 2
    dx = d[:, :, 0] - g[None, :, 0]
    dy = d[:, :, 1] - g[None, :, 1]
    mean_area = (area_g + np.asarray(area_d, dtype=np.float64)) / 2.0 + AREA_EPS
    e = (dx * dx + dy * dy) / variances[None, :] / mean_area[:, None] / 2.0
    terms = np.exp(-e)
    if in_vis_thre is None:
        return terms.sum(axis=1) / terms.shape[1]
    counted = (g[None, :, 2] > in_vis_thre) & (d[:, :, 2] > in_vis_thre)
    n = counted.sum(axis=1)
    total = np.where(counted, terms, 0.0).sum(axis=1)
    return np.where(n > 0, total / np.maximum(n, 1), 0.0)


def greedy_oks_nms(kpts: np.ndarray, areas: np.ndarray, order: np.ndarray, sigmas: np.ndarray, thr: float,
                   in_vis_thre: Optional[float] = None) -> np.ndarray:
    """Greedy NMS in the given order: keep the first pose, drop every later one with OKS > thr, repeat.

    Returns the kept indices (into kpts) in the order they were kept.
    """
    keep = []
    order = np.asarray(order, dtype=np.intp)
    while order.size > 0:
        i = order[0]
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order = order[1:][ovr <= thr]
    return np.asarray(keep, dtype=np.intp)


def rescore(overlap: np.ndarray, scores: np.ndarray, thr: float, method: str = 'gaussian') -> np.ndarray:
    """Soft-NMS score decay given the OKS with the pose just kept (a new array; inputs unchanged).

    gaussian: s * exp(-oks^2 / thr); linear: s * (1 - oks) where oks >= thr, else s.
    """
    if method == 'linear':
        return np.where(overlap >= thr, scores * (1.0 - overlap), scores)
    if method == 'gaussian':
        return scores * np.exp(-(overlap * overlap) / thr)
    raise ValueError(f"soft OKS NMS: method must be one of {SOFT_METHODS}, got '{method}'")


def soft_oks_nms_arrays(kpts: np.ndarray, areas: np.ndarray, scores: np.ndarray, order: np.ndarray,
                        sigmas: np.ndarray, thr: float, in_vis_thre: Optional[float] = None,
                        max_dets: int = 20, method: str = 'gaussian') -> np.ndarray:
    """Soft OKS NMS: repeatedly keep the best pose and decay the others' scores by their OKS with it.

    Stops after max_dets poses. Returns kept indices in keep order; as in HRNet the decayed scores
    only decide the order and are not returned.
    """
    if method not in SOFT_METHODS:
        raise ValueError(f"soft OKS NMS: method must be one of {SOFT_METHODS}, got '{method}'")
    order = np.asarray(order, dtype=np.intp)
    cur = np.asarray(scores, dtype=np.float64)[order]
    keep = []
    while order.size > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thre)
        order, cur = order[1:], rescore(ovr, cur[1:], thr, method)
        resort = descending_order(cur)
        order, cur = order[resort], cur[resort]
    return np.asarray(keep, dtype=np.intp)
