"""The lean formulation: the MetaFormer block in standard torch ops, with
fewer passes over the activations than the plain one.

The fused CPU kernels of :mod:`.fused_ops` run in eager mode on CPU only;
everywhere else (``torch.compile`` / ``torch.export``, ``torch.jit.trace``,
``torch.fx``, CUDA and other devices, tensor subclasses) the default model
computes this formulation. It is the plain block's function, rearranged:

* PoolFormer's mixer behind a one-group GroupNorm: every
  ``count_include_pad=False`` window averages to one, so
  ``pool(GN(x)) - GN(x) = gamma / sigma * (pool(x) - x)`` per sample and
  channel and the half-block is ``lerp(x, pool(x), ls * gamma / sigma)``:
  the normalised map is never written;
* norm affines are folded into the GEMM after the norm (``fc1``, the
  separable convolution's first 1x1, attention's ``qkv``), layer scales
  into the GEMM that ends the branch (``fc2``, the last 1x1, the
  projection), StarReLU's scalars into ``fc2``, and the ReLU into the GEMM
  where the GEMM applies it in its epilogue (``_addmm_activation``, eager
  CUDA-like devices); a mixer without a GEMM (identity, RIFormer's affine)
  folds into the norm's own affine;
* on maps the GEMMs are 1x1 convolutions (what compilers lower best), on
  tokens linear layers; where the ReLU goes into the GEMM, the GEMM runs on
  the channels-last view.

Folded weights are recomputed from the live Parameters at every call:
nothing is cached and autograd reaches every Parameter. Norms of other
kinds (BatchNorm, GroupNorm with several groups) keep their modules.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from torch.nn.modules import module as module_globals

from .layers import StarReLU, matrix, norm_kind, scale_vector
from .token_mixers import Affine, Attention, IdentityMixer, Pooling, SepConv

Tensor = torch.Tensor


# ------------------------------------------------------------ environment
def is_compiling() -> bool:
    """Whether dynamo (``torch.compile`` / ``torch.export``) is tracing."""
    check = getattr(torch.compiler, 'is_compiling', None)  # torch >= 2.3
    if check is None:
        check = torch._dynamo.is_compiling
    return check()


def in_graph_capture(x) -> bool:
    """Whether ``x`` flows through a compiler or tracer rather than eager
    kernels."""
    return is_compiling() or isinstance(x, torch.fx.Proxy) or \
        torch.jit.is_tracing()


def autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)  # torch >= 2.4
    except TypeError:
        return torch.is_autocast_cpu_enabled() if device_type == 'cpu' \
            else torch.is_autocast_enabled()
    except RuntimeError:  # a device without autocast ('meta')
        return False


def gemm_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a GEMM on ``x`` in (``x.dtype`` when
    autocast is off)."""
    if not autocast_enabled(x.device.type):
        return x.dtype
    try:
        return torch.get_autocast_dtype(x.device.type)  # torch >= 2.4
    except AttributeError:
        return torch.get_autocast_cpu_dtype()


_HOOK_DICTS = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks',
               '_backward_pre_hooks')
_GLOBAL_HOOKS = tuple(f'_global{name}' for name in _HOOK_DICTS)


def has_hooks(module: nn.Module) -> bool:
    """Whether a submodule of ``module`` (not ``module`` itself) or the
    global module hooks would observe its submodules' calls: then only the
    plain formulation, which calls them, honours the hooks."""
    if any(getattr(module_globals, name, None) for name in _GLOBAL_HOOKS):
        return True
    for child in module.modules():
        if child is not module and any(
                getattr(child, name) for name in _HOOK_DICTS):
            return True
    return False


# -------------------------------------------------------- stochastic depth
def drops(drop_path: nn.Module) -> bool:
    return isinstance(drop_path, DropPath) and drop_path.training and \
        drop_path.drop_prob > 0


def keep_factor(drop_path: nn.Module, x: Tensor) -> Optional[Tensor]:
    """Per-sample factor of stochastic depth, drawn exactly as mmcv's
    ``DropPath`` draws it (same RNG calls), or None when inactive."""
    if not drops(drop_path):
        return None
    keep_prob = 1 - drop_path.drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    noise = torch.rand(shape, dtype=x.dtype, device=x.device)
    return (keep_prob + noise).floor_() / keep_prob


# --------------------------------------------------------------- pieces
def _mul(a: Optional[Tensor], b: Optional[Tensor]) -> Optional[Tensor]:
    if a is None:
        return b
    return a if b is None else a * b


def _view(vector: Optional[Tensor], maps: bool) -> Optional[Tensor]:
    """A (C,) vector broadcast over the channels of NCHW maps or tokens."""
    if vector is None or not maps:
        return vector
    return vector.view(-1, 1, 1)


def _over_channels(fn, x: Tensor, maps: bool) -> Tensor:
    """``fn`` of the last dim applied to the channels of maps or tokens."""
    if not maps:
        return fn(x)
    return fn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def normalise(norm: nn.Module, x: Tensor, maps: bool):
    """``norm`` of ``x`` without its affine: (normalised, weight, bias),
    for a norm of :func:`norm_kind` 'layer', 'group' or 'none'."""
    kind = norm_kind(norm)
    if kind == 'none':
        return x, None, None
    if kind == 'layer':
        xn = _over_channels(lambda t: F.layer_norm(
            t, norm.normalized_shape, None, None, norm.eps), x, maps)
    else:  # one group (maps): statistics per sample, any layout
        var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0,
                                   keepdim=True)
        rstd = torch.rsqrt(var + norm.eps)
        xn = torch.addcmul(-mean * rstd, x, rstd)
    return xn, norm.weight, norm.bias


def fold_input_affine(layer: nn.Module, weight: Optional[Tensor],
                      bias: Optional[Tensor]):
    """``layer``'s (matrix, bias) with the per-channel affine ``weight``,
    ``bias`` of its input folded in: ``W (w * x + b) + c``."""
    w, c = matrix(layer), layer.bias
    if bias is not None:
        shift = w @ bias
        c = shift if c is None else c + shift
    if weight is not None:
        w = w * weight
    return w, c


def fold_output_scale(w: Tensor, c: Optional[Tensor],
                      scale: Optional[Tensor]):
    """(matrix, bias) of a GEMM followed by the per-channel ``scale``."""
    if scale is None:
        return w, c
    return w * scale[:, None], None if c is None else c * scale


def _fuses_relu(x: Tensor) -> bool:
    # a GEMM epilogue on CUDA-like devices; compilers fuse the ReLU
    # themselves and tracers should record ordinary ops
    return not in_graph_capture(x) and x.device.type != 'cpu'


def _gemm_relu(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """``relu(x w^T + b)`` over the last dim, the ReLU in the GEMM."""
    dtype = gemm_dtype(x)  # autocast does not cover _addmm_activation
    b = w.new_zeros(w.shape[0]) if b is None else b
    y = torch._addmm_activation(b.to(dtype), x.reshape(-1, x.shape[-1]).to(
        dtype), w.to(dtype).t())
    return y.view(*x.shape[:-1], -1)


def gemm(x: Tensor, w: Tensor, b: Optional[Tensor], maps: bool,
         relu: bool = False) -> Tensor:
    """The channel GEMM ``(out, in)`` of maps (a 1x1 convolution, which
    compilers handle best) or tokens (a linear layer), optionally followed
    by a ReLU that the GEMM applies itself where it can."""
    if relu and _fuses_relu(x):
        return _over_channels(lambda t: _gemm_relu(t, w, b), x, maps)
    y = F.conv2d(x, w[:, :, None, None], b) if maps else F.linear(x, w, b)
    return F.relu(y) if relu else y


def residual(block: nn.Module, x: Tensor, branch: Tensor,
             res: Optional[Tensor], factor: Optional[Tensor]) -> Tensor:
    """``res * x + factor * branch`` (or ``factor * branch`` for a block
    without skip connections); None means one."""
    if not block.residual:
        return branch if factor is None else branch * factor
    if factor is None:
        return x + branch if res is None else torch.addcmul(branch, x, res)
    return torch.addcmul(x if res is None else x * res, branch, factor)


# --------------------------------------------------------------- halves
def mixer_half(block: nn.Module, x: Tensor) -> Tensor:
    """``res1 * x + ls1 * mixer(norm1(x))`` of an NCHW map or tokens."""
    norm, mixer = block.norm1, block.token_mixer
    ls, res = scale_vector(block.layer_scale1), scale_vector(block.res_scale1)
    keep = keep_factor(block.drop_path, x)
    maps = not block.tokens_last
    kind = norm_kind(norm)
    if isinstance(mixer, Pooling) and kind == 'group' and block.residual:
        return _pooling_half(block, x, ls, res, keep)
    folds = isinstance(mixer, (IdentityMixer, nn.Identity, Affine, SepConv))
    if isinstance(mixer, Attention):
        folds = not maps  # the hybrid stages' attention on maps: not
    if kind is None or not folds:
        # a mixer with nothing to fold (pooling elsewhere, random mixing,
        # depthwise convolution, ...) or a norm with no channel formula
        return residual(block, x, mixer(norm(x)), _view(res, maps),
                        _mul(_view(ls, maps), keep))
    if isinstance(mixer, SepConv):
        branch = _sep_conv_branch(mixer, norm, x, ls)
    elif isinstance(mixer, Attention):
        branch = _attention_branch(mixer, norm, x, ls)
    else:
        branch = _affine_branch(mixer, norm, x, ls, maps)
    return residual(block, x, branch, _view(res, maps), keep)


def _pooling_half(block, x, ls, res, keep):
    norm, size = block.norm1, block.token_mixer.pool_size
    var = torch.var(x, dim=(1, 2, 3), correction=0)
    k = torch.rsqrt(var + norm.eps).view(-1, 1, 1, 1)  # 1 / sigma
    scale = _mul(norm.weight, ls)
    if norm.bias is not None:
        # beta cancels; it stays in the graph with an exact zero gradient
        # (a Parameter without one would stop DDP and skip weight decay)
        zero = norm.bias * 0
        scale = zero + 1 if scale is None else scale + zero
    if scale is not None:
        k = k * scale.view(-1, 1, 1)
    if keep is not None:
        k = k * keep
    pooled = F.avg_pool2d(x, size, 1, size // 2, count_include_pad=False)
    if res is None:
        return torch.lerp(x, pooled, k)  # x + k * (pool(x) - x)
    return torch.addcmul(x * (res.view(-1, 1, 1) - k), pooled, k)


def _affine_branch(mixer, norm, x, ls, maps):
    """An identity mixer (``norm(x)``) or RIFormer's ``affine(n) - n``:
    one per-channel affine of the normalised input, scaled by ``ls``."""
    weight, bias = getattr(norm, 'weight', None), getattr(norm, 'bias', None)
    if isinstance(mixer, Affine):
        a = mixer.affine.weight.reshape(-1) - 1
        weight, bias = _mul(weight, a), (
            mixer.affine.bias if bias is None else
            torch.addcmul(mixer.affine.bias, bias, a))
    weight, bias = _mul(weight, ls), _mul(bias, ls)
    if norm_kind(norm) == 'layer':  # one pass: the norm, affine folded
        return _over_channels(lambda t: F.layer_norm(
            t, norm.normalized_shape, weight, bias, norm.eps), x, maps)
    xn = normalise(norm, x, maps)[0]
    weight, bias = _view(weight, maps), _view(bias, maps)
    if weight is None:
        return xn if bias is None else xn + bias
    return xn * weight if bias is None else torch.addcmul(bias, xn, weight)


def _sep_conv_branch(mixer, norm, x, ls):
    """ConvFormer's ``pwconv2(dwconv(act(pwconv1(norm(x)))))``: the norm
    affine in pwconv1, the layer scale in pwconv2."""
    xn, weight, bias = normalise(norm, x, True)
    w1, b1 = fold_input_affine(mixer.pwconv1, weight, bias)
    star = isinstance(mixer.act1, StarReLU)
    h = gemm(xn, w1, b1, True, relu=star)
    if star:  # s * relu(h) ** 2 + b
        h = torch.addcmul(mixer.act1.bias, h.square(), mixer.act1.scale)
    else:
        h = mixer.act1(h)
    w2, b2 = fold_output_scale(matrix(mixer.pwconv2), mixer.pwconv2.bias, ls)
    return gemm(mixer.dwconv(h), w2, b2, True)


def _attention_branch(mixer, norm, tokens, ls):
    """Attention over (B, N, C) tokens: the norm affine in ``qkv``, the
    layer scale in ``proj``."""
    xn, weight, bias = normalise(norm, tokens, False)
    w, b = fold_input_affine(mixer.qkv, weight, bias)
    q, k, v = F.linear(xn, w, b).unflatten(
        -1, (3, mixer.num_heads, mixer.head_dim)).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(
        q, k, v, dropout_p=mixer.attn_drop if mixer.training else 0.)
    w, b = fold_output_scale(matrix(mixer.proj), mixer.proj.bias, ls)
    return F.linear(y.transpose(1, 2).flatten(2), w, b)


def _identity(x: Tensor) -> Tensor:
    return x


def mlp_half(block: nn.Module, x: Tensor) -> Tensor:
    """``res2 * x + ls2 * fc2(act(fc1(norm2(x))))`` of an NCHW map or
    tokens."""
    norm, mlp = block.norm2, block.mlp
    ls, res = scale_vector(block.layer_scale2), scale_vector(block.res_scale2)
    keep = keep_factor(block.drop_path, x)
    maps = not block.tokens_last
    if norm_kind(norm) is None:
        factor = _mul(_view(ls, maps), keep)
        return residual(block, x, mlp(norm(x)), _view(res, maps), factor)
    xn, weight, bias = normalise(norm, x, maps)
    w1, b1 = fold_input_affine(mlp.fc1, weight, bias)
    w2, b2 = matrix(mlp.fc2), mlp.fc2.bias
    dropout = mlp.drop.p > 0 and mlp.drop.training
    drop = mlp.drop if dropout else _identity
    if isinstance(mlp.act, StarReLU) and not dropout:
        # fc2(s * r ** 2 + b) = (s * W2) r ** 2 + (b * W2 1 + c2)
        h = gemm(xn, w1, b1, maps, relu=True).square()
        shift = mlp.act.bias * w2.sum(1)
        b2 = shift if b2 is None else b2 + shift
        w2 = w2 * mlp.act.scale
    else:
        h = drop(mlp.act(gemm(xn, w1, b1, maps)))
    w2, b2 = fold_output_scale(w2, b2, ls)
    branch = drop(gemm(h, w2, b2, maps))
    return residual(block, x, branch, _view(res, maps), keep)


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def block_forward(block: nn.Module, x: Tensor) -> Tensor:
    """The whole :class:`~.blocks.MetaFormerBlock` in the lean formulation."""
    if autocast_enabled(x.device.type):
        # the residual stream in the parameters' dtype (fp32), as the plain
        # block's sums with its fp32 norms and scales promote it
        x = x.to(torch.promote_types(x.dtype, _param_dtype(block)))
    x = mixer_half(block, x)
    return mlp_half(block, x) if block.has_mlp else x
