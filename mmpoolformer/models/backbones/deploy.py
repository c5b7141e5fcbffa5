"""Deploy folding: exact, in-place rewrites of a trained block into fewer
parameters and operations, the same function (``switch_to_deploy()``).

Per-channel affines next to a linear map fold into it: a norm's affine into
the following 1x1 layer, a layer scale into the preceding one. RIFormer's
affine token mixer folds into the norm before it.
"""
import torch
import torch.nn as nn

from .layers import Scale, matrix, norm_kind
from .token_mixers import Pooling, SepConv


def fold_norm_into(norm: nn.Module, layer: nn.Module) -> None:
    """``layer(gamma * n + beta) = layer'(n)``; the norm loses its affine."""
    gamma, beta = norm.weight, norm.bias
    w = matrix(layer)
    if beta is not None:
        shift = w @ beta
        if layer.bias is None:
            layer.bias = nn.Parameter(shift)
        else:
            layer.bias.add_(shift)
    if gamma is not None:
        w.mul_(gamma)  # a view of layer.weight
    norm.weight = norm.bias = None


def fold_scale_into(scale: Scale, layer: nn.Module) -> None:
    """``scale * layer(x) = layer'(x)``."""
    matrix(layer).mul_(scale.scale[:, None])
    if layer.bias is not None:
        layer.bias.mul_(scale.scale)


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
    if isinstance(mixer, SepConv) and norm_kind(norm1) in ('group', 'layer'):
        fold_norm_into(norm1, mixer.pwconv1)
        if isinstance(block.layer_scale1, Scale):
            fold_scale_into(block.layer_scale1, mixer.pwconv2)
            block.layer_scale1 = nn.Identity()
    elif isinstance(mixer, Pooling) and norm_kind(norm1) == 'group' \
            and norm1.weight is not None:
        if not isinstance(block.layer_scale1, Scale):
            block.layer_scale1 = Scale(norm1.weight.numel(), 1.).to(
                norm1.weight)
        block.layer_scale1.scale.mul_(norm1.weight)
        norm1.weight = norm1.bias = None


@torch.no_grad()
def fold_affine_mixer(block: nn.Module) -> None:
    """RIFormer: ``affine(GN(x)) - GN(x) = GN'(x)`` with
    ``gamma' = gamma (a - 1)`` and ``beta' = beta (a - 1) + b``; the block
    is left without a token mixer (``nn.Identity``)."""
    a = block.token_mixer.affine.weight.reshape(-1) - 1
    b = block.token_mixer.affine.bias
    norm = block.norm1
    norm.bias = nn.Parameter(norm.bias * a + b)
    norm.weight = nn.Parameter(norm.weight * a)
    block.token_mixer = nn.Identity()
