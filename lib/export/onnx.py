"""Export a pose network to ONNX (and OpenVINO IR) and check the file against PyTorch in float64.

    report = export_and_check(model, 'model.onnx', (192, 256), {'random': x}, dynamic_batch=True)
    print(report.summary()); assert report.passed   # |file - float64| <= 4 x |PyTorch float32 - float64| + 1e-6

By default a PoseLiteHRNet is exported in its deploy form (`lib.export.deploy.to_deploy`: BatchNorm
folded, no split/shuffle copies, every operator kept in onnxruntime's blocked NCHWc layout), faster in
onnxruntime than the model exported as written (graph='plain': the model built with the 'export'
kernels, one standard operator per step; 'official': the 'official' kernels, the official code's
idioms, the speed baseline). Whichever graph, the file is compared with the model as given. Step by
step: `export_onnx` -> `check_onnx_file` (onnx.checker) -> `create_session` (graph optimisation level
ALL) -> `parity_errors` (against the model in float64; OpenVINO IR too with `openvino_path`).

The graph has one input 'input' (N, 3, H, W) float32 (normalised crops, as `PoseEstimator.preprocess`
makes them) and one output 'heatmaps' (N, K, H/4, W/4). We use the TorchScript-based exporter
(`dynamo=False`): the torch.export-based one needs the extra `onnxscript` package and gains nothing
for this static, control-flow-free network.
"""
from __future__ import annotations

import collections
import copy
import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from lib.models import PoseLiteHRNet

from .deploy import to_deploy
from .runtime import INPUT_NAME, OUTPUT_NAME, file_runner

__all__ = ['DEFAULT_OPSET', 'MIN_OPSET', 'DEFAULT_ATOL', 'DEFAULT_FACTOR', 'GRAPHS', 'ExportReport', 'Parity',
           'export_and_check', 'graph_for_export', 'export_onnx', 'check_onnx_file', 'check_opset',
           'check_output_file', 'op_types', 'parity_errors']

DEFAULT_OPSET = 17  # read by every current runtime (onnxruntime, TensorRT, OpenVINO, ncnn/MNN converters)
# The oldest opset every graph exports to: bilinear upsampling with align_corners=True (the iterative
# head, the fusion layers) has an ONNX form only as Resize-11; opsets 9 and 10 fail inside the exporter
# for the deploy, plain and official graphs alike (checked with torch 2.13).
MIN_OPSET = 11
# Parity: a file passes when max |file - PyTorch float64| <= DEFAULT_FACTOR x max |PyTorch float32 - float64|
# + DEFAULT_ATOL on every input. Measured over the four variants (deploy and plain graphs, onnxruntime and
# OpenVINO, random and real crops): ratios 0.8-2.3, so 4 passes every honest file and fails a real slip.
DEFAULT_FACTOR = 4.0
DEFAULT_ATOL = 1e-6
# What export_and_check writes: the deploy form; the model as written with the 'export' kernels (each
# operation one ONNX operator with constant sizes); or with the 'official' kernels, the official
# repository's idioms (the baseline users get from exporting the official code: run-time sizes).
GRAPHS = ('deploy', 'plain', 'official')


def max_opset() -> int:
    """The newest opset this torch's exporter writes (DEFAULT_OPSET when torch does not say)."""
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET  # private, hence the fallback
        return int(ONNX_MAX_OPSET)
    except (ImportError, AttributeError, TypeError, ValueError):
        return DEFAULT_OPSET


def check_opset(opset: int, name: str = 'opset') -> None:
    """ValueError naming `name` (e.g. '--opset') unless MIN_OPSET <= opset <= the exporter's newest."""
    newest = max_opset()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f'{name} {opset}: the export needs an opset from {MIN_OPSET} (bilinear upsampling with '
                         f'align_corners has an ONNX form from Resize-11 on) to {newest} (the newest this torch writes); '
                         f'default {DEFAULT_OPSET}')


def check_output_file(path: str | os.PathLike, name: str = 'output') -> None:
    """ValueError naming `name` and the path unless `path` can be written as a file: not a folder, in a
    folder that exists and is writable. Run before the export work, so a bad path costs nothing."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f'{name} {path}: is a folder; give the .onnx file to write, e.g. '
                         f'{os.path.join(path, "model.onnx")}')
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        problem = 'is a file, not a folder' if os.path.exists(folder) else 'does not exist'
        raise ValueError(f'{name} {path}: the folder {folder} {problem}')
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ValueError(f'{name} {path}: not writable')


def graph_for_export(model: nn.Module, graph: str = 'deploy', fold_bn: bool = False,
                     channel_block: int | None = None) -> nn.Module:
    """The network to export for `graph`: `to_deploy(model, channel_block)` for 'deploy' (BatchNorm always
    folded); `model.with_kernels('export')` for 'plain' and `model.with_kernels('official')` for
    'official', BatchNorm folded with fold_bn. A module that is not a PoseLiteHRNet is exported as it is
    with graph='plain' (it has no kernel sets)."""
    if graph not in GRAPHS:
        raise ValueError(f'graph must be one of {GRAPHS}, got {graph!r}')
    if not isinstance(model, PoseLiteHRNet):
        if graph != 'plain':
            raise ValueError(f"the {graph!r} graph is built from a PoseLiteHRNet, got {type(model).__name__}; "
                             "use graph='plain'")
        if fold_bn and not callable(getattr(model, 'fold_bn', None)):
            raise ValueError(f'--fold-bn needs a model with a fold_bn() method; {type(model).__name__} has none')
        return model.fold_bn() if fold_bn else model
    if graph == 'deploy':
        return to_deploy(model, channel_block)
    exported = model.with_kernels('export' if graph == 'plain' else 'official')
    return exported.fold_bn() if fold_bn else exported.eval()


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, batch_size: int = 1) -> str:
    """Write `model` (in eval mode) to `path` with the TorchScript exporter; input_size is (W, H).

    dynamic_batch=True makes the batch axis symbolic ('batch'); otherwise it is fixed to batch_size.
    Export the module `graph_for_export` returns: the eager 'train' kernels would trace into long
    Shape/Gather/Expand chains.
    """
    if dynamic_batch and getattr(getattr(model, 'kernels', None), 'name', None) == 'official':
        # The TorchScript exporter rejects adaptive pooling to a size read from a tensor once the
        # batch axis is symbolic: the export failure reported against the official code.
        raise ValueError("the official idioms export with a fixed batch only (adaptive pooling to a size "
                         "read at run time); use the 'deploy' or 'plain' graph for a dynamic batch")
    path = os.fspath(path)
    width, height = int(input_size[0]), int(input_size[1])
    model = model.eval()
    dummy = torch.zeros(batch_size, 3, height, width)
    axes = {INPUT_NAME: {0: 'batch'}, OUTPUT_NAME: {0: 'batch'}} if dynamic_batch else None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
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
    sides: hundreds of reorders in Lite-HRNet-18's deploy graph (tests/test_deploy.py checks they are gone).
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


def check_onnx_file(path: str | os.PathLike) -> None:
    """Run onnx.checker (with shape inference); raises onnx.checker.ValidationError on a bad graph."""
    import onnx
    onnx.checker.check_model(os.fspath(path), full_check=True)


def op_types(path: str | os.PathLike) -> collections.Counter:
    """How often each ONNX operator type occurs in the main graph of the file."""
    import onnx
    graph = onnx.load(os.fspath(path), load_external_data=False).graph
    return collections.Counter(node.op_type for node in graph.node)


@dataclass(frozen=True)
class Parity:
    """One input's parity numbers, all against the model run in float64 (the exact answer).

    error: max |file - float64|; float32_error: max |PyTorch float32 - float64|, the error float32
    itself makes on this input; scale: max |float64 heatmap|.
    """

    error: float
    float32_error: float
    scale: float


@torch.no_grad()
def parity_errors(model: nn.Module, run: Callable[[np.ndarray], np.ndarray],
                  inputs: Mapping[str, np.ndarray]) -> dict[str, Parity]:
    """`Parity` of a deployed file's `run` (numpy (N, 3, H, W) float32 -> heatmaps) for each named input batch.

    The reference is `model` as given (BatchNorm unfolded, split and shuffled as trained) in float64, so
    any error of the deploy form or of BN folding counts, and a file is judged against what float32 can
    do on that input: heatmaps of +-20 (untrained weights on a real crop) carry ~1e-4 of float32 rounding
    in PyTorch itself, heatmaps of a trained model within [0, 1] ~1e-7.
    """
    model = model.eval()
    exact = copy.deepcopy(model).double()
    out = {}
    for name, x in inputs.items():
        x = np.ascontiguousarray(x, dtype=np.float32)
        reference = exact(torch.from_numpy(x).double()).numpy()
        float32 = model(torch.from_numpy(x)).double().numpy()
        got = np.asarray(run(x), dtype=np.float64)
        if got.shape != reference.shape:
            raise ValueError(f'the file gives heatmaps of shape {got.shape}, PyTorch {reference.shape}')
        out[name] = Parity(float(np.abs(got - reference).max()), float(np.abs(float32 - reference).max()),
                           float(np.abs(reference).max()))
    return out


@dataclass
class ExportReport:
    """What `export_and_check` did: the file, its operator histogram and the parity per input.

    An input passes when the file's error against float64 is at most `factor` times PyTorch float32's own
    error there, plus `atol` (a floor for outputs so small that float32 is almost exact on them).
    """

    path: str
    opset: int
    dynamic_batch: bool
    fold_bn: bool
    op_types: collections.Counter
    parity: dict[str, Parity] = field(default_factory=dict)  # input name -> numbers
    factor: float = DEFAULT_FACTOR
    atol: float = DEFAULT_ATOL
    graph: str = 'plain'
    channel_block: int | None = None  # the deploy graph's channel padding
    runtime: str = 'onnxruntime'  # what ran the file for the check
    files: tuple[str, ...] = ()  # further files written (the OpenVINO IR)

    @property
    def max_diff(self) -> float:
        return max(p.error for p in self.parity.values()) if self.parity else float('nan')

    def tolerance(self, name: str) -> float:
        return self.factor * self.parity[name].float32_error + self.atol

    @property
    def passed(self) -> bool:
        return bool(self.parity) and all(p.error <= self.tolerance(n) for n, p in self.parity.items())

    def summary(self) -> str:
        ops = ', '.join(f'{name} {count}' for name, count in sorted(self.op_types.items()))
        form = (f'deploy graph: BatchNorm folded, full-width blocks, channels in blocks of {self.channel_block}'
                if self.graph == 'deploy'
                else f'model as written{" in the official idioms" if self.graph == "official" else ""}, '
                     f'BatchNorm {"folded" if self.fold_bn else "kept"}')
        lines = [f'exported {self.path} (TorchScript exporter, opset {self.opset}, '
                 f'{"dynamic" if self.dynamic_batch else "fixed"} batch, {form}); onnx.checker passed',
                 f'operators ({sum(self.op_types.values())} nodes): {ops}']
        lines += [f'wrote {path}' for path in self.files]
        for name, p in self.parity.items():
            lines.append(f'{self.runtime} vs PyTorch float64 on {name}: max error {p.error:.3e}; PyTorch float32\'s own '
                         f'{p.float32_error:.3e} (heatmaps up to {p.scale:.3g}); tolerance {self.tolerance(name):.3e}')
        verdict = 'PASS' if self.passed else 'FAIL'
        lines.append(f'{verdict}: every error within {self.factor:g} x float32\'s own + {self.atol:g}'
                     if self.passed else f'{verdict}: an error exceeds {self.factor:g} x float32\'s own + {self.atol:g}')
        return '\n'.join(lines)


def export_and_check(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int],
                     inputs: Mapping[str, np.ndarray], opset: int = DEFAULT_OPSET, dynamic_batch: bool = False,
                     fold_bn: bool = False, atol: float = DEFAULT_ATOL, threads: int = 2,
                     graph: str = 'deploy', channel_block: int | None = None, factor: float = DEFAULT_FACTOR,
                     openvino_path: str | os.PathLike | None = None) -> ExportReport:
    """Export `graph_for_export(model, graph, fold_bn)`, run onnx.checker, then check the file against `model`.

    inputs: named batches (N, 3, H, W) of normalised crops. The check runs the ONNX file in onnxruntime,
    or, with `openvino_path`, converts it to OpenVINO IR there (float32 weights) and runs that.
    """
    check_opset(opset)
    check_output_file(path)
    model = model.eval()
    if not dynamic_batch:
        bad = {name: x.shape[0] for name, x in inputs.items() if x.shape[0] != 1}
        if bad:
            raise ValueError(f'a fixed-batch export takes batches of 1, got {bad}; use dynamic_batch=True')
    exported = graph_for_export(model, graph, fold_bn, channel_block)
    path = export_onnx(exported, path, input_size, opset=opset, dynamic_batch=dynamic_batch)
    check_onnx_file(path)
    if openvino_path is None:
        runtime, files, run = 'onnxruntime', (), file_runner(path, 'onnxruntime', threads=threads)
    else:
        from .openvino import write_openvino
        runtime, files = 'OpenVINO (float32)', (write_openvino(path, openvino_path),)
        run = file_runner(files[0], 'openvino', threads=threads)
    return ExportReport(path, opset, dynamic_batch, fold_bn or graph == 'deploy', op_types(path),
                        parity_errors(model, run, inputs), factor, atol, graph,
                        getattr(exported, 'channel_block', None), runtime, files)
