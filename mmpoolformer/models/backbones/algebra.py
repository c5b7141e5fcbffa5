"""The algebra every fast formulation relies on, each identity once.

Small pure functions on tensors (Parameters included, differentiable): the
lean and fused formulations call them at every forward, ``switch_to_deploy()``
under ``no_grad`` to rewrite the weights once, the ONNX export for its
GroupNorm. ``None`` stands for a factor of one or a shift of zero.
"""
from typing import Optional, Tuple

import torch

Tensor = torch.Tensor
Affine = Tuple[Optional[Tensor], Optional[Tensor]]  # (scale, shift)


def product(a: Optional[Tensor], b: Optional[Tensor]) -> Optional[Tensor]:
    """``a * b`` where None is one."""
    if a is None:
        return b
    return a if b is None else a * b


def compose_affines(outer: Affine, inner: Affine) -> Affine:
    """``outer(inner(n))`` of two per-channel affines ``n -> scale * n +
    shift``, as one: ``(a * g, a * beta + b)``.

    Folds RIFormer's affine mixer into the norm before it (and the identity
    mixer's ``(1, 0)``), and a layer scale ``(ls, None)`` into both."""
    (a, b), (g, beta) = outer, inner
    if beta is not None:
        beta = product(a, beta)
        shift = beta if b is None else beta + b
    else:
        shift = b
    return product(a, g), shift


def pooling_identity_scale(gamma: Optional[Tensor],
                           layer_scale: Optional[Tensor]) -> Optional[Tensor]:
    """The pooling identity, PoolFormer's half-block without its norm.

    For a one-group GroupNorm ``GN`` (weight ``gamma``, any bias) and an
    average pool ``P`` whose every window averages to one
    (``count_include_pad=False``), the mean and the bias cancel::

        ls * (P(GN(x)) - GN(x)) = (ls * gamma) / sigma(x) * (P(x) - x)

    with ``sigma(x)`` the per-sample std of ``GroupNorm(1, C, eps)``. This is
    the per-channel factor ``ls * gamma`` in front of ``1 / sigma``: the
    formulations multiply it by ``rstd`` (:func:`pooled_residual`), the
    deploy folding makes it the layer scale of a block without the norm's
    affine."""
    return product(layer_scale, gamma)


def pooled_residual(x: Tensor, pooled: Tensor, gain: Tensor,
                    res: Optional[Tensor],
                    out: Optional[Tensor] = None) -> Tensor:
    """``res * x + gain * (pooled - x)``: the pooling half-block after the
    identity of :func:`pooling_identity_scale`, ``gain`` broadcasting as
    ``ls * gamma * rstd`` (times a stochastic-depth factor). ``out`` may be
    ``pooled`` itself (written in place)."""
    if res is None:
        return torch.lerp(x, pooled, gain, out=out)
    return torch.addcmul(x * (res - gain), pooled, gain, out=out)


def fold_affine_into_linear(weight: Tensor, bias: Optional[Tensor],
                            gamma: Optional[Tensor],
                            beta: Optional[Tensor]) -> Affine:
    """``(W', b')`` with ``W (gamma * n + beta) + b = W' n + b'``: a norm's
    affine into the (out, in) matrix that follows it. ``W beta`` as an
    element-wise product and sum: in the weights' dtype under autocast too
    (which would run a matrix-vector product in bf16)."""
    if beta is not None:
        shift = (weight * beta).sum(1)
        bias = shift if bias is None else bias + shift
    return (weight if gamma is None else weight * gamma), bias


def fold_scale_into_linear(weight: Tensor, bias: Optional[Tensor],
                           scale: Optional[Tensor]) -> Affine:
    """``(W', b')`` with ``scale * (W x + b) = W' x + b'``: a layer scale
    into the (out, in) matrix before it."""
    if scale is None:
        return weight, bias
    return weight * scale[:, None], None if bias is None else bias * scale


def fold_star_relu(weight: Tensor, bias: Optional[Tensor], s: Tensor,
                   b: Tensor) -> Affine:
    """``(W', b')`` with ``W (s * r + b) + c = W' r + b'`` for StarReLU's
    scalars ``s``, ``b`` (``r = relu(h) ** 2``): into the following ``fc2``,
    so the hidden map is written once."""
    shift = weight.sum(1) * b
    return weight * s, shift if bias is None else bias + shift


def group_norm_stats(x: Tensor, num_groups: int,
                     eps: float) -> Tuple[Tensor, Tensor]:
    """Mean and ``1 / sqrt(var + eps)`` of ``nn.GroupNorm`` (biased
    variance), shaped ``(B, groups, 1)`` over the flattened groups (one
    group: per sample, any layout)."""
    if num_groups == 1:  # reduced in place: compilers split it better
        var, mean = torch.var_mean(x, dim=tuple(range(1, x.dim())),
                                   correction=0)
        var, mean = var.view(-1, 1, 1), mean.view(-1, 1, 1)
    else:
        var, mean = torch.var_mean(x.reshape(x.shape[0], num_groups, -1),
                                   dim=-1, correction=0, keepdim=True)
    return mean, torch.rsqrt(var + eps)


def group_norm(x: Tensor, num_groups: int, eps: float,
               weight: Optional[Tensor] = None,
               bias: Optional[Tensor] = None) -> Tensor:
    """``nn.GroupNorm``'s function in standard operators (a mean and a
    variance reduction, then one multiply-add with the affine folded in):
    what compilers fuse best, and ONNX operators every runtime computes
    alike. Keeps ``x``'s dtype, as ``nn.GroupNorm`` does under autocast."""
    mean, rstd = group_norm_stats(x, num_groups, eps)
    shape = x.shape
    if num_groups != 1:
        x = x.reshape(shape[0], num_groups, -1, *shape[2:])
        stats = (shape[0], num_groups) + (1, ) * (x.dim() - 2)
        channels = (1, num_groups, -1) + (1, ) * (x.dim() - 3)
    else:
        stats = (-1, ) + (1, ) * (x.dim() - 1)
        channels = (1, -1) + (1, ) * (x.dim() - 2)
    mean, rstd = mean.reshape(stats), rstd.reshape(stats)
    scale, shift = rstd, -mean * rstd
    if weight is not None:
        w = weight.reshape(channels)
        scale, shift = scale * w, shift * w
    if bias is not None:
        shift = shift + bias.reshape(channels)
    return torch.addcmul(shift, x, scale).to(x.dtype).reshape(shape)
