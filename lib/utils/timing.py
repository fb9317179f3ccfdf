"""Wall-clock timing for the benchmark tool (tools/benchmark.py) on a shared, noisy machine.

    timing = time_interleaved({'official': run_official, 'ours': run_ours}, seconds=20, baseline='official')
    timing.seconds['ours']       # s per call: the median over windows of each window's median
    timing.speedup['ours']       # median over windows of official / ours (> 1: ours is faster)

On a shared VM the speed of the same code can swing 2x within seconds, so medians measured minutes
apart compare the weather rather than the code. `time_interleaved` runs the callables alternately in
short windows (`window` s of consecutive calls each), round after round, and compares each round's
windows with each other: windows next to each other see the same load.

Thread pools keep spinning for a moment after their last task (PyTorch's OpenMP workers, every
onnxruntime session's intra-op pool): the first call after another callable ran competes with them
and would be charged for it. Each window therefore starts with one untimed settling call
(`timed_block`); a caller whose calls last seconds may turn it off (`settle=False`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

__all__ = ['Timing', 'time_interleaved', 'timed_block']

Clock = Callable[[], float]


def timed_block(fn: Callable[[], object], seconds: float, settle: bool = True,
                clock: Clock = time.perf_counter) -> list[float]:
    """Seconds per call of `fn`: one untimed call (unless `settle` is False), then consecutive timed
    calls for about `seconds` (at least one). `clock` is time.perf_counter (wall) or time.process_time
    (CPU time of this process)."""
    if settle:
        fn()
    times: list[float] = []
    block_start = clock()
    while not times or clock() - block_start < seconds:
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return times


@dataclass
class Timing:
    """What `time_interleaved` measured. Per name: `windows` holds each window's median s/call (one
    window per round, rounds in order), `times` every timed call."""

    windows: dict[str, list[float]]
    times: dict[str, list[float]]
    baseline: str | None = None
    seconds: dict[str, float] = field(init=False)  # s per call: median over windows
    speedup: dict[str, float] = field(init=False)  # vs `baseline` (empty without one); see ratio()

    def __post_init__(self) -> None:
        self.seconds = {name: statistics.median(w) for name, w in self.windows.items()}
        self.speedup = {name: self.ratio(name, self.baseline) for name in self.windows} if self.baseline else {}

    def ratio(self, name: str, baseline: str) -> float:
        """Speed-up of `name` over `baseline`: the median over rounds of baseline time / `name` time,
        each round's two windows having run next to each other (> 1: `name` is faster)."""
        return statistics.median(b / t for b, t in zip(self.windows[baseline], self.windows[name]))

    def quartile(self, name: str) -> float:
        """The best quartile (25th percentile) of `name`'s window medians: its speed in the quiet spells."""
        return float(np.percentile(self.windows[name], 25))

    @property
    def rounds(self) -> int:
        return len(next(iter(self.windows.values())))


def time_interleaved(fns: Mapping[str, Callable[[], object]], seconds: float = 1.0, window: float = 0.25,
                     baseline: str | None = None, min_rounds: int = 3, warmup: int = 1, settle: bool = True,
                     clock: Clock = time.perf_counter) -> Timing:
    """Time several callables side by side: after `warmup` untimed calls of each, run rounds of one
    `timed_block(fn, window)` per callable until `seconds` have passed and at least `min_rounds` rounds
    are done. The order rotates from round to round, so that no callable always follows the same one.

    window=0 times exactly one call per window (for calls that last seconds). `baseline` names the
    callable the speed-ups are taken against. `clock`: see `timed_block`.
    """
    if baseline is not None and baseline not in fns:
        raise ValueError(f'baseline {baseline!r} is not one of the timed callables {list(fns)}')
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    windows: dict[str, list[float]] = {name: [] for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    start, rounds = clock(), 0
    while rounds < min_rounds or clock() - start < seconds:
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            block = timed_block(fns[name], window, settle=settle, clock=clock)
            windows[name].append(statistics.median(block))
            times[name] += block
        rounds += 1
    return Timing(windows, times, baseline)
