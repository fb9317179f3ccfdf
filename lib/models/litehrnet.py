"""Lite-HRNet (Yu et al., CVPR 2021) for top-down pose estimation, without mmcv.

Written from the architecture notes in docs/architecture.md, which describe the official code
(`models/backbones/litehrnet.py` of the Lite-HRNet repository, with mmpose 0.x's TopDownSimpleHead).
Module and parameter names are the official ones, so official mmpose checkpoints load unchanged.
Numbers are the official ones too, including the unusual fusion rule (see `LiteHRModule.fuse`).

Shape legend: B batch, C channels, H x W input size; branch k runs at stride 4 * 2^k.
The architecture of every variant is one row of `VARIANTS`; YAML files only name the row.
The few operations whose best written form depends on where the model runs (eager training, ONNX
export, or the official code's forward order as a speed baseline) come from a `Kernels` set chosen
when the model is built (`lib.models.layers.KERNELS`); the modules hold it, nothing is patched.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import (KERNELS, ConvBNAct, Kernels, NearestUpsample, SharedReLU, TwiceUpdatedBatchNorm2d, depthwise,
                     dw_pw_sequential, get_kernels)

__all__ = ['LiteHRNetSpec', 'VARIANTS', 'KERNELS', 'LiteHRNet', 'TopDownSimpleHead', 'PoseLiteHRNet', 'fold_conv_bn',
           'branch_source']


# ---------------------------------------------------------------------------------------------
# The variant table: the one place the architecture of each variant is written down.
@dataclass(frozen=True)
class LiteHRNetSpec:
    """One Lite-HRNet variant (official `extra` dict). Stage s has len(num_channels[s]) branches."""
    module_type: str  # 'LITE' (conditional channel weighting) or 'NAIVE' (ShuffleNetV2 units)
    num_modules: tuple[int, ...]
    num_channels: tuple[tuple[int, ...], ...]
    num_blocks: tuple[int, ...] = (2, 2, 2)
    reduce_ratios: tuple[int, ...] = (8, 8, 8)  # cross-resolution weighting; unused by NAIVE
    stem_channels: int = 32
    stem_out_channels: int = 32
    stem_expand_ratio: float = 1.0

    @property
    def head_channels(self) -> int:
        """Channels of the backbone output = the last stage's highest-resolution branch."""
        return self.num_channels[-1][0]


_CH_18 = ((40, 80), (40, 80, 160), (40, 80, 160, 320))
VARIANTS: dict[str, LiteHRNetSpec] = {
    'litehrnet_18': LiteHRNetSpec('LITE', (2, 4, 2), _CH_18),
    'litehrnet_30': LiteHRNetSpec('LITE', (3, 8, 3), _CH_18),
    # The released Naive-18 config declares a 40-channel keypoint head on this 30-channel output and
    # cannot run; the head here takes the 30 channels the backbone produces (head_channels).
    'naive_litehrnet_18': LiteHRNetSpec('NAIVE', (2, 4, 2), ((30, 60), (30, 60, 120), (30, 60, 120, 240))),
    'wider_naive_litehrnet_18': LiteHRNetSpec('NAIVE', (2, 4, 2), _CH_18),
}


# ---------------------------------------------------------------------------------------------
# Gradient checkpointing that leaves BatchNorm statistics alone when the block is recomputed.
@contextmanager
def _frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """Recompute a checkpointed block without a second running-statistics update.

    BN still normalises with batch statistics and saves the same tensors for backward (the
    checkpoint checks that), but momentum 0 leaves the running mean/var as they are (r*1 + b*0)
    and num_batches_tracked is put back afterwards.
    """
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def run_maybe_checkpointed(module: nn.Module, fn: Callable, *args: torch.Tensor, with_cp: bool):
    """fn(*args), through non-reentrant activation checkpointing when `with_cp` and grads are on."""
    if with_cp and torch.is_grad_enabled() and module.training:
        return checkpoint(fn, *args, use_reentrant=False,
                          context_fn=lambda: (nullcontext(), _frozen_bn_stats(module)))
    return fn(*args)


# ---------------------------------------------------------------------------------------------
# Blocks
class Stem(nn.Module):
    """3 -> stem_out channels at stride 4: strided conv, then a ShuffleNetV2-style downsampling unit."""

    def __init__(self, in_channels: int, stem_channels: int, out_channels: int, expand_ratio: float,
                 kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        self.conv1 = ConvBNAct(in_channels, stem_channels, 3, stride=2)
        mid = int(round(stem_channels * expand_ratio))
        branch = stem_channels // 2
        inc = branch if stem_channels == out_channels else out_channels - branch
        self.branch1 = nn.Sequential(depthwise(branch, stride=2), ConvBNAct(branch, inc, 1))
        self.expand_conv = ConvBNAct(branch, mid, 1)
        self.depthwise_conv = depthwise(mid, stride=2)
        self.linear_conv = ConvBNAct(mid, branch if stem_channels == out_channels else stem_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x1, x2 = x.chunk(2, dim=1)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return self.kernels.concat_shuffle(self.branch1(x1), x2)


class SpatialWeighting(nn.Module):
    """Squeeze-excitation on one branch: x * sigmoid(pw(relu(pw(mean_hw(x)))))."""

    def __init__(self, channels: int, ratio: int = 4) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)  # output 1x1: exports as GlobalAveragePool
        self.conv1 = ConvBNAct(channels, int(channels / ratio), 1, norm=False, act='relu')
        self.conv2 = ConvBNAct(int(channels / ratio), channels, 1, norm=False, act='sigmoid')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))


class CrossResolutionWeighting(nn.Module):
    """Channel weights computed from all branches pooled to the lowest resolution (list in, list out)."""

    def __init__(self, channels: Sequence[int], ratio: int, kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        self.channels = list(channels)
        total = sum(channels)
        self.conv1 = ConvBNAct(total, int(total / ratio), 1, act='relu')
        self.conv2 = ConvBNAct(int(total / ratio), total, 1, act='sigmoid')

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        size = tuple(xs[-1].shape[-2:])
        pooled = [self.kernels.pool_to(x, size) for x in xs[:-1]] + [xs[-1]]
        weights = self.conv2(self.conv1(torch.cat(pooled, dim=1))).split(self.channels, dim=1)
        return [self.kernels.multiply_nearest(x, w) for x, w in zip(xs, weights)]


class ConditionalChannelWeighting(nn.Module):
    """LITE block: half of each branch is reweighted across resolutions and spatially, then shuffled back."""

    def __init__(self, channels: Sequence[int], reduce_ratio: int, kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        halves = [c // 2 for c in channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(halves, reduce_ratio, self.kernels)
        self.depthwise_convs = nn.ModuleList([depthwise(c) for c in halves])
        self.spatial_weighting = nn.ModuleList([SpatialWeighting(c) for c in halves])

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        keep, proc = zip(*(x.chunk(2, dim=1) for x in xs))
        proc = self.cross_resolution_weighting(list(proc))
        proc = [sw(dw(p)) for p, dw, sw in zip(proc, self.depthwise_convs, self.spatial_weighting)]
        return [self.kernels.concat_shuffle(k, p) for k, p in zip(keep, proc)]


class ShuffleUnit(nn.Module):
    """NAIVE block: ShuffleNetV2 stride-1 unit (pw-dw-pw on the second half, then shuffle)."""

    def __init__(self, channels: int, kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        half = channels // 2
        self.branch2 = nn.Sequential(ConvBNAct(half, half, 1), depthwise(half), ConvBNAct(half, half, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return self.kernels.concat_shuffle(a, self.branch2(b))


def _fuse_path(channels: Sequence[int], i: int, j: int, kernels: Kernels) -> nn.Module | None:
    """F_ij: branch j -> resolution and channels of branch i (None when i == j)."""
    if j > i:
        return nn.Sequential(nn.Conv2d(channels[j], channels[i], 1, bias=False), nn.BatchNorm2d(channels[i]),
                             NearestUpsample(2 ** (j - i), kernels))
    if j == i:
        return None
    # The official forward runs F_i0 twice per call (see LiteHRModule.fuse_branches); ours runs it once and
    # lets its BN layers apply the official two running-statistics updates per training step.
    runs = 2 if kernels.official_fusion else 1
    bn_cls = (lambda n: TwiceUpdatedBatchNorm2d(n, runs)) if j == 0 else nn.BatchNorm2d
    steps = [dw_pw_sequential(channels[j], channels[j] if k < i - j - 1 else channels[i], 2,
                              relu=k < i - j - 1, bn_cls=bn_cls) for k in range(i - j)]
    return nn.Sequential(*steps)


class LiteHRModule(nn.Module):
    """Blocks on every branch, then multi-resolution fusion; the channel list is unchanged."""

    def __init__(self, module_type: str, channels: Sequence[int], num_blocks: int, reduce_ratio: int,
                 with_cp: bool = False, kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        self.module_type = module_type
        self.with_cp = with_cp
        n = len(channels)
        if module_type == 'LITE':
            self.layers = nn.Sequential(*[ConditionalChannelWeighting(channels, reduce_ratio, self.kernels)
                                          for _ in range(num_blocks)])
        elif module_type == 'NAIVE':
            self.layers = nn.ModuleList([nn.Sequential(*[ShuffleUnit(c, self.kernels) for _ in range(num_blocks)])
                                         for c in channels])
        else:
            raise ValueError(f"module_type must be 'LITE' or 'NAIVE', got {module_type!r}")
        self.fuse_layers = nn.ModuleList([nn.ModuleList([_fuse_path(channels, i, j, self.kernels) for j in range(n)])
                                          for i in range(n)])
        self.relu = SharedReLU()  # one module shared by all outputs, as in the official code

    def _blocks(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.module_type == 'LITE':
            for block in self.layers:
                xs = run_maybe_checkpointed(block, lambda *t, blk=block: blk(list(t)), *xs, with_cp=self.with_cp)
            return list(xs)
        out = []
        for branch, x in zip(self.layers, xs):
            for unit in branch:
                x = run_maybe_checkpointed(unit, unit, x, with_cp=self.with_cp)
            out.append(x)
        return out

    def fuse_branches(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Official Lite-HRNet fusion, reproduced exactly because the released weights depend on it.

        The official loop starts output 0's accumulator as the branch-0 tensor itself and adds in place,
        so (a) branch 0 is added to itself and (b) the branch-0 tensor is overwritten with that pre-ReLU
        sum s_0 before the other outputs read it; for i >= 1 the accumulator starts as F_i0(branch 0)
        and the loop adds F_i0(branch 0) again. Hence
            s_0 = 2 x_0 + sum_{j>=1} F_0j(x_j),
            s_i = 2 F_i0(s_0) + x_i + sum_{j>=1, j!=i} F_ij(x_j),     out_i = ReLU(s_i).
        We compute F_i0(s_0) once and double it (y + y == 2 y exactly), adding the terms in the official
        order (j ascending) so that the float results match. torch.add(a, b, alpha=2) = a + 2b is the
        official 2b + a (the doubling is exact and addition commutes); later terms are added in place
        to fresh tensors, which autograd allows since no backward formula needs them.
        """
        n = len(xs)
        if n == 1:  # the official module skips fusion for a single branch
            return xs
        if self.kernels.official_fusion:
            return self._official_fuse_branches(xs)
        s0 = torch.add(self.fuse_layers[0][1](xs[1]), xs[0], alpha=2)
        for j in range(2, n):
            s0 += self.fuse_layers[0][j](xs[j])
        outs = [self.relu(s0)]  # not in place: the paths F_i0 below read s0
        for i in range(1, n):
            terms = [xs[j] if j == i else self.fuse_layers[i][j](xs[j]) for j in range(1, n)]
            y = torch.add(terms[0], self.fuse_layers[i][0](s0), alpha=2)
            for term in terms[1:]:
                y += term
            outs.append(self.relu(y, inplace=True))
        return outs

    def _official_fuse_branches(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The official loop as written: the accumulator of output 0 is the branch-0 tensor itself,
        sums are in place, and F_i0 runs twice (the speed baseline of the 'official' kernels)."""
        xs = list(xs)
        outs = []
        for i in range(len(xs)):
            y = xs[0] if i == 0 else self.fuse_layers[i][0](xs[0])
            for j in range(len(xs)):
                y += xs[j] if i == j else self.fuse_layers[i][j](xs[j])
            outs.append(self.relu(y))
        return outs

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.fuse_branches(self._blocks(xs))


class IterativeHead(nn.Module):
    """Lowest -> highest resolution: add the bilinearly upsampled previous result, then dw-pw project."""

    def __init__(self, channels: Sequence[int], kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        rev = list(channels)[::-1]  # e.g. 320, 160, 80, 40 -> outputs 160, 80, 40, 40
        self.projects = nn.ModuleList([_DepthwiseSeparable(cin, cout) for cin, cout in zip(rev, rev[1:] + rev[-1:])])

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """xs: branches high -> low resolution; returns the projected highest-resolution map (B, C0, H/4, W/4)."""
        last = None
        for k, x in enumerate(reversed(xs)):
            if last is not None:
                x = x + self.kernels.upsample_bilinear_to(last, x)
            last = self.projects[k](x)
        return last


class _DepthwiseSeparable(nn.Module):
    """dw3x3 + BN (no activation), then pw + BN + ReLU (official names depthwise_conv/pointwise_conv)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise_conv = depthwise(in_channels)
        self.pointwise_conv = ConvBNAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


# ---------------------------------------------------------------------------------------------
# Backbone, head, full model
class LiteHRNet(nn.Module):
    """Backbone: stem, (transition, stage) x 3, IterativeHead. (B, 3, H, W) -> (B, C0, H/4, W/4)."""

    def __init__(self, spec: LiteHRNetSpec, in_channels: int = 3, with_cp: bool = False,
                 kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.spec = spec
        kernels = get_kernels(kernels)
        self.stem = Stem(in_channels, spec.stem_channels, spec.stem_out_channels, spec.stem_expand_ratio, kernels)
        prev = [spec.stem_out_channels]
        for s, channels in enumerate(spec.num_channels):
            self.add_module(f'transition{s}', self._transition(prev, channels))
            modules = [LiteHRModule(spec.module_type, channels, spec.num_blocks[s], spec.reduce_ratios[s], with_cp,
                                    kernels)
                       for _ in range(spec.num_modules[s])]
            self.add_module(f'stage{s}', nn.Sequential(*modules))
            prev = list(channels)
        self.head_layer = IterativeHead(prev, kernels)

    @staticmethod
    def _transition(prev: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
        layers: list[nn.Module | None] = []
        for i, c in enumerate(cur):
            if i < len(prev):
                layers.append(None if c == prev[i] else dw_pw_sequential(prev[i], c, 1, relu=True))
            else:  # new branch from the lowest-resolution output, one stride-2 step per extra level
                steps = i + 1 - len(prev)
                layers.append(nn.Sequential(*[dw_pw_sequential(prev[-1], c if k == steps - 1 else prev[-1], 2,
                                                               relu=True) for k in range(steps)]))
        return nn.ModuleList(layers)

    def stages(self) -> Iterator[tuple[nn.ModuleList, nn.Sequential]]:
        """(transition, stage) pairs in forward order; a transition holds one layer (or None) per branch."""
        for s in range(len(self.spec.num_channels)):
            yield getattr(self, f'transition{s}'), getattr(self, f'stage{s}')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.stem(x)]
        for transition, stage in self.stages():
            xs = []
            for i, layer in enumerate(transition):
                src = ys[branch_source(i, len(ys))]
                xs.append(src if layer is None else layer(src))
            ys = stage(xs)
        return self.head_layer(ys)


def branch_source(branch: int, num_inputs: int) -> int:
    """Which output of the previous stage feeds `branch` of the next: the same branch, and for a new
    (lower-resolution) branch the lowest one."""
    return min(branch, num_inputs - 1)


class TopDownSimpleHead(nn.Module):
    """mmpose 0.x TopDownSimpleHead with no deconvolutions and a 1x1 final conv (with bias)."""

    def __init__(self, in_channels: int, num_joints: int) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)


class PoseLiteHRNet(nn.Module):
    """Backbone + keypoint head: normalised images (B, 3, H, W) -> heatmaps (B, K, H/4, W/4)."""

    def __init__(self, spec: LiteHRNetSpec, num_joints: int, with_cp: bool = False, norm_eval: bool = False,
                 init: str = 'official', kernels: Kernels | str = 'train') -> None:
        super().__init__()
        self.kernels = get_kernels(kernels)
        self.backbone = LiteHRNet(spec, with_cp=with_cp, kernels=self.kernels)
        self.keypoint_head = TopDownSimpleHead(spec.head_channels, num_joints)
        self.norm_eval = norm_eval
        self.bn_folded = False  # set on the copies made by fold_bn(), which have no BatchNorm left
        self._build_args = dict(spec=spec, num_joints=num_joints, with_cp=with_cp, norm_eval=norm_eval, init=init)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.keypoint_head(self.backbone(x))

    def train(self, mode: bool = True) -> 'PoseLiteHRNet':
        """As nn.Module.train, but with NORM_EVAL every BatchNorm keeps using its running statistics."""
        if mode and self.bn_folded:
            raise RuntimeError('this model came from fold_bn(): its BatchNorm is folded away, it is for inference only')
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def with_kernels(self, kernels: Kernels | str) -> 'PoseLiteHRNet':
        """The same network and weights built with another kernel set (a new model; this one is unchanged):
        'train', 'compiled' (torch.compile), 'export' (ONNX) or 'official' (the official code's forward order,
        a speed baseline)."""
        if self.bn_folded:
            raise RuntimeError('choose the kernels before fold_bn(): model.with_kernels(k).fold_bn()')
        weights = next(self.parameters())
        with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the caller's RNG alone
            model = PoseLiteHRNet(**self._build_args, kernels=kernels)
        model = model.to(weights.device, weights.dtype)
        model.load_state_dict(self.state_dict())
        return model.train(self.training)

    @torch.no_grad()
    def fold_bn(self) -> 'PoseLiteHRNet':
        """An eval-only copy with every BatchNorm folded into the conv before it (same outputs)."""
        model = copy.deepcopy(self).eval()
        fold_conv_bn(model)
        model.bn_folded = True
        return model


# ---------------------------------------------------------------------------------------------
# Initialisation and BN folding
def init_weights(model: nn.Module, scheme: str) -> None:
    """'official': every conv N(0, 0.001^2), bias 0, BN 1/0 (as released; §4 of docs/architecture.md).

    'kaiming': convs Kaiming-normal (fan_out, ReLU gain, as torchvision's ShuffleNet/MobileNet), BN 1/0,
    the final 1x1 head N(0, 0.01^2). Larger backbone weights and a 10x larger head give early gradients
    well above Adam's eps, which trains faster from scratch in short runs.
    """
    if scheme not in ('official', 'kaiming'):
        raise ValueError(f"MODEL.INIT must be 'official' or 'kaiming', got {scheme!r}")
    head = getattr(model, 'keypoint_head', None)
    head_conv = head.final_layer if head is not None else None
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == 'official':
                nn.init.normal_(m.weight, std=0.001)
            elif m is head_conv:
                nn.init.normal_(m.weight, std=0.01)
            else:
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv followed by eval-mode bn as one conv with bias: W' = W * g/sigma, b' = (b - mu) * g/sigma + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True).to(conv.weight)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_conv_bn(module: nn.Module) -> None:
    """In place: wherever a Conv2d is directly followed by a BatchNorm2d among a module's children
    (ConvBNAct's conv/bn, or the numbered Sequentials), fold the BN into the conv and drop it."""
    for parent in list(module.modules()):
        names = [n for n, c in parent.named_children() if c is not None]
        for a, b in zip(names, names[1:]):
            conv, bn = getattr(parent, a), getattr(parent, b)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(parent, a, _folded(conv, bn))
                # Sequentials call every child; ConvBNAct skips a None bn.
                setattr(parent, b, nn.Identity() if isinstance(parent, nn.Sequential) else None)
