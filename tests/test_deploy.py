"""The deploy form (lib/export/deploy.py) computes what the trained model computes, for every variant
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
from lib.export import export_onnx, graph_for_export, nchwc_block, optimized_graph, to_deploy
from lib.export.deploy import SATURATE, _processed_index, _shuffled, remap_conv, remap_depthwise
from lib.models import VARIANTS, PoseLiteHRNet, build_model
from lib.models.layers import concat_shuffle
from lib.utils.checkpoint import load_weights

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
    x = torch.randn(2, 3, 128, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
        for block in (8, 16):  # the AVX2 and the AVX-512 channel block, whatever this CPU is
            deploy = to_deploy(model, channel_block=block)
            got = deploy(x)
            scale = float(expected.abs().max())
            assert scale > 0.05  # not a vacuous comparison
            assert got.shape == expected.shape
            assert float((got - expected).abs().max()) <= 1e-5 * max(1.0, scale), block
    # The deploy form is the model with its parts converted: the same class and forward walk.
    assert isinstance(deploy, PoseLiteHRNet) and deploy.channel_block == 16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())
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
    nodes = optimized_graph(path).node
    reorders = sum(n.op_type in ('ReorderInput', 'ReorderOutput') for n in nodes)
    return reorders, sum(n.domain == 'com.microsoft.nchwc' for n in nodes)


def test_nchwc_block_is_what_onnxruntime_runs_on_this_cpu() -> None:
    """The detected block is 8 (AVX2) or 16 (AVX-512), or 0 without blocked kernels (then nothing to keep)."""
    assert nchwc_block() in (0, 8, 16)


# (variant, NCHWc nodes in its deploy graph at least, reorders in its plain graph at least, reorders with
# 8-channel blocks on a 16-block CPU at least: Lite-HRNet-18's 40-channel branches; Naive-18's are 32 and 64)
@pytest.mark.slow
@pytest.mark.parametrize('name, min_nchwc, min_plain_reorders, min_block8_reorders',
                         [('litehrnet_18', 300, 100, 20), ('naive_litehrnet_18', 300, 50, 0)])
def test_deploy_graph_stays_in_the_blocked_layout(name: str, min_nchwc: int, min_plain_reorders: int,
                                                  min_block8_reorders: int, tmp_path) -> None:
    """The speed of the deploy graph comes from onnxruntime never converting layouts mid-network
    (the plain export needs hundreds of reorders); a new Split/broadcast Mul would break that, and so
    would a branch whose channels are not whole NCHWc blocks. Checked on every CPU kind: the detected
    block, and 16 (whole blocks on AVX2 and AVX-512 alike), must keep the graph blocked; 8 must too
    where onnxruntime's block is 8, and costs reorders where it is 16 (why the block is detected)."""
    block = nchwc_block()
    if block == 0:
        pytest.skip('this CPU has no NCHWc kernels in onnxruntime (no AVX2): nothing to reorder')
    model = realistic_model(name)
    for channel_block in sorted({block, 8, 16}):
        path = export_onnx(to_deploy(model, channel_block), tmp_path / f'deploy{channel_block}.onnx', (96, 128))
        reorders, nchwc = _reorders(path)
        assert nchwc > min_nchwc, (channel_block, nchwc)
        if channel_block % block == 0:
            assert reorders <= 2, (channel_block, reorders)  # the heatmap output only
        else:  # 8-channel blocks on a 16-block CPU: a 40-channel tensor leaves the layout
            assert reorders >= min_block8_reorders, (channel_block, reorders)
    plain_reorders, _ = _reorders(export_onnx(graph_for_export(model, 'plain', fold_bn=True), tmp_path / 'plain.onnx',
                                              (96, 128)))
    assert plain_reorders > min_plain_reorders
    # A symbolic batch axis must not cost the layout (export_onnx names axis 0 'batch' throughout).
    fixed = _reorders(tmp_path / f'deploy{block}.onnx')
    dynamic = export_onnx(to_deploy(model), tmp_path / 'dynamic.onnx', (96, 128), dynamic_batch=True)
    assert _reorders(dynamic) == fixed
