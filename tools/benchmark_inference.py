"""CPU inference speed per Lite-HRNet variant: PyTorch eager (fp32, channels_last, BN folded) and onnxruntime.

    python tools/benchmark_inference.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml
    python tools/benchmark_inference.py --cfg experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml --variants all

For every variant (the config's own, `all` four, or a comma-separated list) at the config's input size:
latency at batch 1 (median ms) and throughput at batch 32 (images/s) of
  eager            the model as trained, fp32, torch.inference_mode
  channels_last    the same with NHWC memory format
  bn_folded        model.fold_bn(): BatchNorm folded into the convolutions
  onnxruntime_official  the model exported the way the official code writes it (`convert2onnx.py
                   --graph official`: adaptive pooling and resizing to sizes read at run time,
                   view/transpose/view channel shuffle): what exporting the official repository gives
  onnxruntime_plain  the BN-folded model exported as written but with constant sizes (`convert2onnx.py
                   --graph plain --fold-bn`)
  onnxruntime      the deploy form exported to ONNX (`convert2onnx.py`'s default, lib/models/deploy.py)
Both ONNX modes: one fixed-batch file per batch size (or one dynamic-batch file with --dynamic-batch),
graph optimisation level ALL, `--threads` intra-op threads, sequential execution
plus the FLOP-limited time: the model's true FLOPs (2 x `true_macs` of lib.utils.model_summary: the
multiply-adds of every executed call, batch 1) divided by the rate this machine reaches on a large
fp32 matmul (2048^3).
Weights: TEST.MODEL_FILE for the config's variant when given, otherwise Kaiming-initialised random
weights (MODEL.INIT kaiming), because the official N(0, 0.001^2) init drives activations into
denormal floats, which are pathologically slow on CPUs and would make the timings meaningless.
Timings on a shared machine are noisy: each number is the median of repeated runs, and the modes
run round-robin so that background load slows them alike.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
from typing import Callable

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
import torch

from lib.config import load_config
from lib.core.inference import build_pose_model
from lib.models import VARIANTS
from lib.utils.cli import parse_args_with_overrides
from lib.utils.model_summary import count_complexity
from lib.utils.onnx_export import create_session, export_onnx, graph_for_export, run_session
from lib.utils.timing import timed_block

MODES = ('eager', 'channels_last', 'bn_folded', 'onnxruntime_official', 'onnxruntime_plain', 'onnxruntime')
# mode -> graph of lib.utils.onnx_export (graph_for_export, and export_onnx's idioms)
ONNX_GRAPHS = {'onnxruntime_official': 'official', 'onnxruntime_plain': 'plain', 'onnxruntime': 'deploy'}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--cfg', required=True, help='experiment YAML file (input size, joints)')
    parser.add_argument('--variants', default='cfg', help="'cfg' (the config's MODEL.NAME), 'all', or names "
                        f"separated by commas from: {', '.join(VARIANTS)}")
    parser.add_argument('--threads', type=int, default=2, help='torch and onnxruntime intra-op threads')
    parser.add_argument('--batch', type=int, default=32, help='batch size of the throughput runs')
    parser.add_argument('--min-time', type=float, default=2.0, help='seconds of timed runs per measurement')
    parser.add_argument('--modes', default=','.join(MODES), help=f'subset of {",".join(MODES)}')
    parser.add_argument('--dynamic-batch', action='store_true', help='onnxruntime: one dynamic-batch export '
                        '(default: a fixed-batch export per batch size, which onnxruntime folds further)')
    return parse_args_with_overrides(parser, argv)


def time_calls(fns: dict[str, Callable[[], object]], min_time: float, min_runs: int = 3,
               warmup: int = 2, block_time: float = 0.25) -> dict[str, float]:
    """Median wall time (s) of each function.

    Functions take turns in blocks of consecutive calls (`timed_block`, about `block_time` s each,
    first call untimed), so that a busy machine slows all alike and no function is charged for the
    spinning thread pools of the one before. Stops once each function has `min_runs` timed calls
    and `min_time` s of them.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(t) < min_runs or sum(t) < min_time for t in times.values()):
        for name, fn in fns.items():
            times[name] += timed_block(fn, block_time)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_gflops(threads: int, n: int = 2048) -> float:
    """Best fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs) with `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = min(time_calls({'matmul': lambda: a @ b}, 0.5, min_runs=3, warmup=1)['matmul'] for _ in range(3))
    return 2 * n ** 3 / best / 1e9


def runners(model: torch.nn.Module, onnx_paths: dict[str, dict[int, str]], threads: int,
            modes: list[str]) -> dict[str, Callable]:
    """mode -> function(batch np.ndarray) that runs the network on it. onnx_paths: mode -> {batch: file}."""
    out: dict[str, Callable] = {}

    def eager(net: torch.nn.Module, channels_last: bool = False) -> Callable:
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def run(x: np.ndarray):
            with torch.inference_mode():
                return net(torch.from_numpy(x).contiguous(memory_format=fmt))
        return run

    def onnx_runner(paths: dict[int, str]) -> Callable:
        sessions = {n: create_session(path, threads=threads) for n, path in paths.items()}
        # One file per batch size (fixed batch), or the same dynamic-batch file for all (key 0).
        return lambda x: run_session(sessions.get(len(x), sessions.get(0)), x)

    if 'eager' in modes:
        out['eager'] = eager(model)
    if 'channels_last' in modes:
        out['channels_last'] = eager(copy.deepcopy(model).to(memory_format=torch.channels_last),
                                     channels_last=True)
    if 'bn_folded' in modes:
        out['bn_folded'] = eager(model.fold_bn())
    for mode in ONNX_GRAPHS:
        if mode in modes:
            out[mode] = onnx_runner(onnx_paths[mode])
    return out


def benchmark_variant(cfg, name: str, args: argparse.Namespace, gflops: float, workdir: str) -> list[dict]:
    weights = cfg.TEST.MODEL_FILE if name == cfg.MODEL.NAME else ''
    opts = ['MODEL.NAME', name, 'TEST.MODEL_FILE', weights] + ([] if weights else ['MODEL.INIT', 'kaiming'])
    vcfg = load_config(args.cfg_path, list(args.opts) + opts)
    model, source = build_pose_model(vcfg)
    model.eval()
    width, height = vcfg.MODEL.IMAGE_SIZE
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, height, width)).astype(np.float32)
    xb = rng.standard_normal((args.batch, 3, height, width)).astype(np.float32)
    flops = 2 * count_complexity(model, (height, width)).true_macs  # every call, as executed
    modes = args.modes.split(',')
    if args.dynamic_batch and 'onnxruntime_official' in modes:
        print('  onnxruntime_official skipped: the official idioms export with a fixed batch only')
        modes.remove('onnxruntime_official')
    onnx_paths: dict[str, dict[int, str]] = {}
    for mode, graph in ONNX_GRAPHS.items():
        if mode not in modes:
            continue
        network = graph_for_export(model, graph, fold_bn=True)
        onnx_paths[mode] = {}
        for n in ([0] if args.dynamic_batch else [1, args.batch]):
            path = onnx_paths[mode][n] = os.path.join(workdir, f'{name}_{graph}_b{n}.onnx')
            export_onnx(network, path, (width, height), dynamic_batch=n == 0, batch_size=max(n, 1),
                        idioms=graph)
    run = runners(model, onnx_paths, args.threads, modes)
    latency = time_calls({mode: (lambda fn=fn: fn(x1)) for mode, fn in run.items()}, args.min_time)
    batch_time = time_calls({mode: (lambda fn=fn: fn(xb)) for mode, fn in run.items()}, args.min_time,
                            min_runs=2, warmup=1)
    rows = []
    for mode in run:
        rows.append({'variant': name, 'mode': mode, 'latency_ms': latency[mode] * 1e3,
                     'throughput': args.batch / batch_time[mode], 'gflops': flops / 1e9,
                     'flop_limited_ms': flops / (gflops * 1e9) * 1e3, 'weights': source})
        print(f'  {name:28s} {mode:18s} {latency[mode] * 1e3:8.1f} ms  {args.batch / batch_time[mode]:7.1f} img/s',
              flush=True)
    return rows


def print_table(rows: list[dict], size: str, batch: int) -> None:
    print(f'\n| variant | input | mode | latency b1 (ms) | throughput b{batch} (img/s) | GFLOPs (true) '
          f'| FLOP-limited b1 (ms) |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['variant']} | {size} | {r['mode']} | {r['latency_ms']:.1f} | {r['throughput']:.1f} "
              f"| {r['gflops']:.3f} | {r['flop_limited_ms']:.1f} |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.cfg_path = args.cfg
    cfg = load_config(args.cfg, args.opts)
    if args.variants == 'cfg':
        names = [cfg.MODEL.NAME]
    elif args.variants == 'all':
        names = list(VARIANTS)
    else:
        names = [v.strip() for v in args.variants.split(',') if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f'error: unknown variant(s) {unknown}; choose from {list(VARIANTS)}')
    bad_modes = set(args.modes.split(',')) - set(MODES)
    if bad_modes:
        raise SystemExit(f'error: unknown mode(s) {sorted(bad_modes)}; choose from {list(MODES)}')
    torch.set_num_threads(args.threads)
    gflops = matmul_gflops(args.threads)
    print(f'torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s) visible; '
          f'fp32 matmul 2048^3: {gflops:.1f} GFLOP/s')
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            rows += benchmark_variant(cfg, name, args, gflops, workdir)
    width, height = cfg.MODEL.IMAGE_SIZE
    print_table(rows, f'{height}x{width}', args.batch)


if __name__ == '__main__':
    main()
