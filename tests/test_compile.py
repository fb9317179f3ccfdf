"""Compiled execution (lib/core/compile.py): the same numbers as eager, for inference and training,
with the official state-dict names; one warning and eager numbers where it cannot compile; and
PoseEstimator.forward, the raw network call, whatever runs underneath.

Small input (64x64) and one variant keep compilation short; inductor's on-disk cache makes reruns faster.
"""
from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest
import torch

from lib.config import ConfigError, load_config
from lib.core import compile as compile_mod
from lib.core.compile import compile_model, compiled_regions, is_compiled
from lib.core.inference import PoseEstimator, flip_test_heatmaps
from lib.core.loss import build_loss
from lib.models import build_model
from lib.utils.checkpoint import load_weights
from lib.utils.training_state import save_model_file

pytestmark = pytest.mark.usefixtures('single_thread_module')  # small tensors; the machine may be shared
TINY = ['MODEL.IMAGE_SIZE', '[64,64]', 'MODEL.HEATMAP_SIZE', '[16,16]', 'MODEL.INIT', 'kaiming']


@functools.lru_cache(maxsize=1)
def _tiny_model():
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 64, 64))
    return cfg, model.eval()


def tiny_model():
    """(cfg, a fresh copy of litehrnet_18 at 64x64 in eval mode) with Kaiming weights and BatchNorm
    statistics of two random batches (realistic magnitudes: the official init makes every heatmap ~0
    and comparisons vacuous)."""
    cfg, model = _tiny_model()
    return cfg.clone(), copy.deepcopy(model)


@pytest.fixture(autouse=True)
def fresh_warning_state(monkeypatch):
    monkeypatch.setattr(compile_mod, '_warned', False)  # the fallback warns once per process


@pytest.fixture
def first_stage_only(monkeypatch):
    """Compile only the first stage's modules and the keypoint head: the same compile path (forward and
    backward graphs, shared graphs of same-shaped modules, names kept) at a fraction of the cold-cache
    compile time of the whole network, which CI pays on every run."""
    def regions(model):
        yield from model.backbone.stage0
        yield model.keypoint_head
    monkeypatch.setattr(compile_mod, 'compiled_regions', regions)


def fallback_warnings(record) -> list:
    return [w for w in record if 'torch.compile unavailable' in str(w.message)]


def test_regions_are_the_blocks_and_compiling_keeps_names() -> None:
    _, model = tiny_model()
    names = list(model.state_dict())
    regions = list(compiled_regions(model))
    assert sum(type(r).__name__ == 'LiteHRModule' for r in regions) == 2 + 4 + 2  # every module of every stage
    compile_model(model)  # compiling is lazy: nothing runs until the first call
    assert is_compiled(model) and list(model.state_dict()) == names
    # every module that held the eager 'train' kernels now holds the gather-free 'compiled' ones
    holders = [m for m in model.modules() if hasattr(m, 'kernels')]
    assert len(holders) > 20 and {m.kernels.name for m in holders} == {'compiled'}
    assert not any('_orig_mod' in n for n, _ in model.named_parameters())


@pytest.mark.slow
def test_compiled_bn_folded_eval_model_equals_eager(first_stage_only) -> None:
    _, model = tiny_model()
    folded = model.fold_bn()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = folded(x)
        compiled = compile_model(copy.deepcopy(folded))
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter('always')
            got = compiled(x)
    assert not fallback_warnings(record)
    assert expected.abs().max() > 1e-3  # a comparison of non-trivial heatmaps
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_compiled_training_steps_follow_eager_and_keep_state_dict_keys(first_stage_only, tmp_path) -> None:
    cfg, model = tiny_model()
    criterion = build_loss(cfg)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(4, 3, 64, 64, generator=g), torch.rand(4, cfg.MODEL.NUM_JOINTS, 16, 16, generator=g))
               for _ in range(3)]
    weight = torch.ones(4, cfg.MODEL.NUM_JOINTS, 1)

    def losses(net) -> list[float]:
        net.train()
        # SGD: updates proportional to the gradients (Adam's normalisation would magnify rounding
        # differences of near-zero gradients into full-size steps)
        optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        out = []
        for x, target in batches:
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(net(x), target, weight)
            loss.backward()
            optimizer.step()
            out.append(loss.item())
        return out

    eager = copy.deepcopy(model)
    compiled = compile_model(copy.deepcopy(model))
    expected, got = losses(eager), losses(compiled)  # the first compiled step compiles forward and backward
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert list(compiled.state_dict()) == list(eager.state_dict())
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        if a.is_floating_point():  # weights after SGD and the BatchNorm running statistics
            # Loose: batch-statistics BN over 2x2 maps at batch 4 turns float rounding into gradient
            # differences of up to ~1e-2 relative (BN biases followed by BN, whose true gradient is 0,
            # differ by ~1e-9 absolute), which three steps carry into the weights
            torch.testing.assert_close(b, a, rtol=5e-3, atol=1e-3, msg=lambda m: f'{name}: {m}')
        else:
            assert torch.equal(a, b), name  # num_batches_tracked: the same BN updates
    save_model_file(str(tmp_path / 'final_state.pth'), compiled, cfg)  # what tools/train.py writes
    load_weights(build_model(cfg), tmp_path / 'final_state.pth')  # strict: the official names, no _orig_mod.


def test_without_a_compiler_it_warns_once_and_runs_eagerly(monkeypatch) -> None:
    monkeypatch.setattr(compile_mod, 'compiler_available', lambda: (False, "'g++' is not on PATH (simulated)"))
    _, model = tiny_model()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        with pytest.warns(RuntimeWarning, match='running eagerly') as record:
            first = compile_model(copy.deepcopy(model))
            second = compile_model(copy.deepcopy(model))  # a second model: no second warning
            got = first(x), second(x)
    assert len(fallback_warnings(record)) == 1
    assert not is_compiled(first) and not is_compiled(second)
    for y in got:
        assert torch.equal(y, expected)


@pytest.mark.slow
def test_a_compile_failure_on_the_first_call_warns_once_and_runs_eagerly(first_stage_only, monkeypatch,
                                                                        tmp_path) -> None:
    """A compiler that is found but fails (here /bin/false): the first call falls back to eager."""
    from torch._inductor import config as inductor_config
    monkeypatch.setenv('TORCHINDUCTOR_CACHE_DIR', str(tmp_path))  # nothing cached: inductor must compile
    monkeypatch.setattr(inductor_config.cpp, 'cxx', ('/bin/false',))
    monkeypatch.setattr(compile_mod, 'compiler_available', lambda: (True, '/bin/false'))
    torch._dynamo.reset()
    _, model = tiny_model()
    x = torch.randn(2, 3, 64, 64)
    try:
        with torch.no_grad():
            expected = model(x)
            compiled = compile_model(copy.deepcopy(model))
            with pytest.warns(RuntimeWarning, match='running eagerly') as record:
                got, again = compiled(x), compiled(x)
    finally:
        torch._dynamo.reset()
    assert len(fallback_warnings(record)) == 1 and not is_compiled(compiled)
    assert torch.equal(got, expected) and torch.equal(again, expected)


def test_pose_estimator_forward_is_the_network_behind_predict(monkeypatch) -> None:
    cfg, model = tiny_model()
    cfg.defrost()
    cfg.TEST.BATCH_SIZE_PER_GPU = 2  # 3 crops: two calls, the second with one crop
    cfg.freeze()
    estimator = PoseEstimator(cfg, model, compile=False)
    assert estimator.compiled is False
    image = np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)
    boxes = np.array([[10, 5, 40, 60], [30, 10, 50, 50], [0, 0, 100, 80]], dtype=np.float64)
    crops, _, _ = estimator.preprocess(image, boxes)
    heatmaps = estimator.forward(crops)
    assert heatmaps.shape == (3, cfg.MODEL.NUM_JOINTS, 16, 16) and heatmaps.dtype == np.float32

    seen = []  # what predict decodes: flip_test_heatmaps' output, per batch
    def spy(*args, **kwargs):
        seen.append(flip_test_heatmaps(*args, **kwargs))
        return seen[-1]
    monkeypatch.setattr('lib.core.inference.flip_test_heatmaps', spy)
    estimator.flip_test = False
    estimator.predict(image, boxes)
    np.testing.assert_allclose(heatmaps, torch.cat(seen).numpy(), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match='crops must be'):
        estimator.forward(crops[:, :, :32])


def test_pose_estimator_compile_defaults_to_the_config(monkeypatch) -> None:
    monkeypatch.setattr(compile_mod, 'compiler_available', lambda: (True, 'g++'))
    cfg, model = tiny_model()
    cfg.defrost()
    cfg.TEST.COMPILE = True
    cfg.freeze()
    assert PoseEstimator(cfg, copy.deepcopy(model)).compiled  # compiled lazily: nothing is run here
    assert is_compiled(PoseEstimator(cfg, copy.deepcopy(model), fold_bn=True).model)
    assert not PoseEstimator(cfg, copy.deepcopy(model), compile=False).compiled


def test_compile_mode_comes_from_the_config(monkeypatch) -> None:
    """TEST.COMPILE_MODE reaches torch.compile ('default' as None); a mode torch does not have is refused."""
    monkeypatch.setattr(compile_mod, 'compiler_available', lambda: (True, 'g++'))
    modes = []
    monkeypatch.setattr(torch.nn.Module, 'compile', lambda self, **kw: modes.append(kw['mode']))
    cfg, model = tiny_model()
    for mode in ('default', 'reduce-overhead'):
        cfg.defrost()
        cfg.TEST.COMPILE_MODE = mode
        cfg.freeze()
        PoseEstimator(cfg, copy.deepcopy(model), compile=True)
    regions = len(list(compile_mod.compiled_regions(model)))
    assert modes == [None] * regions + ['reduce-overhead'] * regions
    with pytest.raises(ConfigError, match="TEST.COMPILE_MODE"):
        load_config(None, ['TEST.COMPILE_MODE', 'fast'])
