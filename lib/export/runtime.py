"""onnxruntime on the CPU: sessions, and the channel block of its blocked (NCHWc) convolutions.

    session = create_session('model.onnx', threads=2)
    heatmaps = run_session(session, crops)          # (N, 3, H, W) float32 -> (N, K, H/4, W/4)
    nchwc_block()                                    # 16 on AVX-512, 8 on AVX2, 0 without NCHWc kernels
"""
from __future__ import annotations

import functools
import os
import tempfile

import numpy as np

__all__ = ['INPUT_NAME', 'OUTPUT_NAME', 'create_session', 'run_session', 'file_runner', 'nchwc_block',
           'optimized_graph']

INPUT_NAME = 'input'
OUTPUT_NAME = 'heatmaps'


def create_session(path: str | os.PathLike, threads: int = 2, optimize: bool = True,
                   optimized_model_path: str | None = None):
    """onnxruntime CPU session; graph optimisation level ALL (constant folding, conv+BN/activation fusion,
    the NCHWc layout). optimized_model_path: also write the optimised graph there."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    if optimized_model_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_model_path)
    return ort.InferenceSession(os.fspath(path), options, providers=['CPUExecutionProvider'])


def run_session(session, images: np.ndarray) -> np.ndarray:
    """Heatmaps (N, K, h, w) of normalised crops (N, 3, H, W) float32."""
    return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]


def file_runner(path: str | os.PathLike, runtime: str, precision: str = 'fp32', threads: int = 2):
    """A function numpy crops (N, 3, H, W) float32 -> heatmaps of the model file at `path`, run by 'onnxruntime'
    (`create_session`; float or int8 as the file is) or 'openvino' (`lib.export.openvino.openvino_runner`,
    computing in `precision`)."""
    if runtime == 'onnxruntime':
        return functools.partial(run_session, create_session(path, threads=threads))
    if runtime == 'openvino':
        from .openvino import openvino_runner
        return openvino_runner(path, precision, threads)
    raise ValueError(f"runtime must be 'onnxruntime' or 'openvino', got {runtime!r}")


def optimized_graph(model_bytes_or_path, threads: int = 1):
    """The graph onnxruntime actually runs (level ALL) for a model file or serialized model, as an onnx.GraphProto."""
    import onnx
    with tempfile.TemporaryDirectory() as folder:
        source = model_bytes_or_path
        if isinstance(source, bytes):
            source = os.path.join(folder, 'model.onnx')
            with open(source, 'wb') as f:
                f.write(model_bytes_or_path)
        target = os.path.join(folder, 'optimised.onnx')
        create_session(source, threads=threads, optimized_model_path=target)
        return onnx.load(target).graph


def _conv_then_pool_model(channels: int) -> bytes:
    """Serialized probe: a 1x1 convolution 16 -> channels, then GlobalAveragePool (8 x 8 input)."""
    import onnx.helper as oh
    from onnx import TensorProto, numpy_helper
    weight = numpy_helper.from_array(np.ones((channels, 16, 1, 1), np.float32), 'w')
    nodes = [oh.make_node('Conv', ['x', 'w'], ['h']), oh.make_node('GlobalAveragePool', ['h'], ['y'])]
    graph = oh.make_graph(nodes, 'probe', [oh.make_tensor_value_info('x', TensorProto.FLOAT, [1, 16, 8, 8])],
                          [oh.make_tensor_value_info('y', TensorProto.FLOAT, [1, channels, 1, 1])], [weight])
    return oh.make_model(graph, opset_imports=[oh.make_opsetid('', 17)]).SerializeToString()


@functools.lru_cache(maxsize=None)
def nchwc_block() -> int:
    """onnxruntime's NCHWc channel block on this CPU, found by asking onnxruntime itself: 16 with
    AVX-512, 8 with AVX2, 0 when it has no blocked kernels here (or onnxruntime is not installed).

    Convolutions accept any channel count (onnxruntime pads them), but a tensor whose channels are not
    whole blocks leaves the blocked layout before the next pooling, resize or elementwise operator, with
    a reorder each way. The probe pools a convolution's output: with 8 channels that stays blocked only
    where the block is 8.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return 0
    if not _runs_blocked(16):  # 16 channels are whole blocks of 8 and of 16
        return 0
    return 8 if _runs_blocked(8) else 16


def _runs_blocked(channels: int) -> bool:
    """Whether onnxruntime pools a `channels`-channel convolution output in its NCHWc layout here."""
    graph = optimized_graph(_conv_then_pool_model(channels))
    return any(node.op_type == 'GlobalAveragePool' and node.domain == 'com.microsoft.nchwc' for node in graph.node)
