"""Deploy folding: exact, in-place rewrites of a trained block into fewer
parameters and operations, the same function (``switch_to_deploy()``).

Each rewrite is an identity of :mod:`.algebra`, applied once to the
weights: a norm's affine into the following 1x1 layer, a layer scale into
the preceding one, a one-group GroupNorm's gamma through PoolFormer's
pooling identity into the layer scale, RIFormer's affine token mixer into
the norm before it.
"""
import torch
import torch.nn as nn

from . import algebra
from .layers import Scale, matrix, norm_kind
from .token_mixers import IdentityMixer, Pooling, SepConv


def _set(layer: nn.Module, weight, bias) -> None:
    """Write a folded ``(W, b)`` into a Linear / 1x1 Conv2d."""
    layer.weight.copy_(weight.reshape(layer.weight.shape))
    if bias is not None:
        if layer.bias is None:
            layer.bias = nn.Parameter(bias)
        else:
            layer.bias.copy_(bias)


def fold_norm_into(norm: nn.Module, layer: nn.Module) -> None:
    """``layer(gamma * n + beta) = layer'(n)``; the norm loses its affine."""
    _set(layer, *algebra.fold_affine_into_linear(matrix(layer), layer.bias,
                                                 norm.weight, norm.bias))
    norm.weight = norm.bias = None


def fold_scale_into(scale: Scale, layer: nn.Module) -> None:
    """``scale * layer(x) = layer'(x)``."""
    _set(layer, *algebra.fold_scale_into_linear(matrix(layer), layer.bias,
                                                scale.scale))


@torch.no_grad()
def fold_block_affines(block: nn.Module) -> None:
    """Fold a :class:`MetaFormerBlock`'s affines, in place and exactly:
    norm2's affine into ``mlp.fc1``, layer_scale2 into ``mlp.fc2``; for a
    SepConv mixer norm1's affine into ``pwconv1`` and layer_scale1 into
    ``pwconv2``; for a Pooling mixer behind a one-group GroupNorm norm1's
    gamma into layer_scale1 (its beta cancels in ``pool(n) - n``)."""
    if block.has_mlp:
        if norm_kind(block.norm2) in ('group', 'layer'):
            fold_norm_into(block.norm2, block.mlp.fc1)
        if isinstance(block.layer_scale2, Scale):
            fold_scale_into(block.layer_scale2, block.mlp.fc2)
            block.layer_scale2 = nn.Identity()
    mixer, norm1 = block.token_mixer, block.norm1
    if type(mixer) is SepConv and norm_kind(norm1) in ('group', 'layer'):
        fold_norm_into(norm1, mixer.pwconv1)
        if isinstance(block.layer_scale1, Scale):
            fold_scale_into(block.layer_scale1, mixer.pwconv2)
            block.layer_scale1 = nn.Identity()
    elif type(mixer) is Pooling and norm_kind(norm1) == 'group' \
            and norm1.weight is not None:
        ls = block.layer_scale1
        scale = algebra.pooling_identity_scale(
            norm1.weight, ls.scale if isinstance(ls, Scale) else None)
        if not isinstance(ls, Scale):
            block.layer_scale1 = Scale(scale.numel(), 1.).to(scale)
        block.layer_scale1.scale.copy_(scale)
        norm1.weight = norm1.bias = None


@torch.no_grad()
def fold_affine_mixer(block: nn.Module) -> None:
    """RIFormer: ``affine(GN(x)) - GN(x) = GN'(x)``, the mixer's affine
    composed with the norm's (:func:`.algebra.compose_affines`); the block
    is left with an identity mixer."""
    norm = block.norm1
    weight, bias = algebra.compose_affines(block.token_mixer.channel_affine(),
                                           (norm.weight, norm.bias))
    norm.weight, norm.bias = nn.Parameter(weight), nn.Parameter(bias)
    block.token_mixer = IdentityMixer(weight.numel())
