"""The lean formulation: the MetaFormer block in standard torch ops, with
fewer passes over the activations than the plain one (what compilers,
tracers and GPUs run; :mod:`.formulation`).

It is the plain block's function, rearranged with :mod:`.algebra`:

* PoolFormer's half-block behind a one-group GroupNorm is
  ``lerp(x, pool(x), ls * gamma / sigma)`` (the pooling identity): the
  normalised map is never written;
* a norm applies its affine in the normalisation pass (a one-group
  GroupNorm is one reduction and one ``addcmul``), the residual sum the
  layer and residual scales (``addcmul``); an identity mixer or RIFormer's
  affine mixer folds into the norm's affine, so the branch is one norm;
* StarReLU's scalars fold into the following ``fc2`` where the hidden map
  outweighs the weight (it is then written once, as ``relu(h) ** 2``), and
  off the CPU, outside compilers, the ReLU runs in the GEMM's epilogue;
* on maps the GEMMs are 1x1 convolutions (what compilers lower best), on
  tokens linear layers.

Folded weights are recomputed from the live Parameters at every call:
nothing is cached and autograd reaches every Parameter. Under autocast the
residual stream keeps the plain block's dtype (:func:`residual_stream`).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from . import algebra, torch_ops
from .algebra import product
from .formulation import in_graph_capture
from .layers import StarReLU, matrix, norm_kind, scale_vector

Tensor = torch.Tensor


# ------------------------------------------------------------ environment
_PER_DEVICE_AUTOCAST = hasattr(torch, 'get_autocast_dtype')  # torch >= 2.4


def gemm_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast runs a GEMM on ``x`` in (``x.dtype`` without)."""
    device = x.device.type
    if not _PER_DEVICE_AUTOCAST:  # torch < 2.4: CPU and CUDA functions
        if device == 'cpu' and torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
        if device == 'cuda' and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        return x.dtype
    try:
        enabled = torch.is_autocast_enabled(device)
    except RuntimeError:  # a device without autocast ('meta')
        return x.dtype
    return torch.get_autocast_dtype(device) if enabled else x.dtype


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def residual_stream(block: nn.Module, x: Tensor) -> Tensor:
    """``x`` in the dtype the plain block's residual stream has: a layer or
    residual scale (an fp32 Parameter) promotes a bf16 stream (autocast's)
    to fp32; without one the stream keeps its dtype."""
    if not any(
            scale_vector(getattr(block, name, nn.Identity())) is not None
            for name in ('layer_scale1', 'res_scale1', 'layer_scale2',
                         'res_scale2')):
        return x
    return x.to(torch.promote_types(x.dtype, _param_dtype(block)))


# -------------------------------------------------------- stochastic depth
def keep_factor(drop_path: nn.Module, x: Tensor) -> Optional[Tensor]:
    """Per-sample factor of stochastic depth, drawn as mmcv's ``DropPath``
    draws it (the same RNG calls), or None when inactive."""
    if not (isinstance(drop_path, DropPath) and drop_path.training and
            drop_path.drop_prob > 0):
        return None
    keep_prob = 1 - drop_path.drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    noise = torch.rand(shape, dtype=x.dtype, device=x.device)
    return (keep_prob + noise).floor_() / keep_prob


# ------------------------------------------------------------------ pieces
def channels(vector: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    """A (C,) vector broadcast over the channels of NCHW maps or tokens."""
    if vector is None or x.dim() != 4:
        return vector
    return vector.view(-1, 1, 1)


def _over_channels(fn, x: Tensor) -> Tensor:
    """``fn`` of the last dim applied to the channels of maps or tokens."""
    if x.dim() != 4:
        return fn(x)
    return fn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def normalise(norm: nn.Module, x: Tensor, affine=None) -> Tensor:
    """``norm`` of ``x`` with ``affine`` (its own by default, or one with
    more folded in) applied in the normalisation pass; a norm without a
    formula of its own (BatchNorm, GroupNorm of several groups) runs its
    module (with its own affine only)."""
    kind = norm_kind(norm)
    if affine is None:
        affine = (getattr(norm, 'weight', None), getattr(norm, 'bias', None))
    weight, bias = affine
    if kind == 'layer':
        return _over_channels(lambda t: F.layer_norm(
            t, norm.normalized_shape, weight, bias, norm.eps), x)
    if kind == 'group':
        return algebra.group_norm(x, 1, norm.eps, weight, bias)
    if kind == 'none':  # no norm: the affine alone
        out = x if weight is None else x * channels(weight, x)
        return out if bias is None else out + channels(bias, x)
    return norm(x)


def _gemm_relu(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """``relu(x w^T + b)`` over the last dim, the ReLU in the GEMM."""
    dtype = gemm_dtype(x)  # autocast does not cover _addmm_activation
    b = w.new_zeros(w.shape[0]) if b is None else b
    y = torch._addmm_activation(b.to(dtype), x.reshape(-1, x.shape[-1]).to(
        dtype), w.to(dtype).t())
    return y.view(*x.shape[:-1], -1)


def gemm(x: Tensor, w: Tensor, b: Optional[Tensor],
         relu: bool = False) -> Tensor:
    """The channel GEMM ``(out, in)`` of maps (a 1x1 convolution, which
    compilers handle best) or tokens (a linear layer), optionally followed
    by a ReLU that the GEMM applies itself where it can: in an epilogue on
    CUDA-like devices (compilers fuse it themselves; tracers should record
    ordinary ops)."""
    if relu and x.device.type != 'cpu' and not in_graph_capture(x) and \
            torch_ops.works('addmm_activation'):
        return _over_channels(lambda t: _gemm_relu(t, w, b), x)
    y = F.conv2d(x, w[:, :, None, None], b) if x.dim() == 4 else \
        F.linear(x, w, b)
    return F.relu(y) if relu else y


def residual(x: Tensor, branch: Tensor, factor: Optional[Tensor],
             res: Optional[Tensor], skip: bool = True) -> Tensor:
    """``res * x + factor * branch`` (``factor * branch`` without the skip
    connection), the factors broadcast already; None means one."""
    if not skip:
        return branch if factor is None else branch * factor
    if factor is None:
        return x + branch if res is None else torch.addcmul(branch, x, res)
    return torch.addcmul(x if res is None else x * res, branch, factor)


# ------------------------------------------------------- the mixers' forms
def pooling_half(x: Tensor, norm: nn.Module, ls, res, keep,
                 pool_size: int) -> Tensor:
    """``res * x + ls * keep * (pool(GN(x)) - GN(x))`` by the pooling
    identity (:func:`.algebra.pooling_identity_scale`)."""
    scale = algebra.pooling_identity_scale(norm.weight, ls)
    if norm.bias is not None:
        # beta cancels; it stays in the graph with an exact zero gradient
        # (a Parameter without one would stop DDP and skip weight decay)
        zero = norm.bias * 0
        scale = zero + 1 if scale is None else scale + zero
    rstd = algebra.group_norm_stats(x, 1, norm.eps)[1].view(-1, 1, 1, 1)
    gain = product(product(rstd, channels(scale, x)), keep).to(x.dtype)
    pooled = F.avg_pool2d(x, pool_size, 1, pool_size // 2,
                          count_include_pad=False)
    return algebra.pooled_residual(x, pooled, gain, channels(res, x))


def channel_affine_half(affine, x: Tensor, norm: nn.Module, ls, res,
                        keep) -> Optional[Tensor]:
    """``res * x + ls * keep * mixer(norm(x))`` for a mixer that is a
    per-channel ``affine`` (identity, RIFormer's): one norm with the mixer's
    affine and the layer scale folded into its own
    (:func:`.algebra.compose_affines`)."""
    if norm_kind(norm) is None:
        return None
    own = (getattr(norm, 'weight', None), getattr(norm, 'bias', None))
    folded = algebra.compose_affines((ls, None),
                                     algebra.compose_affines(affine, own))
    return residual(x, normalise(norm, x, folded), keep, channels(res, x))


def sep_conv_branch(mixer: nn.Module, xn: Tensor) -> Tensor:
    """ConvFormer's ``pwconv2(dwconv(act(pwconv1(xn))))``; StarReLU as
    ``s * relu(h) ** 2 + b`` with the ReLU in the GEMM where it can be."""
    star = isinstance(mixer.act1, StarReLU)
    h = gemm(xn, matrix(mixer.pwconv1), mixer.pwconv1.bias, relu=star)
    h = torch.addcmul(mixer.act1.bias, h.square(), mixer.act1.scale) if star \
        else mixer.act1(h)
    return gemm(mixer.dwconv(h), matrix(mixer.pwconv2), mixer.pwconv2.bias)


# ------------------------------------------------------------- MLP half
def _worth_folding(w: Tensor, x: Tensor) -> bool:
    """Whether folding scalars into the (out, in) matrix ``w`` (a few
    weight-sized passes, forward and backward) moves fewer bytes than the
    pass over the hidden map it saves: more than 4 rows (tokens) of ``x``
    per output channel. Deep stages at small batches keep the pass."""
    return x.numel() // x.shape[1 if x.dim() == 4 else -1] > 4 * w.shape[0]


def mlp_half(block: nn.Module, x: Tensor, keep: Optional[Tensor]) -> Tensor:
    """``res2 * x + ls2 * keep * fc2(act(fc1(norm2(x))))`` of an NCHW map
    or tokens."""
    norm, mlp = block.norm2, block.mlp
    factor = product(channels(scale_vector(block.layer_scale2), x), keep)
    res = channels(scale_vector(block.res_scale2), x)
    dropout = mlp.drop.p > 0 and mlp.drop.training
    if norm_kind(norm) is None or dropout:
        return residual(x, mlp(norm(x)), factor, res, block.residual)
    xn = normalise(norm, x)
    w2, b2 = matrix(mlp.fc2), mlp.fc2.bias
    if isinstance(mlp.act, StarReLU):
        h = gemm(xn, matrix(mlp.fc1), mlp.fc1.bias, relu=True).square()
        if _worth_folding(w2, xn):
            w2, b2 = algebra.fold_star_relu(w2, b2, mlp.act.scale,
                                            mlp.act.bias)
        else:
            h = torch.addcmul(mlp.act.bias, h, mlp.act.scale)
    else:
        h = mlp.act(gemm(xn, matrix(mlp.fc1), mlp.fc1.bias))
    return residual(x, gemm(h, w2, b2), factor, res, block.residual)
