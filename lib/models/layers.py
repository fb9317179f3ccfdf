"""Small building blocks shared by the Lite-HRNet modules (replacing what the official code takes from mmcv).

`ConvBNAct` mirrors mmcv's `ConvModule` child names (`conv`, `bn`, `activate`) so that parameter names,
and therefore official checkpoints, line up without renaming. Shape legend: B batch, C channels,
H x W spatial size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['KERNELS', 'ConvBNAct', 'Kernels', 'NearestUpsample', 'SharedReLU', 'SyncBatchNorm2d',
           'TwiceUpdatedBatchNorm2d', 'TwiceUpdatedSyncBatchNorm2d', 'convert_sync_batchnorm',
           'channel_shuffle', 'concat_shuffle', 'depthwise', 'dw_pw_sequential', 'get_kernels', 'multiply_nearest',
           'pool_to', 'upsample_nearest']

# In-place ReLU as in mmcv: it acts on the fresh conv/BN output, so nothing else sees the change.
_ACTIVATIONS = {'relu': lambda: nn.ReLU(inplace=True), 'sigmoid': nn.Sigmoid, None: lambda: None}


class ConvBNAct(nn.Module):
    """Conv2d -> optional BatchNorm2d -> optional activation; the conv has a bias only without BN."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, norm: bool = True, act: Optional[str] = 'relu') -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2,
                              groups=groups, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None
        if act not in _ACTIVATIONS:
            raise ValueError(f"act must be one of {list(_ACTIVATIONS)}, got {act!r}")
        self.activate = _ACTIVATIONS[act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


def depthwise(channels: int, stride: int = 1, act: Optional[str] = None) -> ConvBNAct:
    """3x3 depthwise conv + BN (no activation unless asked)."""
    return ConvBNAct(channels, channels, 3, stride, groups=channels, act=act)


def dw_pw_sequential(in_channels: int, out_channels: int, stride: int, relu: bool,
                     bn_cls: Callable[[int], nn.BatchNorm2d] = nn.BatchNorm2d) -> nn.Sequential:
    """Flat [dw3x3, BN, pw, BN(, ReLU)] as used by the official transitions and fuse paths.

    The numeric child names (0..4) are the official checkpoint's. `bn_cls` lets the fusion use
    `TwiceUpdatedBatchNorm2d` for the branch-0 paths that the official code runs twice.
    """
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, in_channels, 3, stride, 1, groups=in_channels, bias=False),
        bn_cls(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False),
        bn_cls(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SharedReLU(nn.ReLU):
    """nn.ReLU whose caller may ask for in-place operation per call (the fusion's one shared ReLU).

    A module (not F.relu) so that complexity hooks see it exactly as the official shared nn.ReLU.
    """

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return F.relu(x, inplace=inplace)


class TwiceUpdatedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose running statistics get two updates per training step, as in the official code.

    The official fusion evaluates each branch-0 -> branch-i path twice on the same input (§2.6 of
    docs/architecture.md), so its BatchNorm layers get two identical momentum updates per iteration:
    r <- (1-m)^2 r + (1 - (1-m)^2) b. Our fusion evaluates the path once (runs_per_step=1) and
    reproduces that update with the equivalent single momentum 1 - (1-m)^2, counting two batches.
    The official forward order (runs_per_step=2) runs it twice, each run a plain update. Outputs are
    unchanged either way (training normalises with batch statistics; eval uses the running ones).
    """

    def __init__(self, num_features: int, runs_per_step: int = 1) -> None:
        super().__init__(num_features)
        if runs_per_step not in (1, 2):
            raise ValueError(f'runs_per_step must be 1 or 2, got {runs_per_step}')
        self.runs_per_step = runs_per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runs_per_step == 2 or not (self.training and self.track_running_stats):
            return super().forward(x)
        if self.momentum is None:
            raise ValueError('TwiceUpdatedBatchNorm2d needs a fixed momentum (official: 0.1)')
        self.num_batches_tracked.add_(2)
        momentum = 1.0 - (1.0 - self.momentum) ** 2
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, momentum,
                            self.eps)


class SyncBatchNorm2d(nn.SyncBatchNorm, nn.BatchNorm2d):
    """torch's SyncBatchNorm (batch statistics over every DDP process; CUDA only) that is also a
    BatchNorm2d, so that NORM_EVAL, fold_bn and the checkpointing guard treat it as one. Same
    parameter and buffer names: checkpoints stay official-format."""


class TwiceUpdatedSyncBatchNorm2d(SyncBatchNorm2d):
    """TwiceUpdatedBatchNorm2d's double running-statistics update (1 - (1-m)^2, two batches counted),
    with the statistics synchronised over the processes."""

    def __init__(self, num_features: int, runs_per_step: int = 1) -> None:
        super().__init__(num_features)
        self.runs_per_step = runs_per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.runs_per_step == 2 or not (self.training and self.track_running_stats):
            return super().forward(x)
        momentum = self.momentum
        self.momentum = 1.0 - (1.0 - momentum) ** 2
        try:
            out = super().forward(x)  # one update with the doubled momentum, one batch counted...
        finally:
            self.momentum = momentum
        self.num_batches_tracked.add_(1)  # ...and the second batch the official code counts
        return out


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Every BatchNorm2d of `module` (in place) as a SyncBatchNorm2d, TwiceUpdatedBatchNorm2d as
    TwiceUpdatedSyncBatchNorm2d, keeping weights, statistics and train/eval mode. Unlike
    nn.SyncBatchNorm.convert_sync_batchnorm, it keeps the official double update of the fusion's
    branch-0 paths. Returns `module` (a BatchNorm2d passed alone comes back converted)."""
    if isinstance(module, SyncBatchNorm2d) or not isinstance(module, nn.BatchNorm2d):
        for name, child in module.named_children():
            setattr(module, name, convert_sync_batchnorm(child, process_group))
        return module
    if isinstance(module, TwiceUpdatedBatchNorm2d):
        sync = TwiceUpdatedSyncBatchNorm2d(module.num_features, module.runs_per_step)
        sync.eps, sync.momentum = module.eps, module.momentum
    else:
        sync = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
    sync.process_group = process_group
    weights = next(iter(module.state_dict().values()), None)
    if weights is not None:
        sync.to(weights.device)
    sync.load_state_dict(module.state_dict())
    return sync.train(module.training)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (B, C, H, W), channels [g0 | g1 | ...] -> g0[0], g1[0], ..., g0[1], ..."""
    b, c, h, w = x.shape
    if c % groups:
        raise ValueError(f'channel_shuffle: {c} channels do not split into {groups} groups')
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """`channel_shuffle(torch.cat([a, b], 1), 2)` in one copy: output channels a0, b0, a1, b1, ...

    a, b: (B, C/2, H, W) -> (B, C, H, W). Stacking on a new axis after the channels interleaves the
    two halves directly, skipping the intermediate concatenation.
    """
    return torch.stack((a, b), dim=2).flatten(1, 2)


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.adaptive_avg_pool2d(x, size)`; as block sums when the sizes divide (equal up to float rounding).

    When H, W are multiples of `size` (always, for inputs that are multiples of 32) each output is the
    mean of a kh x kw block. Summing the kh rows first keeps a long contiguous inner loop, which is
    faster than avg_pool2d on CPU (`tools/benchmark.py model` compares), and exports to ONNX without data-dependent pooling.
    """
    b, c, h, w = x.shape
    hs, ws = size
    if (h, w) == (hs, ws):
        return x
    if h % hs or w % ws:
        return F.adaptive_avg_pool2d(x, size)
    kh, kw = h // hs, w // ws
    rows = x.reshape(b, c, hs, kh, w).sum(3)  # (B, C, hs, W)
    return rows.view(b, c, hs, ws, kw).sum(4) / (kh * kw)


def _repeat_last(x: torch.Tensor, k: int) -> torch.Tensor:
    """(..., w) -> (..., w*k), each element repeated k times (nearest resize along the last axis).

    A gather with index i // k: faster on CPU than expanding a trailing axis of size k.
    """
    if k == 1:
        return x
    index = torch.arange(x.shape[-1] * k, device=x.device) // k
    return x.index_select(-1, index)


def upsample_nearest(x: torch.Tensor, kh: int, kw: int, gather: bool = True) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=(kh, kw), mode='nearest')` for integer factors, same numbers.

    gather=True (eager): a gather along W plus a broadcast over the kh rows, because the ATen nearest
    kernel is several times slower on CPU (`tools/benchmark.py model` compares the forms side by side); it
    exports to ONNX as Gather/Expand/Reshape. gather=False (the 'compiled' kernels): each pixel broadcast
    over its kh x kw block, so the gradient is a plain block sum instead of the gather's index_add.
    """
    b, c, h, w = x.shape
    if not gather:
        return x[:, :, :, None, :, None].expand(b, c, h, kh, w, kw).reshape(b, c, h * kh, w * kw)
    rows = _repeat_last(x, kw)  # (B, C, h, w*kw)
    return rows.unsqueeze(3).expand(b, c, h, kh, w * kw).reshape(b, c, h * kh, w * kw)


class NearestUpsample(nn.Module):
    """nn.Upsample(scale_factor=s, mode='nearest') for an integer s, written by the model's kernels."""

    def __init__(self, scale_factor: int, kernels: 'Kernels | str' = 'train') -> None:
        super().__init__()
        self.scale_factor = int(scale_factor)
        self.kernels = get_kernels(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernels.upsample_nearest(x, self.scale_factor)

    def extra_repr(self) -> str:
        return f'scale_factor={self.scale_factor}, mode=nearest, kernels={self.kernels.name}'


def multiply_nearest(x: torch.Tensor, weights: torch.Tensor, gather: bool = True) -> torch.Tensor:
    """`x * F.interpolate(weights, size=x.shape[-2:], mode='nearest')` without building the resized map.

    x: (B, C, H, W), weights: (B, C, h, w). When H, W are integer multiples of h, w, nearest resizing
    repeats each weight over a kh x kw block. gather=True (eager): we repeat along W on the small map only,
    then let broadcasting repeat over the kh rows (keeping a long contiguous inner loop). gather=False
    (the 'compiled' kernels): the weights are broadcast over x's blocks in both directions.
    """
    b, c, h, w = x.shape
    hs, ws = weights.shape[-2:]
    if (h, w) == (hs, ws):
        return x * weights
    if h % hs or w % ws:
        return x * F.interpolate(weights, size=(h, w), mode='nearest')
    if not gather:
        blocks = x.reshape(b, c, hs, h // hs, ws, w // ws)
        return (blocks * weights[:, :, :, None, :, None]).reshape(b, c, h, w)
    rows = _repeat_last(weights, w // ws).unsqueeze(3)  # (B, C, hs, 1, W)
    return (x.reshape(b, c, hs, h // hs, w) * rows).view(b, c, h, w)


# ---------------------------------------------------------------------------------------------
# Kernel sets: how the model writes the few operations whose best form depends on where it runs.
def _upsample_gather(x: torch.Tensor, k: int) -> torch.Tensor:
    return upsample_nearest(x, k, k)


def _upsample_interpolate(x: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest upsampling as one ATen / ONNX Resize with a constant integer scale (nn.Upsample)."""
    return F.interpolate(x, scale_factor=float(k), mode='nearest')


def _upsample_broadcast(x: torch.Tensor, k: int) -> torch.Tensor:
    return upsample_nearest(x, k, k, gather=False)


def _multiply_nearest_broadcast(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return multiply_nearest(x, weights, gather=False)


def _multiply_resized_constant(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x * nearest-resized weights as Resize + Mul, the size a constant of the traced graph."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if size == (int(weights.shape[-2]), int(weights.shape[-1])):
        return x * weights
    return x * F.interpolate(weights, size=size, mode='nearest')


def _pool_constant_kernel(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average pooling to `size` as one AveragePool with a constant kernel (when the sizes divide)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    hs, ws = int(size[0]), int(size[1])
    if (h, w) == (hs, ws):
        return x
    if h % hs or w % ws:
        return F.adaptive_avg_pool2d(x, (hs, ws))
    kernel = (h // hs, w // ws)
    return F.avg_pool2d(x, kernel, kernel)


def _bilinear_to_size(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """x resized to like's spatial size (bilinear, corners aligned), the size read from `like`."""
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=True)


def _bilinear_constant_scale(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """As _bilinear_to_size, but by a constant scale: with a symbolic batch a size would be computed
    from Shape at run time, which keeps onnxruntime's Resize out of its blocked layout. Same numbers:
    with align_corners the sampling step is (in - 1) / (out - 1) either way."""
    scale = (float(int(like.shape[-2]) // int(x.shape[-2])), float(int(like.shape[-1]) // int(x.shape[-1])))
    return F.interpolate(x, scale_factor=scale, mode='bilinear', align_corners=True)


def _official_multiply_nearest(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return x * F.interpolate(weights, size=x.shape[-2:], mode='nearest')


def _official_concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return channel_shuffle(torch.cat((a, b), dim=1), 2)


@dataclass(frozen=True)
class Kernels:
    """How a model writes the operations whose best form depends on where it runs; chosen when the
    model is built (`build_model(cfg, kernels=...)`) and held by the modules that use it.

    Every set computes the same function (block pooling equals adaptive pooling up to float rounding).
    """

    name: str
    upsample_nearest: Callable[[torch.Tensor, int], torch.Tensor]  # (x, integer factor)
    multiply_nearest: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # x * weights resized to x
    pool_to: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]  # average pooling to a size
    concat_shuffle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # cat([a, b]) + 2-group shuffle
    upsample_bilinear_to: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, like): x at like's size
    official_fusion: bool  # the official fusion loop: in-place sums, each branch-0 path run twice


KERNELS: dict[str, Kernels] = {
    # Eager PyTorch: gathers and broadcasting instead of ATen's slow nearest resize, block sums instead
    # of adaptive pooling, one stack for concat + shuffle, each branch-0 fuse path run once.
    'train': Kernels('train', _upsample_gather, multiply_nearest, pool_to, concat_shuffle, _bilinear_to_size,
                     official_fusion=False),
    # torch.compile (lib/core/compile.py switches a 'train' model to these): 'train' without gathers.
    # Inductor fuses either form into the same loops, but in torch 2.13 its CPU code for the gathers'
    # gradient (an index_add) computes wrong indices for some shapes and writes outside its buffer:
    # compiled training of Lite-HRNet-18 at 256x192, batch 32 crashed with a segfault in stage 4.
    'compiled': Kernels('compiled', _upsample_broadcast, _multiply_nearest_broadcast, pool_to, concat_shuffle,
                        _bilinear_to_size, official_fusion=False),
    # ONNX export: one standard operator each with constant sizes (the eager forms above trace into long
    # Shape/Gather/Expand/ReduceSum chains that onnxruntime runs slowly).
    'export': Kernels('export', _upsample_interpolate, _multiply_resized_constant, _pool_constant_kernel,
                      concat_shuffle, _bilinear_constant_scale, official_fusion=False),
    # The official code's idioms and forward order, the speed baseline: sizes read from tensors at run
    # time, adaptive pooling, cat + view/transpose/view, and its fusion loop.
    'official': Kernels('official', _upsample_interpolate, _official_multiply_nearest, F.adaptive_avg_pool2d,
                        _official_concat_shuffle, _bilinear_to_size, official_fusion=True),
}


def get_kernels(kernels: 'Kernels | str') -> Kernels:
    """A kernel set by name (one of KERNELS) or the set itself."""
    if isinstance(kernels, Kernels):
        return kernels
    if kernels not in KERNELS:
        raise ValueError(f'kernels must be one of {tuple(KERNELS)}, got {kernels!r}')
    return KERNELS[kernels]
