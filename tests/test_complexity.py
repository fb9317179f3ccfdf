"""Complexity: exact parameter counts, FLOPs by the published rule against the official tool's numbers."""
import io
import json
import os
import runpy
import sys
from contextlib import redirect_stdout

import pytest
import torch
from torch import nn

from lib.config import load_config
from lib.models import build_model
from lib.models.complexity import count_complexity, module_rule_cost

from conftest import REFERENCE_DIR, REPO_ROOT

# (YAML, exact parameter count of the official model: docs/architecture.md §6.2)
CONFIGS = [
    ('coco/lite_hrnet/lite_hrnet_18_256x192', 'litehrnet_18_coco_256x192', 1130769),
    ('coco/lite_hrnet/lite_hrnet_18_384x288', 'litehrnet_18_coco_384x288', 1130769),
    ('coco/lite_hrnet/lite_hrnet_30_256x192', 'litehrnet_30_coco_256x192', 1763717),
    ('coco/lite_hrnet/lite_hrnet_30_384x288', 'litehrnet_30_coco_384x288', 1763717),
    ('coco/naive_lite_hrnet/naive_lite_hrnet_18_256x192', 'naive_litehrnet_18_coco_256x192', 760365),
    ('coco/naive_lite_hrnet/wider_naive_lite_hrnet_18_256x192', 'wider_naive_litehrnet_18_coco_256x192', 1318625),
    ('mpii/lite_hrnet/lite_hrnet_18_256x256', 'litehrnet_18_mpii_256x256', 1130728),
    ('mpii/lite_hrnet/lite_hrnet_30_256x256', 'litehrnet_30_mpii_256x256', 1763676),
    ('mpii/naive_lite_hrnet/naive_lite_hrnet_18_256x256', 'naive_litehrnet_18_mpii_256x256', 760334),
    ('mpii/naive_lite_hrnet/wider_naive_lite_hrnet_18_256x256', 'wider_naive_litehrnet_18_mpii_256x256', 1318584),
]


pytestmark = pytest.mark.usefixtures('single_thread_module')  # small tensors: one thread is fastest


def _cfg(rel):
    return load_config(os.path.join(REPO_ROOT, 'experiments', rel + '.yaml'))


@pytest.fixture(scope='module')
def official_tool():
    with open(os.path.join(REFERENCE_DIR, 'flops_reference.json')) as f:
        return json.load(f)['variants']


@pytest.mark.parametrize('rel,key,params', CONFIGS, ids=[c[1] for c in CONFIGS])
def test_params_exact_and_flops_match_official_tool(rel, key, params, official_tool):
    cfg = _cfg(rel)
    width, height = cfg.MODEL.IMAGE_SIZE
    c = count_complexity(build_model(cfg), (height, width))
    assert c.params == params
    ref = official_tool[key]
    assert abs(c.flops / ref['torchstat_flops'] - 1) < 1e-3
    # Stronger than the 0.1% asked for: every component of the rule, and the official forward's true
    # MACs (which runs the branch-0 fuse paths twice), are equal to the official tool's counts.
    for name, value in c.components.items():
        assert value == ref[name], name
    assert c.official_true_macs == ref['conv_mac_all_calls']
    published = ref['published_flops_M']
    if key == 'wider_naive_litehrnet_18_mpii_256x256':  # the published 418.7 is off by 1% (README)
        assert abs(c.flops / 2 ** 20 / published - 1 + 0.0098) < 5e-4
    else:  # the table prints Mi to one decimal
        assert round(c.flops / 2 ** 20, 1) == published


def test_rule_on_a_hand_counted_model():
    """Conv MACs + bias, 2 x BN elements, ReLU elements, upsample N*H*W, GAP N*C*(H+1)*(W+1); last call wins."""
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)  # bias
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
            self.bn = nn.BatchNorm2d(4)
            self.relu = nn.ReLU()
            self.up = nn.Upsample(scale_factor=2)
            self.gap = nn.AdaptiveAvgPool2d(1)
            self.sig = nn.Sigmoid()

        def forward(self, x):
            x = self.relu(self.bn(self.dw(self.conv(x))))
            y = self.relu(x[:, :, :4, :4])  # second, smaller call of the same ReLU: only this one counts
            return self.sig(self.gap(self.up(x))) + y.sum()

    c = count_complexity(Tiny(), (8, 6))
    assert c.components == {'conv_mac': 8 * 6 * 4 * 3 * 9 + 8 * 6 * 4 * 9, 'conv_bias': 4 * 8 * 6,
                            'bn_elems': 4 * 8 * 6, 'relu_elems': 4 * 4 * 4, 'upsample_hw': 16 * 12,
                            'gap_ts': 4 * 17 * 13}
    assert c.flops == sum(c.components.values()) + c.components['bn_elems']
    assert c.true_macs == c.components['conv_mac']
    assert module_rule_cost(nn.Sigmoid(), torch.zeros(1), torch.zeros(1)) == {}


def test_complexity_tool_json_line(monkeypatch):
    cfg = os.path.join(REPO_ROOT, 'experiments', CONFIGS[4][0] + '.yaml')
    monkeypatch.setattr(sys, 'argv', ['complexity.py', '--cfg', cfg, '--json'])
    monkeypatch.syspath_prepend(os.path.join(REPO_ROOT, 'tools'))
    out = io.StringIO()
    with redirect_stdout(out):
        runpy.run_path(os.path.join(REPO_ROOT, 'tools', 'complexity.py'), run_name='__main__')
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    assert last == {'params': 760365, 'flops': 204217152}
