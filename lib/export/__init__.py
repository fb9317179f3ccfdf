"""Everything that turns a trained model into a deployed one.

    deploy = to_deploy(model)                                   # inference form for onnxruntime (deploy.py)
    report = export_and_check(model, 'm.onnx', (192, 256), {'crop': x})   # export + onnx.checker + parity (onnx.py)
    session = create_session('m.onnx'); heatmaps = run_session(session, crops)   # runtime.py
    write_openvino('m.onnx', 'm.xml')                            # OpenVINO IR (openvino.py)
    network = load_network(cfg, 'm.xml', 'openvino', 'bf16')     # any file in any runtime as an nn.Module (backends.py)
    quantize(...)                                                # int8 with per-layer sensitivity (quantize.py)

lib.models knows nothing of this package; it only offers the kernel sets ('export', 'official') that
the graphs here are built with.
"""
from .deploy import SATURATE, to_deploy
from .onnx import (DEFAULT_ATOL, DEFAULT_FACTOR, DEFAULT_OPSET, GRAPHS, ExportReport, Parity, check_onnx_file,
                   export_and_check, export_onnx, graph_for_export, op_types, parity_errors)
from .runtime import INPUT_NAME, OUTPUT_NAME, create_session, nchwc_block, optimized_graph, run_session

__all__ = ['DEFAULT_ATOL', 'DEFAULT_FACTOR', 'DEFAULT_OPSET', 'GRAPHS', 'INPUT_NAME', 'OUTPUT_NAME', 'SATURATE',
           'ExportReport', 'Parity', 'check_onnx_file', 'create_session', 'export_and_check', 'export_onnx',
           'graph_for_export', 'nchwc_block', 'op_types', 'optimized_graph', 'parity_errors', 'run_session',
           'to_deploy']
