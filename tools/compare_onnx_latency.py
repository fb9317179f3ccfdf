"""Batch-1 onnxruntime latency of two or more ONNX files, measured side by side on a noisy machine.

    python demo/convert2onnx.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml --graph plain \\
        --fold-bn --output plain.onnx
    python demo/convert2onnx.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml --output deploy.onnx
    python tools/compare_onnx_latency.py plain.onnx deploy.onnx --seconds 60

On a shared VM the speed of the same session can swing 2x within seconds, so one median per file,
measured minutes apart, compares the weather rather than the files. This runs the files in
alternating windows (`--window` s of consecutive calls each, the first call untimed), and prints
each window's median, the median and best quartile over windows, and the median over windows of
the ratio first file / each other file: windows next to each other see the same load.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import numpy as np

from lib.utils.onnx_export import create_session  # level ALL, sequential, spinning threads
from lib.utils.timing import timed_block


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('files', nargs='+', help='ONNX files with one input (N, 3, H, W); the first is the baseline')
    parser.add_argument('--seconds', type=float, default=60.0, help='total measuring time')
    parser.add_argument('--window', type=float, default=0.25, help='seconds per window (short: the load changes '
                        'within seconds, and only windows next to each other see the same load)')
    parser.add_argument('--threads', type=int, default=2, help='onnxruntime intra-op threads')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        print(f'error: not found: {", ".join(missing)}', file=sys.stderr)
        return 2
    sessions, feeds = [], []
    for path in args.files:
        session = create_session(path, threads=args.threads)
        shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
        feeds.append({session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)})
        sessions.append(session)
        for _ in range(5):
            session.run(None, feeds[-1])
    rows, deadline = [], time.perf_counter() + args.seconds
    while time.perf_counter() < deadline or not rows:
        rows.append([float(np.median(timed_block(lambda s=s, f=f: s.run(None, f), args.window))) * 1e3
                     for s, f in zip(sessions, feeds)])
    table = np.array(rows)
    names = [os.path.basename(f) for f in args.files]
    width = max(len(n) for n in names)
    shown = min(len(rows), 20)
    print(f'{len(rows)} windows of {args.window:g} s, {args.threads} thread(s); median ms per window'
          f'{f" (the first {shown})" if shown < len(rows) else ""}:')
    for name, column in zip(names, table.T):
        print(f'  {name:{width}s} ' + ' '.join(f'{v:5.1f}' for v in column[:shown]))
    print(f'\n{"file":{width}s}  median (ms)  best quartile (ms)  speed-up vs {names[0]} (median of window ratios)')
    for k, (name, column) in enumerate(zip(names, table.T)):
        ratio = float(np.median(table[:, 0] / column))
        print(f'{name:{width}s}  {np.median(column):11.2f}  {np.percentile(column, 25):18.2f}  '
              f'{"-" if k == 0 else f"{ratio:.2f}x"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
