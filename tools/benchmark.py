"""Speed of Lite-HRNet beside its baseline, measured side by side on a shared, noisy machine.

    python tools/benchmark.py model                    # eager PyTorch: batch 1, per image at batch 32, training step
    python tools/benchmark.py model --compile          # + regional torch.compile (lib.core.compile), compile time apart
    python tools/benchmark.py inference --variants all # eager, BN folded, onnxruntime official / plain / deploy
    python tools/benchmark.py inference --modes eager,bn_folded,compiled,compiled_bn_folded,ort_official
    python tools/benchmark.py compare official.onnx deploy.onnx --seconds 60   # ONNX files side by side
    python tools/benchmark.py train --batch 32 --iters 10 --workers 2 [--device cuda]   # the real training loop
    python tools/benchmark.py data                     # one loader worker vs the JPEG decode alone
    python tools/benchmark.py video --backends torch,onnxruntime   # the video demo's stages and FPS, 1 and 5 people

Every subcommand takes --cfg (default: Lite-HRNet-18 256x192), trailing KEY VALUE config overrides,
--threads and --json (one JSON line with the numbers), prints a markdown table, and prints speed-ups
over its baseline: the official forward order (model, train), the official export (inference), the
first file (compare) or the JPEG decode (data).

Every timing goes through `lib.utils.timing.time_interleaved`: the things compared run alternately
in short windows, round after round, and a speed-up is the median over rounds of the ratio of
neighbouring windows, so that a machine whose speed swings 2x within seconds slows both sides alike.
Single numbers (ms, samples/s) are medians over windows and still carry the machine's weather.

Compiled contenders (model --compile; inference modes compiled*) are timed in their steady state; the
first calls, which compile (and on a warm cache mostly load compiled code from inductor's FX graph
cache), are timed apart and printed as compile time with the cache hits and misses. For a cold cache
run with TORCHINDUCTOR_CACHE_DIR=$(mktemp -d); run the same command again for a warm one.

Weights: TEST.MODEL_FILE when given, otherwise Kaiming init with BatchNorm statistics from three
random batches, because the official N(0, 0.001^2) init drives activations into denormal floats,
which are pathologically slow on CPUs and would make the timings meaningless.
"""
from __future__ import annotations

import argparse
import copy
import inspect
import itertools
import json
import math
import os
import sys
import tempfile
import time
from typing import Callable, Iterator

import _init_paths  # noqa: F401  (puts the repository root on sys.path)
import numpy as np
import torch

from lib.config import load_config
from lib.export.quantize import DEFAULT_NUM_CROPS
from lib.models import VARIANTS, build_model
from lib.utils.cli import parse_args_with_overrides
from lib.utils.timing import Timing, time_interleaved
from benchmark_video import add_video_subcommand  # tools/benchmark_video.py: the `video` subcommand

DEFAULT_CFG = os.path.join(_init_paths.REPO_ROOT, 'experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml')
AGREEMENT_RTOL = 1e-4  # max |heatmap difference| / max |heatmap| accepted between implementations
# bf16 computes something else on purpose (judged by AP, --ap): only a gross slip stops the run. int8 modes are
# checked by their quantisation report instead (heatmap peaks within 1 px of float on held-out crops): a max
# |difference| says little about int8, whose peaks can agree while a few pixels differ by half the range.
LOW_PRECISION_RTOL = 0.25


# --- shared pieces ------------------------------------------------------------------------------------------
def load_cfg(args: argparse.Namespace, forced: list = ()):
    """The config: Kaiming init (overridable) <- the user's KEY VALUE pairs <- what the flags force."""
    return load_config(args.cfg, ['MODEL.INIT', 'kaiming'] + list(args.opts) + list(forced))


def realistic_model(cfg) -> tuple[torch.nn.Module, str]:
    """(model in eval mode, where its weights came from): TEST.MODEL_FILE, or random weights with
    activations of realistic size (Kaiming init, BatchNorm statistics from three random batches)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if cfg.TEST.MODEL_FILE:
        from lib.utils.checkpoint import load_weights
        load_weights(model, cfg.TEST.MODEL_FILE)
        return model.eval(), cfg.TEST.MODEL_FILE
    width, height = cfg.MODEL.IMAGE_SIZE
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, height, width))
    return model.eval(), f'random (MODEL.INIT {cfg.MODEL.INIT}, BN statistics of random batches)'


def check_agreement(nets: dict[str, Callable], reference: str, x) -> dict[str, float]:
    """Max |heatmap difference| of each net vs `reference` on x, relative to max |reference heatmap|;
    prints them and exits with status 1 if any exceeds AGREEMENT_RTOL (LOW_PRECISION_RTOL for bf16 modes, no
    limit for int8 modes). Nets return tensors or arrays."""
    with torch.inference_mode():
        out = {name: torch.as_tensor(net(x)).float() for name, net in nets.items()}
    scale = max(out[reference].abs().max().item(), 1e-12)
    rel = {name: (y - out[reference]).abs().max().item() / scale for name, y in out.items() if name != reference}
    for name, diff in rel.items():
        print(f'check: max |heatmap diff| {name} vs {reference}: {diff * scale:.2e} '
              f'({diff:.1e} of max |heatmap| {scale:.3g})', flush=True)
    limit = {name: math.inf if name.endswith('int8') else LOW_PRECISION_RTOL if name.endswith('bf16')
             else AGREEMENT_RTOL for name in rel}
    bad = {name: f'{diff:.2g} > {limit[name]:g}' for name, diff in rel.items() if not diff <= limit[name]}
    if bad:
        raise SystemExit(f'error: heatmaps disagree beyond their limits (relative): {bad}; '
                         'the timings would compare different computations')
    return rel


def print_table(header: list[str], rows: list[list]) -> None:
    print('\n| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(str(v) for v in row) + ' |')


def with_speedup(value: float, speedup: float | None, digits: int = 1) -> str:
    return f'{value:.{digits}f}' + ('' if speedup is None else f' ({speedup:.2f}x)')


def fmt_ms(timing: Timing) -> str:
    """One progress line: ms per call of each contender."""
    return ', '.join(f'{name} {s * 1e3:.1f} ms' for name, s in timing.seconds.items()) + f' ({timing.rounds} rounds)'


def emit_json(args: argparse.Namespace, payload: dict) -> None:
    if args.json:
        print(json.dumps(payload))


def compile_with_timing(net: torch.nn.Module, first_calls: dict[str, Callable[[torch.nn.Module], object]],
                        mode: str = 'default') -> tuple[torch.nn.Module, dict[str, float]]:
    """(lib.core.compile.compile_model(net), seconds of each first call): the calls that compile
    (e.g. {'b1': ..., 'b32': ...}, in order; each new input shape compiles again) timed one by one."""
    from lib.core.compile import compile_model
    net = compile_model(net, mode=mode)
    seconds = {}
    for name, call in first_calls.items():
        start = time.perf_counter()
        call(net)
        seconds[name] = time.perf_counter() - start
    return net, seconds


def compile_cache_summary() -> str:
    """Inductor's FX graph cache hits and misses in this process, and where the cache lives."""
    from torch._dynamo.utils import counters
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    stats = counters['inductor']
    return (f"FX graph cache {cache_dir()}: {stats['fxgraph_cache_hit']} hits, "
            f"{stats['fxgraph_cache_miss']} misses")


def pick_device(name: str) -> torch.device:
    if name == 'cuda' or (name == 'auto' and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise SystemExit('error: --device cuda but torch sees no CUDA device')
        return torch.device('cuda')
    return torch.device('cpu')


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """fn, waiting for the GPU at the end so that the timer sees the work done."""
    if device.type != 'cuda':
        return fn

    def run() -> None:
        fn()
        torch.cuda.synchronize(device)
    return run


# --- model: eager PyTorch, ours vs the official forward order ----------------------------------------------
def run_model(args: argparse.Namespace) -> int:
    """Eval latency at batch 1, ms per image at batch N, and training steps (forward + loss + backward +
    Adam) of ours, ours with BatchNorm folded and the official forward order, on the same weights."""
    from lib.core.loss import build_loss
    cfg = load_cfg(args)
    device = pick_device(args.device)
    model, source = realistic_model(cfg)
    model.to(device)
    width, height = cfg.MODEL.IMAGE_SIZE
    nets = {'official': model.with_kernels('official').eval(), 'ours': model, 'ours-fused': model.fold_bn()}
    x1, xb = (torch.randn(n, 3, height, width, device=device) for n in (1, args.batch))
    compile_s = {}
    if args.compile:  # compiled copies: first calls (compilation) timed here, steady state below
        def first_calls(x: torch.Tensor) -> Callable:
            def call(net: torch.nn.Module) -> None:
                with torch.inference_mode():
                    synced(lambda: net(x), device)()
            return call
        calls = {'eval_b1': first_calls(x1), 'eval_batch': first_calls(xb)}
        for name, net in (('compiled', copy.deepcopy(model)), ('compiled-fused', model.fold_bn())):
            nets[name], compile_s[name] = compile_with_timing(net, calls, cfg.TEST.COMPILE_MODE)
            print(f'{name}: first calls ' + ', '.join(f'{k} {v:.1f} s' for k, v in compile_s[name].items()),
                  flush=True)
    check = check_agreement(nets, 'official', x1)

    def timed(x: torch.Tensor) -> Timing:
        with torch.inference_mode():
            return time_interleaved({name: synced(lambda net=net: net(x), device) for name, net in nets.items()},
                                    args.seconds, args.window, baseline='official', min_rounds=args.rounds)
    b1 = timed(x1)
    print(f'eval batch 1: {fmt_ms(b1)}', flush=True)
    bn = timed(xb)
    print(f'eval batch {args.batch}: {fmt_ms(bn)}', flush=True)
    train = None
    if not args.skip_train:
        hw, hh = cfg.MODEL.HEATMAP_SIZE
        target = torch.rand(args.batch, cfg.MODEL.NUM_JOINTS, hh, hw, device=device)
        weight = torch.ones(args.batch, cfg.MODEL.NUM_JOINTS, 1, device=device)
        criterion = build_loss(cfg)
        steps = {name: train_step(net.train(), criterion, xb, target, weight, cfg.TRAIN)
                 for name, net in (('official', model.with_kernels('official')), ('ours', copy.deepcopy(model)))}
        if args.compile:
            from lib.core.compile import compile_model
            steps['compiled'] = train_step(compile_model(copy.deepcopy(model).train(), mode=cfg.TRAIN.COMPILE_MODE),
                                           criterion, xb, target, weight, cfg.TRAIN)
            compile_s.setdefault('compiled', {})
            start = time.perf_counter()
            synced(steps['compiled'], device)()  # forward and backward graphs compile here
            compile_s['compiled']['train'] = time.perf_counter() - start
            print(f"compiled: first training step {compile_s['compiled']['train']:.1f} s", flush=True)
        # A step lasts seconds: one step per window, no settling call (a thread pool's spin is ~ms).
        train = time_interleaved({name: synced(step, device) for name, step in steps.items()}, args.seconds, 0.0,
                                 baseline='official', min_rounds=args.rounds, settle=False)
        print(f'train batch {args.batch}: {fmt_ms(train)}', flush=True)

    results = {}
    for name in nets:
        row = {'eval_b1_ms': b1.seconds[name] * 1e3, 'eval_batch_ms_per_image': bn.seconds[name] * 1e3 / args.batch}
        speed = {'eval_b1': b1.speedup[name], 'eval_batch': bn.speedup[name]}
        if train is not None and name in train.seconds:
            row['train_samples_per_s'] = args.batch / train.seconds[name]
            speed['train'] = train.speedup[name]
        results[name] = dict(row, speedup=speed)

    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} thread(s)'
    print(f'\n{cfg.MODEL.NAME} {height}x{width}, {where}, torch {torch.__version__}, '
          f'weights: {source}; in brackets: speed-up over official (median of neighbouring-window ratios)')
    rows = [[name, with_speedup(r['eval_b1_ms'], r['speedup']['eval_b1']),
             with_speedup(r['eval_batch_ms_per_image'], r['speedup']['eval_batch']),
             with_speedup(r['train_samples_per_s'], r['speedup']['train']) if 'train_samples_per_s' in r else '-']
            for name, r in results.items()]
    print_table(['implementation', 'eval batch 1 (ms)', f'eval batch {args.batch} (ms / image)',
                 f'training batch {args.batch} (samples/s)'], rows)
    for name in [n for n in nets if n != 'official']:
        print(f'speed-up of {name} over official: ' + ', '.join(f'{k} {v:.2f}x' for k, v in
                                                                 results[name]['speedup'].items()))
    for name, eager_name in (('compiled', 'ours'), ('compiled-fused', 'ours-fused')):
        if name in nets:  # side by side with the same network run eagerly
            print(f'speed-up of {name} over {eager_name}: eval_b1 {b1.ratio(name, eager_name):.2f}x, '
                  f'eval_batch {bn.ratio(name, eager_name):.2f}x'
                  + (f", train {train.ratio(name, eager_name):.2f}x" if train is not None and name in train.windows
                     else ''))
    if compile_s:
        print(f'\ncompile time = first call (compiling, then one run); {compile_cache_summary()}')
        print_table(['implementation', 'eval batch 1 (s)', f'eval batch {args.batch} (s)',
                     f'training batch {args.batch} (s)'],
                    [[name, *(f'{s[k]:.1f}' if k in s else '-' for k in ('eval_b1', 'eval_batch', 'train'))]
                     for name, s in compile_s.items()])
        for name, s in compile_s.items():
            results[name]['compile_s'] = s
    emit_json(args, {'subcommand': 'model', 'variant': cfg.MODEL.NAME, 'input_hw': [height, width],
                     'batch': args.batch, 'device': device.type, 'threads': torch.get_num_threads(),
                     'rounds': b1.rounds, 'check_rel_diff': check, 'results': results})
    return 0


def train_step(model: torch.nn.Module, criterion, x, target, weight, train_cfg) -> Callable[[], None]:
    """One forward + loss + backward + Adam step of `model` on a fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.LR, eps=train_cfg.ADAM_EPS)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(model(x), target, weight).backward()
        optimizer.step()
    return step


# --- inference: eager and onnxruntime per variant -----------------------------------------------------------
MODES = ('official', 'eager', 'bn_folded', 'compiled', 'compiled_bn_folded', 'ort_official', 'ort_plain', 'ort_deploy',
         'ov_deploy', 'ov_deploy_bf16', 'ort_int8', 'ov_int8')
DEFAULT_MODES = ('eager', 'bn_folded', 'ort_official', 'ort_plain', 'ort_deploy')  # compiling takes minutes
DEPLOY_MODES = ('ort_official', 'ort_deploy', 'ov_deploy', 'ov_deploy_bf16', 'ort_int8', 'ov_int8')  # --modes deploy
ORT_GRAPHS = {'ort_official': 'official', 'ort_plain': 'plain', 'ort_deploy': 'deploy'}  # mode -> lib.export graph
OV_PRECISIONS = {'ov_deploy': 'fp32', 'ov_deploy_bf16': 'bf16'}  # OpenVINO on the deploy graph
INT8_MODES = {'ort_int8': 'onnxruntime', 'ov_int8': 'openvino'}  # quantised deploy graph -> runtime
INFERENCE_BASELINES = ('official', 'ort_official')  # the first one asked for is the baseline of the speed-ups


def run_inference(args: argparse.Namespace) -> int:
    """Latency at batch 1 and throughput at batch N per variant and mode:
      official      the official code's forward order in PyTorch (eager, fp32, BN not folded), the same weights
      eager         the model as trained, fp32, torch.inference_mode
      bn_folded     model.fold_bn(): BatchNorm folded into the convolutions
      compiled      lib.core.compile.compile_model (regional torch.compile, inductor); not run unless asked
      compiled_bn_folded  the same on model.fold_bn(); compile time (first calls) is printed apart
      ort_official  onnxruntime on the model exported in the official code's idioms (adaptive pooling
                    and resizing to sizes read at run time, view/transpose/view shuffle): what exporting
                    the official repository gives
      ort_plain     onnxruntime on the BN-folded model exported as written, with constant sizes
      ort_deploy    onnxruntime on the deploy form (lib.export.to_deploy), convert2onnx.py's default
      ov_deploy     OpenVINO (CPU plugin, latency mode, f32 precision hint) on the deploy form
      ov_deploy_bf16  the same computing in bfloat16 (CPUs with AVX512_BF16 or AMX; skipped elsewhere)
      ort_int8      onnxruntime on the deploy form quantised to int8 (lib/export/quantize.py: QDQ, calibrated
                    on --calib-num crops of the config's training set, the most sensitive layers in float)
      ov_int8       OpenVINO on the deploy form quantised by NNCF, the same calibration and float layers
    --modes deploy: ort_official plus every deployment mode. onnxruntime: graph optimisation level ALL,
    --threads intra-op threads, one fixed-batch file per batch size (or one dynamic-batch file with
    --dynamic-batch, where ort_official cannot be exported); OpenVINO and int8: one dynamic-batch file,
    OpenVINO reshaped to each batch size. --ap: also each mode's AP (PCKh) on the config's val set through
    tools/test.py's pipeline (the numbers need trained weights: TEST.MODEL_FILE).
    Speed-ups are over `official` when it is timed, else over `ort_official`. Ready time: what a mode costs
    before its first answer (export, quantisation, session / compilation) and its first calls at batch 1 and
    batch N (torch.compile and OpenVINO compile for each input shape at its first call).
    FLOP-limited: the model's true FLOPs (2 x true_macs, every executed call, batch 1) at the rate this
    machine reaches on a 2048^3 fp32 matmul.
    """
    base_cfg = load_cfg(args)
    names = ([base_cfg.MODEL.NAME] if args.variants == 'cfg' else list(VARIANTS) if args.variants == 'all'
             else [v.strip() for v in args.variants.split(',') if v.strip()])
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f'error: unknown variant(s) {unknown}; choose from {list(VARIANTS)}')
    modes = [m.strip() for m in args.modes.split(',') if m.strip()]
    modes = [x for m in modes for x in (DEPLOY_MODES if m == 'deploy' else (m,))]
    if 'ov_deploy_bf16' in modes:
        from lib.export.openvino import cpu_precisions
        if 'bf16' not in cpu_precisions():
            print('ov_deploy_bf16 skipped: OpenVINO runs no bfloat16 on this CPU')
            modes.remove('ov_deploy_bf16')
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f'error: unknown mode(s) {bad}; choose from {list(MODES)}')
    if args.dynamic_batch and 'ort_official' in modes:
        print('ort_official skipped: the official idioms export with a fixed batch only')
        modes.remove('ort_official')
    if not modes:
        raise SystemExit('error: no mode left to time')
    baseline = next((m for m in INFERENCE_BASELINES if m in modes), modes[0])
    gflops = matmul_gflops(args)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s) visible; '
          f'fp32 matmul 2048^3: {gflops:.1f} GFLOP/s', flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            own_weights = name == base_cfg.MODEL.NAME  # TEST.MODEL_FILE belongs to the config's variant only
            rows += benchmark_variant(args, name, own_weights, modes, baseline, gflops, workdir)
    width, height = base_cfg.MODEL.IMAGE_SIZE
    print(f'\n{height}x{width}; in brackets: speed-up over {baseline} (median of neighbouring-window ratios)')
    print_table(['variant', 'mode', 'latency b1 (ms)', f'throughput b{args.batch} (img/s)', 'GFLOPs (true)',
                 'FLOP-limited b1 (ms)', f'ready: build + first b1 + first b{args.batch} (s)']
                + (['AP'] if args.ap else []),
                [[r['variant'], r['mode'], with_speedup(r['latency_ms'], r['latency_speedup']),
                  with_speedup(r['throughput'], r['throughput_speedup']), f"{r['gflops']:.3f}",
                  f"{r['flop_limited_ms']:.2f}",
                  ' + '.join(f'{v:.1f}' for v in r['ready_s'].values())]
                 + ([f"{r['ap']:.4f}"] if args.ap else []) for r in rows])
    emit_json(args, {'subcommand': 'inference', 'input_hw': [height, width], 'batch': args.batch,
                     'threads': torch.get_num_threads(), 'matmul_gflops': gflops, 'baseline': baseline, 'rows': rows})
    return 0


def matmul_gflops(args: argparse.Namespace, n: int = 2048) -> float:
    """fp32 GFLOP/s of an n x n @ n x n matmul (2 n^3 FLOPs), from its best quartile of windows."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    timing = time_interleaved({'matmul': lambda: a @ b}, seconds=min(args.seconds, 1.0), window=0.1, min_rounds=3)
    return 2 * n ** 3 / timing.quartile('matmul') / 1e9


def benchmark_variant(args, name: str, own_weights: bool, modes: list[str], baseline: str, gflops: float,
                      workdir: str) -> list[dict]:
    from lib.core.compile import compile_model
    from lib.export import create_session, export_onnx, graph_for_export, run_session
    from lib.models.complexity import count_complexity
    cfg = load_cfg(args, ['MODEL.NAME', name] + ([] if own_weights else ['TEST.MODEL_FILE', '']))
    model, source = realistic_model(cfg)
    width, height = cfg.MODEL.IMAGE_SIZE
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, height, width)).astype(np.float32)
    xb = rng.standard_normal((args.batch, 3, height, width)).astype(np.float32)
    flops = 2 * count_complexity(model, (height, width)).true_macs

    def eager(net: torch.nn.Module) -> Callable:
        def run(x: np.ndarray):
            with torch.inference_mode():
                return net(torch.from_numpy(x))
        return run

    runners: dict[str, Callable] = {}
    build_s: dict[str, float] = {}  # seconds spent making each runner before its first call

    def build(mode: str, make: Callable[[], Callable]) -> None:
        start = time.perf_counter()
        runners[mode] = make()
        build_s[mode] = time.perf_counter() - start

    for mode, make in (('official', lambda: model.with_kernels('official').eval()), ('eager', lambda: model),
                       ('bn_folded', model.fold_bn),
                       ('compiled', lambda: compile_model(copy.deepcopy(model), mode=cfg.TEST.COMPILE_MODE)),
                       ('compiled_bn_folded', lambda: compile_model(model.fold_bn(), mode=cfg.TEST.COMPILE_MODE))):
        if mode in modes:
            build(mode, lambda make=make: eager(make()))
    for mode in [m for m in modes if m in ORT_GRAPHS]:
        def ort_runner(graph: str = ORT_GRAPHS[mode]) -> Callable:
            network = graph_for_export(model, graph, fold_bn=True)
            sessions = {}
            for n in ([0] if args.dynamic_batch else [1, args.batch]):  # 0: the one dynamic-batch file
                path = export_onnx(network, os.path.join(workdir, f'{name}_{graph}_b{n}.onnx'), (width, height),
                                   dynamic_batch=n == 0, batch_size=max(n, 1))
                sessions[n] = create_session(path, threads=torch.get_num_threads())
            return lambda x: run_session(sessions.get(len(x), sessions.get(0)), x)
        build(mode, ort_runner)
    deploy_modes = [m for m in modes if m in OV_PRECISIONS or m in INT8_MODES]
    made, made_s = deployment_runners(args, cfg, model, deploy_modes, workdir)
    runners.update(made)
    build_s.update(made_s)
    runners = {m: runners[m] for m in modes}  # the order asked for
    ready_s = {}  # build, then the first calls: torch.compile and OpenVINO compile each input shape there
    for mode, fn in runners.items():
        ready_s[mode] = {'build': build_s[mode]}
        for x in (x1, xb):
            start = time.perf_counter()
            fn(x)
            ready_s[mode][f'b{len(x)}'] = time.perf_counter() - start
        if mode.startswith('compiled'):
            print(f'  {name} {mode}: first calls (compile) b1 {ready_s[mode]["b1"]:.1f} s, '
                  f'b{args.batch} {ready_s[mode][f"b{args.batch}"]:.1f} s; {compile_cache_summary()}', flush=True)
    check = check_agreement(runners, modes[0], x1)
    latency = time_interleaved({m: (lambda fn=fn: fn(x1)) for m, fn in runners.items()}, args.seconds,
                               args.window, baseline=baseline, min_rounds=args.rounds)
    batch = time_interleaved({m: (lambda fn=fn: fn(xb)) for m, fn in runners.items()}, args.seconds,
                             args.window, baseline=baseline, min_rounds=args.rounds)
    rows = []
    for mode in runners:
        rows.append({'variant': name, 'mode': mode, 'latency_ms': latency.seconds[mode] * 1e3,
                     'latency_speedup': latency.speedup[mode], 'throughput': args.batch / batch.seconds[mode],
                     'throughput_speedup': batch.speedup[mode], 'gflops': flops / 1e9,
                     'flop_limited_ms': flops / (gflops * 1e9) * 1e3, 'check_rel_diff': check.get(mode, 0.0),
                     'weights': source, 'ready_s': ready_s[mode]})
        print(f'  {name:26s} {mode:13s} {rows[-1]["latency_ms"]:8.1f} ms  {rows[-1]["throughput"]:7.1f} img/s  '
              f'({latency.rounds} / {batch.rounds} rounds)', flush=True)
    if args.ap:
        for row in rows:
            row['ap'] = evaluate_runner(cfg, runners[row['mode']], args.batch, os.path.join(workdir, row['mode']))
            print(f"  {name:26s} {row['mode']:13s} AP {row['ap']:.4f}", flush=True)
    return rows


def deployment_runners(args, cfg, model: torch.nn.Module, modes: list[str], workdir: str
                       ) -> tuple[dict[str, Callable], dict[str, float]]:
    """numpy crops -> heatmaps for the OpenVINO and int8 modes, all made from one dynamic-batch deploy graph,
    and the seconds each took to make (the shared export counted in each)."""
    if not modes:
        return {}, {}
    from lib.export import export_onnx, to_deploy
    from lib.export.runtime import file_runner  # OpenVINO: one static-shape compilation per batch size
    width, height = cfg.MODEL.IMAGE_SIZE
    threads = torch.get_num_threads()
    start = time.perf_counter()
    float_onnx = export_onnx(to_deploy(model), os.path.join(workdir, f'{cfg.MODEL.NAME}_deploy_dyn.onnx'),
                             (width, height), dynamic_batch=True)
    export_s = time.perf_counter() - start
    runners, build_s, crops = {}, {}, None
    for mode in modes:
        start = time.perf_counter()
        if mode in OV_PRECISIONS:
            runners[mode] = file_runner(float_onnx, 'openvino', OV_PRECISIONS[mode], threads)
            build_s[mode] = export_s + time.perf_counter() - start
            continue
        from lib.export.quantize import calibration_crops, crops_to_draw, quantize_file
        crops = crops if crops is not None else calibration_crops(cfg, crops_to_draw(args.calib_num))[0]
        suffix = '.onnx' if INT8_MODES[mode] == 'onnxruntime' else '.xml'
        report = quantize_file(model, float_onnx, os.path.join(workdir, f'{cfg.MODEL.NAME}_{mode}{suffix}'),
                               INT8_MODES[mode], crops, threads=threads)
        print('\n'.join('  ' + line for line in report.summary().splitlines()), flush=True)
        runners[mode] = file_runner(report.path, INT8_MODES[mode], 'int8', threads)
        build_s[mode] = export_s + time.perf_counter() - start  # with calibration, quantisation and its report
    return runners, build_s


def evaluate_runner(cfg, run: Callable, batch: int, output_dir: str) -> float:
    """The primary metric (AP, or PCKh) of `run` (numpy crops -> heatmaps) on cfg's val set, via validate."""
    from lib.core.function import build_loader, validate
    from lib.dataset import build_dataset
    from lib.export.backends import RuntimeNetwork
    network = RuntimeNetwork(lambda x: np.asarray(run(x)), 'benchmark', 'as timed', 'benchmark', fixed_batch=batch)
    dataset = build_dataset(cfg, is_train=False)
    loader = build_loader(cfg, dataset, False)
    os.makedirs(output_dir, exist_ok=True)
    metrics, key = validate(cfg, network, loader, dataset, output_dir, torch.device('cpu'))
    return float(metrics[key])


# --- compare: ONNX files side by side --------------------------------------------------------------------
def run_compare(args: argparse.Namespace) -> int:
    """Batch-1 onnxruntime latency of ONNX files in alternating windows; the first file is the baseline."""
    missing = [f for f in args.files if not os.path.isfile(f)]
    if missing:
        print(f'error: ONNX file(s) not found: {", ".join(missing)}', file=sys.stderr)
        return 2
    if len(set(args.files)) < len(args.files):
        print(f'error: a file is given twice: {args.files}', file=sys.stderr)
        return 2
    from lib.export import create_session  # level ALL, sequential, spinning threads
    runs = {}
    for path in args.files:
        session = create_session(path, threads=args.threads)
        inp = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]  # a symbolic (dynamic) axis gets 1
        feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        runs[path] = lambda s=session, f=feed: s.run(None, f)
    base = args.files[0]
    timing = time_interleaved(runs, args.seconds, args.window, baseline=base, min_rounds=args.rounds, warmup=5)
    names = {path: os.path.basename(path) if len({os.path.basename(p) for p in args.files}) == len(args.files)
             else path for path in args.files}
    shown = min(timing.rounds, 20)
    width = max(len(n) for n in names.values())
    print(f'{timing.rounds} rounds of {args.window:g}-s windows, {args.threads} thread(s); median ms per window'
          f'{f" (the first {shown})" if shown < timing.rounds else ""}:')
    for path, name in names.items():
        print(f'  {name:{width}s} ' + ' '.join(f'{v * 1e3:5.1f}' for v in timing.windows[path][:shown]))
    print_table(['file', 'median (ms)', 'best quartile (ms)', f'speed-up over {names[base]}'],
                [[name, f'{timing.seconds[p] * 1e3:.2f}', f'{timing.quartile(p) * 1e3:.2f}',
                  '-' if p == base else f'{timing.speedup[p]:.2f}x'] for p, name in names.items()])
    emit_json(args, {'subcommand': 'compare', 'rounds': timing.rounds, 'window_s': args.window,
                     'threads': args.threads, 'baseline': base,
                     'files': [{'file': p, 'median_ms': timing.seconds[p] * 1e3,
                                'best_quartile_ms': timing.quartile(p) * 1e3, 'speedup': timing.speedup[p]}
                               for p in args.files]})
    return 0


# --- train: the real training loop on JPEG files --------------------------------------------------------
class TimedBatches:
    """`batches` batches per pass over it, drawn from `source` (one long-lived iterator shared by all
    passes, so loader workers start once), adding the time each batch took to arrive to `self.wait`.

    Timing next() here, rather than inside the training loop, keeps the data wait independent of how
    the loop is written."""

    def __init__(self, source: Iterator, batches: int) -> None:
        self.source, self.batches, self.wait = source, batches, 0.0

    def __len__(self) -> int:
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            start = time.perf_counter()
            batch = next(self.source)
            self.wait += time.perf_counter() - start
            yield batch


def endless(loader) -> Iterator:
    for epoch in itertools.count():
        loader.sampler.set_epoch(epoch)
        yield from loader


def training_set(args, tmp: str):
    """(cfg, training set, description): the config's training set when it loads from disk, otherwise a
    synthetic COCO-format set of 640x480 JPEGs written into `tmp`."""
    from lib.dataset import build_dataset, dataset_root
    forced = ['TRAIN.BATCH_SIZE_PER_GPU', args.batch] + ([] if args.workers is None else ['WORKERS', args.workers])
    cfg = load_cfg(args, forced)
    if not args.synthetic:
        try:
            return cfg, build_dataset(cfg, is_train=True), f'{dataset_root(cfg)} {cfg.DATASET.TRAIN_SET}'
        except (OSError, ValueError) as err:
            print(f'config data set not usable ({err}); using a synthetic one', flush=True)
    from lib.dataset.synthetic import make_synthetic_dataset
    make_synthetic_dataset(tmp, seed=0, num_train=args.synthetic_images, num_val=0, image_size=(640, 480))
    cfg = load_cfg(args, forced + ['DATASET.DATASET', 'coco', 'DATASET.METAINFO', 'coco', 'DATASET.ROOT', tmp,
                                   'DATASET.TRAIN_SET', 'train2017', 'MODEL.NUM_JOINTS', 17])
    dataset = build_dataset(cfg, is_train=True)
    return cfg, dataset, f'synthetic: {args.synthetic_images} 640x480 JPEGs, {len(dataset)} people'


def run_train(args: argparse.Namespace) -> int:
    """samples/s of lib.core.function.train_one_epoch, ours vs the official forward order (same initial
    weights), fed by the training DataLoader reading JPEGs from disk, and the share of time spent
    waiting for the next batch. Each timed call is one pass of --iters steps; the two models take
    turns pass by pass on one shared loader stream (the data set is repeated so that an epoch outlasts
    the run: real epochs are long, and workers restarting would be charged to the wait)."""
    from torch.utils.data import Subset

    from lib.core.function import amp_dtype, build_loader, grad_scaler, train_one_epoch
    from lib.core.loss import build_loss
    from train import build_optimizer  # tools/train.py: the optimizer training uses

    device = pick_device(args.device)
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        cfg, dataset, data_desc = training_set(args, tmp)
        repeats = math.ceil(20_000 / max(len(dataset), 1))
        loader = build_loader(cfg, Subset(dataset, list(range(len(dataset))) * repeats), train=True)
        source = endless(loader)
        ours, _ = realistic_model(cfg)
        models = {'official': ours.with_kernels('official'), 'ours': ours}  # train_one_epoch sets train mode
        if args.compile:  # the same weights, compiled block by block (TRAIN.COMPILE_MODE); compiles in the warm-up
            from lib.core.compile import compile_model
            models['compiled'] = compile_model(copy.deepcopy(ours), mode=cfg.TRAIN.COMPILE_MODE)
        criterion = build_loss(cfg).to(device)
        dtype = amp_dtype(cfg, device)
        amp = dtype is not None
        feeds, passes = {}, {}
        for name, model in models.items():
            model.to(device)
            optimizer = build_optimizer(cfg, model)
            scaler = grad_scaler(cfg, device)
            feeds[name] = TimedBatches(source, args.iters)
            state = {'iteration': 0}

            def one_pass(model=model, optimizer=optimizer, scaler=scaler, feed=feeds[name], state=state) -> None:
                state['iteration'], _ = train_one_epoch(
                    cfg, model, feed, criterion, optimizer, scaler, epoch=0, iteration=state['iteration'],
                    iters_per_epoch=args.iters, device=device)
            passes[name] = synced(one_pass, device)
        first_pass_s = {}
        for name in passes:  # warm-up, outside the timing: workers start, allocators and caches fill, compiling
            start = time.perf_counter()
            passes[name]()
            first_pass_s[name] = time.perf_counter() - start
            feeds[name].wait = 0.0
        # A pass lasts seconds: one pass per window and no settling call, so every call is timed and
        # the data wait adds up over exactly the timed passes.
        timing = time_interleaved(passes, args.seconds, 0.0, baseline='official', min_rounds=args.rounds,
                                  warmup=0, settle=False)
        source.close()  # stops the loader workers

    samples = args.batch * args.iters
    results = {name: {'samples_per_s': samples / timing.seconds[name],
                      'data_wait_share': feeds[name].wait / sum(timing.times[name]),
                      'speedup': timing.speedup[name], 'first_pass_s': first_pass_s[name]} for name in passes}
    where = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU, {torch.get_num_threads()} thread(s)'
    print(f'\n{cfg.MODEL.NAME} {cfg.MODEL.IMAGE_SIZE[1]}x{cfg.MODEL.IMAGE_SIZE[0]}, batch {args.batch}, '
          f'{timing.rounds} timed passes of {args.iters} iterations each, {cfg.WORKERS} loader worker(s), {where}, '
          f'AMP {cfg.TRAIN.AMP_DTYPE if amp else "off"}; data: {data_desc}')
    print_table(['forward order', 'train samples/s', 'waiting for data', 'speed-up over official',
                 'first pass (s; compiling)'],
                [[name, f"{r['samples_per_s']:.1f}", f"{r['data_wait_share']:.0%}", f"{r['speedup']:.2f}x",
                  f"{r['first_pass_s']:.1f}"] for name, r in results.items()])
    print(f"speed-up of ours over official: {results['ours']['speedup']:.2f}x")
    emit_json(args, {'subcommand': 'train', 'variant': cfg.MODEL.NAME, 'batch': args.batch, 'iters': args.iters,
                     'rounds': timing.rounds, 'workers': cfg.WORKERS, 'device': device.type, 'amp': amp,
                     'data': data_desc, 'results': results})
    return 0


# --- data: one loader worker vs the JPEG decode -----------------------------------------------------------
def write_photos(root: str, n: int, size: tuple[int, int], noise: float = 10.0, seed: int = 0) -> None:
    """A COCO-layout val2017 split of n synthetic photos with people; per-pixel noise makes the JPEG
    files about as large as COCO photos."""
    import cv2

    from lib.dataset.synthetic import SyntheticConfig, _categories, render_image
    rng = np.random.default_rng(seed)
    synth = SyntheticConfig(image_size=tuple(size), people_per_image=(1, 3))
    os.makedirs(os.path.join(root, 'images', 'val2017'), exist_ok=True)
    os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
    images, anns = [], []
    for i in range(n):
        img, people = render_image(rng, synth)
        img = np.clip(img + rng.normal(0, noise, img.shape), 0, 255).astype(np.uint8)
        name = f'{i + 1:012d}.jpg'
        cv2.imwrite(os.path.join(root, 'images', 'val2017', name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        images.append(dict(id=i + 1, file_name=name, width=size[0], height=size[1]))
        for p in people:
            k = p['keypoints']
            anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1, iscrowd=0, bbox=p['bbox'],
                             area=p['bbox'][2] * p['bbox'][3] * 0.55, num_keypoints=int((k[:, 2] > 0).sum()),
                             keypoints=k.reshape(-1).tolist()))
    with open(os.path.join(root, 'annotations', 'person_keypoints_val2017.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=_categories()), f)


def run_data(args: argparse.Namespace) -> int:
    """Per-sample cost of the training pipeline (dataset[i] in training mode: the config's augmentation,
    the affine crop, normalisation, heatmap encoding) and of its parts, beside cv2.imread alone, in this
    process with --threads OpenCV/torch threads (a DataLoader worker has one) and CPU time of this
    process, so that other processes on a shared machine disturb the comparison as little as possible.
    Each timed call is one pass over all samples. The aim is pipeline <= 1.5 x decode per sample."""
    import cv2

    from lib.dataset.joints_dataset import read_image, tune_malloc
    if not args.no_malloc_tuning:
        tune_malloc()  # what JointsDataset does in every DataLoader worker process
    cv_threads = cv2.getNumThreads()
    cv2.setNumThreads(args.threads)
    try:
        return _run_data(args, read_image)
    finally:
        cv2.setNumThreads(cv_threads)


def _run_data(args: argparse.Namespace, read_image) -> int:
    from lib.dataset import build_dataset
    from lib.dataset.transforms import get_affine_transform, normalize_image, warp_crop
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or tmp
        if not args.root:
            write_photos(root, args.images, tuple(args.size))
        cfg = load_cfg(args, ['DATASET.DATASET', 'coco', 'DATASET.METAINFO', 'coco', 'MODEL.NUM_JOINTS', 17,
                              'DATASET.ROOT', root, 'DATASET.TRAIN_SET', 'val2017'])
        ds = build_dataset(cfg, is_train=True)
        torch.manual_seed(0)
        image_dir = os.path.join(root, 'images', 'val2017')
        mean_kb = np.mean([os.path.getsize(os.path.join(image_dir, f)) for f in os.listdir(image_dir)]) / 1024
        n, size = len(ds), ds.image_size
        image_of = [r['image_file'] for r in ds.db]
        cache = {p: read_image(p) for p in set(image_of)}
        crops = [warp_crop(cache[image_of[i]], ds.db[i]['center'], ds.db[i]['scale'], 0.0, size) for i in range(n)]
        mats = [get_affine_transform(r['center'], r['scale'], 0, size) for r in ds.db]
        joints = [(r['joints'] @ m[:, :2].T + m[:, 2], r['visible']) for r, m in zip(ds.db, mats)]
        widths = [cache[p].shape[1] for p in image_of]
        aug_rng = np.random.default_rng(0)
        steps = {
            'decode': lambda i: read_image(image_of[i]),
            'pipeline': lambda i: ds[i],
            'augmentation draw': lambda i: ds.augment(ds.db[i], widths[i], aug_rng),
            'affine crop': lambda i: warp_crop(cache[image_of[i]], ds.db[i]['center'], ds.db[i]['scale'], 10.0,
                                               size, flip=True),
            'normalise': lambda i: normalize_image(crops[i]),
            'heatmap encode': lambda i: ds.codec.encode(*joints[i]),
        }
        timing = time_interleaved({name: (lambda fn=fn: [fn(i) for i in range(n)]) for name, fn in steps.items()},
                                  args.seconds, args.window, baseline='decode', min_rounds=args.rounds,
                                  clock=time.process_time)
    what = f'{root} val2017' if args.root else f'{args.images} generated {args.size[0]}x{args.size[1]}'
    width, height = cfg.MODEL.IMAGE_SIZE
    print(f'{what}: {len(cache)} JPEGs (mean {mean_kb:.0f} KB), {n} person samples, input {width}x{height}, '
          f'{args.threads} thread(s), malloc tuning {"off" if args.no_malloc_tuning else "on"}, CPU time, '
          f'{timing.rounds} rounds')
    labels = {'decode': 'JPEG decode alone (cv2.imread)', 'pipeline': 'training pipeline (dataset[i])'}
    rates = {name: n / s for name, s in timing.seconds.items()}
    cost = {name: 1 / timing.speedup[name] for name in steps}  # median window ratio of time, vs decode
    print_table(['step', 'samples/s per worker', 'ms / sample', 'cost / decode'],
                [[labels.get(name, f'  {name}'), f'{rates[name]:.0f}', f'{1e3 / rates[name]:.2f}', f'{cost[name]:.2f}']
                 for name in steps])
    print(f"pipeline / decode cost ratio: {cost['pipeline']:.2f}x (aim <= 1.5x)")
    emit_json(args, {'subcommand': 'data', 'images': len(cache), 'samples': n, 'mean_jpeg_kb': float(mean_kb),
                     'input_wh': [width, height], 'threads': args.threads, 'rounds': timing.rounds,
                     'samples_per_s': rates, 'cost_vs_decode': cost})
    return 0


# --- command line ---------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--cfg', default=DEFAULT_CFG, help='experiment YAML file (default: Lite-HRNet-18 256x192)')
    common.add_argument('--threads', type=int, default=None, help='torch (and onnxruntime) intra-op threads; '
                        'default 2, data: 1 (as in a loader worker); 0: torch\'s default')
    common.add_argument('--json', action='store_true', help='also print the numbers as one JSON line')

    def timing_args(p: argparse.ArgumentParser, seconds: float, window: bool = True) -> None:
        p.add_argument('--seconds', type=float, default=seconds, help='measuring time of each interleaved comparison')
        if window:
            p.add_argument('--window', type=float, default=0.25, help='seconds of consecutive calls per window '
                           '(short: the load changes within seconds, and only neighbouring windows see the same load)')
        p.add_argument('--rounds', type=int, default=3, help='at least this many windows per contender')

    def device_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'), help='auto: CUDA when torch sees '
                       'one (timings then wait for the GPU)')

    def subcommand(name: str, run: Callable, summary: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=summary, description=inspect.cleandoc(run.__doc__),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run)
        return p

    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)
    p = subcommand('model', run_model, 'eager PyTorch: ours, BN folded and the official forward order')
    timing_args(p, 10.0)
    p.add_argument('--batch', type=int, default=32, help='large eval batch and the training batch')
    p.add_argument('--skip-train', action='store_true')
    p.add_argument('--compile', action='store_true', help='add regional torch.compile contenders (compiled, '
                   'compiled-fused; compiled training step; TEST/TRAIN.COMPILE_MODE) and report their compile time')
    device_arg(p)

    p = subcommand('inference', run_inference, 'eager and onnxruntime per variant')
    timing_args(p, 10.0)
    p.add_argument('--variants', default='cfg', help="'cfg' (the config's MODEL.NAME), 'all', or names "
                   f"separated by commas from: {', '.join(VARIANTS)}")
    p.add_argument('--batch', type=int, default=32, help='batch size of the throughput runs')
    p.add_argument('--modes', default=','.join(DEFAULT_MODES), help=f'subset of {",".join(MODES)} (default: '
                   f'{",".join(DEFAULT_MODES)})')
    p.add_argument('--dynamic-batch', action='store_true', help='one dynamic-batch ONNX file per graph '
                   '(default: a fixed-batch file per batch size, which onnxruntime optimises further)')
    p.add_argument('--ap', action='store_true', help="also each mode's AP (PCKh) on the config's val set")
    p.add_argument('--calib-num', type=int, default=DEFAULT_NUM_CROPS,
                   help='int8 modes: calibration crops from the training set')

    p = subcommand('compare', run_compare, 'batch-1 latency of ONNX files side by side (--cfg is not used)')
    timing_args(p, 60.0)
    p.add_argument('files', nargs='+', help='ONNX files with one input (N, 3, H, W); the first is the baseline')

    p = subcommand('train', run_train, 'the real training loop on JPEG files, ours vs official')
    timing_args(p, 0.0, window=False)  # one pass per window
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--iters', type=int, default=10, help='training iterations per timed pass')
    p.add_argument('--workers', type=int, default=None, help='loader worker processes (default: WORKERS)')
    device_arg(p)
    p.add_argument('--synthetic', action='store_true', help="use the synthetic set even if the config's exists")
    p.add_argument('--synthetic-images', type=int, default=200, help='images of the synthetic set')
    p.add_argument('--compile', action='store_true', help='add ours compiled block by block (TRAIN.COMPILE_MODE); '
                   'its first pass, which compiles, is reported apart')

    p = subcommand('data', run_data, "one loader worker's throughput vs JPEG decode alone")
    timing_args(p, 10.0)
    p.add_argument('--images', type=int, default=48, help='JPEG files to generate')
    p.add_argument('--size', type=int, nargs=2, default=[640, 480], metavar=('W', 'H'), help='generated image size')
    p.add_argument('--root', default='', help='time an existing COCO-layout root (its val2017) instead, '
                   'e.g. tests/data/coco_tiny for real photos')
    p.add_argument('--no-malloc-tuning', action='store_true',
                   help="keep glibc's default malloc thresholds (a loader worker tunes them)")
    add_video_subcommand(subcommand, sys.modules[__name__])  # tools/benchmark_video.py
    args = parse_args_with_overrides(parser, argv)
    if args.threads is None:
        args.threads = 1 if args.command == 'data' else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return args.run(args)


if __name__ == '__main__':
    sys.exit(main())
