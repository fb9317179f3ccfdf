"""CPU speed of a Lite-HRNet variant: eval latency (batch 1, per image at batch 32) and training throughput.

    python tools/benchmark_model.py                       # Lite-HRNet-18, 256x192, 2 threads
    python tools/benchmark_model.py --cfg experiments/coco/lite_hrnet/lite_hrnet_30_256x192.yaml
    python tools/benchmark_model.py --skip-train --repeats 30

Each measurement is the median of `--repeats` timed runs after warm-up. Three implementations run on
the same weights, interleaved run by run so that a busy machine slows them alike:
  ours        build_model(cfg) as trained (eval or train mode)
  ours-fused  model.fold_bn(): BatchNorm folded into the convs (eval only)
  official    the same modules driven in the official forward order (see `official_forward`): branch-0
              fuse paths run twice, cat + channel_shuffle, adaptive pooling, F.interpolate resizing.
The script first checks that all three give the same heatmaps. Weights: Kaiming init with BN statistics
from 3 random batches (realistic magnitudes; the official tiny init makes float denormals). Training = forward + MSE loss +
backward + Adam step on random data. Numbers are printed as a table; `--json` adds one JSON line.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable

import _init_paths  # noqa: F401
import torch
import torch.nn.functional as F
from torch import nn

from lib.config import load_config
from lib.models import build_model
from lib.models.layers import ConvBNAct, channel_shuffle
from lib.models.litehrnet import (ConditionalChannelWeighting, CrossResolutionWeighting, LiteHRModule,
                                  PoseLiteHRNet, ShuffleUnit)

DEFAULT_CFG = 'experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml'


# ---------------------------------------------------------------------------------------------
# The official forward order (HRNet/Lite-HRNet @ 7b9049d), for comparison only; same parameters.
def _official_crw(m: CrossResolutionWeighting, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    size = xs[-1].shape[-2:]
    out = torch.cat([F.adaptive_avg_pool2d(s, size) for s in xs[:-1]] + [xs[-1]], dim=1)
    out = torch.split(m.conv2(m.conv1(out)), m.channels, dim=1)
    return [s * F.interpolate(a, size=s.shape[-2:], mode='nearest') for s, a in zip(xs, out)]


def _official_ccw(m: ConditionalChannelWeighting, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    halves = [s.chunk(2, dim=1) for s in xs]
    x2 = _official_crw(m.cross_resolution_weighting, [h[1] for h in halves])
    x2 = [sw(dw(s)) for s, dw, sw in zip(x2, m.depthwise_convs, m.spatial_weighting)]
    return [channel_shuffle(torch.cat([h[0], s], dim=1), 2) for h, s in zip(halves, x2)]


def _official_shuffle_unit(m: ShuffleUnit, x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return channel_shuffle(torch.cat((a, m.branch2(b)), dim=1), 2)


def _official_path(path: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Run a fuse path, with nn.Upsample's F.interpolate where ours has NearestUpsample."""
    for layer in path:
        if hasattr(layer, 'scale_factor'):
            x = F.interpolate(x, scale_factor=layer.scale_factor, mode='nearest')
        else:
            x = layer(x)
    return x


def _official_module(m: LiteHRModule, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    if m.module_type == 'LITE':
        for block in m.layers:
            xs = _official_ccw(block, xs)
    else:
        outs = []
        for branch, x in zip(m.layers, xs):
            for unit in branch:
                x = _official_shuffle_unit(unit, x)
            outs.append(x)
        xs = outs
    xs = list(xs)
    out_fuse = []
    for i in range(len(m.fuse_layers)):  # the official in-place loop, F_i0 evaluated twice
        y = xs[0] if i == 0 else _official_path(m.fuse_layers[i][0], xs[0])
        for j in range(len(xs)):
            if i == j:
                y += xs[j]
            else:
                y += _official_path(m.fuse_layers[i][j], xs[j])
        out_fuse.append(m.relu(y))
    return out_fuse


def official_forward(model: PoseLiteHRNet, x: torch.Tensor) -> torch.Tensor:
    """Heatmaps computed in the official order with `model`'s parameters (benchmark reference)."""
    bb = model.backbone
    stem = bb.stem
    x = stem.conv1(x)
    x1, x2 = x.chunk(2, dim=1)
    x2 = stem.linear_conv(stem.depthwise_conv(stem.expand_conv(x2)))
    ys = [channel_shuffle(torch.cat((stem.branch1(x1), x2), dim=1), 2)]
    for s in range(len(bb.spec.num_channels)):
        xs = []
        for i, layer in enumerate(getattr(bb, f'transition{s}')):
            src = ys[i] if i < len(ys) else ys[-1]
            xs.append(src if layer is None else layer(src))
        for module in getattr(bb, f'stage{s}'):
            xs = _official_module(module, xs)
        ys = xs
    return model.keypoint_head(bb.head_layer(ys))


# ---------------------------------------------------------------------------------------------
def _median_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time (ms) of each function; runs are interleaved across the functions."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _train_step_fn(model: nn.Module, forward: Callable, x: torch.Tensor, target: torch.Tensor):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(forward(x), target)
        loss.backward()
        optimizer.step()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cfg', default=DEFAULT_CFG)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=32, help='large eval batch and the training batch')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per batch-1 measurement')
    parser.add_argument('--big-repeats', type=int, default=3, help='timed runs at the large batch')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--skip-official', action='store_true')
    parser.add_argument('--json', action='store_true', help='also print the numbers as one JSON line')
    parser.add_argument('opts', nargs=argparse.REMAINDER, help='KEY VALUE config overrides')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # Kaiming init plus a few training-mode passes give activations of realistic size: the official
    # N(0, 0.001^2) init with fresh BN statistics shrinks them into float denormals, which are slow.
    cfg = load_config(args.cfg, ['MODEL.INIT', 'kaiming'] + list(args.opts))
    width, height = cfg.MODEL.IMAGE_SIZE
    model = build_model(cfg)
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, height, width))
    model.eval()
    fused = model.fold_bn()
    variants = {'ours': model, 'ours-fused': fused}
    if not args.skip_official:
        variants['official'] = lambda x: official_forward(model, x)

    x1 = torch.randn(1, 3, height, width)
    xb = torch.randn(args.batch, 3, height, width)
    with torch.inference_mode():
        ref = model(x1)
        for name, fn in variants.items():
            diff = (fn(x1) - ref).abs().max().item()
            print(f'check {name:<10} max |heatmap diff| vs ours: {diff:.2e}', flush=True)
        results = {}
        b1 = _median_ms({k: (lambda f=f: f(x1)) for k, f in variants.items()}, args.repeats, 2)
        print('eval batch 1 (ms):', {k: round(v, 1) for k, v in b1.items()}, flush=True)
        bb = _median_ms({k: (lambda f=f: f(xb)) for k, f in variants.items()}, args.big_repeats, 1)
        print(f'eval batch {args.batch} (ms per image):', {k: round(v / args.batch, 1) for k, v in bb.items()},
              flush=True)
    for name in variants:
        results[name] = {'eval_b1_ms': b1[name], f'eval_b{args.batch}_ms_per_image': bb[name] / args.batch}

    if not args.skip_train:
        model.train()
        target = torch.rand(args.batch, cfg.MODEL.NUM_JOINTS, height // 4, width // 4)
        steps = {'ours': _train_step_fn(model, model, xb, target)}
        if not args.skip_official:
            steps['official'] = _train_step_fn(model, lambda x: official_forward(model, x), xb, target)
        train = _median_ms(steps, args.big_repeats, 1)
        for name, ms in train.items():
            results[name]['train_samples_per_s'] = args.batch / (ms / 1000)

    print(f'\n{cfg.MODEL.NAME} {height}x{width}, {args.threads} threads, torch {torch.__version__}')
    cols = ['eval_b1_ms', f'eval_b{args.batch}_ms_per_image', 'train_samples_per_s']
    print('| implementation | ' + ' | '.join(cols) + ' |')
    print('|---|' + '---|' * len(cols))
    for name, row in results.items():
        print(f'| {name} | ' + ' | '.join(f'{row[c]:.1f}' if c in row else '-' for c in cols) + ' |')
    if 'official' in results:
        off = results['official']
        for name in ('ours', 'ours-fused'):
            speed = [f'{c}: {off[c] / results[name][c]:.2f}x' for c in cols[:2]]
            if 'train_samples_per_s' in results[name]:
                speed.append(f"train: {results[name]['train_samples_per_s'] / off['train_samples_per_s']:.2f}x")
            print(f'speed-up of {name} over official: ' + ', '.join(speed))
    if args.json:
        print(json.dumps(results))


if __name__ == '__main__':
    main()
