"""What mmdeploy needs to export our models with the torch of the supported
stacks, as rewriters in mmdeploy's own registry: they act only inside
mmdeploy's export (its ``RewriterContext``) and change nothing elsewhere.

Imported by the deploy configs' ``custom_imports`` (``configs/deploy/``),
so mmdeploy's own ``tools/deploy.py`` loads it as ours does; importing
``mmpoolformer`` alone never imports mmdeploy.

* **the TorchScript exporter.** mmdeploy 1.3 calls ``torch.onnx.export``
  without ``dynamo``; since torch 2.9 that means the ``torch.export``-based
  exporter, which ignores mmdeploy's symbolic rewrites (its NMS, RoIAlign
  and ``multiclass_nms`` ops are ``autograd.Function.symbolic`` methods)
  and refuses its default opset 11. mmdeploy's graph is TorchScript's:
  inside its export we ask for that exporter explicitly.
"""
import inspect

import torch
from mmdeploy.core import FUNCTION_REWRITER


def _takes_dynamo() -> bool:
    try:
        return 'dynamo' in inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


if _takes_dynamo():

    @FUNCTION_REWRITER.register_rewriter(func_name='torch.onnx.export')
    def torch_onnx_export__torchscript(*args, **kwargs):
        """``torch.onnx.export`` with the TorchScript exporter unless the
        caller chose one."""
        ctx = FUNCTION_REWRITER.get_context()
        kwargs.setdefault('dynamo', False)
        return ctx.origin_func(*args, **kwargs)
