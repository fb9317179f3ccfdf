"""One network call over PyTorch, onnxruntime and OpenVINO: normalised crops in, heatmaps out.

    network = load_network(cfg, 'model.xml', backend='openvino', precision='int8')
    heatmaps = network(crops)        # (N, 3, H, W) float32 CPU tensor -> (N, K, H/4, W/4) float32 tensor

`load_network` returns an `nn.Module` whatever runs underneath, so the flip test, decoding and evaluation
(`lib.core.inference.predict_keypoints`, `lib.core.function.validate`) are the same code for every backend,
and `PoseEstimator(cfg, backend=..., precision=...)` or `tools/test.py ... TEST.BACKEND openvino` evaluate
the very file that ships. Files: a PyTorch checkpoint (.pth, ours or official mmpose) runs in 'torch'; for
onnxruntime and OpenVINO it is exported on the fly to the deploy graph (lib/export/deploy.py) in a
temporary folder. A .onnx file runs in onnxruntime or OpenVINO, a .xml (+ .bin) in OpenVINO. int8 files
are made by `demo/convert2onnx.py --precision int8` (lib/export/quantize.py); the requested precision must
be the file's, so a metrics.json never says fp32 for an int8 model or the reverse.
"""
from __future__ import annotations

import logging
import os
import tempfile
from typing import Callable

import numpy as np
import torch
from torch import nn

from lib.config.default import BACKEND_PRECISIONS, RANGES
from lib.utils.logger import UserError

from .runtime import INPUT_NAME, OUTPUT_NAME, create_session

__all__ = ['BACKENDS', 'PRECISIONS', 'BackendError', 'RuntimeNetwork', 'check_backend', 'check_model_file',
           'file_precision', 'load_network']

logger = logging.getLogger(__name__)

BACKENDS = tuple(BACKEND_PRECISIONS)
PRECISIONS = RANGES['TEST.PRECISION']
# Deployed files each runtime reads; any other file is taken for a PyTorch checkpoint (.pth, .pt, ...).
DEPLOYED_SUFFIXES = {'torch': (), 'onnxruntime': ('.onnx',), 'openvino': ('.xml', '.onnx')}
# ONNX operators that only quantised graphs hold (QDQ format and the older operator-oriented one).
ONNX_INT8_OPS = {'QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'ConvInteger', 'QLinearMatMul',
                 'MatMulInteger', 'DynamicQuantizeLinear'}


class BackendError(UserError):
    """A backend that is not installed, a precision it or this CPU cannot run, or a file that does not fit."""


class RuntimeNetwork(nn.Module):
    """A deployed network behind the call of the PyTorch one: (N, 3, H, W) tensor -> (N, K, h, w) tensor.

    run: numpy (n, 3, H, W) float32 -> (n, K, h, w); fixed_batch: the file's batch size when its batch axis
    is not symbolic (larger calls are cut into such pieces, a short last piece padded with zeros).
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], backend: str, precision: str, source: str,
                 fixed_batch: int | None = None) -> None:
        super().__init__()
        self.run, self.backend, self.precision, self.source = run, backend, precision, source
        self.fixed_batch = fixed_batch

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(crops.detach().float().cpu().numpy())
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return torch.from_numpy(np.asarray(self.run(x), dtype=np.float32))
        pieces = []
        for start in range(0, len(x), self.fixed_batch):
            piece = x[start:start + self.fixed_batch]
            short = self.fixed_batch - len(piece)
            if short:
                piece = np.concatenate([piece, np.zeros((short, *piece.shape[1:]), np.float32)])
            pieces.append(np.asarray(self.run(piece), dtype=np.float32)[:self.fixed_batch - short])
        return torch.from_numpy(np.concatenate(pieces))

    def extra_repr(self) -> str:
        return f'{self.backend} {self.precision}, {self.source}'


def load_network(cfg, path: str, backend: str, precision: str = 'fp32', threads: int | None = None) -> nn.Module:
    """The network of `path` in `backend` at `precision`, checked against cfg (input size, joints).

    'torch' returns the PyTorch model with the checkpoint loaded (see lib.core.inference.build_pose_model
    for module weights); the others a `RuntimeNetwork` on the CPU with `threads` intra-op threads
    (default: torch's thread count).
    """
    check_backend(backend, precision)
    path = os.fspath(path)
    if not path:
        raise BackendError(f'TEST.MODEL_FILE: empty; TEST.BACKEND {backend} needs a model file')
    if not os.path.isfile(path):
        raise BackendError(f'TEST.MODEL_FILE {path}: weights file not found')
    kind = check_model_file(path, backend)
    threads = int(threads or torch.get_num_threads())
    if backend == 'torch':
        from lib.models import build_model
        from lib.utils.checkpoint import load_weights
        return load_weights(build_model(cfg), path)
    if kind == 'checkpoint':
        if precision == 'int8':
            raise BackendError(f'TEST.MODEL_FILE {path}: a PyTorch checkpoint; int8 needs a quantised file, made with '
                               f'demo/convert2onnx.py --format {"onnx" if backend == "onnxruntime" else "openvino"} '
                               f'--precision int8')
        with tempfile.TemporaryDirectory() as folder:  # both runtimes read the file into memory
            onnx_path = _export_checkpoint(cfg, path, os.path.join(folder, 'deploy.onnx'))
            return _load_file(cfg, onnx_path, backend, precision, threads, f'{path} (deploy graph, exported now)')
    return _load_file(cfg, path, backend, precision, threads, path)


def _load_file(cfg, path: str, backend: str, precision: str, threads: int, source: str) -> RuntimeNetwork:
    if backend == 'onnxruntime':
        _check_precision(source, file_precision(path), precision)
        return _onnxruntime_network(cfg, path, precision, threads, source)
    return _openvino_network(cfg, path, precision, threads, source)  # checks the precision of the model it reads


def _check_precision(source: str, found: str, precision: str) -> None:
    """Raise unless TEST.PRECISION says int8 exactly when the file is quantised."""
    if (found == 'int8') != (precision == 'int8'):
        raise BackendError(f'TEST.MODEL_FILE {source}: the file is {"an int8 (quantised)" if found == "int8" else "a float"} '
                           f'model but TEST.PRECISION is {precision}; set TEST.PRECISION {found if found == "int8" else "fp32"}'
                           + ('' if found == 'int8' else ' (or make an int8 file with demo/convert2onnx.py --precision int8)'))


def check_backend(backend: str, precision: str) -> None:
    """Raise BackendError unless `backend` is installed and runs `precision` (the config's rule, for callers
    that pass them as arguments)."""
    if backend not in BACKENDS:
        raise BackendError(f"TEST.BACKEND: unknown backend '{backend}'; one of {', '.join(BACKENDS)}")
    if precision not in BACKEND_PRECISIONS[backend]:
        raise BackendError(f"TEST.PRECISION: {backend} runs {', '.join(BACKEND_PRECISIONS[backend])}, not "
                           f"'{precision}'")
    module = {'onnxruntime': 'onnxruntime', 'openvino': 'openvino'}.get(backend)
    if module:
        try:
            __import__(module)
        except ImportError:
            raise BackendError(f'TEST.BACKEND {backend}: the Python package {module} is not installed '
                               f'(pip install {module})') from None


def check_model_file(path: str, backend: str) -> str:
    """'checkpoint', 'onnx' or 'xml': what `path` is for `backend`; a deployed file the backend cannot read
    (an ONNX or IR file for torch, an IR file for onnxruntime, the IR's .bin) is an error."""
    lower = os.fspath(path).lower()
    readable = DEPLOYED_SUFFIXES[backend]
    if lower.endswith(('.onnx', '.xml', '.bin')) and not lower.endswith(readable):
        runs_it = [b for b, suffixes in DEPLOYED_SUFFIXES.items() if lower.endswith(suffixes)]
        hint = (f'TEST.BACKEND {" or ".join(runs_it)} runs it' if runs_it
                else 'give the .xml beside it (OpenVINO reads the .bin from there)')
        raise BackendError(f"TEST.MODEL_FILE {path}: TEST.BACKEND {backend} reads "
                           f"{', '.join(readable + ('PyTorch checkpoints',))}, not this file; {hint}")
    return lower.rsplit('.', 1)[-1] if lower.endswith(readable) else 'checkpoint'


def _export_checkpoint(cfg, path: str, onnx_path: str) -> str:
    """Load a checkpoint and write its deploy graph (dynamic batch) to onnx_path."""
    from lib.models import build_model
    from lib.utils.checkpoint import load_weights

    from .deploy import to_deploy
    from .onnx import export_onnx
    model = load_weights(build_model(cfg), path).eval()
    logger.info('exporting the deploy graph of %s for the runtime (demo/convert2onnx.py writes it once)', path)
    return export_onnx(to_deploy(model), onnx_path, cfg.MODEL.IMAGE_SIZE, dynamic_batch=True)


def file_precision(path: str) -> str:
    """'int8' for a quantised .onnx (QDQ or integer operators) or OpenVINO .xml (FakeQuantize), else 'fp32'."""
    if path.lower().endswith('.onnx'):
        import onnx
        graph = onnx.load(path, load_external_data=False).graph
        return 'int8' if any(node.op_type in ONNX_INT8_OPS for node in graph.node) else 'fp32'
    import openvino as ov
    return _openvino_precision(ov.Core().read_model(path))


def _openvino_precision(model) -> str:
    return 'int8' if any(op.get_type_name() == 'FakeQuantize' for op in model.get_ordered_ops()) else 'fp32'


def _check_io(cfg, source: str, input_shape, output_shape) -> int | None:
    """Raise unless the file takes (N, 3, H, W) crops of cfg's size and gives NUM_JOINTS heatmaps; returns
    the fixed batch size, or None when the batch axis is symbolic."""
    width, height = (int(v) for v in cfg.MODEL.IMAGE_SIZE)
    dims = [d if isinstance(d, int) and d > 0 else None for d in input_shape]
    if len(dims) != 4 or dims[1:] != [3, height, width]:
        raise BackendError(f'TEST.MODEL_FILE {source}: takes input {list(input_shape)}, but MODEL.IMAGE_SIZE '
                           f'{width}x{height} (WxH) needs [N, 3, {height}, {width}]: is it the model of this config?')
    joints = output_shape[1] if len(output_shape) == 4 else None
    if isinstance(joints, int) and joints > 0 and joints != cfg.MODEL.NUM_JOINTS:
        raise BackendError(f'TEST.MODEL_FILE {source}: gives {joints} heatmaps, MODEL.NUM_JOINTS is '
                           f'{cfg.MODEL.NUM_JOINTS}')
    return dims[0]


def _onnxruntime_network(cfg, path: str, precision: str, threads: int, source: str) -> RuntimeNetwork:
    session = create_session(path, threads=threads)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise BackendError(f"TEST.MODEL_FILE {source}: expected one input '{INPUT_NAME}' and an output "
                           f"'{OUTPUT_NAME}' (demo/convert2onnx.py's names), got inputs {[i.name for i in inputs]}, "
                           f"outputs {[o.name for o in outputs]}")
    output_shape = next(o.shape for o in outputs if o.name == OUTPUT_NAME)
    fixed = _check_io(cfg, source, inputs[0].shape, output_shape)

    def run(x: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    return RuntimeNetwork(run, 'onnxruntime', precision, source, fixed)


def _openvino_network(cfg, path: str, precision: str, threads: int, source: str) -> RuntimeNetwork:
    import openvino as ov

    from .openvino import compile_for_cpu, cpu_precisions
    if precision not in cpu_precisions():
        raise BackendError(f'TEST.PRECISION {precision}: OpenVINO cannot run it on this CPU (it runs '
                           f'{", ".join(cpu_precisions())}); use TEST.PRECISION fp32')
    model = ov.Core().read_model(path)
    _check_precision(source, _openvino_precision(model), precision)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BackendError(f'TEST.MODEL_FILE {source}: expected one input and one output, got '
                           f'{len(model.inputs)} and {len(model.outputs)}')
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() == 4 and shape[0].is_static:
        try:  # a fixed-batch file: make the batch free so flip-test and test batches run in one call
            model.reshape({model.input(0): ov.PartialShape([-1, *[d.get_length() for d in list(shape)[1:]]])})
        except RuntimeError:
            pass  # some graph pins its batch; RuntimeNetwork then feeds it pieces of its size
    input_shape = [d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape()]
    output_shape = [d.get_length() if d.is_static else None for d in model.output(0).get_partial_shape()]
    fixed = _check_io(cfg, source, input_shape, output_shape)
    return RuntimeNetwork(compile_for_cpu(model, precision, threads), 'openvino', precision, source, fixed)
