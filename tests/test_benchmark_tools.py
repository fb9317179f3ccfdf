"""The timing helper (lib/utils/timing.py) measures what it claims, and every subcommand of
tools/benchmark.py runs end to end at tiny sizes and reports positive, finite numbers under the keys
its --json line promises. Speed itself is not asserted (the machine is shared), except for the
helper on sleeping callables, whose ratio is known."""
from __future__ import annotations

import json
import math
import time

import pytest
import torch

from conftest import load_tool
from lib.utils.timing import Timing, time_interleaved, timed_block

pytestmark = pytest.mark.usefixtures('single_thread')
TINY = ['MODEL.IMAGE_SIZE', '[64,64]', 'MODEL.HEATMAP_SIZE', '[16,16]']
FAST = ['--seconds', '0.2', '--window', '0.02', '--rounds', '2', '--threads', '1', '--json']


def json_line(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith('{')]
    assert len(lines) == 1, out
    return json.loads(lines[0])


def positive(*values: float) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


# --- lib/utils/timing.py ---------------------------------------------------------------------------------
def test_sleeping_twice_as_long_is_half_as_fast() -> None:
    timing = time_interleaved({'slow': lambda: time.sleep(0.002), 'fast': lambda: time.sleep(0.001)},
                              seconds=0.3, window=0.03, baseline='slow')
    assert timing.speedup['slow'] == 1.0
    assert 1.4 < timing.speedup['fast'] < 2.6, timing.speedup  # sleep overshoots a little, noisily
    assert 0.0019 < timing.seconds['slow'] < 0.01 and 0.0009 < timing.seconds['fast'] < 0.008
    assert timing.ratio('slow', 'fast') == pytest.approx(1 / timing.speedup['fast'], rel=0.3)


def test_callables_alternate_window_by_window() -> None:
    log: list[str] = []
    timing = time_interleaved({name: (lambda name=name: log.append(name)) for name in 'abc'},
                              seconds=0.0, window=0.0, min_rounds=4, warmup=1)
    assert timing.rounds == 4 and all(len(w) == 4 for w in timing.windows.values())
    # warm-up a b c, then per round and name one settling call and one timed call; the order rotates
    assert log[:3] == ['a', 'b', 'c']
    windows = [log[i] for i in range(3, len(log), 2)]
    assert log[3::2] == log[4::2]  # each window is the settling call and the timed call of one name
    assert windows == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b', 'a', 'b', 'c']
    assert all(len(t) == 4 for t in timing.times.values())


def test_timed_block_settles_once_then_times_consecutive_calls() -> None:
    calls = []
    times = timed_block(lambda: calls.append(time.sleep(0.001)), seconds=0.02)
    assert len(calls) == len(times) + 1 and len(times) >= 5
    assert all(0.0009 < t < 0.1 for t in times)
    calls.clear()
    assert len(timed_block(lambda: calls.append(1), seconds=0.0, settle=False)) == 1 and len(calls) == 1
    cpu = timed_block(lambda: time.sleep(0.005), seconds=0.0, clock=time.process_time)  # CPU time, not wall
    assert cpu[0] < 0.004


def test_ratios_are_medians_of_neighbouring_windows() -> None:
    timing = Timing({'official': [2.0, 4.0, 9.0], 'ours': [1.0, 1.0, 3.0]}, {'official': [], 'ours': []}, 'official')
    assert timing.seconds == {'official': 4.0, 'ours': 1.0}
    assert timing.speedup == {'official': 1.0, 'ours': 3.0}  # median of 2, 4, 3 (not 4.0 / 1.0)
    assert timing.quartile('official') == 3.0
    with pytest.raises(ValueError, match='baseline'):
        time_interleaved({'a': lambda: None}, baseline='b')


# --- tools/benchmark.py ---------------------------------------------------------------------------------
def test_every_subcommand_takes_the_common_options_and_overrides() -> None:
    tool = load_tool('benchmark')
    for command in ('model', 'inference', 'train', 'data'):
        args = tool.parse_args([command, 'MODEL.NAME', 'litehrnet_30', '--json'])
        assert args.opts == ['MODEL.NAME', 'litehrnet_30'] and args.json
        assert args.cfg.endswith('lite_hrnet_18_256x192.yaml')
        assert args.threads == (1 if command == 'data' else 2)  # a loader worker has one thread
    assert tool.parse_args(['compare', 'a.onnx', '--threads', '3']).threads == 3


@pytest.mark.slow
def test_model_subcommand_times_ours_fused_and_official(capsys) -> None:
    tool = load_tool('benchmark')
    assert tool.main(['model', '--batch', '2', *FAST, *TINY]) == 0
    out = capsys.readouterr().out
    report = json_line(out)
    assert report['subcommand'] == 'model' and report['input_hw'] == [64, 64] and report['batch'] == 2
    assert set(report['check_rel_diff']) == {'ours', 'ours-fused'}
    assert all(0 <= d <= 1e-4 for d in report['check_rel_diff'].values())
    results = report['results']
    assert set(results) == {'official', 'ours', 'ours-fused'}
    for name, row in results.items():
        assert positive(row['eval_b1_ms'], row['eval_batch_ms_per_image'], *row['speedup'].values()), row
    assert results['official']['speedup'] == {'eval_b1': 1.0, 'eval_batch': 1.0, 'train': 1.0}
    assert positive(results['ours']['train_samples_per_s'], results['official']['train_samples_per_s'])
    assert 'train_samples_per_s' not in results['ours-fused']  # folded BatchNorm is eval-only
    assert 'speed-up of ours over official: eval_b1 ' in out and '| ours-fused |' in out


def test_model_subcommand_fails_when_the_heatmaps_disagree(monkeypatch) -> None:
    tool = load_tool('benchmark')
    from lib.models import PoseLiteHRNet
    fold_bn = PoseLiteHRNet.fold_bn

    def broken_fold_bn(self):
        folded = fold_bn(self)
        with torch.no_grad():
            folded.keypoint_head.final_layer.bias += 1.0
        return folded
    monkeypatch.setattr(PoseLiteHRNet, 'fold_bn', broken_fold_bn)
    with pytest.raises(SystemExit, match='heatmaps disagree'):
        tool.main(['model', '--batch', '2', '--skip-train', *FAST, *TINY])


@pytest.mark.slow
def test_inference_subcommand_reports_a_row_per_mode(capsys) -> None:
    tool = load_tool('benchmark')
    modes = ['bn_folded', 'ort_official', 'official']
    assert tool.main(['inference', '--modes', ','.join(modes), '--batch', '2', *FAST, *TINY]) == 0
    out = capsys.readouterr().out
    report = json_line(out)
    assert report['baseline'] == 'official' and positive(report['matmul_gflops'])  # the PyTorch order wins
    assert [(r['variant'], r['mode']) for r in report['rows']] == [('litehrnet_18', m) for m in modes]
    for row in report['rows']:
        assert positive(row['latency_ms'], row['throughput'], row['gflops'], row['flop_limited_ms'],
                        row['latency_speedup'], row['throughput_speedup']), row
        assert row['check_rel_diff'] <= 1e-4
        assert list(row['ready_s']) == ['build', 'b1', 'b2'] and all(v >= 0 for v in row['ready_s'].values())
    official = report['rows'][2]
    assert official['latency_speedup'] == 1.0 and official['throughput_speedup'] == 1.0
    assert report['rows'][1]['ready_s']['build'] > report['rows'][2]['ready_s']['build']  # two ONNX exports
    assert report['rows'][0]['gflops'] == pytest.approx(0.397 * (64 * 64) / (256 * 192), rel=0.1)  # true FLOPs ~ area
    assert '| litehrnet_18 | ort_official |' in out and 'speed-up over official' in out


@pytest.mark.slow
def test_compare_subcommand_summarises_each_file(tmp_path, capsys) -> None:
    paths = []
    for width in (4, 32):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, width, 3, padding=1), torch.nn.ReLU(),
                                  torch.nn.Conv2d(width, width, 3, padding=1)).eval()
        paths.append(str(tmp_path / f'net{width}.onnx'))
        torch.onnx.export(net, (torch.zeros(1, 3, 32, 32),), paths[-1], dynamo=False, input_names=['input'])
    tool = load_tool('benchmark')
    assert tool.main(['compare', *paths, *FAST]) == 0
    out = capsys.readouterr().out
    report = json_line(out)
    assert report['baseline'] == paths[0] and report['rounds'] >= 2
    assert [f['file'] for f in report['files']] == paths
    for f in report['files']:
        assert positive(f['median_ms'], f['best_quartile_ms'], f['speedup'])
    assert report['files'][0]['speedup'] == 1.0
    assert '| net4.onnx |' in out and '| net32.onnx |' in out


def test_compare_subcommand_exits_2_on_a_missing_file(tmp_path, capsys) -> None:
    tool = load_tool('benchmark')
    assert tool.main(['compare', str(tmp_path / 'here.onnx'), str(tmp_path / 'missing.onnx')]) == 2
    err = capsys.readouterr().err
    assert 'not found' in err and 'missing.onnx' in err


@pytest.mark.slow
def test_train_subcommand_times_the_real_loop_on_jpeg_files(capsys) -> None:
    tool = load_tool('benchmark')
    assert tool.main(['train', '--batch', '2', '--iters', '2', '--workers', '0', '--device', 'cpu',
                      '--synthetic-images', '4', '--rounds', '2', '--threads', '1', '--json', *TINY]) == 0
    out = capsys.readouterr().out
    report = json_line(out)
    assert report['subcommand'] == 'train' and report['device'] == 'cpu' and report['workers'] == 0
    assert report['data'].startswith('synthetic') and report['rounds'] == 2
    assert set(report['results']) == {'official', 'ours'}
    for row in report['results'].values():
        assert positive(row['samples_per_s'], row['speedup'])
        assert 0 < row['data_wait_share'] < 1  # WORKERS 0: the loop reads and augments every batch itself
    assert report['results']['official']['speedup'] == 1.0


def test_data_subcommand_compares_the_pipeline_with_the_decode(capsys) -> None:
    tool = load_tool('benchmark')
    assert tool.main(['data', '--images', '3', '--seconds', '0.2', '--window', '0.02', '--rounds', '2', '--json',
                      *TINY]) == 0
    out = capsys.readouterr().out
    report = json_line(out)
    assert report['images'] == 3 and report['samples'] >= 3 and report['input_wh'] == [64, 64]
    steps = {'decode', 'pipeline', 'augmentation draw', 'affine crop', 'normalise', 'heatmap encode'}
    assert set(report['samples_per_s']) == steps and set(report['cost_vs_decode']) == steps
    assert positive(*report['samples_per_s'].values(), *report['cost_vs_decode'].values())
    assert report['cost_vs_decode']['decode'] == 1.0
    assert report['cost_vs_decode']['pipeline'] > report['cost_vs_decode']['normalise']  # the pipeline includes it
    assert 'pipeline / decode cost ratio:' in out
