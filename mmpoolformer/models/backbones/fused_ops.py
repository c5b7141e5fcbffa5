"""Fused kernels of the fast formulation, on channels-last ``(B, H, W, C)``
maps, for eager mode (:mod:`.fast_blocks` calls them only there).

Three autograd functions cover what dominates a MetaFormer block:

* :class:`PoolMix`, PoolFormer's token mixer behind a one-group GroupNorm,
  through the identity ``pool(GN(x)) - GN(x) = gamma / sigma * (pool(x) - x)``
  (every ``count_include_pad=False`` window averages to one, so the mean and
  beta cancel). The normalised map is never built; backward saves nothing
  but ``x`` and two numbers per sample.
* :class:`NormMlp`, ``fc2(act(fc1(norm(y))))`` as two GEMMs on the
  ``(B*H*W, C)`` matrix with the norm affine already folded into ``fc1``.
  It saves ``y`` and the pre-activation (StarReLU: the ReLU's output, the
  ReLU fused into the GEMM and the scalars folded into ``fc2``) and
  recomputes the normalised input and the activation in backward: three of
  the five tensors the plain formulation keeps.
* :class:`SepConvMix`, ConvFormer's mixer branch, likewise.

Under autocast the GEMMs run in autocast's dtype and the saved activations
are kept in it; norms and the residual stream stay in the input's dtype.
All compute the plain formulation's function (fp32 differences are
rounding, ~1e-6 relative); ``tests/test_fast_path.py`` checks outputs and
gradients against it.
"""
import functools
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

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
    mean, rstd). Without a weight it passes ones: ATen's CPU kernel is about
    twice as fast with a weight as without one (torch 2.14, measured)."""
    if weight is None:
        weight = _constant('ones', (x2.shape[1], ), x2.dtype, x2.device)
    return torch.ops.aten.native_layer_norm(x2, [x2.shape[1]], weight, bias,
                                            eps)


def sample_stats(x: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` per sample, over all its elements
    (a one-group GroupNorm's statistics, whatever the layout)."""
    _, mean, rstd = layer_norm_rows(x.reshape(x.shape[0], -1), eps)
    return mean.reshape(-1), rstd.reshape(-1)


# ------------------------------------------------------------------ pooling
# The average pool (stride 1, 'same', count_include_pad=False) as P = D S:
# S the window sum, a depthwise convolution with a ones kernel (oneDNN's is
# 1.5-3x faster than ATen's channels-last avg_pool2d at these sizes), D the
# inverse window count per position. S is symmetric, so P^T g = S(D g).
@functools.lru_cache(maxsize=64)
def _constant(kind: str, shape: tuple, dtype: torch.dtype,
              device: torch.device) -> Tensor:
    """A constant the kernels need at every call, made once per shape:
    ``'ones'``, or ``'inverse_counts'`` of ``shape = (H, W, size)``: ``1 /
    (cells of each pooling window inside the map)``, ``(H, W, 1)``. Never
    written to; weights are never cached."""
    with torch.inference_mode(False):  # usable outside inference mode too
        return _make_constant(kind, shape, dtype, device)


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


def _pool(x: Tensor, size: int) -> Tensor:
    return _window_sum(x, size).mul_(_inverse_counts(x, size))


def _pool_adjoint(grad: Tensor, size: int) -> Tensor:
    return _window_sum(grad * _inverse_counts(grad, size), size)


def _pool_mix(x: Tensor, k: Tensor, a: Optional[Tensor], pool_size: int,
              eps: float):
    """:class:`PoolMix`'s output and the statistics of ``x``."""
    mean, rstd = sample_stats(x, eps)
    kk = (k * rstd[:, None])[:, None, None, :]
    p = _pool(x, pool_size)  # a temporary: the output is written into it
    if a is None:
        return torch.lerp(x, p, kk, out=p), mean, rstd
    return p.mul_(kk).addcmul_(x, a - kk), mean, rstd


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
        return y

    @staticmethod
    def backward(ctx, gy):
        # avgpool is linear and kk constant over positions, so with P the
        # pool and P^T its adjoint: P^T(gy * kk) = kk * P^T(gy) and
        # sum(gy * (Px - x)) = sum(x * (P^T gy - gy)). One adjoint pass
        # serves both, no pooled map is recomputed, updates are in place.
        x, k, a, mean, rstd = ctx.saved_tensors
        gy = gy.contiguous()
        x = x.to(gy.dtype)
        u = _pool_adjoint(gy, ctx.pool_size).sub_(gy)      # (P^T - 1) gy
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
        ga = None if a is None else (gy * x).sum((0, 1, 2))
        gbeta = None if ctx.beta_shape is None else x.new_zeros(ctx.beta_shape)
        return gx, gk, ga, gbeta, None, None, None


def pool_mix(x: Tensor, k: Tensor, a: Optional[Tensor],
             beta: Optional[Tensor], pool_size: int, eps: float,
             save_dtype: Optional[torch.dtype] = None) -> Tensor:
    if not torch.is_grad_enabled():  # inference: no autograd node
        return _pool_mix(x, k, a, pool_size, eps)[0]
    return PoolMix.apply(x, k, a, beta, pool_size, eps,
                         x.dtype if save_dtype is None else save_dtype)


# ---------------------------------------------------------------------- MLP
ACTIVATIONS = ('gelu', 'star_relu', 'relu')
# oneDNN post-ops for activations it computes exactly like torch
_ONEDNN_ACT = dict(gelu=('gelu', 'none'), relu=('relu', ''))


def _onednn_linear_available() -> bool:
    """oneDNN's fused linear (a private op, absent from some builds)."""
    try:
        return (torch.backends.mkldnn.is_available() and
                hasattr(torch.ops.mkldnn, '_linear_pointwise') and
                hasattr(torch.ops.mkldnn._linear_pointwise, 'binary'))
    except (AttributeError, RuntimeError):
        return False


ONEDNN_LINEAR = _onednn_linear_available()


def _use_onednn(x: Tensor) -> bool:
    return (ONEDNN_LINEAR and x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.bfloat16))


def linear(x: Tensor, w: Tensor, b: Optional[Tensor],
           act: Optional[str] = None,
           residual: Optional[Tensor] = None) -> Tensor:
    """``act(x @ w.T + b) (+ residual)`` on a 2-D ``x``, without autograd
    (inside autograd functions or under ``no_grad``).

    On CPU this is one oneDNN matmul with the bias, the activation or the
    residual sum as post-ops: ``F.linear`` would first copy the broadcast
    bias into its output, a full extra pass over the widest tensor of the
    block (as costly as the GEMM itself for stage 1), and then read it all
    again for the activation. Only ``act`` in ``_ONEDNN_ACT`` or a
    ``residual`` (not both) are fused; a residual of another dtype (the fp32
    stream beside bf16 GEMMs) is added afterwards, in its dtype.
    """
    if residual is not None and residual.dtype != x.dtype:
        return torch.add(residual, linear(x, w, b, act))  # in its dtype
    if _use_onednn(x):
        w = w.to(x.dtype)
        b = None if b is None else b.to(x.dtype)
        if residual is not None:
            return torch.ops.mkldnn._linear_pointwise.binary(
                x, residual, w, b, 'add')
        attr, algo = _ONEDNN_ACT.get(act, ('none', ''))
        return torch.ops.mkldnn._linear_pointwise(x, w, b, attr, [], algo)
    out = F.linear(x, w.to(x.dtype), None if b is None else b.to(x.dtype))
    if act is not None:
        out = _act(out, act, None, None)
    return out if residual is None else out + residual


def _act(h: Tensor, kind: str, s: Optional[Tensor], b: Optional[Tensor]):
    if kind == 'gelu':
        return F.gelu(h)
    if kind == 'relu':
        return F.relu(h)
    return torch.addcmul(b, F.relu(h).square(), s)  # StarReLU


def _norm_forward(y: Tensor, norm: Optional[str], eps: float):
    """Affine-free norm of a ``(..., C)`` map as ``(B*H*W, C)`` rows, with
    its statistics (None without a norm)."""
    y2 = y.reshape(-1, y.shape[-1])
    if norm == 'group':
        xn, mean, rstd = layer_norm_rows(y.reshape(y.shape[0], -1), eps)
    elif norm == 'layer':
        xn, mean, rstd = layer_norm_rows(y2, eps)
    else:
        return y2, None, None
    return xn.reshape(y2.shape), mean.reshape(-1), rstd.reshape(-1)


def _norm_backward(gxn: Tensor, y: Tensor, norm: Optional[str],
                   mean: Tensor, rstd: Tensor) -> Tensor:
    """Gradient of :func:`_norm_forward`'s rows w.r.t. ``y`` (its shape)."""
    if norm is None:
        return gxn.reshape(y.shape)
    rows = y.reshape(y.shape[0], -1) if norm == 'group' else \
        y.reshape(-1, y.shape[-1])
    return torch.ops.aten.native_layer_norm_backward(
        gxn.reshape(rows.shape), rows, [rows.shape[1]], mean.reshape(-1, 1),
        rstd.reshape(-1, 1), None, None,
        [True, False, False])[0].reshape(y.shape)


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
        rows = _normalise(rows, norm, mean, rstd)
    return rows.to(dtype)


def _kept_norm_backward(gxn: Tensor, kept: Tensor, y_dtype: torch.dtype,
                        norm: Optional[str], mean: Tensor, rstd: Tensor,
                        shape) -> Tensor:
    """The norm's backward from :func:`_kept_input`, in ``y``'s dtype."""
    gxn = gxn.to(y_dtype)
    if kept.dtype != y_dtype:
        return _norm_backward_normalised(gxn, kept, norm, rstd, shape)
    return _norm_backward(gxn, kept, norm, mean, rstd)


def _norm_backward_normalised(gxn: Tensor, xn: Tensor, norm: str,
                              rstd: Tensor, shape) -> Tensor:
    """:func:`_norm_backward` from the normalised rows ``xn`` (any float
    dtype) instead of the input: ``rstd * (g - mean(g) - xn mean(g xn))``,
    ATen's formula with the statistics of ``xn`` (0 and 1)."""
    rows = (shape[0], -1) if norm == 'group' else (-1, shape[-1])
    g, x = gxn.reshape(rows), xn.reshape(rows).to(gxn.dtype)
    one = rstd.new_ones(g.shape[0], 1)
    gy = torch.ops.aten.native_layer_norm_backward(
        g, x, [g.shape[1]], one - 1, one, None, None,
        [True, False, False])[0]
    return gy.mul_(rstd.reshape(-1, 1)).reshape(shape)


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


def _fold_affine(w1: Tensor, b1: Optional[Tensor], gamma: Optional[Tensor],
                 beta: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    """``(W1', b1')`` with ``fc1(gamma * n + beta) = W1' n + b1'``, from the
    live Parameters (differentiable)."""
    if beta is not None:
        b1 = w1.mv(beta) if b1 is None else torch.addmv(b1, w1, beta)
    return (w1 if gamma is None else w1 * gamma), b1


def _star_relu_into_fc2(w2: Tensor, b2: Optional[Tensor], s: Tensor,
                        b: Tensor) -> Tuple[Tensor, Tensor]:
    """``(W2', b2')`` with ``fc2(s * r**2 + b) = W2' r**2 + b2'``."""
    shift = torch.mv(w2, b.expand(w2.shape[1]))
    return w2 * s, shift if b2 is None else shift + b2


def _normalise(y2: Tensor, norm: str, mean: Tensor, rstd: Tensor) -> Tensor:
    """(y - mean) * rstd with per-sample (group) or per-row (layer) stats."""
    if norm == 'group':
        rows = y2.reshape(mean.shape[0], -1)
        return ((rows - mean[:, None]) * rstd[:, None]).reshape(y2.shape)
    return (y2 - mean[:, None]) * rstd[:, None]


class NormMlp(torch.autograd.Function):
    """``fc2(act(fc1(norm(y))))`` on a ``(B, H, W, C)`` map.

    ``norm``: ``'group'`` (one group: statistics per sample), ``'layer'``
    (per position, over C) or None; affine-free because the caller folds the
    norm affine into ``w1``/``b1``. ``act``: ``'gelu'`` (erf), ``'relu'`` or
    ``'star_relu'`` (``s * relu(h)**2 + b``). With ``add_input`` it
    returns ``y + branch`` (the block's residual), else the branch.
    ``dtype``: the GEMMs' (autocast's bf16, or ``y.dtype``); as under
    autocast, the norm and its backward run in ``y``'s dtype, the GEMMs and
    the activation in ``dtype``, weight gradients come back in the weights'.
    """

    @staticmethod
    def forward(ctx, y, w1, b1, w2, b2, s, b, norm: Optional[str],
                eps: float, act: str, add_input: bool, dtype: torch.dtype):
        shape = y.shape
        y2 = y.reshape(-1, shape[-1])
        xn, mean, rstd = _norm_forward(y, norm, eps)
        xn = xn.to(dtype)
        residual = y2 if add_input else None
        if act == 'star_relu':
            # h is r = relu(fc1(x)) (the ReLU fused into the GEMM) and
            # fc2(s * r**2 + b) = (s W2) r**2 + (b2 + b W2 1)
            h = linear(xn, w1, b1, 'relu')
            w2s, b2s = _star_relu_into_fc2(w2, b2, s, b)
            out = linear(h * h, w2s, b2s, residual=residual)
        else:
            h = linear(xn, w1, b1)
            out = linear(_act(h, act, s, b), w2, b2, residual=residual)
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


def _depthwise(a: Tensor, wd: Tensor, bd: Optional[Tensor]) -> Tensor:
    """Stride-1 'same' depthwise convolution of a (B, H, W, C) map."""
    padding = (wd.shape[-2] // 2, wd.shape[-1] // 2)
    return to_nhwc(F.conv2d(to_nchw(a), wd, bd, padding=padding,
                            groups=a.shape[-1]))


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
        xn, mean, rstd = _norm_forward(y, norm, eps)
        xn = xn.to(dtype)
        r = linear(xn, w1, b1, 'relu')
        a = r * r  # StarReLU; in fp32 under autocast, as its ops run
        a = a.mul_(s).add_(b) if a.dtype == s.dtype else \
            torch.addcmul(b, a, s).to(dtype)
        d = _depthwise(a.reshape(*y.shape[:-1], -1), wd.to(dtype),
                       None if bd is None else bd.to(dtype))
        del a
        d = d.reshape(r.shape)
        out = linear(d, w2, b2)
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
        a = torch.addcmul(b, r2, s).to(dtype)
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


def sep_conv_mix(y: Tensor, w1: Tensor, b1: Optional[Tensor],
                 act_params: Tuple[Tensor, Tensor], wd: Tensor,
                 bd: Optional[Tensor], w2: Tensor, b2: Optional[Tensor],
                 norm: Optional[str] = None, eps: float = 1e-6,
                 norm_affine=(None, None),
                 dtype: Optional[torch.dtype] = None) -> Tensor:
    """:class:`SepConvMix` with the norm's (gamma, beta) folded into
    ``w1`` / ``b1`` from the live Parameters (differentiably)."""
    w1, b1 = _fold_affine(w1, b1, *norm_affine)
    return SepConvMix.apply(y, w1, b1, *act_params, wd, bd, w2, b2, norm, eps,
                            y.dtype if dtype is None else dtype)


def _normalised(y: Tensor, norm: Optional[str], eps: float,
                gamma: Optional[Tensor], beta: Optional[Tensor],
                dtype: torch.dtype) -> Tensor:
    """The norm with its affine, in ``dtype`` (the GEMMs')."""
    if norm == 'layer':
        return F.layer_norm(y, y.shape[-1:], gamma, beta, eps).to(dtype)
    if norm != 'group':
        return y.to(dtype)
    # the per-channel affine tiled over the positions: one pass
    positions = y[0].numel() // y.shape[-1]
    gamma, beta = (None if p is None else
                   p.to(y.dtype).expand(positions, -1).reshape(-1)
                   for p in (gamma, beta))
    xn = layer_norm_rows(y.reshape(y.shape[0], -1), eps, gamma, beta)[0]
    return xn.reshape(y.shape).to(dtype)


def norm_mlp(y: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor,
             b2: Optional[Tensor], act: str, act_params=(None, None),
             norm: Optional[str] = None, eps: float = 1e-5,
             residual: Optional[Tensor] = None,
             norm_affine=(None, None),
             dtype: Optional[torch.dtype] = None) -> Tensor:
    """:class:`NormMlp` plus an optional ``residual`` added to its output;
    ``norm_affine``: the norm's (gamma, beta), either may be None.

    With autograd the affine is folded into ``w1`` / ``b1`` from the live
    Parameters (differentiably) at every call. Without autograd (inference)
    it is applied in the normalisation pass instead, and the same math runs
    as plain GEMMs with the activation and the residual sum fused into
    them. Either way the GEMMs run in ``dtype`` (autocast's: default
    ``y.dtype``) as autocast would run them: the norm and the residual sum
    in ``y``'s dtype."""
    s, b = act_params
    gamma, beta = norm_affine
    if torch.is_grad_enabled():
        w1, b1 = _fold_affine(w1, b1, gamma, beta)
        add_input = residual is y
        out = NormMlp.apply(y, w1, b1, w2, b2, s, b, norm, eps, act,
                            add_input, y.dtype if dtype is None else dtype)
        return out if residual is None or add_input else out + residual
    shape = y.shape
    dtype = y.dtype if dtype is None else dtype
    x = _normalised(y, norm, eps, gamma, beta, dtype).reshape(-1, shape[-1])
    if act == 'star_relu':
        # one in-place pass after a GEMM with the ReLU fused
        w2, b2 = _star_relu_into_fc2(w2, b2, s, b)
        x = linear(x, w1, b1, 'relu').square_()
    elif act in _ONEDNN_ACT:
        x = linear(x, w1, b1, act)
    else:
        x = _act(linear(x, w1, b1), act, s, b)
    res = None if residual is None else residual.reshape(-1, w2.shape[0])
    return linear(x, w2, b2, residual=res).reshape(*shape[:-1], -1)
