"""Wall-clock timing for the benchmark tools on a shared machine.

    times = timed_block(lambda: session.run(None, feed), seconds=0.25)   # s per call

Thread pools keep spinning for a moment after their last task (PyTorch's OpenMP workers, every
onnxruntime session's intra-op pool): the first call after another function ran competes with them
and would be charged for it. `timed_block` therefore makes one untimed call, then times consecutive
calls.
"""
from __future__ import annotations

import time
from typing import Callable

__all__ = ['timed_block']


def timed_block(fn: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per call of `fn`: one untimed call, then consecutive timed calls for about `seconds`
    (at least one)."""
    fn()
    times: list[float] = []
    block_start = time.perf_counter()
    while not times or time.perf_counter() - block_start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
