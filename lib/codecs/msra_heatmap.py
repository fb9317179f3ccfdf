"""MSRA Gaussian heatmap codec (HRNet / mmpose 0.x `_msra_generate_target` and `keypoints_from_heatmaps`).

Encoding: a joint at crop pixel x lands on heatmap pixel mu = int(x / stride + 0.5); an unnormalised
Gaussian (peak 1) is drawn in the (6 sigma + 1)^2 window around mu (cut off at 3 sigma). A joint gets
weight 0 when it is unlabelled or its whole window falls outside the map.

Decoding: argmax per map; with `post_process` the peak moves 0.25 px towards the higher neighbour on
each axis when it is strictly inside (1 < px < W - 1, 1 < py < H - 1); with `use_dark` the DARK
refinement (Zhang et al., CVPR 2020: blur, log, one Newton step on the second-order Taylor expansion)
replaces the quarter offset. A joint's score is its heatmap maximum. Coordinates are heatmap pixels;
the codec knows nothing of images or boxes (`lib.dataset.transforms.heatmap_to_image_coords` maps them
back to the image, and `lib.core.inference.predict_keypoints` composes the two).

Shapes: N samples, K joints, h x w heatmap.
"""
from __future__ import annotations

from typing import Sequence, Union

import cv2
import numpy as np

try:  # torch is optional for the pure NumPy paths
    import torch
except ImportError:  # pragma: no cover
    torch = None

__all__ = ['MSRAHeatmap', 'gaussian_patch', 'get_heatmap_maximum', 'refine_quarter_offset',
           'refine_dark', 'flip_back']


def gaussian_patch(sigma: float) -> tuple[np.ndarray, float]:
    """The (size, size) float32 Gaussian drawn around each joint and its radius 3 sigma (size = 6 sigma + 1)."""
    radius = sigma * 3
    size = int(2 * radius + 1)
    x = np.arange(0, size, dtype=np.float32)
    c = size // 2
    g = np.exp(-((x[None, :] - c) ** 2 + (x[:, None] - c) ** 2) / (2 * sigma ** 2)).astype(np.float32)
    return g, radius


def get_heatmap_maximum(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of (N, K, h, w) heatmaps -> integer coords (N, K, 2) float32 as (x, y), maxima (N, K) float32.

    Where the maximum is not positive the coordinate is -1 (mmpose 0.x), i.e. "no detection". The one
    heatmap argmax of the repo: decoding and the training accuracy (`lib.evaluation.pck`) both use it.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    coords[maxvals <= 0] = -1
    return coords, maxvals.astype(np.float32)


def refine_quarter_offset(coords: np.ndarray, heatmaps: np.ndarray) -> np.ndarray:
    """Move each integer peak 0.25 px towards its higher neighbour, only strictly inside; returns a copy."""
    coords = coords.copy()
    n, k, h, w = heatmaps.shape
    px = np.floor(coords[..., 0] + 0.5).astype(int)
    py = np.floor(coords[..., 1] + 0.5).astype(int)
    inside = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    ni, ki = np.nonzero(inside)
    x, y = px[ni, ki], py[ni, ki]
    dx = heatmaps[ni, ki, y, x + 1] - heatmaps[ni, ki, y, x - 1]
    dy = heatmaps[ni, ki, y + 1, x] - heatmaps[ni, ki, y - 1, x]
    coords[ni, ki, 0] += np.sign(dx) * 0.25
    coords[ni, ki, 1] += np.sign(dy) * 0.25
    return coords


def _blur_keep_max(heatmaps: np.ndarray, kernel: int) -> np.ndarray:
    """Gaussian-blur each map (zero border) and rescale it to its original maximum (DARK, mmpose 0.x)."""
    border = (kernel - 1) // 2
    n, k, h, w = heatmaps.shape
    out = np.empty((n, k, h, w), dtype=np.float32)
    for i in range(n):
        for j in range(k):
            m = heatmaps[i, j].astype(np.float32)
            padded = cv2.copyMakeBorder(m, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
            blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:border + h, border:border + w]
            peak = blurred.max()
            out[i, j] = blurred * (m.max() / peak) if peak > 0 else blurred
    return out


def refine_dark(coords: np.ndarray, heatmaps: np.ndarray, kernel: int = 11) -> np.ndarray:
    """DARK: one Newton step of the log-heatmap's Taylor expansion around each integer peak; returns a copy.

    Needs two pixels of room on each side (1 < px < w - 2, 1 < py < h - 2), as in mmpose 0.x.
    """
    coords = coords.copy()
    logs = np.log(np.maximum(_blur_keep_max(heatmaps, kernel), 1e-10))
    n, k, h, w = heatmaps.shape
    px = coords[..., 0].astype(int)
    py = coords[..., 1].astype(int)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    ni, ki = np.nonzero(inside)
    x, y = px[ni, ki], py[ni, ki]
    m = logs[ni, ki]  # (M, h, w)
    r = np.arange(len(ni))
    dx = 0.5 * (m[r, y, x + 1] - m[r, y, x - 1])
    dy = 0.5 * (m[r, y + 1, x] - m[r, y - 1, x])
    dxx = 0.25 * (m[r, y, x + 2] - 2 * m[r, y, x] + m[r, y, x - 2])
    dyy = 0.25 * (m[r, y + 2, x] - 2 * m[r, y, x] + m[r, y - 2, x])
    dxy = 0.25 * (m[r, y + 1, x + 1] - m[r, y - 1, x + 1] - m[r, y + 1, x - 1] + m[r, y - 1, x - 1])
    det = dxx * dyy - dxy ** 2
    ok = det != 0
    safe = np.where(ok, det, 1.0)
    # offset = -H^{-1} g with H = [[dxx, dxy], [dxy, dyy]]
    off_x = -(dyy * dx - dxy * dy) / safe
    off_y = -(-dxy * dx + dxx * dy) / safe
    coords[ni, ki, 0] += np.where(ok, off_x, 0.0)
    coords[ni, ki, 1] += np.where(ok, off_y, 0.0)
    return coords


ArrayOrTensor = Union[np.ndarray, 'torch.Tensor']


def flip_back(heatmaps: ArrayOrTensor, flip_pairs: Sequence[Sequence[int]], shift: bool = True) -> ArrayOrTensor:
    """Mirror the output for a flipped input back to the original frame; returns a new array/tensor.

    (N, K, h, w): swap left/right maps, reverse the width axis, then (shift=True, the official
    `shift_heatmap`) move every column one pixel right, column 0 keeping its value, which makes up
    for the flip being x' = W - 1 - x in the image but landing half a heatmap pixel off after stride 4.
    """
    perm = list(range(heatmaps.shape[1]))
    for a, b in flip_pairs:
        perm[a], perm[b] = b, a
    if torch is not None and isinstance(heatmaps, torch.Tensor):
        out = torch.flip(heatmaps[:, perm], dims=[3])
        if shift:
            out[..., 1:] = out[..., :-1].clone()
        return out
    out = np.ascontiguousarray(np.asarray(heatmaps)[:, perm, :, ::-1])
    if shift:
        out[..., 1:] = out[..., :-1].copy()
    return out


class MSRAHeatmap:
    """Encode joints to Gaussian heatmaps and decode heatmaps to joints (one object for dataset and inference).

    Args:
        input_size: network input (W, H) in pixels.
        heatmap_size: network output (w, h); the stride is input_size / heatmap_size per axis.
        sigma: Gaussian sigma in heatmap pixels.
        use_dark: DARK sub-pixel refinement when decoding (replaces the quarter offset).
        blur_kernel: odd Gaussian kernel size DARK smooths with.
        post_process: quarter-pixel offset when decoding (ignored when use_dark).
    """

    def __init__(self, input_size: Sequence[int], heatmap_size: Sequence[int], sigma: float,
                 use_dark: bool = False, blur_kernel: int = 11, post_process: bool = True) -> None:
        if blur_kernel % 2 != 1:
            raise ValueError(f'blur_kernel must be odd, got {blur_kernel}')
        if sigma <= 0:
            raise ValueError(f'sigma must be positive, got {sigma}')
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.use_dark = bool(use_dark)
        self.blur_kernel = int(blur_kernel)
        self.post_process = bool(post_process)
        self.stride = np.array(self.input_size, dtype=np.float64) / np.array(self.heatmap_size)
        self._patch, self._radius = gaussian_patch(self.sigma)

    def __repr__(self) -> str:
        return (f'MSRAHeatmap(input_size={self.input_size}, heatmap_size={self.heatmap_size}, '
                f'sigma={self.sigma}, use_dark={self.use_dark}, post_process={self.post_process})')

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """keypoints (K, 2) crop pixels, visible (K,) -> heatmaps (K, h, w) float32, weights (K,) float32."""
        keypoints = np.asarray(keypoints, dtype=np.float64)
        visible = np.asarray(visible).reshape(-1)
        if keypoints.ndim != 2 or keypoints.shape[1] < 2 or keypoints.shape[0] != visible.shape[0]:
            raise ValueError(f'encode expects keypoints (K, 2) and visible (K,), got {keypoints.shape} '
                             f'and {visible.shape}')
        w, h = self.heatmap_size
        k = keypoints.shape[0]
        heatmaps = np.zeros((k, h, w), dtype=np.float32)
        weights = (visible > 0).astype(np.float32)
        radius = self._radius
        for j in np.nonzero(weights)[0]:
            # int() truncates toward zero exactly as the reference code does (also for negatives).
            mu_x = int(keypoints[j, 0] / self.stride[0] + 0.5)
            mu_y = int(keypoints[j, 1] / self.stride[1] + 0.5)
            ul = (int(mu_x - radius), int(mu_y - radius))
            br = (int(mu_x + radius + 1), int(mu_y + radius + 1))
            # br is exclusive, so br <= 0 means no pixel on the map. (HRNet tests br < 0, which keeps
            # weight 1 with an all-zero map when br == 0; we give such a joint weight 0.)
            if ul[0] >= w or ul[1] >= h or br[0] <= 0 or br[1] <= 0:
                weights[j] = 0.0
                continue
            x0, x1 = max(0, ul[0]), min(br[0], w)
            y0, y1 = max(0, ul[1]), min(br[1], h)
            heatmaps[j, y0:y1, x0:x1] = self._patch[y0 - ul[1]:y1 - ul[1], x0 - ul[0]:x1 - ul[0]]
        return heatmaps, weights

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """heatmaps (N, K, h, w) -> coords (N, K, 2) in heatmap pixels, scores (N, K)."""
        if torch is not None and isinstance(heatmaps, torch.Tensor):
            heatmaps = heatmaps.detach().float().cpu().numpy()
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        if heatmaps.ndim != 4:
            raise ValueError(f'decode expects heatmaps (N, K, h, w), got shape {heatmaps.shape}')
        coords, scores = get_heatmap_maximum(heatmaps)
        if self.use_dark:
            coords = refine_dark(coords, heatmaps, self.blur_kernel)
        elif self.post_process:
            coords = refine_quarter_offset(coords, heatmaps)
        return coords, scores
