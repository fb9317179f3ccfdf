"""Drawing: skeletons on images (demo), and debug grids of a training batch (GT / predicted joints,
heatmap overlays) saved as image files, as HRNet's `save_debug_images` does.

Shapes: B batch, K joints, H x W input crop, h x w heatmap. Images handed in are the network's
normalised float input (B, 3, H, W); they are turned back into uint8 BGR for drawing.
"""
from __future__ import annotations

import colorsys
import os
from typing import Any, Sequence

import cv2
import numpy as np

from ..dataset.metainfo import KeypointMeta
from ..dataset.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ['palette', 'draw_skeleton', 'denormalize_images', 'make_grid', 'save_batch_image_with_joints',
           'save_batch_heatmaps', 'save_debug_images']


def palette(n: int) -> list[tuple[int, int, int]]:
    """n well-separated BGR colours (evenly spaced hues)."""
    out = []
    for i in range(max(n, 1)):
        r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 0.85, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, 'detach') else np.asarray(x)


def draw_skeleton(image_bgr: np.ndarray, keypoints: np.ndarray, metainfo: KeypointMeta | None,
                  score_thr: float = 0.3, radius: int | None = None, thickness: int | None = None,
                  joint_color: tuple[int, int, int] | None = None) -> np.ndarray:
    """A copy of `image_bgr` with limbs (one colour per limb) and joints (K, 3: x, y, score or flag) drawn.

    A joint is drawn when its third value exceeds `score_thr`; a limb when both ends are drawn.
    metainfo=None draws the joints only.
    """
    canvas = image_bgr.copy()
    kpts = _numpy(keypoints).astype(np.float64)
    if kpts.shape[1] == 2:
        kpts = np.concatenate([kpts, np.ones((len(kpts), 1))], axis=1)
    size = max(canvas.shape[:2])
    radius = radius or max(1, size // 160)
    thickness = thickness or max(1, size // 240)
    shown = kpts[:, 2] > score_thr
    skeleton = metainfo.skeleton if metainfo is not None else ()
    for (a, b), color in zip(skeleton, palette(len(skeleton))):
        if shown[a] and shown[b]:
            cv2.line(canvas, _pt(kpts[a]), _pt(kpts[b]), color, thickness, cv2.LINE_AA)
    for j in np.nonzero(shown)[0]:
        cv2.circle(canvas, _pt(kpts[j]), radius, joint_color or (255, 255, 255), -1, cv2.LINE_AA)
    return canvas


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def denormalize_images(batch_images: Any, color_rgb: bool = True) -> list[np.ndarray]:
    """(B, 3, H, W) normalised network input -> B uint8 BGR images (H, W, 3)."""
    x = _numpy(batch_images).astype(np.float32)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if color_rgb else (IMAGENET_MEAN[::-1], IMAGENET_STD[::-1])
    x = (x * std[None, :, None, None] + mean[None, :, None, None]) * 255.0
    x = np.clip(x, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return [np.ascontiguousarray(im[:, :, ::-1] if color_rgb else im) for im in x]


def make_grid(images: Sequence[np.ndarray], nrow: int = 8, padding: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) images into rows of `nrow`, separated by `padding` black pixels."""
    h, w = images[0].shape[:2]
    ncol = min(nrow, len(images))
    rows = (len(images) + ncol - 1) // ncol
    grid = np.zeros((rows * (h + padding) + padding, ncol * (w + padding) + padding, 3), np.uint8)
    for i, im in enumerate(images):
        y, x = padding + (i // ncol) * (h + padding), padding + (i % ncol) * (w + padding)
        grid[y:y + h, x:x + w] = im
    return grid


def _write(file_name: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(file_name)), exist_ok=True)
    if not cv2.imwrite(file_name, image):
        raise IOError(f'could not write image {file_name}')


def save_batch_image_with_joints(batch_images: Any, batch_joints: Any, batch_joints_vis: Any, file_name: str,
                                 metainfo: KeypointMeta | None = None, nrow: int = 8,
                                 color_rgb: bool = True) -> np.ndarray:
    """Grid of the batch with joints (B, K, 2+) in crop pixels drawn where batch_joints_vis (B, K) > 0."""
    images = denormalize_images(batch_images, color_rgb)
    joints = _numpy(batch_joints)[..., :2]
    vis = _numpy(batch_joints_vis).reshape(joints.shape[:2])
    drawn = [draw_skeleton(im, np.concatenate([j, v[:, None]], axis=1), metainfo, score_thr=0.0)
             for im, j, v in zip(images, joints, vis)]
    grid = make_grid(drawn, nrow)
    _write(file_name, grid)
    return grid


def save_batch_heatmaps(batch_images: Any, batch_heatmaps: Any, file_name: str, color_rgb: bool = True,
                        max_rows: int = 8, min_tile_height: int = 64) -> np.ndarray:
    """One row per sample: the input at heatmap size, then each joint's heatmap (jet) over it, peak marked.

    Tiles are enlarged by a whole factor until they are at least `min_tile_height` pixels high.
    """
    images = denormalize_images(batch_images, color_rgb)[:max_rows]
    maps = _numpy(batch_heatmaps).astype(np.float32)[:len(images)]
    _, k, h, w = maps.shape
    zoom = max(1, -(-min_tile_height // h))  # small heatmaps are drawn larger, pixel for pixel
    rows = []
    for im, hm in zip(images, maps):
        small = cv2.resize(im, (w * zoom, h * zoom), interpolation=cv2.INTER_AREA)
        tiles = [small]
        for j in range(k):
            heat = (np.clip(hm[j], 0, 1) * 255).astype(np.uint8)
            heat = cv2.resize(heat, (w * zoom, h * zoom), interpolation=cv2.INTER_NEAREST)
            tile = cv2.addWeighted(cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.7, small, 0.3, 0)
            y, x = np.unravel_index(int(hm[j].argmax()), hm[j].shape)
            cv2.circle(tile, (int((x + 0.5) * zoom), int((y + 0.5) * zoom)), max(1, zoom // 2), (255, 0, 255), -1)
            tiles.append(tile)
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    _write(file_name, grid)
    return grid


def save_debug_images(batch_images: Any, meta: dict, target: Any, pred_coords_crop: Any, output: Any,
                      prefix: str, metainfo: KeypointMeta | None = None, color_rgb: bool = True) -> list[str]:
    """Write <prefix>_gt.jpg, _pred.jpg (joints on the crops) and _hm_gt.jpg, _hm_pred.jpg; returns the paths.

    meta['joints'] (B, K, 3) is the GT in crop pixels with its flags; pred_coords_crop (B, K, 2) crop pixels.
    """
    gt = _numpy(meta['joints'])
    pred = _numpy(pred_coords_crop)
    paths = [f'{prefix}_gt.jpg', f'{prefix}_pred.jpg', f'{prefix}_hm_gt.jpg', f'{prefix}_hm_pred.jpg']
    save_batch_image_with_joints(batch_images, gt[..., :2], gt[..., 2], paths[0], metainfo, color_rgb=color_rgb)
    save_batch_image_with_joints(batch_images, pred, np.ones(pred.shape[:2]), paths[1], metainfo,
                                 color_rgb=color_rgb)
    save_batch_heatmaps(batch_images, target, paths[2], color_rgb)
    save_batch_heatmaps(batch_images, output, paths[3], color_rgb)
    return paths
