"""Proof of exactness: our Lite-HRNet-18 reproduces the official implementation's outputs.

`tests/data/reference/litehrnet_18_coco_256x192.pth` is an official-format checkpoint with random
non-trivial weights and BN statistics; its `reference` entry holds a fixed input batch and the outputs
the unmodified official code computed from it (eval fp32 and fp64, train-mode BN, flip test).
"""
import os

import pytest
import torch

from lib.config import load_config
from lib.models import build_model
from lib.utils.checkpoint import load_weights

from conftest import REPO_ROOT

CFG = os.path.join(REPO_ROOT, 'experiments/coco/lite_hrnet/lite_hrnet_18_256x192.yaml')


pytestmark = pytest.mark.usefixtures('single_thread_module')  # small tensors: one thread is fastest


@pytest.fixture(scope='module')
def reference(request):
    from conftest import REFERENCE_CHECKPOINT as path
    return path, torch.load(path, map_location='cpu', weights_only=True)['reference']


def _model(path, **opts):
    cfg = load_config(CFG, [x for kv in opts.items() for x in kv])
    return load_weights(build_model(cfg), path)


def test_eval_fp32_and_intermediates(reference):
    path, ref = reference
    model = _model(path).eval()
    with torch.no_grad():
        assert torch.allclose(model.backbone.stem(ref['input']), ref['stem_out'], rtol=0, atol=1e-5)
        feats = model.backbone(ref['input'])
        assert (feats - ref['backbone_out']).abs().max() <= 1e-4
        assert (model.keypoint_head(feats) - ref['heatmaps']).abs().max() <= 1e-4
        # The BN-folded inference copy gives the same heatmaps.
        assert (model.fold_bn()(ref['input']) - ref['heatmaps']).abs().max() <= 1e-4


def test_eval_fp64(reference):
    path, ref = reference
    model = _model(path).double().eval()
    with torch.no_grad():
        out = model(ref['input'].double())
    assert (out - ref['heatmaps_float64']).abs().max() <= 1e-9


@pytest.mark.parametrize('with_cp', [False, True])
def test_train_mode_batchnorm(reference, with_cp):
    """Training-mode BN (batch statistics), with and without gradient checkpointing."""
    path, ref = reference
    model = _model(path, **{'MODEL.WITH_CP': with_cp}).train()
    out = model(ref['input'])
    assert (out.detach() - ref['heatmaps_train_mode_bn']).abs().max() <= 1e-4
    out.sum().backward()  # the checkpointed graph must also run backwards


def test_flip_test_shift(reference):
    path, ref = reference
    flip_back = pytest.importorskip('lib.codecs').flip_back
    flip_pairs = [(a, a + 1) for a in range(1, 17, 2)]
    model = _model(path).fold_bn()
    with torch.no_grad():
        out = model(ref['input'])
        flipped = flip_back(model(ref['input'].flip(3)), flip_pairs, shift=True)
    assert ((out + flipped) * 0.5 - ref['heatmaps_flip_test_shift']).abs().max() <= 1e-4
