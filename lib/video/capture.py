"""Frames of a video file or a camera, with their index and time, surviving frames that fail to decode.

    reader = FrameReader(cv2.VideoCapture('clip.mp4'), live=False)
    for index, t, frame in reader:      # index: position in the stream; t: seconds
        ...
    reader.skipped                      # frames that could not be decoded (skipped, not fatal)

cv2.VideoCapture.read() answers False both at the end of the stream and for a frame that does not
decode. Here each frame is `grab()`bed then `retrieve()`d, and a failure is told apart from the end:
  * retrieve() fails after a good grab(): the frame was there but did not decode -> skipped;
  * grab() fails while the file's frame count says frames remain (or on a live camera): a bad frame ->
    skipped, unless MAX_CONSECUTIVE_FAILURES happen in a row, which ends the stream;
  * grab() fails otherwise (no frame count, or at/after its end): the end of the stream.
Failures count as skipped once a later frame decodes; failures of a file that run into the end of the
stream (a frame count that promised more frames than there are) are counted apart in `unread_at_end`.
A skipped frame keeps its index, so indices and times stay those of the source.
Time: index / fps for a file (fps from the file, 25 when it has none); for a live source, the
wall-clock seconds since the first frame.
"""
from __future__ import annotations

import time
from typing import Iterator

import cv2
import numpy as np

__all__ = ['FrameReader', 'MAX_CONSECUTIVE_FAILURES']

MAX_CONSECUTIVE_FAILURES = 25  # this many failed frames in a row end the stream


class FrameReader:
    """Iterate (index, t_seconds, frame) over an opened cv2.VideoCapture-like object (see module docstring)."""

    def __init__(self, capture, live: bool = False) -> None:
        self.capture, self.live = capture, bool(live)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and fps > 0 else (30.0 if live else 25.0)
        count = 0 if live else int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = count if count > 0 else None
        self.skipped = 0
        self.unread_at_end = 0

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        index, failures, start = -1, 0, None
        while True:
            index += 1
            grabbed = bool(self.capture.grab())
            frame = self._retrieve() if grabbed else None
            if frame is None:
                if self._stream_ended(index, grabbed):
                    break
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:  # give up: these bad frames count as unread
                    break
                continue
            self.skipped += failures
            failures = 0
            if self.live:
                start = time.monotonic() if start is None else start
                t = time.monotonic() - start
            else:
                t = index / self.fps
            yield index, t, frame
        self.unread_at_end = 0 if self.live else failures  # a camera that stops sending has simply ended

    def _retrieve(self) -> np.ndarray | None:
        ok, frame = self.capture.retrieve()
        return frame if ok and frame is not None and frame.size else None

    def _stream_ended(self, index: int, grabbed: bool) -> bool:
        """After a failure at `index`: whether it is the end of the stream rather than a bad frame."""
        if grabbed:  # the frame was there; it did not decode
            return False
        return not (self.live or (self.frame_count is not None and index < self.frame_count))

    def release(self) -> None:
        self.capture.release()
