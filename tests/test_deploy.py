"""The deploy form (lib/models/deploy.py) computes what the trained model computes, for every variant
and for the official checkpoint, and its ONNX graph stays in onnxruntime's blocked layout.

The layout bookkeeping is checked on its own: after a block, the slot a channel lands in must be
where channel_shuffle puts it; remapped convolutions must compute the original channels and neutral
ones; sigmoid(SATURATE) must be exactly 1 in PyTorch and in onnxruntime.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from conftest import realistic_model
from lib.config import load_config
from lib.models import VARIANTS, build_model, to_deploy
from lib.models.deploy import SATURATE, _processed_index, _shuffled, remap_conv, remap_depthwise
from lib.models.layers import concat_shuffle
from lib.utils.checkpoint import load_weights
from lib.utils.onnx_export import export_onnx

pytestmark = pytest.mark.usefixtures('single_thread')
def test_layout_after_block_is_where_channel_shuffle_puts_each_channel() -> None:
    # A block that leaves its processed half unchanged: physical slot p keeps its value, and the
    # logical channel it now represents must hold that value in the shuffled tensor.
    for layout in ([0, 1, 2, 3, 4, 5], [4, 0, 5, 2, 1, 3]):
        values = torch.arange(6.0).reshape(1, 6, 1, 1)
        logical = torch.empty_like(values)
        logical[0, layout, 0, 0] = values[0, :, 0, 0]  # logical order of the physical tensor
        shuffled = concat_shuffle(logical[:, :3], logical[:, 3:])
        new = _shuffled(layout)
        assert torch.equal(shuffled[0, new, 0, 0], values[0, :, 0, 0])
    assert _processed_index([4, 0, 5, 2, 1, 3]) == [1, -1, 2, -1, -1, 0]


def test_remapped_convs_compute_the_picked_channels_and_neutral_ones() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 3, 1)
    x = torch.randn(2, 4, 5, 5)
    in_index, out_index = [2, -1, 0, 3, 1], [1, -1, 2, 0]
    remapped = remap_conv(conv, in_index=in_index, out_index=out_index, fill_bias=SATURATE)
    physical = torch.cat([x[:, [2]], torch.full_like(x[:, :1], 7.0), x[:, [0, 3, 1]]], dim=1)
    out = remapped(physical)
    expected = conv(x)
    assert torch.allclose(out[:, [0, 2, 3]], expected[:, [1, 2, 0]], atol=1e-6)
    assert torch.equal(torch.sigmoid(out[:, 1]), torch.ones_like(out[:, 1]))  # the neutral channel weighs 1

    dw = nn.Conv2d(3, 3, 3, padding=1, groups=3)
    y = torch.randn(1, 4, 6, 6)
    remapped = remap_depthwise(dw, [2, -1, 0, 1], neutral='identity')
    out = remapped(y)
    assert torch.equal(out[:, 1], y[:, 1])  # identity channel: exactly the input
    # Physical slot p runs the kernel of channel [2, -1, 0, 1][p]: logical channel k sits in slot [2, 3, 0][k].
    assert torch.allclose(out[:, [2, 3, 0]], dw(y[:, [2, 3, 0]]), atol=1e-6)
    with pytest.raises(ValueError, match='stride 1'):
        remap_depthwise(nn.Conv2d(3, 3, 3, 2, 1, groups=3), [0, -1, 1], neutral='identity')


def test_saturated_sigmoid_is_exactly_one_in_pytorch_and_onnxruntime() -> None:
    import onnx.helper as oh
    import onnxruntime as ort
    assert torch.sigmoid(torch.tensor(SATURATE)).item() == 1.0
    graph = oh.make_graph([oh.make_node('Sigmoid', ['x'], ['y'])], 'g', [oh.make_tensor_value_info('x', 1, [1, 16])],
                          [oh.make_tensor_value_info('y', 1, [1, 16])])
    session = ort.InferenceSession(oh.make_model(graph, opset_imports=[oh.make_opsetid('', 17)]).SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    out = session.run(None, {'x': np.full((1, 16), SATURATE, np.float32)})[0]
    assert (out == 1.0).all()


@pytest.mark.parametrize('name', list(VARIANTS))
def test_deploy_form_equals_the_trained_model(name: str) -> None:
    model = realistic_model(name)
    deploy = to_deploy(model)
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(x), deploy(x)
    scale = float(expected.abs().max())
    assert scale > 0.05  # not a vacuous comparison
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, scale)
    with pytest.raises(RuntimeError, match='inference only'):
        deploy.train()
    with pytest.raises(ValueError, match='multiples of 32'):
        deploy(torch.zeros(1, 3, 120, 96))


def test_deploy_form_of_the_official_checkpoint(reference_dir) -> None:
    model = build_model(load_config(None, ['MODEL.NAME', 'litehrnet_18'])).eval()
    load_weights(model, os.path.join(reference_dir, 'litehrnet_18_coco_256x192.pth'))
    x = torch.randn(1, 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(x), to_deploy(model)(x)
    assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, float(expected.abs().max()))


def _reorders(path: str) -> tuple[int, int]:
    """(layout reorders, NCHWc nodes) in onnxruntime's optimised graph of the file."""
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = path + '.optimised'
    options.log_severity_level = 3
    ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    nodes = onnx.load(path + '.optimised').graph.node
    reorders = sum(n.op_type in ('ReorderInput', 'ReorderOutput') for n in nodes)
    return reorders, sum(n.domain == 'com.microsoft.nchwc' for n in nodes)


# (variant, NCHWc nodes in its deploy graph at least, reorders in its plain graph at least)
@pytest.mark.parametrize('name, min_nchwc, min_plain_reorders', [('litehrnet_18', 300, 100),
                                                                 ('naive_litehrnet_18', 300, 50)])
def test_deploy_graph_stays_in_the_blocked_layout(name: str, min_nchwc: int, min_plain_reorders: int,
                                                  tmp_path) -> None:
    """The speed of the deploy graph comes from onnxruntime never converting layouts mid-network
    (the plain export needs hundreds of reorders); a new Split/broadcast Mul would break that, and so
    would a branch whose channels are not whole NCHWc blocks (Naive-18's 30 and 60: zero-padded)."""
    model = realistic_model(name)
    deploy_reorders, deploy_nchwc = _reorders(export_onnx(to_deploy(model), tmp_path / 'deploy.onnx', (96, 128)))
    plain_reorders, plain_nchwc = _reorders(export_onnx(model.fold_bn(), tmp_path / 'plain.onnx', (96, 128)))
    if plain_nchwc == 0:
        pytest.skip('this CPU has no NCHWc kernels in onnxruntime (no AVX2): nothing to reorder')
    assert deploy_nchwc > min_nchwc
    assert deploy_reorders <= 2, deploy_reorders  # the heatmap output only
    assert plain_reorders > min_plain_reorders
    # A symbolic batch axis must not cost the layout (export_onnx names axis 0 'batch' throughout).
    dynamic = export_onnx(to_deploy(model), tmp_path / 'dynamic.onnx', (96, 128), dynamic_batch=True)
    assert _reorders(dynamic) == (deploy_reorders, deploy_nchwc)
