"""One inference API over PyTorch, onnxruntime and OpenVINO (lib/export/backends.py): the same heatmaps
(within the float parity rule), the same AP through tools/test.py, and one clear error for every misfit."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, SMALL_INPUT, load_tool, realistic_model
from lib.config import load_config, output_dirs
from lib.core.inference import PoseEstimator
from lib.export import DEFAULT_ATOL, DEFAULT_FACTOR, export_onnx, to_deploy
from lib.export.backends import BackendError, RuntimeNetwork, file_precision, load_network
from lib.export.openvino import cpu_precisions, write_openvino
from lib.utils.training_state import save_model_file

pytestmark = pytest.mark.usefixtures('single_thread')
CFG = os.path.join(REPO_ROOT, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')


@pytest.fixture(scope='module')
def files(tmp_path_factory) -> dict[str, str]:
    """A Lite-HRNet-18 at 128x96 with realistic numbers as a checkpoint, its deploy graph as ONNX (dynamic
    and fixed batch) and as OpenVINO IR."""
    folder = tmp_path_factory.mktemp('backends')
    model = realistic_model('litehrnet_18')
    cfg = load_config(CFG, SMALL_INPUT)
    out = {'pth': str(folder / 'model.pth'), 'onnx': str(folder / 'model.onnx'),
           'fixed': str(folder / 'fixed.onnx'), 'xml': str(folder / 'model.xml')}
    save_model_file(out['pth'], model, cfg)
    deploy = to_deploy(model)
    export_onnx(deploy, out['onnx'], (96, 128), dynamic_batch=True)
    export_onnx(deploy, out['fixed'], (96, 128))
    write_openvino(out['onnx'], out['xml'])
    return out


def estimator(path: str, backend: str, precision: str = 'fp32', *extra: str) -> PoseEstimator:
    return PoseEstimator(load_config(CFG, SMALL_INPUT + ['TEST.MODEL_FILE', path, *extra]), backend=backend,
                         precision=precision, threads=1)


def test_every_backend_gives_the_pytorch_heatmaps(files) -> None:
    crops = np.random.default_rng(0).standard_normal((3, 3, 128, 96)).astype(np.float32)
    torch_net = estimator(files['pth'], 'torch')
    expected = torch_net.forward(crops)
    with torch.no_grad():
        exact = torch_net.model.double()(torch.from_numpy(crops).double()).numpy()
    tolerance = DEFAULT_FACTOR * np.abs(expected - exact).max() + DEFAULT_ATOL
    assert np.abs(expected).max() > 0.1  # not a vacuous comparison
    for backend, key in (('onnxruntime', 'onnx'), ('onnxruntime', 'fixed'), ('openvino', 'xml'),
                         ('openvino', 'onnx'), ('openvino', 'pth')):
        got = estimator(files[key], backend).forward(crops)
        assert got.shape == expected.shape == (3, 17, 32, 24)
        assert np.abs(got - exact).max() <= tolerance, (backend, key)


def test_a_fixed_batch_file_runs_any_batch(files) -> None:
    network = load_network(load_config(CFG, SMALL_INPUT), files['fixed'], 'onnxruntime', threads=1)
    assert isinstance(network, RuntimeNetwork) and network.fixed_batch == 1
    x = torch.randn(3, 3, 128, 96)
    dynamic = load_network(load_config(CFG, SMALL_INPUT), files['onnx'], 'onnxruntime', threads=1)
    torch.testing.assert_close(network(x), dynamic(x), rtol=0, atol=1e-6)


@pytest.mark.skipif('bf16' not in cpu_precisions(), reason='this CPU has no bfloat16 support in OpenVINO')
def test_openvino_bf16_finds_the_same_peaks(files) -> None:
    crops = np.random.default_rng(1).standard_normal((4, 3, 128, 96)).astype(np.float32)
    expected = estimator(files['pth'], 'torch').forward(crops)
    got = estimator(files['xml'], 'openvino', 'bf16').forward(crops)
    assert 0 < np.abs(got - expected).max() < 0.1 * np.abs(expected).max()  # bf16 rounding, not float32 exactness
    peaks = lambda h: h.reshape(*h.shape[:2], -1).argmax(-1)  # noqa: E731
    assert (peaks(got) == peaks(expected)).mean() > 0.9


def test_bf16_on_a_cpu_without_it_is_one_clear_error(files, monkeypatch) -> None:
    import lib.export.openvino as ov_module
    monkeypatch.setattr(ov_module, 'cpu_precisions', lambda: ('fp32', 'int8'))
    with pytest.raises(BackendError, match='OpenVINO cannot run it on this CPU'):
        estimator(files['xml'], 'openvino', 'bf16')


@pytest.mark.parametrize('backend, precision, key, message', [
    ('onnxruntime', 'int8', 'onnx', 'a float model but TEST.PRECISION is int8'),
    ('openvino', 'int8', 'pth', 'int8 needs a quantised file'),
    ('torch', 'fp32', 'onnx', 'TEST.BACKEND torch reads PyTorch checkpoints, not this file; TEST.BACKEND onnxruntime or openvino runs it'),
    ('onnxruntime', 'bf16', 'onnx', 'onnxruntime runs fp32, int8'),
    ('onnxruntime', 'fp32', 'missing', 'weights file not found'),
])
def test_misfits_are_one_clear_error(files, backend, precision, key, message) -> None:
    path = files.get(key, os.path.join(os.path.dirname(files['pth']), 'missing.onnx'))
    with pytest.raises(BackendError, match=message):
        estimator(path, backend, precision)


def test_a_file_of_another_input_size_is_rejected(files) -> None:
    cfg = load_config(CFG, ['MODEL.IMAGE_SIZE', '[192,256]', 'MODEL.HEATMAP_SIZE', '[48,64]'])
    with pytest.raises(BackendError, match=r'takes input \[.*128, 96\].*needs \[N, 3, 256, 192\]'):
        load_network(cfg, files['xml'], 'openvino')


def test_a_missing_runtime_package_is_named(files, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, 'openvino', None)  # import openvino now raises ImportError
    with pytest.raises(BackendError, match=r'openvino is not installed \(pip install openvino\)'):
        estimator(files['xml'], 'openvino')


def test_file_precision_reads_the_graph(files) -> None:
    assert file_precision(files['onnx']) == file_precision(files['xml']) == 'fp32'


# --- tools/test.py through each runtime ---------------------------------------------------------------------
def run_test_tool(coco_tiny: str, out: str, model_file: str, backend: str) -> dict:
    opts = ['DATASET.ROOT', coco_tiny, 'OUTPUT_DIR', out, 'LOG_DIR', os.path.join(out, 'log'), 'WORKERS', '0',
            'TEST.MODEL_FILE', model_file, 'TEST.BACKEND', backend, *SMALL_INPUT]
    assert load_tool('test').main(['--cfg', CFG, '--device', 'cpu', *opts]) == 0
    with open(os.path.join(output_dirs(load_config(CFG, ['OUTPUT_DIR', out]))[0], 'metrics.json')) as f:
        return json.load(f)


@pytest.mark.slow
def test_tools_test_gives_the_same_ap_through_every_runtime(coco_tiny, files, tmp_path) -> None:
    """Evaluate what ships: the .onnx in onnxruntime and the .xml in OpenVINO score as the .pth in PyTorch."""
    reference = run_test_tool(coco_tiny, str(tmp_path / 'torch'), files['pth'], 'torch')
    assert set(reference) >= {'AP', 'AR'}
    for backend, key in (('onnxruntime', 'onnx'), ('openvino', 'xml')):
        metrics = run_test_tool(coco_tiny, str(tmp_path / backend), files[key], backend)
        assert metrics.keys() == reference.keys()
        for name, value in reference.items():
            assert metrics[name] == pytest.approx(value, abs=1e-3), (backend, name)
