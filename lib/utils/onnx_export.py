"""Export a pose network to ONNX and check the file in onnxruntime against PyTorch.

    report = export_and_check(model, 'model.onnx', (192, 256), {'random': x}, dynamic_batch=True)
    print(report.summary()); assert report.passed        # max |onnxruntime - PyTorch| <= 1e-4

By default a PoseLiteHRNet is exported in its deploy form (`lib.models.deploy.to_deploy`: BatchNorm
folded, no split/shuffle copies, every operator kept in onnxruntime's blocked NCHWc layout), about 1.5x
faster in onnxruntime for Lite-HRNet-18 than the model exported as written (graph='plain', or 'official':
the official code's idioms). Whichever graph, the file is
compared with the model as given. Step by step: `export_onnx` -> `check_onnx_file` (onnx.checker) -> `create_session` (graph
optimisation level ALL) -> `max_abs_diff`.

The graph has one input 'input' (N, 3, H, W) float32 (normalised crops, as `PoseEstimator.preprocess`
makes them) and one output 'heatmaps' (N, K, H/4, W/4). We use the TorchScript-based exporter
(`dynamo=False`): the torch.export-based one needs the extra `onnxscript` package and gains nothing
for this static, control-flow-free network.
"""
from __future__ import annotations

import collections
import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['INPUT_NAME', 'OUTPUT_NAME', 'DEFAULT_OPSET', 'DEFAULT_ATOL', 'GRAPHS', 'ExportReport', 'export_and_check',
           'graph_for_export', 'export_onnx', 'check_onnx_file', 'op_types', 'create_session', 'run_session', 'max_abs_diff']

INPUT_NAME = 'input'
OUTPUT_NAME = 'heatmaps'
DEFAULT_OPSET = 17  # read by every current runtime (onnxruntime, TensorRT, OpenVINO, ncnn/MNN converters)
DEFAULT_ATOL = 1e-4  # max |onnxruntime - PyTorch| accepted on heatmaps
# What export_and_check writes: the deploy form; the model as written, each operation as one ONNX
# operator with constant sizes; or the model as written in the official repository's idioms (the
# baseline users get from exporting the official code: sizes read from tensors at run time).
GRAPHS = ('deploy', 'plain', 'official')


def graph_for_export(model: nn.Module, graph: str = 'deploy', fold_bn: bool = False) -> nn.Module:
    """The network to export: `to_deploy(model)` for graph='deploy' (BatchNorm always folded), else the
    model itself, or `model.fold_bn()` with fold_bn ('plain' and 'official' differ only in how
    `export_onnx(..., idioms=graph)` writes it). Deploy needs a PoseLiteHRNet."""
    if graph not in GRAPHS:
        raise ValueError(f'graph must be one of {GRAPHS}, got {graph!r}')
    if graph == 'deploy':
        from lib.models.deploy import to_deploy
        from lib.models.litehrnet import PoseLiteHRNet
        if not isinstance(model, PoseLiteHRNet):
            raise ValueError(f"the deploy graph is built from a PoseLiteHRNet, got {type(model).__name__}; "
                             "use graph='plain'")
        return to_deploy(model)
    if fold_bn and not callable(getattr(model, 'fold_bn', None)):
        raise ValueError(f'--fold-bn needs a model with a fold_bn() method; {type(model).__name__} has none')
    return model.fold_bn() if fold_bn else model


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, batch_size: int = 1,
                idioms: str = 'plain') -> str:
    """Write `model` (in eval mode) to `path`; input_size is (W, H). Returns the path.

    dynamic_batch=True makes the batch axis symbolic ('batch'); otherwise it is fixed to batch_size.
    idioms: the graph (one of GRAPHS) `model` came from, which says how lib.models' resize/pool/
    shuffle helpers are written into the file: 'plain' (one operator each, constant sizes) or
    'official' (as the official Lite-HRNet code writes them); the deploy form uses none of them.
    """
    if idioms not in _IDIOMS:
        raise ValueError(f'idioms must be one of {tuple(_IDIOMS)}, got {idioms!r}')
    if idioms == 'official' and dynamic_batch:
        # The TorchScript exporter rejects adaptive pooling to a size read from a tensor once the
        # batch axis is symbolic: the export failure reported against the official code.
        raise ValueError("the official idioms export with a fixed batch only (adaptive pooling to a size "
                         "read at run time); use the 'deploy' or 'plain' graph for a dynamic batch")
    path = os.fspath(path)
    width, height = int(input_size[0]), int(input_size[1])
    model = model.eval()
    dummy = torch.zeros(batch_size, 3, height, width)
    axes = {INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}} if dynamic_batch else None
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad(), _constant_pool_kernels(), _swapped_kernels(_IDIOMS[idioms]):
        # The TorchScript exporter announces its deprecation on every call; it is the one we chose.
        warnings.simplefilter('ignore', category=DeprecationWarning)
        warnings.simplefilter('ignore', category=FutureWarning)
        # Shape comparisons in the model become constants of the trace; that is intended (static H, W).
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        try:
            torch.onnx.export(model, (dummy,), path, dynamo=False, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamic_axes=axes,
                              do_constant_folding=True, external_data=False)
        except torch.onnx.errors.OnnxExporterError as err:
            # The exporter's message embeds the whole TorchScript graph; keep its first line.
            raise RuntimeError(f'ONNX export of {type(model).__name__} failed: {str(err).splitlines()[0]}') from None
    if dynamic_batch:
        _share_batch_axis(path)
    return path


def _share_batch_axis(path: str) -> None:
    """Give every activation's axis 0 the one symbolic name 'batch', in the file's value_info.

    With a symbolic batch, ONNX shape inference invents a new name (unk__N) for axis 0 after operators
    such as Resize, so onnxruntime cannot prove that two addends have equal shapes and runs each Add
    (and every Resize of a computed size) outside its blocked NCHWc layout, with a reorder on both
    sides: about 320 reorders in Lite-HRNet-18's deploy graph, 1.6x slower than a fixed batch.
    In these networks every activation of rank >= 3 is (N, ...), so naming axis 0 'batch' throughout
    states a fact the inference lost; onnxruntime takes value_info as known shapes.
    """
    import onnx
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    for info in list(model.graph.value_info) + list(model.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) >= 3 and not dims[0].HasField('dim_value'):
            dims[0].dim_param = 'batch'
    onnx.save(model, path)


@contextlib.contextmanager
def _constant_pool_kernels():
    """While tracing, turn avg_pool2d kernel sizes and strides computed from tensor shapes into constants.

    The TorchScript tracer records `x.shape[-1] // k` as shape arithmetic, and with a symbolic batch
    axis ONNX AveragePool then receives a computed, not a constant, kernel, which the exporter
    rejects. Spatial sizes are fixed for a given input size, so freezing them is exact; the batch
    axis is untouched. (Adapter for a model that pools with `F.avg_pool2d(x, kernel_from_shape)`.)
    """
    original = F.avg_pool2d

    def as_ints(value):
        return value if value is None else (int(value) if not isinstance(value, (tuple, list))
                                            else tuple(int(v) for v in value))

    def avg_pool2d(x, kernel_size, stride=None, *args, **kwargs):
        return original(x, as_ints(kernel_size), as_ints(stride), *args, **kwargs)

    F.avg_pool2d = avg_pool2d
    try:
        yield
    finally:
        F.avg_pool2d = original


def check_onnx_file(path: str | os.PathLike) -> None:
    """Run onnx.checker (with shape inference); raises onnx.checker.ValidationError on a bad graph."""
    import onnx
    onnx.checker.check_model(os.fspath(path), full_check=True)


def op_types(path: str | os.PathLike) -> collections.Counter:
    """How often each ONNX operator type occurs in the main graph of the file."""
    import onnx
    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    return collections.Counter(node.op_type for node in graph.node)


def create_session(path: str | os.PathLike, threads: int = 2, optimize: bool = True):
    """onnxruntime CPU session; graph optimisation level ALL (constant folding, conv+BN/activation fusion)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(os.fspath(path), options, providers=['CPUExecutionProvider'])


def run_session(session, images: np.ndarray) -> np.ndarray:
    """Heatmaps (N, K, h, w) of normalised crops (N, 3, H, W) float32."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]


@torch.no_grad()
def max_abs_diff(model: nn.Module, session, inputs: Sequence[np.ndarray]) -> list[tuple[float, float]]:
    """For each input batch (N, 3, H, W): (max |onnxruntime - PyTorch|, max |PyTorch|) over the heatmaps."""
    model = model.eval()
    out = []
    for x in inputs:
        x = np.ascontiguousarray(x, dtype=np.float32)
        expected = model(torch.from_numpy(x)).numpy()
        got = run_session(session, x)
        if got.shape != expected.shape:
            raise ValueError(f'onnxruntime output shape {got.shape} differs from PyTorch {expected.shape}')
        out.append((float(np.abs(got - expected).max()), float(np.abs(expected).max())))
    return out


def _upsample_forward(self, x: torch.Tensor) -> torch.Tensor:
    """NearestUpsample.forward as one ONNX Resize (nearest, integer scale)."""
    return F.interpolate(x, scale_factor=float(self.scale_factor), mode='nearest')


def _multiply_nearest(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """x * nearest-resized weights, as Resize + Mul with constant sizes."""
    size = (int(x.shape[-2]), int(x.shape[-1]))
    if size == tuple(int(v) for v in weights.shape[-2:]):
        return x * weights
    return x * F.interpolate(weights, size=size, mode='nearest')


def _pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average pooling to `size` as one ONNX AveragePool with a constant kernel (sizes divide)."""
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if (h, w) == tuple(size):
        return x
    if h % size[0] or w % size[1]:
        return F.adaptive_avg_pool2d(x, size)
    kernel = (h // size[0], w // size[1])
    return F.avg_pool2d(x, kernel, kernel)


def _official_multiply_nearest(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The official CrossResolutionWeighting: interpolate to the size read from x at run time."""
    return x * F.interpolate(weights, size=x.shape[-2:], mode='nearest')


def _official_pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The official CrossResolutionWeighting: adaptive pooling to the smallest branch's size."""
    return F.adaptive_avg_pool2d(x, size)


def _official_concat_shuffle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The official ShuffleNet blocks: concatenate, then view/transpose/view."""
    from lib.models.layers import channel_shuffle
    return channel_shuffle(torch.cat((a, b), dim=1), 2)


# lib.models writes nearest upsampling, nearest-resized weighting and block pooling as
# expand/reshape/sum chains, which are faster in PyTorch eager on CPU but trace into long chains of
# Shape/Gather/Unsqueeze/Expand/Reshape/ReduceSum nodes that onnxruntime runs slowly (Expand alone
# was about a third of Lite-HRNet-18's time there). Per idiom: (module, class or None for a
# module-level function, attribute, replacement) swapped in while exporting. 'plain': single ONNX
# operators with constant sizes (Resize, Mul, AveragePool; same values, pooling up to float
# rounding). 'official': the forms of the official repository, for a like-for-like baseline.
_IDIOMS = {
    'plain': (
        ('lib.models.layers', 'NearestUpsample', 'forward', _upsample_forward),
        ('lib.models.litehrnet', None, 'multiply_nearest', _multiply_nearest),
        ('lib.models.litehrnet', None, 'pool_to', _pool_to),
    ),
    'official': (
        ('lib.models.layers', 'NearestUpsample', 'forward', _upsample_forward),  # nn.Upsample(scale_factor)
        ('lib.models.litehrnet', None, 'multiply_nearest', _official_multiply_nearest),
        ('lib.models.litehrnet', None, 'pool_to', _official_pool_to),
        ('lib.models.litehrnet', None, 'concat_shuffle', _official_concat_shuffle),
    ),
}
_IDIOMS['deploy'] = _IDIOMS['plain']  # the deploy form calls none of the helpers; 'plain' guards any it might


@contextlib.contextmanager
def _swapped_kernels(table):
    """While exporting, swap lib.models' eager-speed kernels for the entries of an _IDIOMS table.

    `export_and_check` compares the file with the unpatched model, so a swap that changed the
    numbers would fail the check. Adapter: 'plain' can go once lib.models branches on
    torch.onnx.is_in_onnx_export(). Entries whose target does not exist are skipped.
    """
    import importlib
    saved = []
    for module_name, class_name, attr, replacement in table:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = getattr(owner, class_name, None) if class_name else owner
        if owner is not None and hasattr(owner, attr):
            saved.append((owner, attr, getattr(owner, attr)))
            setattr(owner, attr, replacement)
    try:
        yield
    finally:
        for owner, attr, value in reversed(saved):
            setattr(owner, attr, value)


@dataclass
class ExportReport:
    """What `export_and_check` did: the file, its operator histogram and the parity per input."""

    path: str
    opset: int
    dynamic_batch: bool
    fold_bn: bool
    op_types: collections.Counter
    diffs: dict[str, float] = field(default_factory=dict)  # input name -> max |onnxruntime - PyTorch|
    scales: dict[str, float] = field(default_factory=dict)  # input name -> max |PyTorch heatmap|
    atol: float = DEFAULT_ATOL
    graph: str = 'plain'

    @property
    def max_diff(self) -> float:
        return max(self.diffs.values()) if self.diffs else float('nan')

    def tolerance(self, name: str) -> float:
        """atol for heatmaps within [-1, 1] (any trained model); relative to the output range beyond that.

        float32 rounding grows with the magnitude of the numbers: with untrained weights a real image
        can give heatmaps of +-20, where PyTorch's own fp32-vs-fp64 error is ~3e-4, so a fixed 1e-4
        would fail every runtime. For trained models this is exactly the absolute tolerance.
        """
        return self.atol * max(1.0, self.scales.get(name, 1.0))

    @property
    def passed(self) -> bool:
        return bool(self.diffs) and all(d <= self.tolerance(n) for n, d in self.diffs.items())

    def summary(self) -> str:
        ops = ', '.join(f'{name} {count}' for name, count in sorted(self.op_types.items()))
        form = ('deploy graph: BatchNorm folded, full-width blocks' if self.graph == 'deploy'
                else f'model as written{" in the official idioms" if self.graph == "official" else ""}, '
                     f'BatchNorm {"folded" if self.fold_bn else "kept"}')
        lines = [f'exported {self.path} (TorchScript exporter, opset {self.opset}, '
                 f'{"dynamic" if self.dynamic_batch else "fixed"} batch, {form}); onnx.checker passed',
                 f'operators ({sum(self.op_types.values())} nodes): {ops}']
        for name, diff in self.diffs.items():
            scale = self.scales.get(name, float('nan'))
            lines.append(f'max |onnxruntime - PyTorch| on {name}: {diff:.3e} (heatmaps up to {scale:.3g}, '
                         f'tolerance {self.tolerance(name):.3g})')
        verdict = 'PASS' if self.passed else 'FAIL'
        lines.append(f'{verdict}: max difference {self.max_diff:.3e} (tolerance {self.atol:g}, '
                     f'times the heatmap range where that exceeds 1)')
        return '\n'.join(lines)


def export_and_check(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                     inputs: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
                     fold_bn: bool = False, atol: float = DEFAULT_ATOL, threads: int = 2,
                     graph: str = 'deploy') -> ExportReport:
    """Export `graph_for_export(model, graph, fold_bn)`, run onnx.checker, then compare onnxruntime with `model`.

    inputs: named batches (N, 3, H, W) of normalised crops. The reference is always the model as
    given (BatchNorm unfolded, split and shuffled as trained), so any error of the deploy form or
    of BN folding counts against the tolerance too.
    """
    model = model.eval()
    if not dynamic_batch:
        bad = {name: x.shape[0] for name, x in inputs.items() if x.shape[0] != 1}
        if bad:
            raise ValueError(f'a fixed-batch export takes batches of 1, got {bad}; use dynamic_batch=True')
    exported = graph_for_export(model, graph, fold_bn)
    path = export_onnx(exported, path, input_size, opset=opset, dynamic_batch=dynamic_batch, idioms=graph)
    check_onnx_file(path)
    session = create_session(path, threads=threads)
    results = max_abs_diff(model, session, list(inputs.values()))
    diffs = {name: diff for name, (diff, _) in zip(inputs, results)}
    scales = {name: scale for name, (_, scale) in zip(inputs, results)}
    return ExportReport(path, opset, dynamic_batch, fold_bn or graph == 'deploy', op_types(path), diffs, scales,
                        atol, graph)
