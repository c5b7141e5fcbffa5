"""Deployment: ONNX export of the backbones (and any tensor-returning
model), checked against PyTorch in onnxruntime, and int8 quantization of
whole models through onnxruntime. Needs the optional packages onnx,
onnxscript and onnxruntime, imported only when used."""
from .onnx import (
                   DEFAULT_OPSET,
                   ClassifierLogits,
                   ExportGroupNorm,
                   export_onnx,
                   ort_session,
                   prepare_for_export,
                   run_session,
                   swap_group_norms_,
                   switched_to_deploy,
                   verify,
)
from .quantize import TensorPart, evaluate, quantize_onnx

__all__ = [
    'DEFAULT_OPSET', 'ClassifierLogits', 'ExportGroupNorm', 'export_onnx',
    'ort_session', 'prepare_for_export', 'run_session', 'swap_group_norms_',
    'switched_to_deploy', 'verify', 'TensorPart', 'evaluate', 'quantize_onnx'
]
