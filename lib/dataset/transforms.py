"""Top-down geometry and augmentation as pure NumPy functions (the random generator is passed in).

Conventions follow HRNet / mmpose 0.x so official weights and numbers carry over:
a person box becomes a `center` (x, y) and a `scale` (w, h) in units of `PIXEL_STD` = 200 px, fitted
to the network input's aspect ratio and padded by 1.25; the crop is the affine map that sends the
scaled box (rotated by `rot` degrees about its centre) onto the `output_size` = (W, H) input, and
`heatmap_to_image_coords` maps decoded heatmap pixels back to the image. The 200-px unit lives here,
with the geometry that uses it; the codec (lib.codecs) works in crop and heatmap pixels only.
Horizontal flips use x' = W - 1 - x (pixel centres) and swap the left/right flip pairs.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

__all__ = [
    'PIXEL_STD', 'IMAGENET_MEAN', 'IMAGENET_STD', 'box_to_center_scale', 'fit_aspect_ratio',
    'get_affine_transform', 'affine_transform_points', 'heatmap_to_image_coords', 'warp_crop',
    'warp_with_matrix', 'normalize_image', 'person_crop',
    'flip_joints', 'flip_matrix', 'compose_affine', 'half_body_box', 'random_scale_rotation', 'random_box_shift',
]

PIXEL_STD = 200.0  # HRNet's unit of `scale`: scale * 200 = box size in image pixels
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)  # RGB order
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)  # RGB order


def fit_aspect_ratio(w: float, h: float, aspect_ratio: float) -> tuple[float, float]:
    """Grow the shorter side of a (w, h) box so that w / h == aspect_ratio."""
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return w, h


def box_to_center_scale(box_xywh: Sequence[float], aspect_ratio: float,
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) box -> center (2,) and scale (2,) = fitted (w, h) / 200 * padding, float32."""
    x, y, w, h = (float(v) for v in box_xywh[:4])
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    w, h = fit_aspect_ratio(w, h, aspect_ratio)
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * padding
    return center, scale


def get_affine_transform(center: Sequence[float], scale: Sequence[float], rot_deg: float,
                         output_size: Sequence[int], shift: Sequence[float] = (0.0, 0.0),
                         inv: bool = False) -> np.ndarray:
    """(2, 3) matrix mapping image pixels to crop pixels (or back when inv=True).

    HRNet builds it from three point pairs: the box centre (+ shift * box size) goes to the crop
    centre (W/2, H/2), and the point half a box width above it, rotated by `rot_deg`, goes to half a
    crop width above the crop centre. That is a similarity: zoom k = W / box width, rotation by
    -rot_deg, so it is written here in closed form. Only scale[0] sets the zoom, as the box was
    already fitted to the crop's aspect ratio.
    """
    scale_px = np.asarray(scale, dtype=np.float64) * PIXEL_STD
    src = np.asarray(center, dtype=np.float64) + scale_px * np.asarray(shift, dtype=np.float64)
    dst = np.array([output_size[0] * 0.5, output_size[1] * 0.5])
    k = float(output_size[0]) / scale_px[0]
    rad = np.pi * rot_deg / 180.0
    cs, sn = np.cos(rad), np.sin(rad)
    if inv:  # crop -> image: rotate by +rot, zoom 1/k
        lin = np.array([[cs, -sn], [sn, cs]]) / k
        src, dst = dst, src
    else:  # image -> crop: rotate by -rot, zoom k
        lin = np.array([[cs, sn], [-sn, cs]]) * k
    mat = np.empty((2, 3))
    mat[:, :2] = lin
    mat[:, 2] = dst - lin @ src
    return mat


def affine_transform_points(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points (..., 2); returns a new float array (..., 2)."""
    points = np.asarray(points, dtype=np.float64)
    mat = np.asarray(mat, dtype=np.float64)
    return points @ mat[:, :2].T + mat[:, 2]


def heatmap_to_image_coords(coords: np.ndarray, center: np.ndarray, scale: np.ndarray,
                            heatmap_size: Sequence[int]) -> np.ndarray:
    """Heatmap pixels (N, K, 2) of N crops -> image pixels (N, K, 2) float64, for crops without rotation.

    center, scale: (N, 2) of each crop; heatmap_size: (w, h). The heatmap spans the crop's box, so
    x_img = x_hm * scale_w * 200 / w + center_x - scale_w * 200 / 2 (and the same for y), as
    mmpose 0.x `transform_preds`.
    """
    coords = np.asarray(coords, dtype=np.float64)
    size = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 2) * PIXEL_STD
    center = np.asarray(center, dtype=np.float64).reshape(-1, 1, 2)
    hm = np.asarray(heatmap_size, dtype=np.float64)
    return coords * (size / hm) + center - size * 0.5


def flip_matrix(image_width: int) -> np.ndarray:
    """(2, 3) matrix of a horizontal flip of an image `image_width` pixels wide: x' = W - 1 - x."""
    return np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0]])


def compose_affine(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """(2, 3) matrix of `then` applied after `first`: A2 (A1 x + b1) + b2."""
    first, then = np.asarray(first, dtype=np.float64), np.asarray(then, dtype=np.float64)
    out = np.empty((2, 3))
    out[:, :2] = then[:, :2] @ first[:, :2]
    out[:, 2] = then[:, :2] @ first[:, 2] + then[:, 2]
    return out


def warp_crop(image: np.ndarray, center: Sequence[float], scale: Sequence[float], rot_deg: float,
              output_size: Sequence[int], flip: bool = False) -> np.ndarray:
    """Crop (H, W, C) from `image` with cv2.warpAffine (bilinear, zero border).

    flip=True returns the crop of the horizontally flipped image *without* flipping the image: the
    flip is folded into the matrix (pass the centre already mirrored, as `flip_joints` does).
    """
    return warp_with_matrix(image, get_affine_transform(center, scale, rot_deg, output_size), output_size, flip)


def warp_with_matrix(image: np.ndarray, mat: np.ndarray, output_size: Sequence[int],
                     flip: bool = False) -> np.ndarray:
    """warp_crop with the (2, 3) image -> crop matrix given (of the flipped image when flip=True)."""
    if flip:
        mat = compose_affine(flip_matrix(image.shape[1]), mat)
    return cv2.warpAffine(image, mat, (int(output_size[0]), int(output_size[1])), flags=cv2.INTER_LINEAR)


def normalize_image(crop_bgr: np.ndarray, color_rgb: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 BGR -> (3, H, W) float32: /255, then ImageNet mean/std (given in RGB order).

    One multiply and one subtract per pixel, (x / 255 - mean) / std == x / (255 std) - mean / std,
    on contiguous channel planes: much faster than astype on a transposed view.
    """
    scale = (1.0 / (255.0 * IMAGENET_STD)).astype(np.float32)
    offset = (IMAGENET_MEAN / IMAGENET_STD).astype(np.float32)
    planes = cv2.split(crop_bgr)  # B, G, R, each contiguous (H, W)
    order = (2, 1, 0) if color_rgb else (0, 1, 2)  # the channel that becomes output channel c
    stats = range(3) if color_rgb else (2, 1, 0)  # statistics are RGB; BGR output takes them reversed
    out = np.empty((3,) + crop_bgr.shape[:2], dtype=np.float32)
    for c, (src, k) in enumerate(zip(order, stats)):
        np.multiply(planes[src], scale[k], out=out[c], dtype=np.float32)
        out[c] -= offset[k]
    return out


def person_crop(image_bgr: np.ndarray, center: Sequence[float], scale: Sequence[float], output_size: Sequence[int],
                color_rgb: bool = True) -> np.ndarray:
    """The network's (3, H, W) float32 input for one person at test time: the box cut out without rotation
    (`warp_crop`, output_size (W, H)), normalised (`normalize_image`)."""
    return normalize_image(warp_crop(image_bgr, center, scale, 0.0, output_size), color_rgb=color_rgb)


def flip_joints(joints: np.ndarray, visible: np.ndarray, image_width: int,
                flip_pairs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Mirror joints (K, 2+) horizontally (x' = W - 1 - x) and swap left/right ids; returns copies.

    Unlabelled joints (visible == 0) are zeroed, as HRNet's `fliplr_joints` does.
    """
    joints = np.array(joints, dtype=np.float32, copy=True)
    visible = np.array(visible, copy=True)
    joints[:, 0] = image_width - 1 - joints[:, 0]
    for a, b in flip_pairs:
        joints[[a, b]] = joints[[b, a]]
        visible[[a, b]] = visible[[b, a]]
    joints[:, :2] *= (visible > 0)[:, None]
    return joints, visible


def half_body_box(joints: np.ndarray, visible: np.ndarray, upper_ids: Sequence[int],
                  lower_ids: Sequence[int], aspect_ratio: float, rng: np.random.Generator,
                  prob_upper: float = 0.5, padding: float = 1.5
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Center/scale of a box around the upper or lower body's visible joints, or None.

    The upper set is chosen with probability `prob_upper` when it has more than 2 visible joints,
    otherwise the lower set (if it has more than 2, else the upper). The HRNet/mmpose code draws
    `randn() < 0.5`, i.e. prob_upper ~= 0.6915; the official YAMLs set that value explicitly.
    """
    vis = np.asarray(visible).reshape(-1) > 0
    upper = np.asarray([i for i in upper_ids if vis[i]], dtype=int)
    lower = np.asarray([i for i in lower_ids if vis[i]], dtype=int)
    if rng.random() < prob_upper and len(upper) > 2:
        chosen = upper
    else:
        chosen = lower if len(lower) > 2 else upper
    if len(chosen) < 2:
        return None
    pts = np.asarray(joints, dtype=np.float64)[chosen, :2]
    center = pts.mean(axis=0)
    w, h = pts.max(axis=0) - pts.min(axis=0)
    w, h = fit_aspect_ratio(float(w), float(h), aspect_ratio)
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD]) * padding
    return center.astype(np.float32), scale.astype(np.float32)


def random_scale_rotation(rng: np.random.Generator, scale_factor: float, rot_factor: float,
                          prob_rotation: float) -> tuple[float, float]:
    """(s, r): s = clip(1 + f·N(0,1), 1 - f, 1 + f); r = clip(R·N(0,1), -2R, 2R) with p = prob_rotation, else 0."""
    s = float(np.clip(rng.standard_normal() * scale_factor + 1.0, 1.0 - scale_factor, 1.0 + scale_factor))
    r = float(np.clip(rng.standard_normal() * rot_factor, -2.0 * rot_factor, 2.0 * rot_factor))
    return s, (r if rng.random() < prob_rotation else 0.0)


def random_box_shift(center: np.ndarray, scale: np.ndarray, rng: np.random.Generator,
                     factor: float) -> np.ndarray:
    """Move the centre by U(-1, 1) * factor * the box size (scale * 200) on each axis; returns a copy."""
    return (np.asarray(center, dtype=np.float32)
            + rng.uniform(-1.0, 1.0, size=2).astype(np.float32) * factor * np.asarray(scale) * PIXEL_STD)
