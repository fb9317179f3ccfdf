"""A synthetic COCO-format person keypoint data set, drawn procedurally (no download needed).

Each image holds a few articulated figures with the 17 COCO keypoints (metainfo 'coco'): a 3-D stick
body with limb widths (random facing, lean, torso pitch, limb directions, so limbs foreshorten), drawn
far-to-near with OpenCV over a cluttered background (gradient and noise, rectangles, skin-coloured
thick lines, head-like ellipses, and a few foreground occluders). Left and right limbs share a
colour, so left/right must be read from the facing cues: a face (eyes, nose) on the front of the
head and hair on the back.

Visibility is read from a per-pixel part map drawn alongside the image: a keypoint is v=2 when the
frontmost part at its pixel is one of its own parts (and, for torso/head points, it is on the near
side), v=1 when it lies inside the image but is covered (by another person, an occluder or its own
body), and it is unlabelled (0, 0, 0) outside the image, as in COCO.

Boxes are the amodal figure extent clipped to the image. `area` is written on purpose as
`area_ratio` (default 0.55) x box area: COCO's area is the segmentation area, about 0.5-0.6 of the
box for real people, whereas these thin figures cover only ~0.35 of their box. OKS divides by the
area, so the pixel area would make OKS (and AP) far stricter than on COCO for the same pose error;
0.55 x box area keeps its tolerance comparable to COCO people of the same box size.

The detection file holds, per val person, a jittered GT box (centre and size noise) with a score,
an occasional duplicate, some misses, and false positives with low scores.

Everything is drawn from `np.random.default_rng([seed, split])`, so a seed gives identical files.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass

import cv2
import numpy as np

from .metainfo import COCO

logger = logging.getLogger(__name__)

__all__ = ['SyntheticConfig', 'make_synthetic_dataset', 'render_image', 'DET_FILE']

DET_FILE = 'person_detection_results/COCO_val2017_detections_AP_H_56_person.json'
_SHIFT = 4  # cv2 sub-pixel drawing: coordinates carry 4 fractional bits
_ONE = 1 << _SHIFT

# Body model, in units of the figure's height H; x = the person's left, y = up, z = the way they face.
_HIP, _SHOULDER, _NECK, _HEAD = (0.085, 0.0), (0.115, 0.29), 0.32, 0.40
_HEAD_R = 0.062
_LIMB_LEN = {'upper_arm': 0.16, 'forearm': 0.14, 'thigh': 0.23, 'shin': 0.23}
_LIMB_WIDTH = {'upper_arm': 0.05, 'forearm': 0.04, 'thigh': 0.07, 'shin': 0.055, 'neck': 0.045}
# Face points relative to the head centre, in head radii (x left, y up, z forward).
_FACE = {0: (0.0, -0.15, 1.0), 1: (0.35, 0.15, 0.92), 2: (-0.35, 0.15, 0.92), 3: (0.98, 0.0, -0.1),
         4: (-0.98, 0.0, -0.1)}

# Part ids in the part map (per person); 0 = background/occluder.
TORSO, HEAD, NECK = 1, 2, 3
_LIMB_PARTS = {  # part id: (name, joint a, joint b) in COCO ids
    4: ('upper_arm', 5, 7), 5: ('forearm', 7, 9), 6: ('upper_arm', 6, 8), 7: ('forearm', 8, 10),
    8: ('thigh', 11, 13), 9: ('shin', 13, 15), 10: ('thigh', 12, 14), 11: ('shin', 14, 16),
}
_PARTS_PER_PERSON = 12
# The parts each COCO joint may be seen on.
_JOINT_PARTS = {0: {HEAD}, 1: {HEAD}, 2: {HEAD}, 3: {HEAD}, 4: {HEAD}, 5: {TORSO, 4}, 6: {TORSO, 6},
                7: {4, 5}, 8: {6, 7}, 9: {5}, 10: {7}, 11: {TORSO, 8}, 12: {TORSO, 10}, 13: {8, 9},
                14: {10, 11}, 15: {9}, 16: {11}}
_SKIN = np.array([[90, 130, 200], [70, 105, 170], [60, 90, 140], [45, 65, 105], [120, 160, 225]], np.float64)


@dataclass
class SyntheticConfig:
    """Difficulty knobs (all have CLI flags in tools/make_synthetic.py)."""

    image_size: tuple[int, int] = (320, 240)  # (W, H)
    people_per_image: tuple[int, int] = (1, 3)  # inclusive range
    person_height: tuple[float, float] = (0.45, 0.95)  # figure height as a fraction of image height
    clutter: float = 1.0  # multiplies the number of background clutter items and occluders (0 = plain)
    area_ratio: float = 0.55  # annotation `area` = area_ratio * box area (see module docstring)
    jpeg_quality: int = 90
    det_box_noise: float = 0.05  # detection boxes: centre/size noise as a fraction of the box size
    det_false_positives: float = 1.0  # mean false-positive detections per image


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-9)


def _random_direction(rng: np.random.Generator, down_bias: float, spread: float) -> np.ndarray:
    return _unit(rng.normal(0.0, spread, 3) + np.array([0.0, -down_bias, 0.0]))


def sample_body(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random pose in the body frame: (17, 3) COCO joints and the head centre (3,), units of height."""
    pitch = np.deg2rad(rng.normal(0.0, 12.0))  # torso leaning towards/away from the camera
    cp, sp = np.cos(pitch), np.sin(pitch)

    def upper(x: float, y: float, z: float = 0.0) -> np.ndarray:  # rotate the upper body about x
        return np.array([x, y * cp - z * sp, y * sp + z * cp])

    j = np.zeros((17, 3))
    head = upper(0.0, _HEAD)
    for k, (fx, fy, fz) in _FACE.items():
        j[k] = head + upper(fx * _HEAD_R, fy * _HEAD_R, fz * _HEAD_R)
    j[5], j[6] = upper(_SHOULDER[0], _SHOULDER[1]), upper(-_SHOULDER[0], _SHOULDER[1])
    j[11], j[12] = np.array([_HIP[0], 0.0, 0.0]), np.array([-_HIP[0], 0.0, 0.0])
    for side in (0, 1):  # left, right
        sh, el, wr, hip, kn, an = (5 + side, 7 + side, 9 + side, 11 + side, 13 + side, 15 + side)
        j[el] = j[sh] + _LIMB_LEN['upper_arm'] * _random_direction(rng, 1.0, 0.8)
        j[wr] = j[el] + _LIMB_LEN['forearm'] * _random_direction(rng, 0.3, 1.0)
        thigh = _random_direction(rng, 1.0, 0.35)
        if rng.random() < 0.1:  # sitting / kicking: thigh forward
            thigh = _unit(np.array([0.0, -0.2, 1.0]) + rng.normal(0, 0.2, 3))
        j[kn] = j[hip] + _LIMB_LEN['thigh'] * thigh
        j[an] = j[kn] + _LIMB_LEN['shin'] * _random_direction(rng, 1.0, 0.4)
    return j, head


def project(points: np.ndarray, yaw: float, lean: float, pelvis_uv: np.ndarray,
            height_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame points (..., 3) -> image pixels (..., 2) and depth (...,) (larger = nearer the camera).

    Orthographic: rotate by `yaw` about the vertical axis (yaw 0 faces the camera, so the person's
    left appears on the image's right), then by `lean` in the image plane about the pelvis.
    """
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    xr = x * np.cos(yaw) + z * np.sin(yaw)
    depth = -x * np.sin(yaw) + z * np.cos(yaw)
    cl, sl = np.cos(lean), np.sin(lean)
    u = pelvis_uv[0] + height_px * (xr * cl - y * sl)
    v = pelvis_uv[1] - height_px * (xr * sl + y * cl)
    return np.stack([u, v], axis=-1), depth * height_px


def _fixed(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def _color(c: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(c, 0, 255))


def _draw_background(rng: np.random.Generator, w: int, h: int, clutter: float) -> np.ndarray:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    horizontal = rng.random() < 0.5
    t = np.linspace(0.0, 1.0, w if horizontal else h)[:, None]
    ramp = (c0 * (1 - t) + c1 * t).astype(np.uint8)  # (n, 3)
    base = np.ascontiguousarray(np.broadcast_to(ramp[None] if horizontal else ramp[:, None], (h, w, 3)))
    # Low-frequency noise drawn at 1/4 size, offset by 128 so it fits uint8; one saturating add-subtract.
    noise = np.clip(rng.normal(128.0, 12.0, (h // 4 + 1, w // 4 + 1, 3)), 0, 255).astype(np.uint8)
    img = cv2.addWeighted(base, 1.0, cv2.resize(noise, (w, h), interpolation=cv2.INTER_LINEAR), 1.0, -128.0)
    s = min(w, h)
    for _ in range(rng.poisson(6 * clutter)):
        p = rng.uniform(0, [w, h]); q = p + rng.uniform(0.05, 0.4, 2) * s
        cv2.rectangle(img, _fixed(p), _fixed(q), _color(rng.uniform(0, 255, 3)), -1, cv2.LINE_AA, _SHIFT)
    for _ in range(rng.poisson(2 * clutter)):  # limb-like distractors
        p = rng.uniform(0, [w, h]); q = p + rng.normal(0, 0.2, 2) * s
        cv2.line(img, _fixed(p), _fixed(q), _color(_SKIN[rng.integers(len(_SKIN))] + rng.normal(0, 10, 3)),
                 max(2, int(rng.uniform(0.02, 0.06) * s)), cv2.LINE_AA, _SHIFT)
    for _ in range(rng.poisson(1 * clutter)):  # head-like distractors
        p = rng.uniform(0, [w, h]); r = rng.uniform(0.03, 0.08) * s
        cv2.ellipse(img, _fixed(p), (int(r * _ONE), int(r * rng.uniform(0.8, 1.3) * _ONE)), 0, 0, 360,
                    _color(_SKIN[rng.integers(len(_SKIN))]), -1, cv2.LINE_AA, _SHIFT)
    return img


@dataclass
class _Person:
    uv: np.ndarray  # (17, 2) image pixels
    depth: np.ndarray  # (17,) px, larger = nearer
    head_uv: np.ndarray
    head_r: float
    yaw: float
    height_px: float
    widths: dict
    colors: dict


def _sample_person(rng: np.random.Generator, w: int, h: int, cfg: SyntheticConfig) -> _Person:
    height_px = rng.uniform(*cfg.person_height) * h
    pelvis = np.array([rng.uniform(-0.05, 1.05) * w, rng.uniform(0.42, 0.68) * h])
    yaw, lean = rng.uniform(0, 2 * np.pi), np.deg2rad(rng.normal(0.0, 10.0))
    body, head = sample_body(rng)
    uv, depth = project(body, yaw, lean, pelvis, height_px)
    head_uv, _ = project(head, yaw, lean, pelvis, height_px)
    skin = _SKIN[rng.integers(len(_SKIN))] + rng.normal(0, 8, 3)
    colors = dict(skin=skin, shirt=rng.uniform(0, 255, 3), pants=rng.uniform(0, 200, 3),
                  hair=rng.uniform(0, 70, 3), sleeve=skin if rng.random() < 0.5 else None)
    widths = {k: max(2.0, v * height_px) for k, v in _LIMB_WIDTH.items()}
    return _Person(uv, depth, head_uv, _HEAD_R * height_px, yaw, height_px, widths, colors)


def _draw_person(img: np.ndarray, parts: np.ndarray, p: _Person, label0: int) -> None:
    """Draw one figure far-to-near on `img` and write its part ids (label0 + part) into `parts`."""
    uv, d, c = p.uv, p.depth, p.colors
    items = []  # (depth, part id)
    for pid, (_, a, b) in _LIMB_PARTS.items():
        items.append((0.5 * (d[a] + d[b]), pid))
    items += [(0.0, TORSO), (0.0, NECK), (1e-3, HEAD)]
    for _, pid in sorted(items):
        lab = float(label0 + pid)
        if pid == TORSO:
            quad = np.array([uv[5], uv[6], uv[12], uv[11]])
            pts = (quad * _ONE).round().astype(np.int32)
            cv2.fillConvexPoly(img, pts, _color(c['shirt']), cv2.LINE_AA, _SHIFT)
            cv2.fillConvexPoly(parts, pts, lab, cv2.LINE_8, _SHIFT)
            continue
        if pid == NECK:
            a, b, width, col = uv[5] * 0.5 + uv[6] * 0.5, p.head_uv, p.widths['neck'], c['skin']
        elif pid == HEAD:
            center, r = _fixed(p.head_uv), int(round(p.head_r * _ONE))
            cv2.circle(img, center, r, _color(c['skin']), -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(parts, center, r, lab, -1, cv2.LINE_8, _SHIFT)
            _draw_face(img, p)
            continue
        else:
            name, ja, jb = _LIMB_PARTS[pid]
            a, b, width = uv[ja], uv[jb], p.widths[name]
            col = c['pants'] if name in ('thigh', 'shin') else (
                c['skin'] if name == 'forearm' or c['sleeve'] is not None else c['shirt'])
        t = max(1, int(round(width)))
        cv2.line(img, _fixed(a), _fixed(b), _color(col), t, cv2.LINE_AA, _SHIFT)
        cv2.line(parts, _fixed(a), _fixed(b), lab, t, cv2.LINE_8, _SHIFT)


def _draw_face(img: np.ndarray, p: _Person) -> None:
    """Hair on the back of the head, eyes and nose on the front: the only left/right cue."""
    r, sy, cy = p.head_r, np.sin(p.yaw), np.cos(p.yaw)
    hair_c = p.head_uv + np.array([-0.35 * r * sy, -0.3 * r]) if cy > -0.3 else p.head_uv
    hair_r = 0.85 * r if cy > -0.3 else 0.97 * r
    cv2.circle(img, _fixed(hair_c), int(round(hair_r * _ONE)), _color(p.colors['hair']), -1, cv2.LINE_AA, _SHIFT)
    if cy > -0.3:  # the face shows: redraw its part of the skin over the hair, then eyes and nose
        face_c = p.head_uv + np.array([0.3 * r * sy, 0.15 * r])
        cv2.circle(img, _fixed(face_c), int(round(0.72 * r * _ONE)), _color(p.colors['skin']), -1,
                   cv2.LINE_AA, _SHIFT)
        for k, size in ((1, 0.16), (2, 0.16), (0, 0.12)):
            if p.depth[k] > 0:
                col = (30, 30, 30) if k else _color(p.colors['skin'] * 0.7)
                cv2.circle(img, _fixed(p.uv[k]), max(_ONE, int(round(size * r * _ONE))), col, -1,
                           cv2.LINE_AA, _SHIFT)


def _visibility(p: _Person, parts: np.ndarray, label0: int, w: int, h: int) -> np.ndarray:
    """(17,) COCO flags from the final part map: 2 seen, 1 covered, 0 outside the image."""
    v = np.zeros(17, np.int64)
    for k in range(17):
        x, y = p.uv[k]
        xi, yi = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        top = int(parts[yi, xi]) - label0
        seen = top in _JOINT_PARTS[k]
        if seen and top in (TORSO, HEAD):  # on the torso/head surface: only its near side is seen
            seen = p.depth[k] >= (0.0 if top == HEAD else -0.02 * p.height_px)
        v[k] = 2 if seen else 1
    return v


def _amodal_box(p: _Person, w: int, h: int) -> list[float] | None:
    """The figure's full extent (joints, limb widths, head) clipped to the image, as (x, y, w, h)."""
    pad = 0.5 * max(p.widths.values())
    pts = np.concatenate([p.uv - pad, p.uv + pad, [p.head_uv - p.head_r, p.head_uv + p.head_r]])
    x0, y0 = np.clip(pts.min(axis=0), 0, [w - 1, h - 1])
    x1, y1 = np.clip(pts.max(axis=0), 0, [w - 1, h - 1])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


def render_image(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, list[dict]]:
    """One image (H, W, 3) uint8 BGR and its people: dicts with 'keypoints' (17, 3) and 'bbox'."""
    w, h = cfg.image_size
    img = _draw_background(rng, w, h, cfg.clutter)
    parts = np.zeros((h, w), np.uint16)
    n = int(rng.integers(cfg.people_per_image[0], cfg.people_per_image[1] + 1))
    people = sorted((_sample_person(rng, w, h, cfg) for _ in range(n)), key=lambda q: q.height_px)
    for i, p in enumerate(people):  # small (far) first: nearer people occlude them
        _draw_person(img, parts, p, label0=(i + 1) * _PARTS_PER_PERSON)
    for _ in range(rng.poisson(0.4 * cfg.clutter)):  # foreground occluders
        a = rng.uniform(0, [w, h]); b = a + rng.uniform(0.05, 0.25, 2) * min(w, h)
        cv2.rectangle(img, _fixed(a), _fixed(b), _color(rng.uniform(0, 255, 3)), -1, cv2.LINE_AA, _SHIFT)
        cv2.rectangle(parts, _fixed(a), _fixed(b), 0.0, -1, cv2.LINE_8, _SHIFT)
    out = []
    for i, p in enumerate(people):
        box = _amodal_box(p, w, h)
        if box is None:
            continue
        v = _visibility(p, parts, (i + 1) * _PARTS_PER_PERSON, w, h)
        kpts = np.concatenate([np.round(p.uv, 2), v[:, None]], axis=1)
        kpts[v == 0] = 0.0  # COCO writes unlabelled joints as (0, 0, 0)
        out.append(dict(keypoints=kpts, bbox=box))
    return img, out


def _detections(rng: np.random.Generator, image_id: int, people: list[dict], w: int, h: int,
                cfg: SyntheticConfig) -> list[dict]:
    """Jittered GT boxes (some missed, some doubled) and low-scoring false positives."""
    dets = []

    def jitter(box: list[float], noise: float) -> list[float]:
        x, y, bw, bh = box
        cx, cy = x + bw / 2 + rng.normal(0, noise) * bw, y + bh / 2 + rng.normal(0, noise) * bh
        bw, bh = bw * np.exp(rng.normal(0, noise * 2)), bh * np.exp(rng.normal(0, noise * 2))
        return [round(float(v), 2) for v in (cx - bw / 2, cy - bh / 2, bw, bh)]

    for person in people:
        if rng.random() < 0.03:
            continue  # a miss
        vis = float((person['keypoints'][:, 2] == 2).mean())
        score = float(np.clip(0.55 + 0.4 * vis + rng.normal(0, 0.05), 0.05, 1.0))
        dets.append(dict(image_id=image_id, category_id=1, bbox=jitter(person['bbox'], cfg.det_box_noise),
                         score=round(score, 5)))
        if rng.random() < 0.1:  # a duplicate, for OKS NMS to remove
            dets.append(dict(image_id=image_id, category_id=1, bbox=jitter(person['bbox'], 2 * cfg.det_box_noise),
                             score=round(score * rng.uniform(0.3, 0.9), 5)))
    for _ in range(rng.poisson(cfg.det_false_positives)):
        bw, bh = rng.uniform(0.1, 0.5) * w, rng.uniform(0.2, 0.9) * h
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        dets.append(dict(image_id=image_id, category_id=1, bbox=[round(float(v), 2) for v in (x, y, bw, bh)],
                         score=round(float(rng.uniform(0.01, 0.5)), 5)))
    return dets


def _categories() -> list[dict]:
    return [dict(supercategory='person', id=1, name='person', keypoints=list(COCO.joint_names),
                 skeleton=[[a + 1, b + 1] for a, b in COCO.skeleton])]  # COCO's skeleton is 1-based


def make_split(out_dir: str, split: str, num_images: int, seed: int, split_id: int, first_id: int,
               cfg: SyntheticConfig) -> tuple[dict, list[dict]]:
    """Render one split's images into out_dir/images/<split>/; returns (COCO json dict, detections)."""
    rng = np.random.default_rng([seed, split_id])
    w, h = cfg.image_size
    image_dir = os.path.join(out_dir, 'images', split)
    os.makedirs(image_dir, exist_ok=True)
    images, anns, dets = [], [], []
    params = [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)]
    for i in range(num_images):
        image_id = first_id + i
        img, people = render_image(rng, cfg)
        name = f'{image_id:012d}.jpg'
        if not cv2.imwrite(os.path.join(image_dir, name), img, params):
            raise IOError(f'could not write {os.path.join(image_dir, name)}')
        images.append(dict(id=image_id, file_name=name, width=w, height=h))
        for person in people:
            k = person['keypoints']
            bw, bh = person['bbox'][2], person['bbox'][3]
            anns.append(dict(id=len(anns) + 1 + first_id * 10, image_id=image_id, category_id=1, iscrowd=0,
                             bbox=person['bbox'], area=round(cfg.area_ratio * bw * bh, 2),
                             num_keypoints=int((k[:, 2] > 0).sum()),
                             keypoints=[float(v) if j % 3 < 2 else int(v) for j, v in enumerate(k.reshape(-1))]))
        dets += _detections(rng, image_id, people, w, h, cfg)
    coco = dict(info=dict(description=f'Synthetic people (lib/dataset/synthetic.py), seed {seed}'),
                licenses=[], images=images, annotations=anns, categories=_categories())
    return coco, dets


def make_synthetic_dataset(out_dir: str, seed: int = 0, num_train: int = 1500, num_val: int = 150,
                           **difficulty) -> dict:
    """Write the synthetic COCO tree under out_dir; returns a summary (counts, visibility mix, seconds).

    num_train / num_val count images (1-3 people each by default). `difficulty` sets SyntheticConfig
    fields: image_size, people_per_image, person_height, clutter, area_ratio, jpeg_quality,
    det_box_noise, det_false_positives.
    """
    cfg = SyntheticConfig(**difficulty)
    start = time.time()
    ann_dir = os.path.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    summary = {}
    for split_id, (split, n, first_id) in enumerate((('train2017', num_train, 1), ('val2017', num_val, 1_000_000))):
        coco, dets = make_split(out_dir, split, n, seed, split_id, first_id, cfg)
        with open(os.path.join(ann_dir, f'person_keypoints_{split}.json'), 'w') as f:
            json.dump(coco, f)
        if split == 'val2017':
            det_path = os.path.join(out_dir, DET_FILE)
            os.makedirs(os.path.dirname(det_path), exist_ok=True)
            with open(det_path, 'w') as f:
                json.dump(dets, f)
            summary['val_detections'] = len(dets)
        flags = np.array([a['keypoints'][2::3] for a in coco['annotations']]).reshape(-1)
        summary[split] = dict(images=n, people=len(coco['annotations']),
                              visible=float(np.mean(flags == 2)) if flags.size else 0.0,
                              occluded=float(np.mean(flags == 1)) if flags.size else 0.0,
                              outside=float(np.mean(flags == 0)) if flags.size else 0.0)
    summary['seconds'] = round(time.time() - start, 2)
    logger.info('synthetic data set in %s: %s', out_dir, summary)
    return summary
