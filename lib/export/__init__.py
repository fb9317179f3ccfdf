"""Everything that turns a trained model into a deployed one.

    deploy = to_deploy(model)                                   # inference form for onnxruntime (deploy.py)
    report = export_and_check(model, 'm.onnx', (192, 256), {'crop': x})   # export + onnx.checker + parity (onnx.py)
    session = create_session('m.onnx'); heatmaps = run_session(session, crops)   # runtime.py

lib.models knows nothing of this package; it only offers the kernel sets ('export', 'official') that
the graphs here are built with.
"""
from .deploy import SATURATE, to_deploy
from .onnx import (DEFAULT_ATOL, DEFAULT_OPSET, GRAPHS, ExportReport, check_onnx_file, export_and_check,
                   export_onnx, graph_for_export, max_abs_diff, op_types)
from .runtime import INPUT_NAME, OUTPUT_NAME, create_session, nchwc_block, optimized_graph, run_session

__all__ = ['DEFAULT_ATOL', 'DEFAULT_OPSET', 'GRAPHS', 'INPUT_NAME', 'OUTPUT_NAME', 'SATURATE', 'ExportReport',
           'check_onnx_file', 'create_session', 'export_and_check', 'export_onnx', 'graph_for_export',
           'max_abs_diff', 'nchwc_block', 'op_types', 'optimized_graph', 'run_session', 'to_deploy']
