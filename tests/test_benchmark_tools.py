"""The speed tools run end to end and print what they promise: tools/benchmark_inference.py (a row per
mode, the official baseline skipped with a dynamic batch) and tools/compare_onnx_latency.py (a
summary row per file, exit status 2 on a missing file). Timings themselves are not asserted."""
from __future__ import annotations

import importlib.util
import os
import re
import sys

import pytest
import torch

from conftest import SMALL_INPUT

pytestmark = pytest.mark.usefixtures('single_thread')
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LHR18_YAML = os.path.join(REPO_ROOT, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')


def load_tool(name: str):
    tools_dir = os.path.join(REPO_ROOT, 'tools')
    if tools_dir not in sys.path:
        sys.path.insert(0, tools_dir)
    spec = importlib.util.spec_from_file_location(f'tool_{name}', os.path.join(tools_dir, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_inference_prints_a_row_per_mode(capsys) -> None:
    tool = load_tool('benchmark_inference')
    modes = ['bn_folded', 'onnxruntime_official', 'onnxruntime']
    tool.main(['--cfg', LHR18_YAML, '--modes', ','.join(modes), '--min-time', '0.05', '--batch', '2',
               '--threads', '1', *SMALL_INPUT])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith('| litehrnet_18 | 128x96 |')]
    assert [row.split('|')[3].strip() for row in rows] == modes
    for row in rows:
        latency, throughput, gflops, flop_limited = (float(v) for v in row.split('|')[4:8])
        assert latency > 0 and throughput > 0 and flop_limited > 0
        assert gflops == pytest.approx(0.397 * (128 * 96) / (256 * 192), rel=0.05)  # true FLOPs scale with area


def test_benchmark_inference_skips_the_official_baseline_for_a_dynamic_batch(capsys) -> None:
    tool = load_tool('benchmark_inference')
    tool.main(['--cfg', LHR18_YAML, '--modes', 'onnxruntime_official,onnxruntime', '--dynamic-batch',
               '--min-time', '0.05', '--batch', '2', '--threads', '1', *SMALL_INPUT])
    out = capsys.readouterr().out
    assert 'onnxruntime_official skipped' in out
    assert [line.split('|')[3].strip() for line in out.splitlines()
            if line.startswith('| litehrnet_18 |')] == ['onnxruntime']


def test_compare_onnx_latency_summarises_each_file(tmp_path, capsys) -> None:
    paths = []
    for width in (8, 16):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU()).eval()
        paths.append(str(tmp_path / f'net{width}.onnx'))
        torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), paths[-1], dynamo=False, input_names=['input'])
    tool = load_tool('compare_onnx_latency')
    assert tool.main([*paths, '--seconds', '0.3', '--window', '0.05', '--threads', '1']) == 0
    out = capsys.readouterr().out
    assert re.search(r'^net8\.onnx\s+[\d.]+\s+[\d.]+\s+-$', out, re.M), out
    assert re.search(r'^net16\.onnx\s+[\d.]+\s+[\d.]+\s+[\d.]+x$', out, re.M), out
    assert tool.main([paths[0], str(tmp_path / 'missing.onnx')]) == 2
