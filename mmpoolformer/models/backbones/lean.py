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
* every other pass does the most it can: a norm applies its affine in the
  normalisation pass (a one-group GroupNorm is one reduction and one
  ``addcmul``), the residual sum applies the layer and residual scales
  (``addcmul``), an identity mixer or RIFormer's affine mixer folds into
  the norm's affine (the branch is one ``layer_norm``), StarReLU's scalars
  fold into the following ``fc2`` (the hidden map is written once, as
  ``relu(h) ** 2``), and off the CPU, outside compilers, the ReLU runs in
  the GEMM's epilogue (``_addmm_activation``);
* on maps the GEMMs are 1x1 convolutions (what compilers lower best), on
  tokens linear layers; where the ReLU goes into the GEMM, the GEMM runs on
  the channels-last view.

Folded weights and scales are recomputed from the live Parameters at every
call: nothing is cached and autograd reaches every Parameter. Norms of other
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


def normalise(norm: nn.Module, x: Tensor, maps: bool,
              weight: Optional[Tensor], bias: Optional[Tensor]) -> Tensor:
    """``norm`` of ``x`` (kind 'layer', 'group' or 'none') with the affine
    ``weight``, ``bias`` (its own, or one with more folded in) applied in
    the same pass."""
    kind = norm_kind(norm)
    if kind == 'layer':
        return _over_channels(lambda t: F.layer_norm(
            t, norm.normalized_shape, weight, bias, norm.eps), x, maps)
    if kind == 'group':  # one group (maps): statistics per sample
        var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0,
                                   keepdim=True)
        scale = torch.rsqrt(var + norm.eps)
        shift = -mean * scale
        if weight is not None:
            scale = scale * weight.view(-1, 1, 1)
            shift = shift * weight.view(-1, 1, 1)
    else:  # no norm: the affine alone
        if weight is None:
            return x if bias is None else x + _view(bias, maps)
        scale, shift = _view(weight, maps), None
    if bias is not None:
        bias = _view(bias, maps)
        shift = bias if shift is None else shift + bias
    out = x * scale if shift is None else torch.addcmul(shift, x, scale)
    # GroupNorm keeps a bf16 input's dtype (autocast) despite fp32 affines
    return out.to(x.dtype) if kind == 'group' else out


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
        branch = _sep_conv_branch(mixer, norm, x)
    elif isinstance(mixer, Attention):
        branch = _attention_branch(mixer, norm, x)
    else:  # the layer scale folds into the norm's affine
        branch, ls = _affine_branch(mixer, norm, x, ls, maps), None
    return residual(block, x, branch, _view(res, maps),
                    _mul(_view(ls, maps), keep))


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
    k = k.to(x.dtype)  # a bf16 stream under autocast (no scales)
    pooled = F.avg_pool2d(x, size, 1, size // 2, count_include_pad=False)
    if res is None:
        return torch.lerp(x, pooled, k)  # x + k * (pool(x) - x)
    return torch.addcmul(x * (res.view(-1, 1, 1) - k), pooled, k)


def _affine_branch(mixer, norm, x, ls, maps):
    """An identity mixer (``norm(x)``) or RIFormer's ``affine(n) - n``,
    times the layer scale ``ls``: one per-channel affine of the normalised
    input, applied by the norm itself."""
    weight, bias = getattr(norm, 'weight', None), getattr(norm, 'bias', None)
    if isinstance(mixer, Affine):
        a = mixer.affine.weight.reshape(-1) - 1
        weight, bias = _mul(weight, a), (
            mixer.affine.bias if bias is None else
            torch.addcmul(mixer.affine.bias, bias, a))
    return normalise(norm, x, maps, _mul(weight, ls), _mul(bias, ls))


def _norm_affine(norm: nn.Module, x: Tensor, maps: bool) -> Tensor:
    return normalise(norm, x, maps, getattr(norm, 'weight', None),
                     getattr(norm, 'bias', None))


def _sep_conv_branch(mixer, norm, x):
    """ConvFormer's ``pwconv2(dwconv(act(pwconv1(norm(x)))))``."""
    star = isinstance(mixer.act1, StarReLU)
    h = gemm(_norm_affine(norm, x, True), matrix(mixer.pwconv1),
             mixer.pwconv1.bias, True, relu=star)
    if star:  # s * relu(h) ** 2 + b
        h = torch.addcmul(mixer.act1.bias, h.square(), mixer.act1.scale)
    else:
        h = mixer.act1(h)
    return gemm(mixer.dwconv(h), matrix(mixer.pwconv2), mixer.pwconv2.bias,
                True)


def _attention_branch(mixer, norm, tokens):
    """Attention over (B, N, C) tokens."""
    q, k, v = mixer.qkv(_norm_affine(norm, tokens, False)).unflatten(
        -1, (3, mixer.num_heads, mixer.head_dim)).permute(2, 0, 3, 1, 4)
    y = F.scaled_dot_product_attention(
        q, k, v, dropout_p=mixer.attn_drop if mixer.training else 0.)
    return mixer.proj(y.transpose(1, 2).flatten(2))


def _worth_folding(w: Tensor, x: Tensor, maps: bool) -> bool:
    """Whether folding scalars into the (out, in) matrix ``w`` (a few
    weight-sized passes, forward and backward) moves fewer bytes than the
    pass over the hidden map it saves: more than 4 rows (tokens) of ``x``
    per output channel. Deep stages at small batches keep the pass."""
    if isinstance(x, torch.fx.Proxy):
        return True  # a graph for any input size
    return x.numel() // x.shape[1 if maps else -1] > 4 * w.shape[0]


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
    xn = _norm_affine(norm, x, maps)
    w1, b1 = matrix(mlp.fc1), mlp.fc1.bias
    w2, b2 = matrix(mlp.fc2), mlp.fc2.bias
    dropout = mlp.drop.p > 0 and mlp.drop.training
    drop = mlp.drop if dropout else _identity
    if isinstance(mlp.act, StarReLU) and not dropout:
        h = gemm(xn, w1, b1, maps, relu=True).square()
        if _worth_folding(w2, xn, maps):
            # fc2(s * r ** 2 + b) = (s * W2) r ** 2 + (b * W2 1 + c2)
            shift = mlp.act.bias * w2.sum(1)
            b2 = shift if b2 is None else b2 + shift
            w2 = w2 * mlp.act.scale
        else:
            h = torch.addcmul(mlp.act.bias, h, mlp.act.scale)
    else:
        h = drop(mlp.act(gemm(xn, w1, b1, maps)))
    branch = drop(gemm(h, w2, b2, maps))
    return residual(block, x, branch, _view(res, maps),
                    _mul(_view(ls, maps), keep))


def _param_dtype(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


def _scales_stream(block: nn.Module) -> bool:
    """Whether a layer or residual scale multiplies the residual stream:
    under autocast the plain block's product with the fp32 scale promotes
    a bf16 stream to fp32; without one the stream keeps its dtype."""
    return any(scale_vector(getattr(block, name)) is not None for name in (
        'layer_scale1', 'res_scale1', 'layer_scale2', 'res_scale2'))


def block_forward(block: nn.Module, x: Tensor) -> Tensor:
    """The whole :class:`~.blocks.MetaFormerBlock` in the lean formulation."""
    if autocast_enabled(x.device.type) and _scales_stream(block):
        # the residual stream in the parameters' dtype, as the plain block's
        x = x.to(torch.promote_types(x.dtype, _param_dtype(block)))
    x = mixer_half(block, x)
    return mlp_half(block, x) if block.has_mlp else x
