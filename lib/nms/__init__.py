"""OKS non-maximum suppression: `oks_nms` and `soft_oks_nms` on HRNet's kpts_db format.

The loops run in the Cython extension `cpu_nms` when it is built (`make build`); otherwise in the
NumPy functions of `nms.py`, which give the same kept indices. Importing this package never fails.
`BACKEND` says which one is in use; every call can also pick one with `backend='cython'|'numpy'`.
"""
from __future__ import annotations

from typing import Optional, Sequence

from . import nms as _numpy_backend
from .nms import descending_order, oks_iou, prepare, rescore

try:
    from . import cpu_nms as _cython_backend
except ImportError:  # not built: `make build` compiles it
    _cython_backend = None

BACKEND = 'cython' if _cython_backend is not None else 'numpy'

__all__ = ['oks_nms', 'soft_oks_nms', 'oks_iou', 'rescore', 'BACKEND', 'cython_available']


def cython_available() -> bool:
    """True when the compiled extension was importable."""
    return _cython_backend is not None


def _backend(name: Optional[str]):
    name = BACKEND if name is None else name
    if name == 'numpy':
        return _numpy_backend
    if name == 'cython':
        if _cython_backend is None:
            raise RuntimeError('lib.nms: the Cython extension is not built; run `make build`')
        return _cython_backend
    raise ValueError(f"lib.nms: backend must be 'cython', 'numpy' or None, got '{name}'")


def oks_nms(kpts_db: Sequence[dict], thr: float, sigmas, in_vis_thre: Optional[float] = None, *,
            backend: Optional[str] = None) -> list[int]:
    """Greedy OKS NMS (HRNet): by descending score, keep a pose and drop the rest with OKS > thr.

    kpts_db: list of {'keypoints': (K,3) x,y,score, 'area': float, 'score': float}; sigmas: (K,).
    Returns indices into kpts_db, in the order kept (best first).
    """
    if len(kpts_db) == 0:
        return []
    kpts, areas, scores, sig = prepare(kpts_db, sigmas)
    keep = _backend(backend).greedy_oks_nms(kpts, areas, descending_order(scores), sig, float(thr), in_vis_thre)
    return [int(i) for i in keep]


def soft_oks_nms(kpts_db: Sequence[dict], thr: float, sigmas, in_vis_thre: Optional[float] = None,
                 max_dets: int = 20, method: str = 'gaussian', *, backend: Optional[str] = None) -> list[int]:
    """Soft OKS NMS (HRNet): keep the best pose, decay the others' scores by their OKS with it, repeat.

    Decay: 'gaussian' s * exp(-oks^2 / thr) (HRNet's default) or 'linear' s * (1 - oks) when oks >= thr.
    Returns at most max_dets indices into kpts_db in the order kept; the decayed scores only rank.
    """
    if len(kpts_db) == 0:
        return []
    kpts, areas, scores, sig = prepare(kpts_db, sigmas)
    keep = _backend(backend).soft_oks_nms_arrays(kpts, areas, scores, descending_order(scores), sig, float(thr),
                                                 in_vis_thre, int(max_dets), method)
    return [int(i) for i in keep]
