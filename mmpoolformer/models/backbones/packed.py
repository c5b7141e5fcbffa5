"""The packed formulation: eager CPU inference on weights prepared once
(:mod:`.formulation`).

It runs the fused formulation's inference kernels (:mod:`.fused`), minus
the work they repeat at every call on the weight side: every fold of
:mod:`.algebra` that ends in a GEMM's weights (a norm's affine into the
1x1 convolution after it, a layer scale into the one before, StarReLU's
scalars into ``fc2``) is applied once, the result converted to the dtype
the GEMMs run in (autocast's bf16, or the input's) and reordered into
oneDNN's own blocked layout, which its bf16 kernels otherwise make from a
plain matrix at every call. S12 in bf16 spends about a fifth less time in
its GEMMs (docs/speed.md).

The prepared weights live beside the model, not in it: no state-dict key,
nothing a checkpoint, ``deepcopy`` or DDP sees. They are made again when a
Parameter they come from changes (an in-place update such as an optimizer
step or ``load_state_dict``, a replaced tensor, another dtype or device)
and freed with the model. There is no autograd through them, so the
formulation refuses to run with gradients enabled.
"""
import weakref
from typing import Callable, Iterable

import torch
import torch.nn as nn

from . import algebra, torch_ops
from .layers import StarReLU, matrix, norm_kind, scale_vector

Tensor = torch.Tensor

#: module -> {name: (key, weights)}; weak, so it goes with the model
_PREPARED = weakref.WeakKeyDictionary()


def _weights_key(sources: Iterable[Tensor], dtype: torch.dtype) -> tuple:
    """What the prepared weights depend on: each source tensor's storage and
    version counter (bumped by every in-place write; inference tensors,
    made under ``inference_mode``, have none), and the GEMM dtype."""
    return (dtype, ) + tuple(
        (p.data_ptr(), None if p.is_inference() else p._version, p.dtype,
         p.device) for p in sources if p is not None)


def _parameters(*modules: nn.Module) -> list:
    return [p for m in modules for p in m.parameters()]


def prepared(owner: nn.Module, name: str, dtype: torch.dtype,
             make: Callable[[torch.dtype], tuple],
             sources: Iterable[Tensor]) -> tuple:
    """``make(dtype)`` for ``owner``, made once and reused until a tensor of
    ``sources`` (the Parameters it reads) changes or another ``dtype`` is
    asked for."""
    key = _weights_key(sources, dtype)
    slots = _PREPARED.setdefault(owner, {})
    hit = slots.get(name)
    if hit is None or hit[0] != key:
        with torch.inference_mode(False), torch.no_grad(), \
                torch.autocast('cpu', enabled=False):
            hit = slots[name] = (key, make(dtype))
    return hit[1]


def gemm_weight(weight: Tensor, bias, dtype: torch.dtype) -> tuple:
    """An (out, in) matrix and its bias in the GEMMs' ``dtype``, the matrix
    in oneDNN's layout for its fp32 / bf16 kernels (where the probe of that
    operator passes; a plain matrix computes the same otherwise)."""
    weight = weight.to(dtype).contiguous()
    bias = None if bias is None else bias.to(dtype)
    if dtype in (torch.float32, torch.bfloat16) and \
            torch_ops.works('onednn_packed_linear'):
        weight = torch.ops.mkldnn._reorder_linear_weight(weight)
    return weight, bias


def _norm_affine(norm: nn.Module):
    return (None, None) if norm_kind(norm) == 'none' else \
        (norm.weight, norm.bias)


def mlp_weights(block: nn.Module, dtype: torch.dtype) -> tuple:
    """``(w1, b1, w2, b2)`` of the block's MLP: ``norm2``'s affine folded
    into ``fc1``, the layer scale (and StarReLU's scalars) into ``fc2``."""
    def make(dtype):
        mlp = block.mlp
        w1, b1 = algebra.fold_affine_into_linear(
            matrix(mlp.fc1), mlp.fc1.bias, *_norm_affine(block.norm2))
        w2, b2 = algebra.fold_scale_into_linear(
            matrix(mlp.fc2), mlp.fc2.bias, scale_vector(block.layer_scale2))
        if isinstance(mlp.act, StarReLU):
            w2, b2 = algebra.fold_star_relu(w2, b2, mlp.act.scale,
                                            mlp.act.bias)
        return gemm_weight(w1, b1, dtype) + gemm_weight(w2, b2, dtype)
    return prepared(block, 'mlp', dtype, make, _parameters(
        block.norm2, block.mlp, block.layer_scale2))


def sep_conv_weights(mixer: nn.Module, norm: nn.Module, ls,
                     dtype: torch.dtype) -> tuple:
    """``(w1, b1, wd, bd, w2, b2)`` of ConvFormer's mixer: the norm's affine
    folded into ``pwconv1``, the layer scale ``ls`` into ``pwconv2``."""
    def make(dtype):
        w1, b1 = algebra.fold_affine_into_linear(
            matrix(mixer.pwconv1), mixer.pwconv1.bias, *_norm_affine(norm))
        w2, b2 = algebra.fold_scale_into_linear(
            matrix(mixer.pwconv2), mixer.pwconv2.bias, ls)
        dw = mixer.dwconv
        return (*gemm_weight(w1, b1, dtype), dw.weight.to(dtype),
                None if dw.bias is None else dw.bias.to(dtype),
                *gemm_weight(w2, b2, dtype))
    return prepared(mixer, 'sep_conv', dtype, make,
                    _parameters(mixer, norm) + [ls])
