"""The fused formulation: eager CPU kernels for what dominates a MetaFormer
block, on channels-last maps (:mod:`.formulation`).

The block hands them NCHW maps that are channels-last in memory, so the
``(B, H, W, C)`` view each kernel works on is free. Three autograd functions
cover the heavy half-blocks; everything else runs the lean formulation on
the same maps:

* :class:`PoolMix`, PoolFormer's half-block by the pooling identity
  (:func:`.algebra.pooling_identity_scale`); the pooling is a depthwise
  convolution with a ones kernel times the inverse window counts (oneDNN's
  is 1.5-3x faster than ATen's channels-last ``avg_pool2d``). The normalised
  map is never built; backward keeps only ``x`` and two numbers per sample.
* :class:`NormMlp`, ``fc2(act(fc1(norm(y))))`` as two oneDNN GEMMs on the
  ``(B*H*W, C)`` rows with the bias, GELU / ReLU or the residual sum as
  post-ops, the norm affine and layer scale folded into the weights
  (:mod:`.algebra`). It keeps ``y`` and the pre-activation (StarReLU: the
  ReLU's output, its scalars folded into ``fc2``) and recomputes the rest in
  backward: three of the five maps the plain formulation keeps.
* :class:`SepConvMix`, ConvFormer's mixer branch, likewise.

Folded weights are recomputed from the live Parameters at every call. Under
autocast the GEMMs run in autocast's dtype and keep their saved activations
in it; norms and the residual stream keep the stream's dtype. Without
autograd the same forward code runs without saving anything.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import algebra, lean
from . import packed as packed_weights
from .layers import StarReLU, matrix, norm_kind, scale_vector

Tensor = torch.Tensor


def to_nchw(x: Tensor) -> Tensor:
    """Channels-last view ``(B, C, H, W)`` of a ``(B, H, W, C)`` map."""
    return x.permute(0, 3, 1, 2)


def to_nhwc(x: Tensor) -> Tensor:
    """``(B, H, W, C)`` map of an NCHW tensor (free if channels-last)."""
    return x.permute(0, 2, 3, 1).contiguous()


def layer_norm_rows(x2: Tensor, eps: float, weight: Optional[Tensor] = None,
                    bias: Optional[Tensor] = None):
    """``native_layer_norm`` over the rows of a 2-D ``x2``: (normalised,
    mean, rstd). Without a ``weight`` it passes ones: ATen's CPU kernel is
    about twice as fast with a weight as without one."""
    if weight is None:
        weight = _constant('ones', (x2.shape[1], ), x2.dtype, x2.device)
    return torch.ops.aten.native_layer_norm(x2, [x2.shape[1]], weight, bias,
                                            eps)


# ------------------------------------------------------------------ pooling
# The average pool (stride 1, 'same', count_include_pad=False) as P = D S:
# S the window sum, D the inverse window count per position. S is
# symmetric, so P^T g = S(D g).
_CONSTANTS = {}


def _constant(kind: str, shape: tuple, dtype: torch.dtype,
              device: torch.device) -> Tensor:
    """A constant the kernels need at every call, made once per shape:
    ``'ones'``, or ``'inverse_counts'`` of ``shape = (H, W, size)``: ``1 /
    (cells of each pooling window inside the map)``, ``(H, W, 1)``. Never
    written to; weights are never cached."""
    key = (kind, shape, dtype, device)
    if key not in _CONSTANTS:
        if len(_CONSTANTS) > 256:
            _CONSTANTS.clear()
        with torch.inference_mode(False):  # usable outside inference mode
            _CONSTANTS[key] = _make_constant(kind, shape, dtype, device)
    return _CONSTANTS[key]


def _make_constant(kind, shape, dtype, device):
    if kind == 'ones':
        return torch.ones(shape, dtype=dtype, device=device)
    h, w, size = shape

    def counts(n):
        i = torch.arange(n, device=device)
        return (torch.clamp(i + size // 2, max=n - 1) -
                torch.clamp(i - size // 2, min=0) + 1).to(dtype)

    return (counts(h)[:, None] * counts(w)).reciprocal_()[..., None]


def _inverse_counts(x: Tensor, size: int) -> Tensor:
    return _constant('inverse_counts', (x.shape[1], x.shape[2], size),
                     x.dtype, x.device)


def _window_sum(x: Tensor, size: int) -> Tensor:
    ones = _constant('ones', (x.shape[-1], 1, size, size), x.dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):  # in x's dtype
        return to_nhwc(F.conv2d(to_nchw(x), ones, padding=size // 2,
                                groups=x.shape[-1]))


def _pool_mix(x: Tensor, k: Tensor, a: Optional[Tensor], pool_size: int,
              eps: float):
    """:class:`PoolMix`'s output and the statistics of ``x``."""
    _, mean, rstd = layer_norm_rows(x.reshape(x.shape[0], -1), eps)
    mean, rstd = mean.reshape(-1), rstd.reshape(-1)
    gain = (k * rstd[:, None])[:, None, None, :].to(x.dtype)
    pooled = _window_sum(x, pool_size).mul_(_inverse_counts(x, pool_size))
    return algebra.pooled_residual(x, pooled, gain, a, out=pooled), mean, rstd


class PoolMix(torch.autograd.Function):
    """``y = a * x + k / sigma(x) * (avgpool(x) - x)``.

    ``x``: ``(B, H, W, C)``; ``k``: ``(B, C)``, the layer scale times the
    norm's gamma (times a per-sample drop-path factor); ``a``: ``(C,)``
    residual scale or None; ``sigma``: per-sample std of ``x`` as in
    ``GroupNorm(1, C, eps)``. ``beta``, the norm's bias, cancels: it is an
    input only so that it gets its (zero) gradient, as in the plain
    formulation, and DDP sees every parameter used. ``save_dtype``: the
    dtype ``x`` is kept in for backward (autocast's, which its GEMMs
    round to anyway).
    """

    @staticmethod
    def forward(ctx, x, k, a, beta, pool_size: int, eps: float,
                save_dtype: torch.dtype):
        y, mean, rstd = _pool_mix(x, k, a, pool_size, eps)
        ctx.save_for_backward(x.to(save_dtype), k, a, mean, rstd)
        ctx.pool_size = pool_size
        ctx.beta_shape = None if beta is None else beta.shape
        ctx.x_dtype = x.dtype
        return y

    @staticmethod
    def backward(ctx, gy):
        # avgpool is linear and kk constant over positions, so with P the
        # pool and P^T its adjoint: P^T(gy * kk) = kk * P^T(gy) and
        # sum(gy * (Px - x)) = sum(x * (P^T gy - gy)). One adjoint pass
        # serves both, no pooled map is recomputed, updates are in place.
        x, k, a, mean, rstd = ctx.saved_tensors
        size = ctx.pool_size
        gy = gy.contiguous()
        x = x.to(gy.dtype)
        u = _window_sum(gy * _inverse_counts(gy, size), size).sub_(gy)
        t = (x * u).sum((1, 2))                             # (B, C)
        gk = t * rstd[:, None]
        g_rstd = (t * k).sum(1)                             # (B,)
        kk = (k * rstd[:, None])[:, None, None, :]
        # rstd = (var + eps)^-1/2 and d var / dx = 2 (x - mean) / M
        coef = (-g_rstd * rstd**3 / x[0].numel())[:, None, None, None]
        gx = torch.addcmul(-coef * mean[:, None, None, None], u, kk)
        gx.addcmul_(x, coef)
        if a is None:
            gx.add_(gy)
        else:
            gx.addcmul_(gy, a)
        ga = None if a is None else (gy * x).sum((0, 1, 2)).to(a.dtype)
        gbeta = None if ctx.beta_shape is None else x.new_zeros(ctx.beta_shape)
        return (gx.to(ctx.x_dtype), gk.to(k.dtype), ga, gbeta, None, None,
                None)


def pooling_half(x: Tensor, norm: nn.Module, ls, res, keep,
                 pool_size: int) -> Tensor:
    """``res * x + ls * keep * (pool(GN(x)) - GN(x))`` of a channels-last
    NCHW map by :class:`PoolMix`."""
    k = algebra.pooling_identity_scale(norm.weight, ls)
    k = (x.new_ones(x.shape[1]) if k is None else k).expand(x.shape[0], -1)
    if keep is not None:
        k = k * keep.reshape(-1, 1)
    y = to_nhwc(x)
    if not torch.is_grad_enabled():  # inference: no autograd node
        return to_nchw(_pool_mix(y, k, res, pool_size, norm.eps)[0])
    return to_nchw(PoolMix.apply(y, k, res, norm.bias, pool_size, norm.eps,
                                 lean.gemm_dtype(x)))


# ---------------------------------------------------------------------- GEMMs
ACTIVATIONS = ('gelu', 'star_relu', 'relu')
# oneDNN post-ops for activations it computes exactly like torch
_ONEDNN_ACT = dict(gelu=('gelu', 'none'), relu=('relu', ''))


def linear(x: Tensor, w: Tensor, b: Optional[Tensor],
           act: Optional[str] = None,
           residual: Optional[Tensor] = None) -> Tensor:
    """``act(x @ w.T + b) (+ residual)`` on a 2-D ``x`` (``act``: None,
    ``'gelu'`` or ``'relu'``), without autograd
    (inside autograd functions or under ``no_grad``); ``w`` a matrix or one
    in oneDNN's layout (:func:`.packed.gemm_weight`).

    In fp32 and bf16 this is one oneDNN matmul with the bias, the activation
    or the residual sum as post-ops: ``F.linear`` would first copy the
    broadcast bias into its output, a full extra pass over the widest tensor
    of the block, and then read it all again for the activation. The
    activation or a ``residual`` (not both) is fused; a
    residual of another dtype (an fp32 stream beside bf16 GEMMs) is added
    afterwards, in its dtype.
    """
    if residual is not None and residual.dtype != x.dtype:
        return torch.add(residual, linear(x, w, b, act))  # in its dtype
    if not w.is_mkldnn:  # oneDNN's own layout: prepared in x's dtype
        w = w.to(x.dtype)
    b = None if b is None else b.to(x.dtype)
    if x.dtype in (torch.float32, torch.bfloat16):
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(
                x, residual, w, b, 'add')
        attr, algo = _ONEDNN_ACT[act] if act else ('none', '')
        return torch.ops.mkldnn._linear_pointwise(x, w, b, attr, [], algo)
    out = F.linear(x, w, b)
    if act is not None:
        out = _act(out, act, None, None)
    return out if residual is None else out + residual


def _act(h: Tensor, kind: str, s: Optional[Tensor], b: Optional[Tensor]):
    if kind == 'gelu':
        return F.gelu(h)
    if kind == 'relu':
        return F.relu(h)
    return torch.addcmul(b, F.relu(h).square(), s)  # StarReLU


# ----------------------------------------------------------------- norms
def _norm_forward(y: Tensor, norm: Optional[str], eps: float,
                  affine=(None, None)):
    """The norm of a ``(..., C)`` map as ``(B*H*W, C)`` rows, with its
    statistics (None without a norm). ``affine``: the norm's (gamma, beta),
    applied in the same pass (inference: folding them into the next GEMM's
    weights would cost weight-sized passes at every call), or none (the
    autograd functions fold them into the GEMM, differentiably)."""
    y2 = y.reshape(-1, y.shape[-1])
    gamma, beta = affine
    if norm == 'group':  # the per-channel affine tiled over the positions
        positions = y[0].numel() // y.shape[-1]
        gamma, beta = (None if p is None else
                       p.to(y.dtype).expand(positions, -1).reshape(-1)
                       for p in (gamma, beta))
        xn, mean, rstd = layer_norm_rows(y.reshape(y.shape[0], -1), eps,
                                         gamma, beta)
    elif norm == 'layer':
        xn, mean, rstd = layer_norm_rows(y2, eps, gamma, beta)
    else:
        return y2, None, None
    return xn.reshape(y2.shape), mean.reshape(-1), rstd.reshape(-1)


def _rows(x: Tensor, norm: str, shape) -> Tensor:
    """The rows a norm normalises: per sample (group) or per position."""
    return x.reshape(shape[0], -1) if norm == 'group' else \
        x.reshape(-1, shape[-1])


def _kept_input(y: Tensor, xn: Tensor, norm: Optional[str]) -> Tensor:
    """What a fused function saves to redo its norm in backward: ``y``, or
    in a lower GEMM precision the GEMMs' input rows ``xn`` (half the size,
    nothing to recompute)."""
    return y if xn.dtype == y.dtype or norm is None else xn


def _gemm_input(kept: Tensor, y_dtype: torch.dtype, norm: Optional[str],
                mean: Tensor, rstd: Tensor, dtype: torch.dtype) -> Tensor:
    """The GEMMs' input rows again, from :func:`_kept_input`."""
    rows = kept.reshape(-1, kept.shape[-1])
    if kept.dtype == y_dtype and norm is not None:
        r = _rows(rows, norm, kept.shape)
        rows = ((r - mean[:, None]) * rstd[:, None]).reshape(rows.shape)
    return rows.to(dtype)


def _kept_norm_backward(gxn: Tensor, kept: Tensor, y_dtype: torch.dtype,
                        norm: Optional[str], mean: Tensor, rstd: Tensor,
                        shape) -> Tensor:
    """The affine-free norm's backward in ``y``'s dtype, from
    :func:`_kept_input`: ATen's, from ``y`` and its statistics, or from the
    normalised rows (whose statistics are 0 and 1) times ``rstd``."""
    gxn = gxn.to(y_dtype)
    if norm is None:
        return gxn.reshape(shape)
    g = _rows(gxn, norm, shape)
    if kept.dtype == y_dtype:
        x, m, r = _rows(kept, norm, shape), mean.reshape(-1, 1), \
            rstd.reshape(-1, 1)
    else:
        x, r = _rows(kept, norm, shape).to(y_dtype), rstd.new_ones(g.shape[0],
                                                                   1)
        m = r - 1
    gy = torch.ops.aten.native_layer_norm_backward(
        g, x, [g.shape[1]], m, r, None, None, [True, False, False])[0]
    if kept.dtype != y_dtype:
        gy.mul_(rstd.reshape(-1, 1))
    return gy.reshape(shape)


def _fc1_backward(gh: Tensor, xn: Tensor, w1: Tensor, has_b1: bool,
                  scale: Optional[Tensor]):
    """Gradients of ``h = xn @ w1.T + b1`` given ``scale * gh`` = dL/dh (a
    scalar factor applied to the weight-sized results, not to ``gh``)."""
    gw1 = gh.t().mm(xn)
    gb1 = gh.sum(0) if has_b1 else None
    gxn = gh.mm((w1 if scale is None else w1 * scale).to(gh.dtype))
    if scale is not None:
        gw1.mul_(scale)
        gb1 = None if gb1 is None else gb1.mul_(scale)
    return gw1, gb1, gxn


def _dot(a: Tensor, b: Tensor, dtype: torch.dtype, rows: int = 4096):
    """``sum(a * b)`` of two 2-D tensors as a (1,) tensor in ``dtype``,
    accumulated in it: a bf16 ``torch.dot`` rounds (and cancels) in bf16.
    Row blocks bound the upcast copies."""
    if a.dtype == dtype:
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(1)
    return sum(torch.dot(a[i:i + rows].reshape(-1).to(dtype),
                         b[i:i + rows].reshape(-1).to(dtype))
               for i in range(0, a.shape[0], rows)).reshape(1)


def _like(grads, inputs):
    """Each gradient in its input's dtype."""
    return [None if g is None else g.to(x.dtype)
            for g, x in zip(grads, inputs)]


# ---------------------------------------------------------------------- MLP
def _norm_mlp_forward(y, w1, b1, w2, b2, s, b, norm, eps, act, residual,
                      dtype, saving, affine=(None, None)):
    """``fc2(act(fc1(norm(y)))) (+ residual rows)`` as rows, and what
    :class:`NormMlp` keeps (``saving``) or None."""
    xn, mean, rstd = _norm_forward(y, norm, eps, affine)
    xn = xn.to(dtype)
    if act == 'star_relu':
        # h is r = relu(fc1(x)) (the ReLU in the GEMM), and StarReLU's
        # scalars go into fc2 (algebra.fold_star_relu)
        h = linear(xn, w1, b1, 'relu')
        if s is not None:  # None: folded already (packed weights)
            w2, b2 = algebra.fold_star_relu(w2, b2, s, b)
        g = h * h if saving else h.square_()
    else:
        h = linear(xn, w1, b1, act if not saving else None)
        g = _act(h, act, s, b) if saving else h
    out = linear(g, w2, b2, residual=residual)
    return out, (xn, h, mean, rstd) if saving else None


class NormMlp(torch.autograd.Function):
    """``fc2(act(fc1(norm(y))))`` on a ``(B, H, W, C)`` map or ``(B, N, C)``
    tokens.

    ``norm``: ``'group'`` (one group: statistics per sample), ``'layer'``
    (per position, over C) or None, affine-free (the caller folds the affine
    into ``w1``/``b1``). ``act``: ``'gelu'`` (erf), ``'relu'`` or
    ``'star_relu'`` (``s * relu(h)**2 + b``). With ``add_input`` it returns
    ``y + branch`` (the block's residual). ``dtype``: the GEMMs' (autocast's
    bf16, or ``y.dtype``); the norm and its backward run in ``y``'s dtype,
    weight gradients come back in the weights'.
    """

    @staticmethod
    def forward(ctx, y, w1, b1, w2, b2, s, b, norm: Optional[str],
                eps: float, act: str, add_input: bool, dtype: torch.dtype):
        shape = y.shape
        out, (xn, h, mean, rstd) = _norm_mlp_forward(
            y, w1, b1, w2, b2, s, b, norm, eps, act,
            y.reshape(-1, shape[-1]) if add_input else None, dtype, True)
        ctx.save_for_backward(_kept_input(y, xn, norm), h, w1, w2, s, b,
                              mean, rstd)
        ctx.cfg = (norm, act, b1 is not None, b2 is not None, add_input,
                   shape, y.dtype)
        return out.reshape(*shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, go):
        kept, h, w1, w2, s, b, mean, rstd = ctx.saved_tensors
        norm, act, has_b1, has_b2, add_input, shape, y_dtype = ctx.cfg
        dtype = h.dtype
        go = go.reshape(-1, go.shape[-1])
        gq = go.to(dtype)
        xn = _gemm_input(kept, y_dtype, norm, mean, rstd, dtype)
        gb2 = go.sum(0) if has_b2 or act == 'star_relu' else None
        gs = gb_act = None
        if act == 'star_relu':
            # h is r = relu(.): g = s r**2 + b, dL/dh = 2 s r dL/dg; the
            # scalars are applied to the small weight-sized products
            r2 = h * h
            gw2 = gq.t().mm(r2).to(w2.dtype).mul_(s).add_(
                (gb2.to(w2.dtype) * b)[:, None])
            gg = gq.mm(w2.to(dtype))
            gs = _dot(gg, r2, s.dtype)
            del r2
            gb_act = gg.sum(dtype=b.dtype).reshape(1)
            gh, scale = gg.mul_(h), 2 * s
        else:
            g = _act(h, act, s, b)
            gw2 = gq.t().mm(g)
            gg = torch.mm(gq, w2.to(dtype), out=g)  # g is spent: reuse it
            if act == 'gelu':
                gh = torch.ops.aten.gelu_backward.grad_input(gg, h,
                                                             grad_input=gg)
            else:
                gh = gg.masked_fill_(h <= 0, 0)
            scale = None
        gw1, gb1, gxn = _fc1_backward(gh, xn, w1, has_b1, scale)
        gb2 = gb2 if has_b2 else None
        gy = _kept_norm_backward(gxn, kept, y_dtype, norm, mean, rstd, shape)
        if add_input:
            gy.add_(go.reshape(gy.shape))
        return (gy.reshape(shape), *_like((gw1, gb1, gw2, gb2, gs, gb_act),
                                          (w1, w1, w2, w2, s, b)),
                None, None, None, None, None)


def act_kind(act: nn.Module) -> Optional[str]:
    """The activation's name in :class:`NormMlp`, or None."""
    if isinstance(act, StarReLU):
        return 'star_relu'
    if isinstance(act, nn.GELU) and act.approximate == 'none':
        return 'gelu'
    if isinstance(act, nn.ReLU):
        return 'relu'
    return None


def _affine(norm: nn.Module, kind: str):
    return (None, None) if kind == 'none' else (norm.weight, norm.bias)


def mlp_half(block: nn.Module, x: Tensor, keep: Optional[Tensor],
             packed: bool = False) -> Optional[Tensor]:
    """``res2 * x + ls2 * keep * mlp(norm2(x))`` of a channels-last NCHW
    map or tokens by :class:`NormMlp`; None for norms and activations it
    has no formula for, and for active dropout. ``packed``: inference on
    the weights :func:`.packed.mlp_weights` prepared once."""
    mlp, kind, act = block.mlp, norm_kind(block.norm2), act_kind(block.mlp.act)
    if kind is None or act is None or (mlp.training and mlp.drop.p > 0):
        return None
    res = scale_vector(block.res_scale2)
    y = to_nhwc(x) if x.dim() == 4 else x
    affine, training = _affine(block.norm2, kind), torch.is_grad_enabled()
    dtype = lean.gemm_dtype(y)
    s = b = None
    if packed:
        w1, b1, w2, b2 = packed_weights.mlp_weights(block, dtype)
        affine = (None, None)
    else:
        w1, b1 = matrix(mlp.fc1), mlp.fc1.bias
        if training:
            w1, b1 = algebra.fold_affine_into_linear(w1, b1, *affine)
        w2, b2 = algebra.fold_scale_into_linear(
            matrix(mlp.fc2), mlp.fc2.bias, scale_vector(block.layer_scale2))
        if act == 'star_relu':
            s, b = mlp.act.scale, mlp.act.bias
    norm, eps = (None if kind == 'none' else kind), \
        getattr(block.norm2, 'eps', 0.)
    fused_residual = block.residual and keep is None
    residual = (y if res is None else y * res) if fused_residual else None
    if not training:
        rows = None if residual is None else residual.reshape(-1, y.shape[-1])
        out = _norm_mlp_forward(y, w1, b1, w2, b2, s, b, norm, eps, act, rows,
                                dtype, False, affine)[0].reshape(y.shape)
    else:
        add_input = residual is y
        out = NormMlp.apply(y, w1, b1, w2, b2, s, b, norm, eps, act,
                            add_input, dtype)
        if residual is not None and not add_input:
            out = out + residual
    if not fused_residual:  # keep: (B, 1, 1, 1) or (B, 1, 1), as y needs
        out = lean.residual(y, out, keep, res, block.residual)
    return to_nchw(out) if x.dim() == 4 else out


# ------------------------------------------------------------- ConvFormer
def _depthwise(a: Tensor, wd: Tensor, bd: Optional[Tensor]) -> Tensor:
    """Stride-1 'same' depthwise convolution of a (B, H, W, C) map."""
    padding = (wd.shape[-2] // 2, wd.shape[-1] // 2)
    return to_nhwc(F.conv2d(to_nchw(a), wd, bd, padding=padding,
                            groups=a.shape[-1]))


def star_affine(a: Tensor, s: Tensor, b: Tensor, dtype: torch.dtype,
                in_place: bool = False) -> Tensor:
    """StarReLU's ``s * a + b`` (``a = relu(h) ** 2``; ``s``, ``b`` its
    one-element Parameters) in ``dtype``: one ``add`` with ``s`` as a
    number and ``b`` as a scalar, computed in fp32 and rounded once, as the
    plain block does under autocast (ATen's CPU ``addcmul`` with broadcast
    one-element tensors is ~40x slower: ~20 ms per ConvFormer stage-1
    map)."""
    out = a if in_place and a.dtype == dtype else None
    return torch.add(b.reshape(()), a, alpha=s.item(), out=out).to(dtype)


def _sep_conv_forward(y, w1, b1, s, b, wd, bd, w2, b2, norm, eps, dtype,
                      saving, affine=(None, None)):
    """``pw2(dw(star_relu(pw1(norm(y)))))`` as rows, and what
    :class:`SepConvMix` keeps (``saving``) or None."""
    xn, mean, rstd = _norm_forward(y, norm, eps, affine)
    xn = xn.to(dtype)
    r = linear(xn, w1, b1, 'relu')
    a = star_affine(r * r if saving else r.square_(), s, b, dtype,
                    in_place=True)  # on a temporary: r itself is kept
    d = _depthwise(a.reshape(*y.shape[:-1], -1), wd.to(dtype),
                   None if bd is None else bd.to(dtype))
    del a
    d = d.reshape(-1, d.shape[-1])
    return linear(d, w2, b2), (xn, r, d, mean, rstd) if saving else None


class SepConvMix(torch.autograd.Function):
    """ConvFormer's mixer branch ``pw2(dw(star_relu(pw1(norm(y)))))`` on a
    ``(B, H, W, C)`` map (norm as in :class:`NormMlp`, its affine folded
    into ``w1``/``b1``; ``wd``: the depthwise kernel, stride 1, 'same';
    ``dtype``: the convolutions', as in :class:`NormMlp`).

    It saves ``y``, ``r = relu(pw1(.))`` and the depthwise output, and
    recomputes the normalised input and the activation in backward: three
    of the plain formulation's seven saved maps.
    """

    @staticmethod
    def forward(ctx, y, w1, b1, s, b, wd, bd, w2, b2, norm: Optional[str],
                eps: float, dtype: torch.dtype):
        out, (xn, r, d, mean, rstd) = _sep_conv_forward(
            y, w1, b1, s, b, wd, bd, w2, b2, norm, eps, dtype, True)
        ctx.save_for_backward(_kept_input(y, xn, norm), r, d, w1, s, b, wd,
                              w2, mean, rstd)
        ctx.cfg = (norm, b1 is not None, bd is not None, b2 is not None,
                   y.shape, y.dtype)
        return out.reshape(*y.shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, go):
        kept, r, d, w1, s, b, wd, w2, mean, rstd = ctx.saved_tensors
        norm, has_b1, has_bd, has_b2, shape, y_dtype = ctx.cfg
        dtype = r.dtype
        go = go.reshape(-1, go.shape[-1])
        gq = go.to(dtype)
        gw2 = gq.t().mm(d)
        gb2 = go.sum(0) if has_b2 else None
        gd = gq.mm(w2.to(dtype))
        del d
        r2 = r * r
        a = star_affine(r2, s, b, dtype)
        map_shape = (*shape[:-1], -1)
        ga, gwd, gbd = torch.ops.aten.convolution_backward(
            to_nchw(gd.reshape(map_shape)), to_nchw(a.reshape(map_shape)),
            wd.to(dtype), [wd.shape[0]] if has_bd else None, [1, 1],
            [wd.shape[-2] // 2, wd.shape[-1] // 2], [1, 1], False, [0, 0],
            wd.shape[0], [True, True, has_bd])
        del gd, a
        ga = to_nhwc(ga).reshape(r.shape)
        gs = _dot(ga, r2, s.dtype)
        del r2
        gb_act = ga.sum(dtype=b.dtype).reshape(1)
        gh = ga.mul_(r)  # dL/dh = 2 s r dL/da
        xn = _gemm_input(kept, y_dtype, norm, mean, rstd, dtype)
        gw1, gb1, gxn = _fc1_backward(gh, xn, w1, has_b1, 2 * s)
        gy = _kept_norm_backward(gxn, kept, y_dtype, norm, mean, rstd, shape)
        return (gy, *_like((gw1, gb1, gs, gb_act, gwd, gbd, gw2, gb2),
                           (w1, w1, s, b, wd, wd, w2, w2)),
                None, None, None)


def _plain_depthwise(dw: nn.Conv2d) -> bool:
    return dw.stride == (1, 1) and dw.dilation == (1, 1) and \
        dw.padding == (dw.kernel_size[0] // 2, dw.kernel_size[1] // 2) and \
        dw.groups == dw.in_channels == dw.out_channels and \
        dw.padding_mode == 'zeros'


def sep_conv_half(mixer: nn.Module, x: Tensor, norm: nn.Module, ls, res,
                  keep, packed: bool = False) -> Optional[Tensor]:
    """``res * x + ls * keep * mixer(norm(x))`` of a channels-last NCHW map
    by :class:`SepConvMix`; None for a mixer or norm it has no formula for
    (another activation, a strided or dilated depthwise convolution).
    ``packed``: inference on :func:`.packed.sep_conv_weights`."""
    kind = norm_kind(norm)
    if kind is None or not isinstance(mixer.act1, StarReLU) or \
            not _plain_depthwise(mixer.dwconv):
        return None
    y = to_nhwc(x)
    affine, training = _affine(norm, kind), torch.is_grad_enabled()
    dtype = lean.gemm_dtype(y)
    s, b = mixer.act1.scale, mixer.act1.bias
    if packed:
        w1, b1, wd, bd, w2, b2 = packed_weights.sep_conv_weights(
            mixer, norm, ls, dtype)
        affine = (None, None)
    else:
        w1, b1 = matrix(mixer.pwconv1), mixer.pwconv1.bias
        if training:  # as in mlp_half
            w1, b1 = algebra.fold_affine_into_linear(w1, b1, *affine)
        w2, b2 = algebra.fold_scale_into_linear(matrix(mixer.pwconv2),
                                                mixer.pwconv2.bias, ls)
        wd, bd = mixer.dwconv.weight, mixer.dwconv.bias
    args = (y, w1, b1, s, b, wd, bd, w2, b2, None if kind == 'none' else kind,
            getattr(norm, 'eps', 0.), dtype)
    if training:
        branch = SepConvMix.apply(*args)
    else:
        branch = _sep_conv_forward(*args, False, affine)[0].reshape(y.shape)
    return lean.residual(x, to_nchw(branch), keep, lean.channels(res, x))

