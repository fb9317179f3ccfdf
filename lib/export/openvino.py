"""OpenVINO IR files: the exported ONNX graph converted to model.xml + model.bin.

    write_openvino('model.onnx', 'model.xml')        # float32 weights, the ONNX graph as it is
    run = openvino_runner('model.xml', 'bf16')        # crops (N, 3, H, W) float32 -> heatmaps, numpy

The IR keeps float32 weights (OpenVINO's default would halve them to float16, a silent accuracy change);
the precision the CPU computes in is chosen when the file is loaded (lib/export/backends.py:
INFERENCE_PRECISION_HINT f32 or bf16). int8 IR files come from lib/export/quantize.py.
"""
from __future__ import annotations

import os

__all__ = ['write_openvino', 'openvino_runner', 'compile_for_cpu', 'cpu_precisions']

# OpenVINO's INFERENCE_PRECISION_HINT and CPU capability for each of our precisions; an int8 file computes its
# quantised layers in int8 and the layers NNCF left in float in f32.
_HINT = {'fp32': 'f32', 'bf16': 'bf16', 'int8': 'f32'}
_CAPABILITY = {'fp32': 'FP32', 'bf16': 'BF16', 'int8': 'INT8'}


def write_openvino(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, model=None) -> str:
    """Convert `onnx_path` (or save the given ov.Model) to `xml_path` (+ the .bin beside it); returns xml_path."""
    import openvino as ov
    xml_path = os.fspath(xml_path)
    if not xml_path.lower().endswith('.xml'):
        raise ValueError(f'{xml_path}: an OpenVINO IR file name ends in .xml (its weights go to the .bin beside it)')
    model = model if model is not None else ov.convert_model(os.fspath(onnx_path))
    os.makedirs(os.path.dirname(os.path.abspath(xml_path)), exist_ok=True)
    ov.save_model(model, xml_path, compress_to_fp16=False)
    return xml_path


def cpu_precisions() -> tuple[str, ...]:
    """The precisions OpenVINO's CPU plugin runs on this machine (its OPTIMIZATION_CAPABILITIES): bf16 needs
    AVX512_BF16 or AMX."""
    import openvino as ov
    capabilities = set(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))
    return tuple(p for p, name in _CAPABILITY.items() if name in capabilities)


def compile_for_cpu(model, precision: str = 'fp32', threads: int = 2):
    """A function numpy crops (N, 3, H, W) float32 -> heatmaps of an ov.Model compiled for the CPU: latency
    mode (one stream), `threads` threads, computing in `precision` (never silently bf16 on AMX machines).

    Each batch size gets its own compiled copy with that static shape, made at its first call (~1 s): a
    static shape runs 1.3-1.5x faster at batch 1 than the dynamic one (measured on Lite-HRNet-18).
    """
    import openvino as ov
    core = ov.Core()
    config = {'INFERENCE_NUM_THREADS': int(threads), 'PERFORMANCE_HINT': 'LATENCY',
              'INFERENCE_PRECISION_HINT': _HINT[precision]}
    requests = {}

    def request_for(shape: tuple[int, ...]):
        if shape not in requests:
            static = model.clone()
            if static.input(0).get_partial_shape() != ov.PartialShape(list(shape)):
                static.reshape({static.input(0): ov.PartialShape(list(shape))})
            requests[shape] = core.compile_model(static, 'CPU', config).create_infer_request()
        return requests[shape]

    def run(crops):
        request = request_for(tuple(crops.shape))
        request.infer({0: crops})
        return request.get_output_tensor(0).data.copy()
    return run


def openvino_runner(path: str | os.PathLike, precision: str = 'fp32', threads: int = 2):
    """`compile_for_cpu` of the IR (.xml) or ONNX file at `path`."""
    import openvino as ov
    return compile_for_cpu(ov.Core().read_model(os.fspath(path)), precision, threads)
