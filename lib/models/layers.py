"""Small building blocks shared by the Lite-HRNet modules (replacing what the official code takes from mmcv).

`ConvBNAct` mirrors mmcv's `ConvModule` child names (`conv`, `bn`, `activate`) so that parameter names,
and therefore official checkpoints, line up without renaming. Shape legend: B batch, C channels,
H x W spatial size.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['ConvBNAct', 'NearestUpsample', 'SharedReLU', 'TwiceUpdatedBatchNorm2d', 'channel_shuffle',
           'concat_shuffle', 'depthwise', 'dw_pw_sequential', 'multiply_nearest', 'pool_to', 'upsample_nearest']

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
                     bn_cls: type[nn.BatchNorm2d] = nn.BatchNorm2d) -> nn.Sequential:
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
    """BatchNorm2d whose training step updates the running statistics as if it had run twice.

    The official fusion evaluates each branch-0 -> branch-i path twice on the same input (§2.6 of
    architecture.md), so its BatchNorm layers get two identical momentum updates per iteration:
    r <- (1-m)^2 r + (1 - (1-m)^2) b. We evaluate the path once and reproduce that update with the
    equivalent single momentum 1 - (1-m)^2, and count two batches. Outputs are unchanged (training
    normalises with batch statistics; eval uses the running ones exactly like nn.BatchNorm2d).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.track_running_stats):
            return super().forward(x)
        if self.momentum is None:
            raise ValueError('TwiceUpdatedBatchNorm2d needs a fixed momentum (official: 0.1)')
        self.num_batches_tracked.add_(2)
        momentum = 1.0 - (1.0 - self.momentum) ** 2
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True, momentum,
                            self.eps)


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
    mean of a kh x kw block. Summing the kh rows first keeps a long contiguous inner loop, which is ~4x
    faster than avg_pool2d on CPU, and exports to ONNX without data-dependent pooling.
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


def upsample_nearest(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """`F.interpolate(x, scale_factor=(kh, kw), mode='nearest')` for integer factors, same numbers.

    Written as a gather along W plus a broadcast over the kh rows because the ATen nearest kernel is
    several times slower on CPU (measured 5-28 ms vs 1-2 ms for (8, 40, 32, 24) x2, 1-2 threads); it
    exports to ONNX as Gather/Expand/Reshape.
    """
    b, c, h, w = x.shape
    rows = _repeat_last(x, kw)  # (B, C, h, w*kw)
    return rows.unsqueeze(3).expand(b, c, h, kh, w * kw).reshape(b, c, h * kh, w * kw)


class NearestUpsample(nn.Module):
    """nn.Upsample(scale_factor=s, mode='nearest') for an integer s, via `upsample_nearest` (see there)."""

    def __init__(self, scale_factor: int) -> None:
        super().__init__()
        self.scale_factor = int(scale_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample_nearest(x, self.scale_factor, self.scale_factor)

    def extra_repr(self) -> str:
        return f'scale_factor={self.scale_factor}, mode=nearest'


def multiply_nearest(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`x * F.interpolate(weights, size=x.shape[-2:], mode='nearest')` without building the resized map.

    x: (B, C, H, W), weights: (B, C, h, w). When H, W are integer multiples of h, w, nearest resizing
    repeats each weight over a kh x kw block: we repeat along W on the small map only, then let
    broadcasting repeat over the kh rows (keeping a long contiguous inner loop).
    """
    b, c, h, w = x.shape
    hs, ws = weights.shape[-2:]
    if (h, w) == (hs, ws):
        return x * weights
    if h % hs or w % ws:
        return x * F.interpolate(weights, size=(h, w), mode='nearest')
    rows = _repeat_last(weights, w // ws).unsqueeze(3)  # (B, C, hs, 1, W)
    return (x.reshape(b, c, hs, h // hs, w) * rows).view(b, c, h, w)
