"""An inference-only form of a trained Lite-HRNet that onnxruntime runs faster.

    deploy = to_deploy(model)        # same heatmaps as model.eval() (float rounding apart)
    export_onnx(deploy, ...)         # what demo/convert2onnx.py exports by default

The deploy form is the model itself (a BatchNorm-folded copy) with its stem, transitions, modules,
head projections and final layer replaced by the equivalents below: LiteHRNet.forward still walks
the network, and the layouts are derived from the model's own modules.

Why: in the trained form every block splits each branch into halves, works on one half and
shuffles the halves back together (Split, Concat, Reshape), and multiplies by channel weights that
are broadcast from 1x1 or resized with data-dependent sizes. onnxruntime runs convolutions in a
blocked channel layout (NCHWc), and each of those operators forces a conversion back to plain
NCHW and forward again (about 330 reorders in Lite-HRNet-18), on top of the copies themselves.

What changes (the arithmetic of every output channel stays the same):
  * BatchNorm is folded into the convolutions (`PoseLiteHRNet.fold_bn`).
  * Full-width blocks, no split: each block computes on all C channels of a branch. The kept half
    passes through unchanged because its weights are neutral there: channel weights 1
    (sigmoid(SATURATE) == 1.0 exactly in float32) and an identity 3x3 depthwise kernel (LITE), or
    a 1x1 depthwise "keep" convolution added to zero rows of the last convolution (NAIVE).
  * No shuffle: the channel shuffle is a fixed permutation, so instead of moving data we track
    which logical channel sits in which physical slot (`Layout`) and permute the weights of every
    convolution that reads or writes the branch. Convolutions that mix channels absorb any order.
  * Channel weights are resized to the feature map's size with constant integer scales (nearest
    Resize, which onnxruntime keeps in NCHWc) and multiplied elementwise at equal shapes.
  * The cross-resolution weights come from one convolution per branch instead of one split output.
  * The official fusion doubles F_i0(s_0) and x_0 (see `LiteHRModule.fuse_branches`): the factor 2 is
    folded into the last convolution of F_i0 (exact in binary floating point) and x_0 + x_0.
  * Channel counts that are not a multiple of the NCHWc channel block are padded with zero channels,
    which changes no output: the reduced weighting convolutions, and branches such as Naive
    Lite-HRNet-18's 30 and 60 channels (a zero channel stays zero through every block and fusion).
    Without this, onnxruntime converts those tensors to plain NCHW and back around every operator.
    The block is onnxruntime's on the exporting CPU (16 with AVX-512, 8 with AVX2;
    `lib.export.runtime.nchwc_block`), or `channel_block=` for another target: 16 suits both.

`tests/test_deploy.py` compares the deploy form with the trained form for every variant.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

import copy

from lib.models.layers import get_kernels
from lib.models.litehrnet import (ConditionalChannelWeighting, IterativeHead, LiteHRModule, PoseLiteHRNet,
                                  ShuffleUnit, Stem, branch_source)

__all__ = ['to_deploy', 'SATURATE']

SATURATE = 100.0  # bias that makes a sigmoid output exactly 1.0 in float32 (1 - 3.7e-44 rounds to 1)

Layout = list  # Layout[p] = logical channel held by physical channel p of a branch tensor, or -1 (zero padding)
Index = Sequence[int]  # per new channel: the old channel it copies, or -1 for a neutral channel


def _identity(n: int) -> Layout:
    return list(range(n))


def _padded(n: int, block: int) -> list[int]:
    """Index (or layout) of n channels followed by zero channels up to a multiple of `block`."""
    return list(range(n)) + [-1] * (-(-n // block) * block - n)


def _half(layout: Layout) -> int:
    return sum(c >= 0 for c in layout) // 2


def _shuffled(layout: Layout) -> Layout:
    """Layout after a block: logical j < C/2 (kept) becomes 2j, logical C/2 + j (processed) becomes 2j + 1;
    padding stays where it is."""
    half = _half(layout)
    return [c if c < 0 else 2 * c if c < half else 2 * (c - half) + 1 for c in layout]


def _processed_index(layout: Layout) -> list[int]:
    """Per physical channel: its index within the processed (second) half, or -1 for a kept or padding
    channel (both pass through blocks unchanged; padding is zero and stays zero)."""
    half = _half(layout)
    return [c - half if c >= half else -1 for c in layout]


def _gather(tensor: torch.Tensor, index: Index, dim: int, fill: float = 0.0) -> torch.Tensor:
    """tensor's slices along `dim` picked by index; -1 gives a slice full of `fill`."""
    idx = torch.as_tensor(list(index), dtype=torch.long)
    shape = list(tensor.shape)
    shape[dim] = len(idx)
    out = torch.full(shape, fill, dtype=tensor.dtype)
    keep = idx >= 0
    out.index_copy_(dim, keep.nonzero().flatten(), tensor.index_select(dim, idx[keep]))
    return out


@torch.no_grad()
def remap_conv(conv: nn.Conv2d, in_index: Index | None = None, out_index: Index | None = None,
               fill_bias: float = 0.0) -> nn.Conv2d:
    """A dense (groups=1) conv whose inputs/outputs are those of `conv` picked by index.

    An input index of -1 is a channel the conv ignores (zero weights); an output index of -1 is a
    channel with zero weights and bias `fill_bias`.
    """
    if conv.groups != 1:
        raise ValueError(f'remap_conv takes dense convolutions, got groups={conv.groups}')
    weight = conv.weight
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    if in_index is not None:
        weight = _gather(weight, in_index, 1)
    if out_index is not None:
        weight = _gather(weight, out_index, 0)
        bias = _gather(bias, out_index, 0, fill=fill_bias)
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    new.weight.copy_(weight)
    new.bias.copy_(bias)
    return new


@torch.no_grad()
def remap_depthwise(conv: nn.Conv2d, index: Index, neutral: str = 'identity') -> nn.Conv2d:
    """A depthwise conv whose channel p is channel index[p] of `conv`; -1 channels are 'identity'
    (a centre tap of 1, bias 0: output = input exactly; stride 1 only) or 'zero' (output 0)."""
    if conv.groups != conv.in_channels or conv.in_channels != conv.out_channels:
        raise ValueError('remap_depthwise takes depthwise convolutions')
    neutral_kernel = torch.zeros_like(conv.weight[:1])
    if neutral == 'identity':
        if conv.stride != (1, 1):
            raise ValueError('an identity depthwise channel needs stride 1')
        neutral_kernel[0, 0, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = 1.0
    elif neutral != 'zero':
        raise ValueError(f"neutral must be 'identity' or 'zero', got {neutral!r}")
    weight = _gather(conv.weight, index, 0)
    weight[torch.as_tensor(list(index)) < 0] = neutral_kernel
    bias = _gather(conv.bias if conv.bias is not None else torch.zeros(conv.out_channels), index, 0)
    n = len(weight)
    new = nn.Conv2d(n, n, conv.kernel_size, conv.stride, conv.padding, conv.dilation, groups=n)
    new.weight.copy_(weight)
    new.bias.copy_(bias)
    return new


@torch.no_grad()
def _scaled(conv: nn.Conv2d, factor: float) -> nn.Conv2d:
    conv.weight.mul_(factor)
    conv.bias.mul_(factor)
    return conv


def _upsample(x: torch.Tensor, factor: int | tuple[int, int]) -> torch.Tensor:
    """Nearest upsampling by constant integer factors (ONNX Resize with scales, asymmetric, floor)."""
    factor = (factor, factor) if isinstance(factor, int) else factor
    if factor == (1, 1):
        return x
    return F.interpolate(x, scale_factor=(float(factor[0]), float(factor[1])), mode='nearest')


def _spatial(x: torch.Tensor) -> tuple[int, int]:
    """(H, W) as Python ints: constants of an exported graph (input sizes are fixed per export)."""
    return int(x.shape[-2]), int(x.shape[-1])


class DwPw(nn.Module):
    """Folded [dw3x3, pw1x1(, ReLU)] of a transition, fusion or head step, reading input layout
    `layout` and writing `out_index` order (None: logical order, zero-padded to the channel block)."""

    def __init__(self, seq: nn.Sequential, layout: Layout, block: int, out_index: Index | None = None,
                 scale: float = 1.0) -> None:
        super().__init__()
        convs = [m for m in seq if isinstance(m, nn.Conv2d)]
        self.depthwise = remap_depthwise(convs[0], layout, neutral='zero')
        out_index = _padded(convs[1].out_channels, block) if out_index is None else out_index
        self.out_layout = list(out_index)
        self.pointwise = _scaled(remap_conv(convs[1], in_index=layout, out_index=out_index), scale)
        self.relu = any(isinstance(m, nn.ReLU) for m in seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pointwise(self.depthwise(x))
        return F.relu(x) if self.relu else x


class DeployStem(nn.Module):
    """Stem without the split: conv1 becomes two convolutions, one per half it feeds (x.chunk(2))."""

    def __init__(self, stem: Stem) -> None:
        super().__init__()
        n = stem.conv1.conv.out_channels
        half = -(-n // 2)  # chunk(2): the first half takes the odd channel
        self.conv1_first = remap_conv(stem.conv1.conv, out_index=range(half))
        self.conv1_second = remap_conv(stem.conv1.conv, out_index=range(half, n))
        self.branch1 = nn.Sequential(stem.branch1[0].conv, stem.branch1[1].conv, nn.ReLU())
        self.branch2 = nn.Sequential(stem.expand_conv.conv, nn.ReLU(), stem.depthwise_conv.conv,
                                     stem.linear_conv.conv, nn.ReLU())
        # Physical [branch1 | branch2] holds what the shuffle puts at logical 0, 2, 4, ... | 1, 3, 5, ...
        self.layout = _shuffled(_identity(stem.branch1[1].conv.out_channels + stem.linear_conv.conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = _spatial(x)
        if height % 32 or width % 32:  # resolutions must halve exactly down to stride 32
            raise ValueError(f'input {height}x{width} (HxW): the deploy form needs sizes that are multiples of 32')
        b1 = self.branch1(F.relu(self.conv1_first(x)))
        b2 = self.branch2(F.relu(self.conv1_second(x)))
        return torch.cat((b1, b2), dim=1)


class DeployCCW(nn.Module):
    """ConditionalChannelWeighting on full-width branches in `layouts`; see the module docstring."""

    def __init__(self, ccw: ConditionalChannelWeighting, layouts: list[Layout], block: int) -> None:
        super().__init__()
        proc = [_processed_index(layout) for layout in layouts]
        crw = ccw.cross_resolution_weighting
        offsets = [sum(crw.channels[:i]) for i in range(len(layouts))]
        # The reduction reads the pooled processed halves of all branches (kept channels: zero columns),
        # as one convolution per branch summed (conv(cat(p_i)) = sum_i conv_i(p_i), bias once): no
        # Concat, and onnxruntime accumulates each convolution into the previous one's output.
        # Per branch: the channel of the weighting's concatenated input/output each physical channel is.
        columns = [[offsets[i] + j if j >= 0 else -1 for j in index] for i, index in enumerate(proc)]
        mid = crw.conv1.conv.out_channels
        self.crw_reduce = nn.ModuleList()
        for i, column in enumerate(columns):
            conv = remap_conv(crw.conv1.conv, in_index=column, out_index=_padded(mid, block))
            if i:
                nn.init.zeros_(conv.bias)
            self.crw_reduce.append(conv)
        self.crw_expand = nn.ModuleList([
            remap_conv(crw.conv2.conv, in_index=_padded(mid, block), out_index=column, fill_bias=SATURATE)
            for column in columns])
        self.depthwise = nn.ModuleList([remap_depthwise(dw.conv, index) for dw, index in zip(ccw.depthwise_convs, proc)])
        self.se_reduce, self.se_expand = nn.ModuleList(), nn.ModuleList()
        for sw, index in zip(ccw.spatial_weighting, proc):
            reduced = sw.conv1.conv.out_channels
            self.se_reduce.append(remap_conv(sw.conv1.conv, in_index=index, out_index=_padded(reduced, block)))
            self.se_expand.append(remap_conv(sw.conv2.conv, in_index=_padded(reduced, block), out_index=index,
                                             fill_bias=SATURATE))
        self.out_layouts = [_shuffled(layout) for layout in layouts]

    @staticmethod
    def pool(xs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each branch average-pooled to the lowest branch's size (constant kernels: sizes divide)."""
        low_h, low_w = _spatial(xs[-1])
        out = []
        for x in xs:
            h, w = _spatial(x)
            kernel = (h // low_h, w // low_w)
            out.append(x if kernel == (1, 1) else F.avg_pool2d(x, kernel, kernel))
        return out

    def forward(self, xs: list[torch.Tensor], pooled: list[torch.Tensor], scales: list[torch.Tensor | None],
                pool_outputs: bool) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
        """Branches x_i * scales_i, given with their `pool(xs)` and the per-channel (B, C, 1, 1) scales
        not yet applied (or None) -> the blocks' outputs as (tensors, scales, pooled or None). The
        spatial weighting's scale is left for the caller, which either applies it or hands it to the
        next block to merge with its own weights; pool_outputs: also pool the outputs for that next
        block, and take the spatial weighting's global means from the pooled maps (mean of block
        means: one full-size read fewer per branch).
        """
        low_h, low_w = _spatial(xs[-1])
        low_scales = [None if scale is None else _upsample(scale, (low_h, low_w)) for scale in scales]
        pooled = [p if s is None else p * s for p, s in zip(pooled, low_scales)]  # = pool(x * scale)
        mid = self.crw_reduce[0](pooled[0])
        for conv, p in zip(self.crw_reduce[1:], pooled[1:]):
            mid = conv(p) + mid
        mid = F.relu(mid)
        out, out_scales = [], []
        for i, x in enumerate(xs):
            h, w = _spatial(x)
            weights = torch.sigmoid(self.crw_expand[i](mid))
            if low_scales[i] is not None:
                weights = weights * low_scales[i]  # (x * scale) * weights, one full-size multiply
            out.append(self.depthwise[i](x * _upsample(weights, (h // low_h, w // low_w))))
        out_pooled = self.pool(out) if pool_outputs else None
        for i, x in enumerate(out_pooled if pool_outputs else out):
            squeeze = F.adaptive_avg_pool2d(x, 1)  # GlobalAveragePool
            out_scales.append(torch.sigmoid(self.se_expand[i](F.relu(self.se_reduce[i](squeeze)))))
        return out, out_scales, out_pooled


class DeployShuffleUnit(nn.Module):
    """NAIVE ShuffleUnit on a full-width branch: relu(pw2(dw(relu(pw1(x_proc))))) written into the
    processed slots (zero rows elsewhere) plus a 1x1 depthwise 'keep' conv that copies the kept slots."""

    def __init__(self, unit: ShuffleUnit, layout: Layout, block: int) -> None:
        super().__init__()
        index = _processed_index(layout)
        pw1, dw, pw2 = (m.conv for m in unit.branch2)
        inner = _padded(pw1.out_channels, block)  # the processed half, padded to whole channel blocks
        self.pw1 = remap_conv(pw1, in_index=index, out_index=inner)
        self.dw = remap_depthwise(dw, inner, neutral='zero')
        self.pw2 = remap_conv(pw2, in_index=inner, out_index=index)
        n = len(layout)
        self.keep = nn.Conv2d(n, n, 1, groups=n)
        with torch.no_grad():
            self.keep.weight.copy_(torch.tensor([1.0 if j < 0 else 0.0 for j in index]).reshape(n, 1, 1, 1))
            self.keep.bias.zero_()
        self.out_layout = _shuffled(layout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw2(self.dw(F.relu(self.pw1(x))))) + self.keep(x)


class DeployFusion(nn.Module):
    """LiteHRModule.fuse_branches with the doubled F_i0 folded; output i keeps branch i's layout."""

    def __init__(self, module: LiteHRModule, layouts: list[Layout], block: int) -> None:
        super().__init__()
        n = len(layouts)
        paths: list[nn.ModuleList] = []
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                path = module.fuse_layers[i][j]
                if j == i:
                    row.append(nn.Identity())
                elif j > i:  # 1x1 conv (+ folded BN); forward upsamples the sum of these terms
                    row.append(remap_conv(path[0], in_index=layouts[j], out_index=layouts[i]))
                else:  # stride-2 dw-pw steps; the doubled branch-0 path has its factor 2 folded in
                    steps = list(path)
                    row.append(nn.Sequential(*[
                        DwPw(step, layouts[j] if k == 0 else _padded(step[0].in_channels, block), block,
                             out_index=layouts[i] if k == len(steps) - 1 else None,
                             scale=2.0 if (j == 0 and k == len(steps) - 1) else 1.0)
                        for k, step in enumerate(steps)]))
            paths.append(row)
        self.paths = nn.ModuleList(paths)

    def _coarser_terms(self, i: int, xs: list[torch.Tensor]) -> torch.Tensor | None:
        """sum_{j > i} upsample_{2^(j-i)}(conv_ij(x_j)), accumulated from the coarsest branch upwards
        with one 2x nearest upsampling per level: nearest upsampling is linear and 2x twice is 4x, so
        this equals the official sum, but only one term is ever upsampled to branch i's size."""
        total = None
        for j in range(len(xs) - 1, i, -1):
            term = self.paths[i][j](xs[j])
            total = term if total is None else term + _upsample(total, 2)  # conv first: its sum is fused
        return None if total is None else _upsample(total, 2)

    def forward(self, xs: list[torch.Tensor], first_doubled: bool = False) -> list[torch.Tensor]:
        """Sums in an order onnxruntime can fuse: the input and the upsampled coarser terms first, then
        the terms that end in a convolution (j < i), each of which then accumulates into the running
        sum inside the convolution (and the last one applies the ReLU). first_doubled: xs[0] is
        already 2 x_0 (the caller folded the factor into a multiplication it does anyway)."""
        n = len(xs)
        s0 = xs[0] if first_doubled else xs[0] + xs[0]
        s0 = s0 + self._coarser_terms(0, xs)
        outs = [F.relu(s0)]
        for i in range(1, n):
            coarser = self._coarser_terms(i, xs)
            y = xs[i] if coarser is None else xs[i] + coarser
            for j in range(i):  # j = 0 reads s0: the doubled F_i0(s0)
                y = self.paths[i][j](s0 if j == 0 else xs[j]) + y
            outs.append(F.relu(y))
        return outs


class DeployModule(nn.Module):
    """Blocks then fusion of one LiteHRModule, on full-width branches."""

    def __init__(self, module: LiteHRModule, layouts: list[Layout], block: int) -> None:
        super().__init__()
        self.module_type = module.module_type
        self.blocks = nn.ModuleList()
        if module.module_type == 'LITE':
            for ccw in module.layers:
                self.blocks.append(DeployCCW(ccw, layouts, block))
                layouts = self.blocks[-1].out_layouts
        else:
            new_layouts = []
            for units, layout in zip(module.layers, layouts):
                chain = nn.Sequential()
                for unit in units:
                    chain.append(DeployShuffleUnit(unit, layout, block))
                    layout = chain[-1].out_layout
                self.blocks.append(chain)
                new_layouts.append(layout)
            layouts = new_layouts
        self.fusion = DeployFusion(module, layouts, block) if len(layouts) > 1 else None
        self.out_layouts = layouts

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.module_type == 'LITE':
            scales, pooled = [None] * len(xs), DeployCCW.pool(xs)
            for k, block in enumerate(self.blocks):
                xs, scales, pooled = block(xs, pooled, scales, pool_outputs=k + 1 < len(self.blocks))
            if self.fusion is not None:  # the fusion only needs 2 x_0: double the (B, C, 1, 1) scale instead
                scales[0] = scales[0] + scales[0]
            xs = [x * _upsample(scale, _spatial(x)) for x, scale in zip(xs, scales)]
            return self.fusion(xs, first_doubled=True) if self.fusion is not None else xs
        xs = [chain(x) for chain, x in zip(self.blocks, xs)]
        return self.fusion(xs) if self.fusion is not None else xs


@torch.no_grad()
def to_deploy(model: PoseLiteHRNet, channel_block: int | None = None) -> PoseLiteHRNet:
    """The deploy form of `model` (its current weights, BatchNorm running statistics folded): a new,
    inference-only PoseLiteHRNet whose parts are replaced by the deploy equivalents above.

    channel_block: pad channel counts to multiples of this (onnxruntime's NCHWc block); None detects it
    for this CPU (`lib.export.runtime.nchwc_block`).
    """
    if not isinstance(model, PoseLiteHRNet):
        raise TypeError(f'to_deploy takes a PoseLiteHRNet, got {type(model).__name__}')
    if channel_block is None:
        from .runtime import nchwc_block
        channel_block = nchwc_block() or 8
    if channel_block < 1:
        raise ValueError(f'channel_block must be a positive number of channels, got {channel_block}')
    deploy = copy.deepcopy(model).eval() if model.bn_folded else model.fold_bn()
    backbone = deploy.backbone
    backbone.stem = DeployStem(backbone.stem)
    layouts = [backbone.stem.layout]
    for transition, stage in backbone.stages():
        sources = [layouts[branch_source(i, len(layouts))] for i in range(len(transition))]
        layouts = []
        for i, (layer, layout) in enumerate(zip(transition, sources)):
            if layer is not None:
                steps = list(layer) if isinstance(layer[0], nn.Sequential) else [layer]
                converted = []
                for step in steps:
                    converted.append(DwPw(step, layout, channel_block))
                    layout = converted[-1].out_layout
                transition[i] = nn.Sequential(*converted)
            layouts.append(layout)
        for m, module in enumerate(stage):
            stage[m] = DeployModule(module, layouts, channel_block)
            layouts = stage[m].out_layouts
    # IterativeHead, lowest resolution first; each projection writes the next branch's layout. The
    # 'export' kernels upsample by a constant scale (a dynamic batch keeps the Resize in NCHWc).
    with torch.random.fork_rng(devices=[]):  # its own projections are replaced: leave the caller's RNG alone
        head = IterativeHead(backbone.spec.num_channels[-1], kernels='export')
    order = list(reversed(range(len(layouts))))
    head.projects = nn.ModuleList([
        DwPw(nn.Sequential(p.depthwise_conv.conv, p.pointwise_conv.conv, nn.ReLU()), layouts[b], channel_block,
             out_index=layouts[order[k + 1]] if k + 1 < len(order) else None)
        for k, (p, b) in enumerate(zip(backbone.head_layer.projects, order))])
    backbone.head_layer = head
    deploy.keypoint_head.final_layer = remap_conv(deploy.keypoint_head.final_layer,
                                                  in_index=head.projects[-1].out_layout)
    deploy.kernels = get_kernels('export')  # what its remaining kernel-dependent step (the head) uses
    deploy.channel_block = channel_block
    return deploy.eval()
