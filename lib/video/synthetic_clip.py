"""Synthetic video: stick people (lib/dataset/synthetic.py's figures) walking across a fixed background.

    clip = render_clip(ClipConfig(num_people=3, num_frames=60), seed=0)
    clip.frames[i]              # (H, W, 3) uint8 BGR
    clip.people[i]              # [{'id', 'keypoints' (17, 3) x, y, v, 'box' [x, y, w, h]}] of frame i
    write_clip('clip.mp4', ClipConfig(), seed=0)   # the same clip as an mp4v file (returns it too)

Each person walks at a constant speed along a straight line, alternately left-to-right (starting in
the left part of the image) and right-to-left (starting in the right part), so their paths cross,
while their pose eases from one random key pose (`sample_body`) to the next every `pose_period`
frames. They face the way they walk, three-quarters to the camera, and have different heights: a
taller person is nearer and drawn over a shorter one, as in `render_image`.
Ground truth per frame: the person's id (its index), its 17 COCO keypoints in image pixels with
`v` = 2 seen, 1 covered (by someone else or itself), 0 outside the image (x, y are kept there, unlike the
COCO files), and its amodal box clipped to the image. A person wholly outside the image is left out
of that frame. Everything is drawn from np.random.default_rng(seed): a seed gives the same clip.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

# The still-image renderer's figure, drawing and ground-truth helpers: one body model for both.
from lib.dataset.synthetic import (_PARTS_PER_PERSON, SyntheticConfig, _amodal_box, _draw_background,
                                   _draw_person, _Person, _sample_person, _visibility, project, sample_body)

__all__ = ['ClipConfig', 'SyntheticClip', 'render_clip', 'write_clip']


@dataclass
class ClipConfig:
    image_size: tuple[int, int] = (320, 240)  # (W, H)
    num_people: int = 2
    num_frames: int = 60
    fps: float = 25.0
    person_height: tuple[float, float] = (0.5, 0.85)  # range of figure heights, fraction of image height
    travel: tuple[float, float] = (0.45, 0.65)  # range of the distance walked over the clip, fraction of W
    pose_period: int = 20  # frames from one key pose to the next
    clutter: float = 0.5  # background clutter (SyntheticConfig.clutter)


@dataclass
class SyntheticClip:
    frames: list[np.ndarray]
    people: list[list[dict]]
    fps: float

    @property
    def size(self) -> tuple[int, int]:
        """(W, H)"""
        return self.frames[0].shape[1], self.frames[0].shape[0]


@dataclass
class _Walker:
    id: int
    look: _Person  # colours, limb widths, head radius, height
    start: np.ndarray  # pelvis (u, v) at frame 0
    velocity: np.ndarray  # px / frame
    yaw: float
    lean: float
    key_poses: list[tuple[np.ndarray, np.ndarray]]  # (body joints (17, 3), head centre (3,)) from sample_body
    period: int

    def at(self, frame: int) -> _Person:
        """The figure in `frame`: its key poses eased into each other (smoothstep), moved along its path."""
        k, u = divmod(frame, self.period)
        s = (u / self.period) ** 2 * (3 - 2 * u / self.period)
        (body_a, head_a), (body_b, head_b) = self.key_poses[k], self.key_poses[k + 1]
        body, head = (1 - s) * body_a + s * body_b, (1 - s) * head_a + s * head_b
        pelvis = self.start + frame * self.velocity
        uv, depth = project(body, self.yaw, self.lean, pelvis, self.look.height_px)
        head_uv, _ = project(head, self.yaw, self.lean, pelvis, self.look.height_px)
        return dataclasses.replace(self.look, uv=uv, depth=depth, head_uv=head_uv, yaw=self.yaw)


def _walkers(rng: np.random.Generator, cfg: ClipConfig) -> list[_Walker]:
    w, h = cfg.image_size
    n = int(cfg.num_people)
    lo, hi = cfg.person_height
    heights = lo + (hi - lo) * (np.arange(n) + rng.uniform(0.2, 0.8, n)) / n  # one per height band: all differ
    rng.shuffle(heights)
    walkers = []
    for i in range(n):
        look = _sample_person(rng, w, h, SyntheticConfig(image_size=(w, h), person_height=(heights[i],) * 2))
        direction = 1.0 if i % 2 == 0 else -1.0
        # Right-walkers start spread over the left part of the image, left-walkers over the right part.
        slot, same_way = i // 2, (n + 1 - i % 2) // 2
        x0 = (0.1 + 0.25 * slot / max(same_way - 1, 1) + rng.uniform(-0.03, 0.03)) * w
        x0 = x0 if direction > 0 else w - x0
        distance = rng.uniform(*cfg.travel) * w
        hp = look.height_px
        y0 = rng.uniform(0.48 * hp + 2, max(0.48 * hp + 2, h - 0.5 * hp - 2))  # head and feet inside the image
        velocity = np.array([direction * distance, rng.normal(0, 0.03) * h]) / max(cfg.num_frames - 1, 1)
        yaw = direction * (np.pi / 2 - rng.uniform(0.3, 0.7))  # facing the walk, three-quarters to the camera
        key_poses = [sample_body(rng) for _ in range(cfg.num_frames // cfg.pose_period + 2)]
        walkers.append(_Walker(i, look, np.array([x0, y0]), velocity, yaw, np.deg2rad(rng.normal(0, 4)),
                               key_poses, int(cfg.pose_period)))
    return walkers


def render_clip(cfg: ClipConfig = ClipConfig(), seed: int = 0) -> SyntheticClip:
    """Frames and per-frame ground truth of a synthetic walking clip (see the module docstring)."""
    if cfg.num_people < 1 or cfg.num_frames < 1 or cfg.pose_period < 1:
        raise ValueError(f'a clip needs >= 1 person, frame and pose_period, got {cfg}')
    rng = np.random.default_rng(seed)
    w, h = cfg.image_size
    background = _draw_background(rng, w, h, cfg.clutter)
    walkers = sorted(_walkers(rng, cfg), key=lambda wk: wk.look.height_px)  # far (small) first
    frames, people = [], []
    for f in range(cfg.num_frames):
        img, parts = background.copy(), np.zeros((h, w), np.uint16)
        figures = [wk.at(f) for wk in walkers]
        for order, p in enumerate(figures):
            _draw_person(img, parts, p, label0=(order + 1) * _PARTS_PER_PERSON)
        truth = []
        for order, (wk, p) in enumerate(zip(walkers, figures)):
            box = _amodal_box(p, w, h)
            if box is None:
                continue
            v = _visibility(p, parts, (order + 1) * _PARTS_PER_PERSON, w, h)
            truth.append(dict(id=wk.id, keypoints=np.concatenate([p.uv, v[:, None]], axis=1), box=box))
        frames.append(img)
        people.append(sorted(truth, key=lambda d: d['id']))
    return SyntheticClip(frames, people, float(cfg.fps))


def write_clip(path: str, cfg: ClipConfig = ClipConfig(), seed: int = 0) -> SyntheticClip:
    """Render a clip and write it to `path` as MP4 (mp4v) at cfg.fps; returns the clip (frames and truth)."""
    clip = render_clip(cfg, seed)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), clip.fps, clip.size)
    if not writer.isOpened():
        raise IOError(f'{path}: cannot open an mp4v video writer')
    try:
        for frame in clip.frames:
            writer.write(frame)
    finally:
        writer.release()
    return clip
