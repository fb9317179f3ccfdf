"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): a low-pass filter whose cutoff rises with speed.

    smoother = OneEuroFilter(min_cutoff=1.0, beta=0.02, d_cutoff=1.0)
    xy_smooth = smoother(xy, t)        # xy: any array shape (e.g. K joints x 2), t: seconds

Each call estimates the speed of the signal (its derivative, itself low-passed at `d_cutoff` Hz) and
low-passes the signal at `min_cutoff + beta * |speed|` Hz: a still joint is smoothed hard (jitter goes),
a fast one lightly (little lag). Units: cutoffs in Hz, `beta` in 1 / (signal unit per second), so for
keypoints in image pixels beta = 0.02 raises the cutoff by 1 Hz for every 50 px/s. Every element of the
array is filtered on its own. Time comes from the caller (frame timestamps), so a dropped frame is a
longer step, not a faster signal.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ['OneEuroFilter', 'DEFAULT_MIN_CUTOFF', 'DEFAULT_BETA', 'DEFAULT_D_CUTOFF']

# Defaults for keypoints in pixels at video rates: at 25-30 fps a still joint's frame-to-frame jitter
# (2 px noise) drops 5-6x and a joint moving at 150 px/s lags under a frame (tests/test_video.py measures both).
DEFAULT_MIN_CUTOFF = 1.0  # Hz
DEFAULT_BETA = 0.02  # per px/s
DEFAULT_D_CUTOFF = 1.0  # Hz


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with this cutoff (Hz) at time step dt (s)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter over arrays of a fixed shape; `reset()` forgets the history (e.g. a lost track)."""

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f'One-Euro filter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got '
                             f'min_cutoff {min_cutoff}, beta {beta}, d_cutoff {d_cutoff}')
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None  # last filtered value
        self._dx: np.ndarray | None = None  # last filtered derivative
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of sample `x` taken at time `t` (seconds, increasing); a new array."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if dt <= 0:  # a repeated timestamp carries no new information about speed: keep the estimate
            return self._x.copy()
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (x - self._x)
        self._t = float(t)
        return self._x.copy()
