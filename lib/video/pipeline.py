"""One video frame in, tracked (and smoothed) people out: detect every K frames, follow people in between.

    runner = VideoPoseRunner(pose_fn=estimator.predict, detect_fn=boxes_of, tracker=PoseTracker(sigmas),
                             det_interval=5)
    for index, t, frame in frames:
        people = runner(frame, index, t)   # [{'id', 'box', 'score', 'keypoints' (K, 3)}]
        runner.times                       # seconds of this frame's stages: detector, pose, tracking

`detect_fn(frame, index) -> (boxes (M, 4) x, y, w, h, scores (M,))` runs on the first frame and then on every
K-th one; the frames between take their boxes from the tracker (`PoseTracker.boxes_to_follow`).
`pose_fn(frame, boxes, scores)` is PoseEstimator.predict (or a stand-in with its contract). The demo
(demo/demo.py) and the benchmark (tools/benchmark.py video) both run frames through this class.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

import numpy as np

from .tracking import PoseTracker

__all__ = ['VideoPoseRunner', 'RunningRate']

DetectFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
PoseFn = Callable[[np.ndarray, np.ndarray, np.ndarray], list]


class VideoPoseRunner:
    """Boxes (detector or tracker), pose, ids for each frame in turn; `times` holds the last frame's stages."""

    def __init__(self, pose_fn: PoseFn, detect_fn: DetectFn, tracker: PoseTracker, det_interval: int = 1) -> None:
        if det_interval < 1:
            raise ValueError(f'det_interval must be >= 1, got {det_interval}')
        self.pose_fn, self.detect_fn, self.tracker = pose_fn, detect_fn, tracker
        self.det_interval = int(det_interval)
        self._since_detection = self.det_interval  # the first frame is a detector frame
        self.times: dict[str, float] = {}
        self.detected = False  # whether the last frame ran the detector

    def __call__(self, frame: np.ndarray, index: int, t: float) -> list[dict]:
        """The people of `frame` (number `index` in its stream, taken at `t` seconds) with their track ids."""
        times = {}
        self.detected = self._since_detection >= self.det_interval
        start = time.perf_counter()
        if self.detected:
            boxes, scores = self.detect_fn(frame, index)
            ids = None
            self._since_detection = 0
            times['detector'] = time.perf_counter() - start
        else:
            ids, boxes, scores = self.tracker.boxes_to_follow()
        self._since_detection += 1
        start = time.perf_counter()
        people = self.pose_fn(frame, boxes, scores)
        times['pose'] = time.perf_counter() - start
        start = time.perf_counter()
        people = self.tracker.update(people, t, ids)
        times['tracking'] = time.perf_counter() - start
        self.times = times
        return people


class RunningRate:
    """Events per second over the last `window` durations added (a running average for an FPS overlay)."""

    def __init__(self, window: int = 30) -> None:
        self._seconds: deque[float] = deque(maxlen=window)

    def add(self, seconds: float) -> None:
        self._seconds.append(float(seconds))

    @property
    def rate(self) -> float:
        total = sum(self._seconds)
        return len(self._seconds) / total if total > 0 else 0.0
