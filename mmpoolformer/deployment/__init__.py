"""Deployment: ONNX export of the backbones (and any tensor-returning
model), checked against PyTorch in onnxruntime. Needs the optional packages
onnx, onnxscript and onnxruntime, imported only when used."""
from .onnx import (
                   DEFAULT_OPSET,
                   ClassifierLogits,
                   ExportGroupNorm,
                   export_onnx,
                   ort_session,
                   prepare_for_export,
                   run_session,
                   swap_group_norms_,
                   verify,
)

__all__ = [
    'DEFAULT_OPSET', 'ClassifierLogits', 'ExportGroupNorm', 'export_onnx',
    'ort_session', 'prepare_for_export', 'run_session', 'swap_group_norms_',
    'verify'
]
