"""Parameter and FLOP counts, by the rule of the published Lite-HRNet table and as true multiply-adds.

The published "FLOPs" column was produced by the official `tools/summary_network.py` (torchstat), whose
rule is reproduced here (docs/architecture.md §6.1):
  * one forward at batch 1 with forward hooks on every leaf module; a module called several times keeps
    only its LAST call (so the official twice-run fuse paths count once, and the one fuse ReLU shared by
    all outputs of a module counts only for its lowest-resolution output);
  * Conv2d: N*Ho*Wo*Cout*(Cin/groups)*kh*kw MACs, plus N*Cout*Ho*Wo for a bias;
  * BatchNorm2d: 2 x input elements; ReLU: input elements; nearest Upsample: N*Ho*Wo (the channel
    dimension is dropped, a torchstat indexing bug kept so the numbers match); AdaptiveAvgPool2d(1):
    N*C*(H+1)*(W+1); everything else (Sigmoid, functional pooling/resizing, adds, multiplies,
    concatenation, shuffles) counts 0.
The published table prints the sum divided by 2^20 and calls it "M"; we report plain counts.
Our module layout mirrors the official one at this granularity (ReLU modules, one shared fuse ReLU,
an upsample module per fuse path, an AdaptiveAvgPool2d module in spatial weighting), which is what
makes the hook counts equal the official tool's.

Since that rule undercounts real work, `true_macs` (every call, via torch.utils.flop_counter) of this
implementation is reported beside it, together with `official_true_macs`: the same plus the second run
of the branch-0 fuse paths that the official forward performs.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .layers import NearestUpsample

__all__ = ['Complexity', 'count_complexity', 'count_params', 'module_rule_cost']

COMPONENTS = ('conv_mac', 'conv_bias', 'bn_elems', 'relu_elems', 'upsample_hw', 'gap_ts')


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def module_rule_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> dict[str, int]:
    """Components of the published rule for one call of a leaf module (zeros for uncounted types)."""
    if isinstance(module, nn.Conv2d):
        n, cout, ho, wo = out.shape
        kh, kw = module.kernel_size
        cost = {'conv_mac': n * ho * wo * cout * (module.in_channels // module.groups) * kh * kw}
        if module.bias is not None:
            cost['conv_bias'] = n * cout * ho * wo
        return cost
    if isinstance(module, nn.BatchNorm2d):
        return {'bn_elems': inp.numel()}
    if isinstance(module, nn.ReLU):
        return {'relu_elems': inp.numel()}
    if isinstance(module, (NearestUpsample, nn.Upsample)):
        return {'upsample_hw': out.shape[0] * out.shape[2] * out.shape[3]}
    if isinstance(module, nn.AdaptiveAvgPool2d):
        if tuple(out.shape[-2:]) != (1, 1):
            raise NotImplementedError('the published rule is only known for global (1x1) adaptive pooling')
        n, c, h, w = inp.shape
        return {'gap_ts': n * c * (h + 1) * (w + 1)}
    return {}


def rule_flops(components: dict[str, int]) -> int:
    """torchstat's 'Flops' column: conv MACs + conv bias + 2 x BN elements + ReLU + upsample + pooling."""
    c = {k: components.get(k, 0) for k in COMPONENTS}
    return c['conv_mac'] + c['conv_bias'] + 2 * c['bn_elems'] + c['relu_elems'] + c['upsample_hw'] + c['gap_ts']


@dataclass
class Complexity:
    """Counts for one model and input size (batch 1)."""
    params: int
    flops: int  # the published table's rule, plain units (the table shows flops / 2**20)
    components: dict[str, int]
    true_macs: int  # every call of this implementation (FlopCounterMode / 2)
    official_true_macs: int  # every call of the official forward order (the 'official' kernels)
    per_module: 'OrderedDict[str, dict[str, int]]' = field(default_factory=OrderedDict)  # leaf name -> costs


@torch.no_grad()
def count_complexity(model: nn.Module, input_hw: tuple[int, int], in_channels: int = 3) -> Complexity:
    """Count `model` (switched to eval for the pass, then restored) on a (1, C, H, W) input."""
    was_training = model.training
    model.eval()
    records: 'OrderedDict[str, dict[str, int]]' = OrderedDict()
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:  # leaf
            def hook(mod, args, out, name=name):
                records[name] = module_rule_cost(mod, args[0], out)  # last call wins, as in torchstat
                records.move_to_end(name)
            hooks.append(module.register_forward_hook(hook))
    x = torch.zeros(1, in_channels, *input_hw)
    try:
        true_macs = _true_macs(model, x)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # The official forward order of the same network (it runs the branch-0 fuse paths twice).
    with_kernels = getattr(model, 'with_kernels', None)
    official_macs = _true_macs(with_kernels('official').eval(), x) if callable(with_kernels) else true_macs
    components = {k: sum(r.get(k, 0) for r in records.values()) for k in COMPONENTS}
    per_module = OrderedDict((name, {**r, 'flops': rule_flops(r)}) for name, r in records.items())
    return Complexity(params=count_params(model), flops=rule_flops(components), components=components,
                      true_macs=true_macs, official_true_macs=official_macs, per_module=per_module)


def _true_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of every call `model(x)` makes (FlopCounterMode counts 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def group_costs(per_module: dict[str, dict[str, int]], model: nn.Module, depth: int = 3
                ) -> 'OrderedDict[str, tuple[int, int]]':
    """(params, rule FLOPs) summed by the first `depth` parts of each module name, in forward order."""
    groups: 'OrderedDict[str, list[int]]' = OrderedDict()
    params = {name: sum(p.numel() for p in m.parameters(recurse=False)) for name, m in model.named_modules()}
    for name, cost in per_module.items():
        key = '.'.join(name.split('.')[:depth])
        entry = groups.setdefault(key, [0, 0])
        entry[0] += params.get(name, 0)
        entry[1] += cost['flops']
    return OrderedDict((k, (v[0], v[1])) for k, v in groups.items())
