"""Post-training static int8 quantisation, with the layers that int8 would hurt found and kept in float.

    crops, source = calibration_crops(cfg)                    # 300 GT person crops of the train set, test transforms
    report = quantize(model, 'onnxruntime', 'm_int8.onnx', crops, calib_source=source)   # or 'openvino' (.xml)
    print(report.summary()); assert report.passed             # int8 peaks agree with float PyTorch on held-out crops

Step by step (`quantize_file` does 2-5 on a float ONNX file already exported from `to_deploy(model)`):
  1. `calibration_crops`: ground-truth person boxes of the config's training set (or whole images of a
     folder of person crops) cropped and normalised exactly as `PoseEstimator.preprocess` does.
  2. `layer_sensitivity`: for every convolution of the exported network (the deploy form), the damage
     that int8 on that layer alone does to the heatmaps: weights per output channel symmetric int8, its
     input per tensor uint8 over the calibrated range (what onnxruntime's QDQ and NNCF do). First an
     estimate for all layers at the cost of a few backward passes (the output error the layer's
     quantisation error causes, propagated linearly, measured along random output directions), then a
     direct simulation of the `verify` worst: heatmap error, peak shift and peak score change.
  3. `select_float_layers`: the layers whose cost stands out (>= `share` of all layers' cost together,
     at most `max_layers`), or the top k; `onnx_node_names` maps them to the file's Conv nodes, and
     `openvino_node_names` to the IR's (the node names of the ONNX file, kept by the converter).
  4. `quantize_onnx` (onnxruntime QDQ, QUInt8 activations with percentile ranges, per-channel QInt8
     weights) or `quantize_openvino` (NNCF), those layers excluded: weights and input in float.
  5. `peak_agreement` of the int8 file with float PyTorch on crops held out from calibration.

Speed: measured on a 2-core Sapphire Rapids VM (AVX-512 VNNI, AMX), 2 threads, Lite-HRNet-18 256x192, int8
is not faster than the float deploy graph at batch 1 (onnxruntime int8 ran at 0.5x its float speed,
OpenVINO int8 at 1.0x onnxruntime float): the network is dominated by per-operator costs (hundreds of
small depthwise, pooling, resize and elementwise operators), not by the arithmetic int8 speeds up. At
batch 32 OpenVINO int8 ran 2.0x (3.2x with bf16 for its float parts) the official export's speed.
onnxruntime, openvino and nncf are imported inside the functions that use them.
"""
from __future__ import annotations

import glob
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from lib.dataset import IMAGE_EXTENSIONS
from lib.dataset.transforms import box_to_center_scale, person_crop

from .runtime import file_runner

__all__ = ['INT8_RUNTIMES', 'DEFAULT_NUM_CROPS', 'DEFAULT_HOLDOUT', 'DEFAULT_SHARE', 'DEFAULT_MAX_FLOAT',
           'DEFAULT_MIN_AGREEMENT', 'MIN_CALIB_NUM', 'LayerCost', 'QuantReport', 'calibration_crops',
           'crops_to_draw', 'layer_sensitivity', 'select_float_layers', 'onnx_node_names', 'openvino_node_names',
           'quantize_onnx', 'quantize_openvino', 'peak_agreement', 'quantize_file', 'quantize', 'fake_quant_weight',
           'fake_quant_activation']

logger = logging.getLogger(__name__)

INT8_RUNTIMES = ('onnxruntime', 'openvino')  # the runtimes an int8 file is written for
DEFAULT_NUM_CROPS = 300  # calibration crops (the issue asks for >= 300 training crops)
DEFAULT_HOLDOUT = 64  # crops kept out of calibration to check the int8 file with
DEFAULT_SENSITIVITY_CROPS = 32  # crops the per-layer costs are measured on
# 'auto' keeps a layer in float when it costs >= 2 % of all layers' cost together, at most 8 layers. Measured with
# onnxruntime on the quick-start model (epoch 4, synthetic-val AP 0.170, GT boxes): every layer int8 AP 0.026,
# the 5 layers this picks in float 0.130, the 16 worst 0.129; at epoch 0 the heatmap error was 0.17 of the
# heatmaps' energy with none in float, 0.073 with the 3 layers >= 5 %, 0.059 with 4, 0.053 with 8.
DEFAULT_SHARE = 0.02
DEFAULT_MAX_FLOAT = 8
# report.passed: >= 80 % of the joints' int8 peaks within 1 heatmap pixel of float PyTorch. Measured: 68.5 % for
# the onnxruntime file whose AP collapsed (0.170 -> 0.026), 89-92 % for the usable files (AP 0.12-0.13), 83-87 %
# for the epoch-0 model (flat heatmaps, the hard case), 5 % with one layer's input crushed. A guard against
# broken files, not an AP guarantee: measure AP with tools/test.py TEST.BACKEND ... TEST.PRECISION int8.
DEFAULT_MIN_AGREEMENT = 0.8


# --- 1. calibration crops ---------------------------------------------------------------------------------
def calibration_crops(cfg, num: int = DEFAULT_NUM_CROPS, calib_dir: str | os.PathLike | None = None,
                      seed: int = 0) -> tuple[np.ndarray, str]:
    """(crops (n, 3, H, W) float32, where they came from): person crops with the test-time transforms.

    Default: `num` ground-truth person boxes drawn (with `seed`, without replacement) from the config's
    training set (DATASET.TRAIN_SET), each cropped with its centre and scale, no rotation, flip or
    other augmentation, and normalised as `PoseEstimator.preprocess` does. calib_dir: every image in
    that folder (.jpg, .png, ...) is taken whole as one person box, so it should hold person crops
    (e.g. cut out by your detector); `num` of them are drawn when there are more. With fewer persons or
    images than `num`, all are used and a warning says so (repeating crops adds nothing to min/max
    calibration). Missing or empty sources are errors naming the folder or the config keys.
    """
    if num < 1:
        raise ValueError(f'the number of calibration crops must be >= 1, got {num}')
    rng = np.random.default_rng(seed)
    if calib_dir:
        files = _image_files(os.fspath(calib_dir))
        picked = _sample(files, num, rng)
        boxes = [(path, None, None) for path in picked]
        source = f'{len(picked)} whole images of {os.fspath(calib_dir)} (each taken as one person box)'
        available = f'{len(files)} images in {os.fspath(calib_dir)}'
    else:
        records, where = _training_records(cfg)
        picked = _sample(records, num, rng)
        boxes = [(r['image_file'], r['center'], r['scale']) for r in picked]
        source = f'{len(picked)} ground-truth person boxes of {where}, seed {seed}'
        available = f'{len(records)} person boxes in {where}'
    if len(boxes) < num:
        logger.warning('calibration: only %s, fewer than the %d crops asked for; using all of them', available, num)
    return _crops(cfg, boxes), source


def _image_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'calibration folder {folder}: not a folder')
    files = sorted(p for p in glob.glob(os.path.join(folder, '*'))
                   if p.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(p))
    if not files:
        raise ValueError(f'calibration folder {folder}: no images ({", ".join(IMAGE_EXTENSIONS)}) in it; it '
                         f'should hold person crops, one person per image')
    return files


def _training_records(cfg) -> tuple[list[dict], str]:
    from lib.dataset import build_dataset, dataset_root
    where = (f'{cfg.DATASET.DATASET} DATASET.TRAIN_SET {cfg.DATASET.TRAIN_SET!r} '
             f'(DATASET.ROOT {dataset_root(cfg)})')
    try:
        dataset = build_dataset(cfg, is_train=True)
    except FileNotFoundError as err:
        raise FileNotFoundError(f'calibration set {where}: {err}; give a folder of person crops instead '
                                f'(calib_dir)') from None
    except (ValueError, KeyError, OSError) as err:
        raise ValueError(f'calibration set {where} cannot be read: {err}') from None
    if not dataset.db:
        raise ValueError(f'calibration set {where}: no annotated person boxes; give a folder of person crops '
                         f'instead (calib_dir)')
    return dataset.db, where


def _sample(items: list, num: int, rng: np.random.Generator) -> list:
    if len(items) <= num:
        return list(items)
    return [items[i] for i in np.sort(rng.choice(len(items), size=num, replace=False))]


def _crops(cfg, boxes: list) -> np.ndarray:
    """Crops of (image file, centre, scale) boxes; centre None: the whole image is the box."""
    from lib.dataset import read_image
    width, height = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    crops = np.empty((len(boxes), 3, height, width), dtype=np.float32)
    image, image_file = None, None
    for i, (path, center, scale) in enumerate(boxes):
        if path != image_file:  # boxes are in data set order: consecutive boxes often share an image
            image, image_file = read_image(path), path
        if center is None:
            center, scale = box_to_center_scale((0, 0, image.shape[1], image.shape[0]), width / height)
        crops[i] = person_crop(image, center, scale, (width, height), bool(cfg.DATASET.COLOR_RGB))
    return crops


# --- 2. per-layer sensitivity -----------------------------------------------------------------------------
def fake_quant_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel symmetric int8 (levels -127..127, scale max|w| / 127), as onnxruntime and NNCF."""
    scale = weight.detach().abs().amax(dim=tuple(range(1, weight.dim())), keepdim=True) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.round(weight / scale).clamp(-127, 127) * scale


def fake_quant_activation(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Per-tensor asymmetric uint8 over [min(low, 0), max(high, 0)] (onnxruntime's MinMax calibration)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / 255.0
    if scale <= 0:
        return x
    zero = round(-low / scale)
    return (torch.round(x / scale) + zero).clamp(0, 255).sub(zero).mul(scale)


@dataclass
class LayerCost:
    """What int8 on one convolution alone does to the heatmaps.

    cost: the output error energy relative to the heatmaps' (sum (int8 - float)^2 / sum float^2): the
    direct measurement where there is one, else the estimate. Errors of independent layers add up
    roughly, so costs can be compared as shares of their sum.
    """

    name: str  # module name in the exported network (e.g. backbone.stage0.0.blocks.0.depthwise.1)
    kind: str  # 'conv', 'depthwise' or 'head'
    estimate: float  # linearised estimate (all layers)
    measured: float = math.nan  # direct simulation (the `verify` worst estimates)
    shift: float = math.nan  # measured: mean peak displacement, heatmap pixels
    moved: float = math.nan  # measured: fraction of peaks moved by more than 1 heatmap pixel
    score_change: float = math.nan  # measured: mean |peak score change|

    @property
    def cost(self) -> float:
        return self.estimate if math.isnan(self.measured) else self.measured

    def describe(self, total: float) -> str:
        text = f'{self.name} ({self.kind}): cost {self.cost:.2e} ({100 * self.cost / total:.1f} % of all layers)'
        if not math.isnan(self.measured):
            text += (f', peaks moved {self.shift:.3f} px on average ({100 * self.moved:.1f} % by > 1 px), '
                     f'|score change| {self.score_change:.4f}')
        return text


def _conv_kind(name: str, conv: nn.Conv2d, head_name: str | None) -> str:
    if name == head_name:
        return 'head'
    return 'depthwise' if conv.groups > 1 and conv.groups == conv.in_channels else 'conv'


def _batches(x: np.ndarray, batch_size: int):
    for start in range(0, len(x), batch_size):
        yield torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size], dtype=np.float32))


@torch.no_grad()
def _forward(model: nn.Module, crops: np.ndarray, batch_size: int) -> torch.Tensor:
    return torch.cat([model(x) for x in _batches(crops, batch_size)])


def layer_sensitivity(model: nn.Module, crops: np.ndarray, probes: int = 4, verify: int = 8, batch_size: int = 8,
                      seed: int = 0) -> list[LayerCost]:
    """Every nn.Conv2d of `model` (the network that is exported, e.g. `to_deploy(model)`), ranked worst first.

    Input ranges are calibrated on `crops` (min/max of each convolution's input). The estimate for all
    layers comes from one forward pass and `probes` backward passes: each convolution's output error
    under int8 (weights and input), d_l = conv(q(x), q(w)) - conv(x, w), is exact; its effect on the
    heatmaps, J_l d_l, is linearised, and E_v[(v . J_l d_l)^2] = |J_l d_l|^2 over random normal output
    directions v, so one backward pass per probe serves every layer at once (366 forward passes per
    crop would take ~100x longer for Lite-HRNet-18). Then the `verify` worst estimates are measured
    directly: the network run with that layer in int8, against float.
    """
    model = model.eval()
    crops = np.asarray(crops, dtype=np.float32)
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    if not convs:
        raise ValueError(f'{type(model).__name__} has no nn.Conv2d layers to rank')
    head_name = next((n for n in convs if n.endswith('final_layer')), list(convs)[-1])
    ranges = {name: [math.inf, -math.inf] for name in convs}

    def record(name):
        def hook(module, inputs):
            r = ranges[name]
            r[0], r[1] = min(r[0], float(inputs[0].min())), max(r[1], float(inputs[0].max()))
        return hook

    handles = [m.register_forward_pre_hook(record(n)) for n, m in convs.items()]
    try:
        reference = _forward(model, crops, batch_size)
    finally:
        for h in handles:
            h.remove()
    signal = float(reference.square().sum()) or 1.0
    q_weights = {name: fake_quant_weight(m.weight.detach()) for name, m in convs.items()}
    energy = _estimate_energy(model, crops, convs, ranges, q_weights, probes, batch_size, seed)
    table = {name: LayerCost(name, _conv_kind(name, m, head_name), energy[name] / signal) for name, m in convs.items()}
    ranked = sorted(table.values(), key=lambda c: c.estimate, reverse=True)
    for cost in ranked[:max(0, verify)]:
        out = _with_int8_layer(model, convs[cost.name], q_weights[cost.name], ranges[cost.name], crops, batch_size)
        cost.measured = float((out - reference).square().sum()) / signal
        agreement = peak_agreement(reference.numpy(), out.numpy())
        cost.shift, cost.moved = agreement['shift'], 1.0 - agreement['within_1px']
        cost.score_change = agreement['score_diff']
    return sorted(table.values(), key=lambda c: c.cost, reverse=True)


def _estimate_energy(model, crops, convs, ranges, q_weights, probes, batch_size, seed) -> dict[str, float]:
    """Per layer: sum over crops of |J_l d_l|^2, estimated with `probes` random output directions."""
    energy = dict.fromkeys(convs, 0.0)
    generator = torch.Generator().manual_seed(seed)
    probes = max(1, int(probes))
    for x in _batches(crops, batch_size):
        outputs, errors = {}, {}

        def keep(name):
            def hook(module, inputs, output):
                with torch.no_grad():
                    low, high = ranges[name]
                    quantised = module._conv_forward(fake_quant_activation(inputs[0], low, high), q_weights[name],
                                                     module.bias)
                outputs.setdefault(name, []).append(output)
                errors.setdefault(name, []).append(quantised - output.detach())
            return hook

        handles = [m.register_forward_hook(keep(n)) for n, m in convs.items()]
        try:
            with torch.enable_grad():
                y = model(x.requires_grad_(True))
        finally:
            for h in handles:
                h.remove()
        names = [n for n in convs for _ in outputs.get(n, [])]
        tensors = [t for n in convs for t in outputs.get(n, [])]
        deltas = [d for n in convs for d in errors.get(n, [])]
        for k in range(probes):
            v = torch.randn(y.shape, generator=generator)
            grads = torch.autograd.grad(y, tensors, grad_outputs=v, retain_graph=k + 1 < probes, allow_unused=True)
            for name, grad, delta in zip(names, grads, deltas):
                if grad is not None:
                    energy[name] += float((grad * delta).flatten(1).sum(1).square().sum()) / probes
    return energy


@torch.no_grad()
def _with_int8_layer(model, conv: nn.Conv2d, q_weight, value_range, crops, batch_size) -> torch.Tensor:
    """The model's heatmaps with `conv` alone in int8 (weights and input)."""
    low, high = value_range
    handle = conv.register_forward_pre_hook(lambda m, inputs: (fake_quant_activation(inputs[0], low, high),))
    weight = conv.weight.data
    conv.weight.data = q_weight
    try:
        return _forward(model, crops, batch_size)
    finally:
        conv.weight.data = weight
        handle.remove()


def _peaks(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax (x, y) (N, K, 2) and peak value (N, K) of heatmaps (N, K, h, w)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(-1)
    return np.stack([index % w, index // w], axis=-1), np.take_along_axis(flat, index[..., None], -1)[..., 0]


def peak_agreement(reference: np.ndarray, heatmaps: np.ndarray) -> dict[str, float]:
    """How far the heatmap peaks of `heatmaps` are from those of `reference` (both (N, K, h, w)).

    within_1px: fraction of joints whose argmax is within 1 heatmap pixel (|dx| <= 1 and |dy| <= 1);
    shift: mean argmax distance (heatmap pixels); score_diff: mean |peak score difference|, the score at
    each one's own argmax (what the decoder reports); rel_error: sum (heatmaps - reference)^2 / sum
    reference^2, the unit of the sensitivity costs.
    """
    reference, heatmaps = np.asarray(reference, np.float32), np.asarray(heatmaps, np.float32)
    if reference.shape != heatmaps.shape:
        raise ValueError(f'heatmaps {heatmaps.shape} and reference {reference.shape} differ in shape')
    ref_peaks, ref_scores = _peaks(reference)
    peaks, scores = _peaks(heatmaps)
    return {'within_1px': float((np.abs(peaks - ref_peaks).max(-1) <= 1).mean()),
            'shift': float(np.linalg.norm(peaks - ref_peaks, axis=-1).mean()),
            'score_diff': float(np.abs(scores - ref_scores).mean()),
            'rel_error': float(np.square(heatmaps - reference).sum() / max(float(np.square(reference).sum()), 1e-30))}


# --- 3. which layers stay in float, and their names in the files ------------------------------------------
def select_float_layers(table: Sequence[LayerCost], count: int | str = 'auto', share: float = DEFAULT_SHARE,
                        max_layers: int = DEFAULT_MAX_FLOAT) -> list[LayerCost]:
    """The layers to keep in float: the `count` worst, or ('auto') each layer whose cost is at least
    `share` of all layers' cost together, worst first, at most `max_layers`."""
    ranked = sorted(table, key=lambda c: c.cost, reverse=True)
    if count != 'auto':
        if int(count) < 0:
            raise ValueError(f'the number of float layers must be >= 0, got {count}')
        return ranked[:int(count)]
    total = sum(c.cost for c in ranked)
    return [c for c in ranked if total > 0 and c.cost >= share * total][:max_layers]


def _module_of_scope(node_name: str) -> str:
    """Module name of a TorchScript-exported node name, '/backbone/stage0/stage0.0/blocks.0/depthwise.1/Conv'
    -> 'backbone.stage0.0.blocks.0.depthwise.1': each scope step names a child, a container's items as
    '<container>.<index>'."""
    parts = [p for p in node_name.split('/')[:-1] if p]
    name, previous = '', ''
    for part in parts:
        if previous and part.startswith(previous + '.'):
            name += part[len(previous):]  # 'stage0.0' under 'stage0': item 0 of stage0
        else:
            name = f'{name}.{part}' if name else part
        previous = part
    return name


def onnx_node_names(onnx_path: str | os.PathLike, module_names: Sequence[str]) -> dict[str, list[str]]:
    """Module name -> the Conv node names it became in a file written by `lib.export.export_onnx` (the
    TorchScript exporter names nodes by module scope; the weight initializer '<module>.weight' confirms
    it). A module with no Conv node is an error naming it."""
    import onnx
    wanted = set(module_names)
    found: dict[str, list[str]] = {}
    for node in onnx.load(os.fspath(onnx_path), load_external_data=False).graph.node:
        if node.op_type != 'Conv':
            continue
        name = _module_of_scope(node.name)
        if name not in wanted and len(node.input) > 1 and node.input[1].endswith('.weight'):
            name = node.input[1][:-len('.weight')]
        if name in wanted:
            found.setdefault(name, []).append(node.name)
    missing = [n for n in module_names if n not in found]
    if missing:
        raise ValueError(f'{os.fspath(onnx_path)}: no Conv node for the layers {missing[:5]}'
                         f'{" ..." if len(missing) > 5 else ""}; was it exported from this network by export_onnx?')
    return found


def openvino_node_names(model, onnx_names: Sequence[str]) -> dict[str, str]:
    """ONNX Conv node name -> the name of its (Group)Convolution in an ov.Model converted from that file
    (the converter keeps ONNX node names, moving the bias into an Add and naming the convolution
    '<onnx name>/WithoutBiases')."""
    convs = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() in ('Convolution', 'GroupConvolution'):
            name = op.get_friendly_name()
            convs[name[:-len('/WithoutBiases')] if name.endswith('/WithoutBiases') else name] = name
    missing = [n for n in onnx_names if n not in convs]
    if missing:
        raise ValueError(f'OpenVINO model: no convolution for the ONNX nodes {missing[:5]}')
    return {n: convs[n] for n in onnx_names}


# --- 4. the runtimes --------------------------------------------------------------------------------------
def quantize_onnx(float_onnx_path: str | os.PathLike, out_path: str | os.PathLike, crops: np.ndarray,
                  float_nodes: Sequence[str] = (), calibration: str = 'percentile', batch_size: int = 16) -> str:
    """onnxruntime static int8 (QDQ): QUInt8 activations calibrated on `crops`, per-channel symmetric QInt8
    weights, every operator onnxruntime quantises except the Conv nodes `float_nodes`, which keep float
    weights and read float inputs. Returns out_path.

    calibration: 'percentile' (default; each activation's range is its 0.001th to 99.999th percentile)
    or 'minmax' (the full range, which one outlier can stretch so far that every other value rounds to a
    few levels: on the quick-start model, synthetic-val AP 0.113 with 'minmax', 0.130 with 'percentile',
    float 0.170). Crops go through the calibration `batch_size` at a time, so memory stays that of one
    batch's activations.
    QUInt8 x QInt8 is onnxruntime's fast pair on x86 (QInt8 activations ran 2x slower here). Excluding a
    node only keeps its weights in float in onnxruntime: its input still comes through the
    Quantize/DequantizeLinear pair of the tensor, so those inputs are rewired to the float tensor here
    (Relu/Clip stay explicit nodes for that: QDQKeepRemovableActivations; onnxruntime fuses them into the
    QuantizeLinear at load time anyway).
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .runtime import INPUT_NAME

    methods = {'percentile': CalibrationMethod.Percentile, 'minmax': CalibrationMethod.MinMax}
    if calibration not in methods:
        raise ValueError(f'calibration must be one of {sorted(methods)}, got {calibration!r}')

    class Reader(CalibrationDataReader):
        """The crops in batches; quantize_static calibrates on one batch at a time (set_range)."""

        def __init__(self) -> None:
            self.starts = list(range(0, len(crops), batch_size))
            self.set_range(0, len(self.starts))

        def __len__(self) -> int:
            return len(self.starts)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pending = iter(self.starts[start_index:end_index])

        def get_next(self):
            start = next(self.pending, None)
            return None if start is None else {
                INPUT_NAME: np.ascontiguousarray(crops[start:start + batch_size], dtype=np.float32)}

    out_path = os.fspath(out_path)
    float_nodes = list(float_nodes)
    with tempfile.TemporaryDirectory() as folder:
        prepared = os.path.join(folder, 'prepared.onnx')
        # Symbolic shape inference cannot follow the Resize scales; ONNX shape inference and the
        # onnxruntime graph clean-up still run.
        quant_pre_process(os.fspath(float_onnx_path), prepared, skip_symbolic_shape=True)
        names = {node.name for node in onnx.load(prepared, load_external_data=False).graph.node}
        missing = [n for n in float_nodes if n not in names]
        if missing:
            raise ValueError(f'{os.fspath(float_onnx_path)}: no nodes named {missing[:5]}')
        # CalibStridedMinMax (despite its name, any method): collect and reduce one batch at a time.
        quantize_static(prepared, out_path, Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=methods[calibration], nodes_to_exclude=float_nodes,
                        extra_options={'QDQKeepRemovableActivations': True, 'CalibStridedMinMax': 1,
                                       'CalibPercentile': 99.999})
    if float_nodes:
        model = onnx.load(out_path)
        _float_inputs(model.graph, set(float_nodes))
        onnx.save(model, out_path)
    return out_path


def _float_inputs(graph, float_nodes: set[str]) -> None:
    """Give the nodes `float_nodes` float inputs: each input that comes through a Quantize/DequantizeLinear
    pair is read as the float tensor the pair was made from, by these nodes and by every other node that
    read the same pair (onnxruntime quantises a tensor once for all its readers, so the error a layer's input
    suffers reaches them all). Then drop the Quantize/DequantizeLinear nodes nothing reads any more."""
    producer = {out: node for node in graph.node for out in node.output}

    def source(name: str) -> str | None:
        """The float tensor a DequantizeLinear output was quantised from (None for other tensors)."""
        dq = producer.get(name)
        q = producer.get(dq.input[0]) if dq is not None and dq.op_type == 'DequantizeLinear' else None
        return q.input[0] if q is not None and q.op_type == 'QuantizeLinear' else None

    float_tensors = {source(name) for node in graph.node if node.name in float_nodes for name in node.input}
    float_tensors.discard(None)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if source(name) in float_tensors:
                node.input[i] = source(name)
    graph_outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | graph_outputs
        dead = [node for node in graph.node if node.op_type in ('QuantizeLinear', 'DequantizeLinear')
                and not any(out in read for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def quantize_openvino(float_onnx_path: str | os.PathLike, out_xml_path: str | os.PathLike, crops: np.ndarray,
                      float_nodes: Sequence[str] = (), preset: str = 'performance') -> str:
    """OpenVINO int8 IR (.xml + .bin, float32 weights where not quantised) made by NNCF from the float ONNX
    file, calibrated on every crop (one per NNCF sample); the ONNX Conv nodes `float_nodes` are in NNCF's
    ignored scope. preset: 'performance' (symmetric activations) or 'mixed' (asymmetric). Returns the path."""
    import nncf
    import openvino as ov

    from .openvino import write_openvino
    model = ov.Core().read_model(os.fspath(float_onnx_path))
    ignored = list(openvino_node_names(model, list(float_nodes)).values())
    presets = {'performance': nncf.QuantizationPreset.PERFORMANCE, 'mixed': nncf.QuantizationPreset.MIXED}
    if preset not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {preset!r}")
    crops = np.asarray(crops, dtype=np.float32)
    dataset = nncf.Dataset([crops[i:i + 1] for i in range(len(crops))])
    quantised = nncf.quantize(model, dataset, preset=presets[preset], subset_size=len(crops),
                              ignored_scope=nncf.IgnoredScope(names=ignored))
    return write_openvino(None, out_xml_path, model=quantised)


# --- 5. the whole step ------------------------------------------------------------------------------------
@dataclass
class QuantReport:
    """What `quantize_file` did: the file, its calibration, the float-kept layers and the check."""

    backend: str
    path: str
    num_crops: int  # calibration crops
    calib_source: str
    float_layers: list[LayerCost]  # kept in float, worst first
    float_nodes: list[str]  # their ONNX node names
    table: list[LayerCost]  # every layer, worst first
    num_check: int  # held-out crops the agreement is measured on
    agreement: dict[str, float]  # peak_agreement(float PyTorch, int8 file)
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    seconds: dict[str, float] = field(default_factory=dict)  # time of each step

    @property
    def passed(self) -> bool:
        return self.agreement.get('within_1px', 0.0) >= self.min_agreement

    def summary(self, top: int = 8) -> str:
        total = sum(c.cost for c in self.table) or 1.0
        lines = [f'int8 {self.backend} file {self.path}: calibrated on {self.num_crops} crops, checked on '
                 f'{self.num_check} more (crops: {self.calib_source})',
                 f'kept in float: {len(self.float_layers)} of {len(self.table)} convolutions'
                 + ''.join(f'\n  {c.describe(total)}' for c in self.float_layers),
                 f'sensitivity, worst {min(top, len(self.table))} (cost = heatmap error energy / heatmap energy '
                 f'with that layer alone in int8):']
        lines += [f'  {c.describe(total)}' for c in self.table[:top]]
        a = self.agreement
        lines.append(f'{"PASS" if self.passed else "FAIL"}: on {self.num_check} held-out crops, '
                     f'{100 * a["within_1px"]:.1f} % of the int8 peaks are within 1 heatmap pixel of float PyTorch '
                     f'(required {100 * self.min_agreement:.0f} %), mean shift {a["shift"]:.3f} px, '
                     f'mean |peak score difference| {a["score_diff"]:.4f}, heatmap error energy {a["rel_error"]:.2e} '
                     f'of the heatmaps\'')
        if self.seconds:
            lines.append('time: ' + ', '.join(f'{k} {v:.1f} s' for k, v in self.seconds.items()))
        return '\n'.join(lines)


def _exported_network(model: nn.Module) -> nn.Module:
    """The module whose layers the exported file holds: the deploy form of a PoseLiteHRNet (unless it is one
    already), any other module as it is."""
    from lib.models import PoseLiteHRNet

    from .deploy import to_deploy
    if isinstance(model, PoseLiteHRNet) and getattr(model, 'channel_block', None) is None:
        return to_deploy(model)
    return model.eval()


MIN_CALIB_NUM = 3  # the fewest calibration crops for which crops_to_draw adds one to check the int8 file on


def crops_to_draw(calib_num: int, holdout: int = DEFAULT_HOLDOUT) -> int:
    """How many crops to draw so that quantize_file's hold-out (the last min(holdout, n // 4), kept for
    the check) leaves exactly `calib_num` of them to calibrate on: a third as many again, up to holdout."""
    return calib_num + min(holdout, calib_num // 3)


def quantize_file(model: nn.Module, float_onnx_path: str | os.PathLike, out_path: str | os.PathLike, backend: str,
                  crops: np.ndarray, calib_source: str = 'given crops', float_layers: int | str = 'auto',
                  check_crops: np.ndarray | None = None, holdout: int = DEFAULT_HOLDOUT, threads: int = 2,
                  sensitivity_crops: int = DEFAULT_SENSITIVITY_CROPS, probes: int = 4, verify: int = 8,
                  min_agreement: float = DEFAULT_MIN_AGREEMENT, batch_size: int = 8,
                  exported: nn.Module | None = None, calibration: str = 'percentile') -> QuantReport:
    """int8 `out_path` (.onnx for 'onnxruntime', .xml for 'openvino') from `float_onnx_path`, the float
    deploy graph of `model` written by `export_onnx` (dynamic batch).

    crops: calibration crops (`calibration_crops`); the check runs on check_crops, or, without them, on
    the last `holdout` crops (at most a quarter), which are then left out of the calibration. float_layers:
    'auto' (`select_float_layers`' rule) or how many of the worst layers stay in float. exported: the
    module the file was exported from (default: `to_deploy(model)` for a PoseLiteHRNet, else `model`); the
    sensitivity is measured on it, the check compares the file with `model`. calibration: onnxruntime's
    ranges ('percentile' or 'minmax', see `quantize_onnx`); NNCF uses its own.
    """
    if backend not in INT8_RUNTIMES:
        raise ValueError(f'backend must be one of {INT8_RUNTIMES}, got {backend!r}')
    crops = np.asarray(crops, dtype=np.float32)
    if check_crops is None:
        held = min(int(holdout), len(crops) // 4)
        if held < 1:
            raise ValueError(f'{len(crops)} crops: too few to hold any out for the check; give check_crops')
        crops, check_crops = crops[:-held], crops[-held:]
    seconds = {}
    start = time.perf_counter()
    network = exported if exported is not None else _exported_network(model)
    table = layer_sensitivity(network, crops[:sensitivity_crops], probes=probes, verify=verify,
                              batch_size=batch_size)
    seconds['sensitivity'] = time.perf_counter() - start
    kept = select_float_layers(table, float_layers)
    names = onnx_node_names(float_onnx_path, [c.name for c in kept])
    float_nodes = [n for c in kept for n in names[c.name]]
    start = time.perf_counter()
    if backend == 'onnxruntime':
        quantize_onnx(float_onnx_path, out_path, crops, float_nodes, calibration=calibration)
    else:
        quantize_openvino(float_onnx_path, out_path, crops, float_nodes)
    seconds['quantisation'] = time.perf_counter() - start
    start = time.perf_counter()
    reference = _forward(model.eval(), check_crops, batch_size).numpy()
    run = file_runner(out_path, backend, 'int8', threads)
    heatmaps = np.concatenate([run(np.ascontiguousarray(check_crops[i:i + batch_size]))
                               for i in range(0, len(check_crops), batch_size)])
    seconds['check'] = time.perf_counter() - start
    return QuantReport(backend, os.fspath(out_path), len(crops), calib_source, kept, float_nodes, table,
                       len(check_crops), peak_agreement(reference, heatmaps), min_agreement, seconds)


def quantize(model: nn.Module, backend: str, out_path: str | os.PathLike, crops: np.ndarray,
             float_layers: int | str = 'auto', opset: int | None = None, **kwargs) -> QuantReport:
    """Export the deploy graph of `model` (float, dynamic batch) to a temporary file, then `quantize_file`."""
    from .onnx import DEFAULT_OPSET, export_onnx
    network = _exported_network(model)
    crops = np.asarray(crops, dtype=np.float32)
    with tempfile.TemporaryDirectory() as folder:
        float_path = export_onnx(network, os.path.join(folder, 'float.onnx'), (crops.shape[3], crops.shape[2]),
                                 opset=opset or DEFAULT_OPSET, dynamic_batch=True)
        return quantize_file(model, float_path, out_path, backend, crops, float_layers=float_layers,
                             exported=network, **kwargs)
