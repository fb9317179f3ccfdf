"""int8 quantisation (lib/export/quantize.py): calibration crops, per-layer sensitivity, onnxruntime and
OpenVINO files with the sensitive layers kept in float, and the check against float PyTorch.

The 'fragile' networks compute the same function as the originals, but one depthwise convolution's channel 0
is scaled by 1000 and the pointwise convolution that reads it divides that input by 1000 (what a network
with one outlier channel looks like): the pointwise input's per-tensor int8 range then spans +-1000x the
other channels, which all round to zero. Sensitivity must rank that pointwise layer first, and keeping it
in float must restore the int8 file's agreement with float.
"""
from __future__ import annotations

import json
import logging
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import COCO_TINY, SMALL_INPUT, realistic_model
from lib.config import load_config
from lib.core.inference import PoseEstimator
from lib.dataset.transforms import box_to_center_scale, normalize_image, person_crop
from lib.export import export_onnx, to_deploy
from lib.export.backends import file_precision
from lib.export.quantize import (DEFAULT_HOLDOUT, MIN_CALIB_NUM, calibration_crops, crops_to_draw,
                                 fake_quant_activation, fake_quant_weight, layer_sensitivity, onnx_node_names,
                                 openvino_node_names, peak_agreement, quantize, select_float_layers)

pytestmark = pytest.mark.usefixtures('single_thread')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COCO_YAML = os.path.join(REPO, 'experiments', 'coco', 'lite_hrnet', 'lite_hrnet_18_256x192.yaml')
FRAGILE = 1000.0


def coco_cfg(*opts):
    """The COCO config at 128x96 with coco_tiny's val2017 (12 annotated people) as its training set."""
    return load_config(COCO_YAML, ['DATASET.ROOT', COCO_TINY, 'DATASET.TRAIN_SET', 'val2017', *SMALL_INPUT, *opts])


@torch.no_grad()
def make_fragile(depthwise: nn.Conv2d, pointwise: nn.Conv2d, channel: int = 0) -> None:
    """Scale depthwise's output `channel` by FRAGILE and pointwise's reading of it by 1 / FRAGILE: same
    function, one outlier channel in pointwise's input."""
    depthwise.weight[channel] *= FRAGILE
    depthwise.bias[channel] *= FRAGILE
    pointwise.weight[:, channel] /= FRAGILE


def person_crops(num: int) -> np.ndarray:
    """Normalised 128x96 crops of coco_tiny's detector boxes (real images, several per person)."""
    with open(os.path.join(COCO_TINY, 'person_detection_results', 'COCO_val2017_detections_AP_H_56_person.json')) as f:
        dets = sorted(json.load(f), key=lambda d: -d['score'])[:num]
    with open(os.path.join(COCO_TINY, 'annotations', 'person_keypoints_val2017.json')) as f:
        files = {im['id']: im['file_name'] for im in json.load(f)['images']}
    crops = []
    for det in dets:
        image = cv2.imread(os.path.join(COCO_TINY, 'images', 'val2017', files[det['image_id']]))
        center, scale = box_to_center_scale(det['bbox'], 96 / 128)
        crops.append(person_crop(image, center, scale, (96, 128)))
    return np.stack(crops)


class TinyPose(nn.Module):
    """Four convolutions, (N, 3, 64, 48) crops -> (N, 4, 16, 12) 'heatmaps': quantises in a second."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.depthwise = nn.Conv2d(16, 16, 3, 2, 1, groups=16)
        self.pointwise = nn.Conv2d(16, 16, 1)
        self.final_layer = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(F.relu(self.pointwise(self.depthwise(F.relu(self.stem(x))))))


def tiny_crops(num: int = 40) -> np.ndarray:
    """Smooth random images (blurred noise, normalised like photos) at 64x48."""
    rng = np.random.default_rng(0)
    images = [cv2.GaussianBlur(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8), (7, 7), 2) for _ in range(num)]
    return np.stack([normalize_image(im) for im in images])


# ---------------------------------------------------------------------------------------------- crops
def test_calibration_crops_from_train_set_match_preprocess(caplog):
    cfg = coco_cfg()
    crops, source = calibration_crops(cfg, num=5, seed=3)
    assert crops.shape == (5, 3, 128, 96) and crops.dtype == np.float32
    assert 'ground-truth person boxes' in source and 'val2017' in source and '5 ' in source
    again, _ = calibration_crops(cfg, num=5, seed=3)
    np.testing.assert_array_equal(crops, again)  # reproducible with the seed
    assert not np.array_equal(crops, calibration_crops(cfg, num=5, seed=4)[0])
    with caplog.at_level(logging.WARNING):
        everyone, _ = calibration_crops(cfg, num=300)
    assert everyone.shape == (12, 3, 128, 96)  # coco_tiny has 12 annotated people: all used, with a warning
    assert 'only 12 person boxes' in caplog.text
    # The same crops PoseEstimator.preprocess makes from the same boxes: the annotated ones, in file order.
    from lib.dataset.coco import clean_box
    with open(os.path.join(COCO_TINY, 'annotations', 'person_keypoints_val2017.json')) as f:
        data = json.load(f)
    images = {im['id']: im for im in data['images']}
    anns = [a for a in data['annotations'] if not a['iscrowd'] and max(a['keypoints']) > 0]
    estimator = PoseEstimator(cfg, weights=nn.Identity())
    for crop, ann in zip(everyone, anns):
        image = images[ann['image_id']]
        box = clean_box(ann['bbox'], image['width'], image['height'])
        photo = cv2.imread(os.path.join(COCO_TINY, 'images', 'val2017', image['file_name']))
        expected, _, _ = estimator.preprocess(photo, np.array([box]))
        np.testing.assert_array_equal(crop, expected[0])


def test_calibration_crops_from_folder(tmp_path, caplog):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in [(90, 40, 3), (60, 80, 3), (120, 90, 3)]]
    for i, image in enumerate(images):
        cv2.imwrite(str(tmp_path / f'person{i}.png'), image)
    (tmp_path / 'notes.txt').write_text('not an image')
    cfg = coco_cfg()
    with caplog.at_level(logging.WARNING):
        crops, source = calibration_crops(cfg, num=10, calib_dir=tmp_path)
    assert crops.shape == (3, 3, 128, 96) and crops.dtype == np.float32
    assert 'only 3 images' in caplog.text and str(tmp_path) in source
    estimator = PoseEstimator(cfg, weights=nn.Identity())
    for crop, image in zip(crops, images):  # each image whole is the box
        expected, _, _ = estimator.preprocess(image, np.array([[0, 0, image.shape[1], image.shape[0]]]))
        np.testing.assert_array_equal(crop, expected[0])
    two, _ = calibration_crops(cfg, num=2, calib_dir=tmp_path, seed=1)
    assert two.shape == (2, 3, 128, 96)
    np.testing.assert_array_equal(two, calibration_crops(cfg, num=2, calib_dir=tmp_path, seed=1)[0])


def test_calibration_crops_errors(tmp_path):
    cfg = coco_cfg()
    with pytest.raises(ValueError, match=f'calibration folder {tmp_path}: no images'):
        calibration_crops(cfg, calib_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match='not a folder'):
        calibration_crops(cfg, calib_dir=tmp_path / 'missing')
    with pytest.raises(FileNotFoundError, match="DATASET.TRAIN_SET 'train2017'.*not found"):
        calibration_crops(coco_cfg('DATASET.TRAIN_SET', 'train2017'))
    with pytest.raises(ValueError, match='>= 1'):
        calibration_crops(cfg, num=0)


# ---------------------------------------------------------------------------------------------- simulation
def test_crops_to_draw_leaves_exactly_calib_num_after_the_holdout():
    """quantize_file holds out the last min(DEFAULT_HOLDOUT, n // 4) crops for the check; drawing
    crops_to_draw(k) leaves exactly k to calibrate on (convert2onnx --calib-num and the benchmark use it)."""
    for k in range(MIN_CALIB_NUM, 1000):
        n = crops_to_draw(k)
        held = min(DEFAULT_HOLDOUT, n // 4)
        assert held >= 1 and n - held == k, k
    assert crops_to_draw(MIN_CALIB_NUM - 1) // 4 == 0  # fewer: nothing left to check on (convert2onnx refuses)
    assert crops_to_draw(300) == 364


def test_fake_quant_grids():
    w = torch.tensor([[1.0, -0.5, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -3.0]]).reshape(3, 3, 1, 1)
    q = fake_quant_weight(w)
    np.testing.assert_allclose(q[0].flatten(), [1.0, -64 / 127, 32 / 127], rtol=1e-6)  # step 1/127 per channel
    assert torch.equal(q[1], w[1]) and torch.equal(q[2, [0, 2]], w[2, [0, 2]])  # zeros stay, the max is exact
    x = torch.tensor([-1.0, 0.0, 0.3, 2.0, 5.0])
    qa = fake_quant_activation(x, -1.0, 2.0)  # uint8 over [-1, 2]: step 3/255, zero exactly representable
    np.testing.assert_allclose(qa, [-1.0, 0.0, round(0.3 * 85) / 85, 2.0, 2.0], atol=1e-6)
    assert torch.equal(fake_quant_activation(x, 0.0, 0.0), x)  # no range: untouched


def test_peak_agreement():
    ref = np.zeros((2, 3, 8, 6), np.float32)
    ref[:, :, 4, 3] = 1.0
    moved = ref.copy()
    moved[0, 0, 4, 3], moved[0, 0, 5, 4] = 0.0, 0.8  # diagonal neighbour: within 1 px
    moved[1, 2, 4, 3], moved[1, 2, 0, 0] = 0.0, 0.5  # 5 px away
    a = peak_agreement(ref, moved)
    assert a['within_1px'] == pytest.approx(5 / 6)
    assert a['shift'] == pytest.approx((2 ** 0.5 + 5) / 6)
    assert a['score_diff'] == pytest.approx((0.2 + 0.5) / 6)
    assert a['rel_error'] == pytest.approx((1 + 0.8 ** 2 + 1 + 0.5 ** 2) / 6)


def test_sensitivity_ranks_the_fragile_layer_first():
    model = TinyPose().eval()
    crops = tiny_crops(16)
    calm = layer_sensitivity(model, crops, verify=4)
    make_fragile(model.depthwise, model.pointwise)
    table = layer_sensitivity(model, crops, verify=4)
    assert [c.name for c in table][0] == 'pointwise' and table[0].kind == 'conv'
    assert {c.name: c.kind for c in table}['final_layer'] == 'head'
    assert {c.name: c.kind for c in table}['depthwise'] == 'depthwise'
    fragile = table[0]
    assert fragile.cost > 10 * sum(c.cost for c in table[1:])  # crushed: it dwarfs every other layer
    assert fragile.cost > 100 * {c.name: c.cost for c in calm}['pointwise']
    for c in table[1:]:  # the linear estimate is within 30 % of the measured cost for errors of normal size
        assert c.estimate == pytest.approx(c.measured, rel=0.3)
    # Measured 0.021 for the crushed layer, estimated 0.039: the ReLU after it clips half of such a large
    # error, which the linearisation cannot see (hence the direct measurement of the worst layers).
    assert fragile.measured < fragile.estimate < 3 * fragile.measured
    assert fragile.moved > 0.3 and fragile.score_change > 0  # peaks do move
    assert [c.name for c in select_float_layers(table)] == ['pointwise']
    assert [c.name for c in select_float_layers(table, 2)] == ['pointwise', table[1].name]
    assert select_float_layers(table, 0) == []


# ---------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_quantize_keeps_the_fragile_layer_in_float(tmp_path, backend):
    """The whole step on TinyPose: with no float layers the crushed input ruins the file; 'auto' finds the
    layer, keeps its weights and input in float, and the file agrees with float PyTorch."""
    pytest.importorskip(backend)
    if backend == 'openvino':
        pytest.importorskip('nncf')
    model = TinyPose().eval()
    make_fragile(model.depthwise, model.pointwise)
    crops = tiny_crops(64)
    suffix = '.onnx' if backend == 'onnxruntime' else '.xml'
    plain = quantize(model, backend, tmp_path / f'all{suffix}', crops, float_layers=0, holdout=16, verify=2)
    report = quantize(model, backend, tmp_path / f'auto{suffix}', crops, holdout=16, verify=2)
    assert report.num_crops == 48 and report.num_check == 16 and len(report.table) == 4
    assert [c.name for c in report.float_layers] == ['pointwise'] and report.float_nodes == ['/pointwise/Conv']
    # Measured: 0.05 of the peaks within 1 px of float with every layer in int8 (onnxruntime and OpenVINO alike);
    # 1.0 (onnxruntime) and 0.95 (OpenVINO) with the pointwise layer in float.
    assert plain.agreement['within_1px'] < 0.2 and not plain.passed
    assert report.agreement['within_1px'] >= 0.9 and report.passed
    assert report.agreement['score_diff'] < plain.agreement['score_diff'] / 3
    text = report.summary()
    assert 'pointwise (conv): cost' in text and 'PASS' in text and '48 crops' in text
    assert file_precision(report.path) == 'int8'  # what TEST.PRECISION int8 in tools/test.py will find
    if backend == 'onnxruntime':
        graph = _onnx_graph(report.path)
        ops = [n.op_type for n in graph.node]
        assert ops.count('QuantizeLinear') >= 3 and ops.count('DequantizeLinear') >= 3
        assert _float_node(graph, '/pointwise/Conv') and not _float_node(graph, '/final_layer/Conv')
    else:
        assert _openvino_fq_inputs(report.path, '/pointwise/Conv') == (0, 0)
        assert _openvino_fq_inputs(report.path, '/final_layer/Conv') == (1, 1)


def _onnx_graph(path):
    import onnx
    return onnx.load(path).graph


def _float_node(graph, name: str) -> bool:
    """Whether node `name` reads no DequantizeLinear output: float input, weights and bias."""
    dequantized = {n.output[0] for n in graph.node if n.op_type == 'DequantizeLinear'}
    node = next(n for n in graph.node if n.name == name)
    return not any(i in dequantized for i in node.input)


def _openvino_fq_inputs(xml: str, onnx_name: str) -> tuple[int, int]:
    """(activation, weights) of the IR's convolution for ONNX node `onnx_name`: 1 where int8, i.e. the
    activation comes from a FakeQuantize, the weights from one or from an int8 constant (how the IR stores
    quantised weights: int8 Constant -> Convert -> Multiply by the scales)."""
    import openvino as ov
    model = ov.Core().read_model(xml)
    op = next(o for o in model.get_ordered_ops() if o.get_friendly_name() in (onnx_name, onnx_name + '/WithoutBiases'))

    def int8(node, depth):
        if node.get_type_name() == 'FakeQuantize':
            return True
        if node.get_type_name() == 'Constant':
            return node.get_output_element_type(0).get_type_name() in ('i8', 'u8')
        return depth > 0 and node.get_input_size() > 0 and int8(node.input_value(0).get_node(), depth - 1)
    return int(int8(op.input_value(0).get_node(), 0)), int(int8(op.input_value(1).get_node(), 4))


# ---------------------------------------------------------------------------------------------- Lite-HRNet-18
@pytest.fixture(scope='module')
def fragile_deploy(tmp_path_factory):
    """Deploy form of Lite-HRNet-18 at 128x96 with head projection 1's pointwise input made fragile, and its
    float ONNX file."""
    deploy = to_deploy(realistic_model('litehrnet_18'))
    project = deploy.backbone.head_layer.projects[1]
    make_fragile(project.depthwise, project.pointwise)
    path = export_onnx(deploy, tmp_path_factory.mktemp('quantize') / 'float.onnx', (96, 128), dynamic_batch=True)
    return deploy, path


FRAGILE_NAME = 'backbone.head_layer.projects.1.pointwise'


@pytest.mark.slow
def test_litehrnet_sensitivity_and_node_names(fragile_deploy):
    deploy, path = fragile_deploy
    table = layer_sensitivity(deploy, person_crops(8), probes=2, verify=2)
    assert len(table) == sum(isinstance(m, nn.Conv2d) for m in deploy.modules()) == 366
    # Measured: 27 % of all 366 layers' cost together (the head's last projection, naturally the most sensitive
    # layer of this random network, is next with 18 %).
    assert table[0].name == FRAGILE_NAME and table[0].cost > 0.2 * sum(c.cost for c in table)
    names = onnx_node_names(path, [c.name for c in table])
    assert names[FRAGILE_NAME] == ['/backbone/head_layer/projects.1/pointwise/Conv']
    assert names['keypoint_head.final_layer'] == ['/keypoint_head/final_layer/Conv']
    import onnx
    conv_nodes = {n.name: n for n in onnx.load(path).graph.node if n.op_type == 'Conv'}
    assert sorted(n for v in names.values() for n in v) == sorted(conv_nodes)  # one real node per layer
    for module, (node,) in names.items():  # and it holds that layer's weights
        assert conv_nodes[node].input[1] == module + '.weight'
    ov = pytest.importorskip('openvino')
    ov_names = openvino_node_names(ov.Core().read_model(path), list(conv_nodes))
    assert ov_names['/keypoint_head/final_layer/Conv'] == '/keypoint_head/final_layer/Conv/WithoutBiases'
    assert len(set(ov_names.values())) == 366


@pytest.mark.slow
@pytest.mark.parametrize('backend', ['onnxruntime', 'openvino'])
def test_litehrnet_int8_file(fragile_deploy, tmp_path, backend):
    pytest.importorskip(backend)
    deploy, _ = fragile_deploy
    crops = person_crops(40)
    out = tmp_path / ('int8.onnx' if backend == 'onnxruntime' else 'int8.xml')
    report = quantize(deploy, backend, out, crops, float_layers=2, holdout=8, sensitivity_crops=8, probes=2,
                      verify=2, calib_source='coco_tiny detector boxes')
    assert report.float_layers[0].name == FRAGILE_NAME and len(report.float_nodes) == 2
    fragile_node = '/backbone/head_layer/projects.1/pointwise/Conv'
    assert report.float_nodes[0] == fragile_node
    # Measured with Kaiming weights and random BN statistics on these crops: heatmap error 0.7e-3 (onnxruntime)
    # and 1.2e-3 (OpenVINO) of the heatmaps' energy; 64 % and 72 % of the peaks within 1 px of float PyTorch.
    # Random weights give flat heatmaps whose peaks move with tiny errors: trained models agree better.
    assert report.agreement['rel_error'] < 3e-3
    assert report.agreement['within_1px'] >= 0.5
    assert report.num_crops == 32 and report.num_check == 8
    if backend == 'onnxruntime':
        graph = _onnx_graph(str(out))
        ops = [n.op_type for n in graph.node]
        assert ops.count('QuantizeLinear') > 300 and ops.count('DequantizeLinear') > 600
        assert _float_node(graph, fragile_node)
        assert not _float_node(graph, '/backbone/head_layer/projects.0/pointwise/Conv')
    else:
        assert _openvino_fq_inputs(str(out), fragile_node) == (0, 0)
        assert _openvino_fq_inputs(str(out), '/backbone/head_layer/projects.0/pointwise/Conv') == (1, 1)
