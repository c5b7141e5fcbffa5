"""Token mixers: what distinguishes one MetaFormer from another.

Each takes the block's normalised input, NCHW maps (or ``(B, N, C)`` tokens
for attention in token stages), and returns the same shape. The mixers that
depend on the token grid (random mixing, the spatial FC ablation) resample
their matrices in functions that ``torch.fx`` records as calls
(``torch.fx.wrap``), so the models trace symbolically at any input size.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import StarReLU

Tensor = torch.Tensor


class Pooling(nn.Module):
    """PoolFormer's mixer ``avgpool(x) - x``; border windows average only
    real tokens (``count_include_pad=False``)."""

    def __init__(self, dim: int, pool_size: int = 3):
        super().__init__()
        if pool_size % 2 != 1:
            raise ValueError(
                f'pool_size must be odd to keep the spatial size, got '
                f'{pool_size}; use 3, 5, 7 or 9.')
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2,
                                 count_include_pad=False)

    @property
    def pool_size(self) -> int:
        return self.pool.kernel_size

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(x) - x


class IdentityMixer(nn.Identity):
    """IdentityFormer's mixer: no token mixing at all."""

    def __init__(self, dim: int):
        super().__init__()


def square_grid(num_tokens: int) -> Tuple[int, int]:
    """The (side, side) grid of the papers' fixed token count."""
    side = int(round(num_tokens**0.5))
    if side * side != num_tokens:
        raise ValueError(f'num_tokens must be a square number (a square '
                         f'grid), got {num_tokens}.')
    return side, side


def resample_token_matrix(matrix: Tensor, size: Sequence[int],
                          base: Tuple[int, int]) -> Tensor:
    """Resample an (N0, N0) token-to-token matrix on a ``base`` grid to the
    (N, N) matrix of a ``size`` grid by bilinear interpolation over both the
    output and the input grid."""
    if tuple(size) == tuple(base):
        return matrix
    (h0, w0), (h, w) = base, tuple(size)
    m = matrix.reshape(h0 * w0, 1, h0, w0)  # over the input grid
    m = F.interpolate(m, size=(h, w), mode='bilinear', align_corners=False)
    m = m.reshape(h0, w0, h * w).permute(2, 0, 1).unsqueeze(1)
    m = F.interpolate(m, size=(h, w), mode='bilinear', align_corners=False)
    return m.reshape(h * w, h * w).t()


def random_mixing(x: Tensor, matrix: Tensor, base: Tuple[int, int]) -> Tensor:
    """Tokens of an NCHW map mixed by ``matrix`` (drawn on ``base``); at
    another grid the resampled rows are renormalised to sum to one."""
    size = tuple(x.shape[2:])
    if size != tuple(base):
        matrix = resample_token_matrix(matrix, size, base)
        matrix = matrix / matrix.sum(-1, keepdim=True)
    return torch.einsum('mn,bcn->bcm', matrix, x.flatten(2)).reshape(x.shape)


def spatial_fc(x: Tensor, weight: Tensor, bias: Tensor,
               base: Tuple[int, int]) -> Tensor:
    """A fully connected layer across the tokens of an NCHW map, its
    ``base``-grid weight and bias resampled to the map's grid."""
    size = tuple(x.shape[2:])
    if size != tuple(base):
        weight = resample_token_matrix(weight, size, base)
        weight = weight * (base[0] * base[1]) / math.prod(size)
        bias = F.interpolate(bias.reshape(1, 1, *base), size, mode='bilinear',
                             align_corners=False).flatten()
    out = torch.einsum('mn,bcn->bcm', weight, x.flatten(2)) + bias
    return out.reshape(x.shape)


# grid-dependent Python: one call node each in torch.fx graphs
torch.fx.wrap('random_mixing')
torch.fx.wrap('spatial_fc')


class RandomMixing(nn.Module):
    """RandFormer's mixer: a frozen random row-stochastic token matrix.

    The paper draws it for a fixed token count (a square grid of
    ``num_tokens``). At any other input size, as in every detection and
    segmentation input, the matrix is resampled bilinearly to the actual
    grid and its rows are renormalised to sum to one, so a token still
    averages the tokens at the same relative positions.
    """

    def __init__(self, dim: int, num_tokens: int = 196):
        super().__init__()
        self.base = square_grid(num_tokens)
        self.random_matrix = nn.Parameter(
            torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1),
            requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return random_mixing(x, self.random_matrix, self.base)


class SpatialFC(nn.Module):
    """Ablation mixer of the PoolFormer paper: a learnable fully connected
    layer across the tokens of a ``num_tokens`` square grid (ResMLP-style).
    At other grids its weight is resampled like :class:`RandomMixing`'s."""

    def __init__(self, dim: int, num_tokens: int = 196):
        super().__init__()
        self.base = square_grid(num_tokens)
        self.weight = nn.Parameter(torch.eye(num_tokens) +
                                   0.02 * torch.randn(num_tokens, num_tokens))
        self.bias = nn.Parameter(torch.zeros(num_tokens))

    def forward(self, x: Tensor) -> Tensor:
        return spatial_fc(x, self.weight, self.bias, self.base)


class SepConv(nn.Module):
    """ConvFormer's mixer: 1x1 expand, StarReLU, depthwise 7x7, 1x1 project
    (MobileNetV2's inverted separable convolution)."""

    def __init__(self, dim: int, expansion_ratio: float = 2,
                 kernel_size: int = 7, bias: bool = False):
        super().__init__()
        mid = int(expansion_ratio * dim)
        self.pwconv1 = nn.Conv2d(dim, mid, 1, bias=bias)
        self.act1 = StarReLU()
        self.dwconv = nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2,
                                groups=mid, bias=bias)
        self.pwconv2 = nn.Conv2d(mid, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.pwconv2(self.dwconv(self.act1(self.pwconv1(x))))


class Attention(nn.Module):
    """Multi-head self-attention, heads of ``head_dim`` channels, on (B, N, C)
    tokens (CAFormer's token stages) or, with ``tokens_last=False``, on NCHW
    maps (the PoolFormer paper's hybrid stages, which keep GroupNorm)."""

    def __init__(self, dim: int, head_dim: int = 32, qkv_bias: bool = False,
                 proj_bias: bool = False, attn_drop: float = 0.,
                 tokens_last: bool = True):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        inner = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.attn_drop = attn_drop
        self.tokens_last = tokens_last

    def forward(self, x: Tensor) -> Tensor:
        if not self.tokens_last:
            tokens = self.attend(x.flatten(2).transpose(1, 2))
            return tokens.transpose(1, 2).reshape(x.shape)
        return self.attend(x)

    def attend(self, x: Tensor) -> Tensor:
        """Attention over (B, N, C) tokens."""
        q, k, v = self.qkv(x).unflatten(
            -1, (3, self.num_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj(x.transpose(1, 2).flatten(2))


class DepthwiseConv(nn.Module):
    """Ablation mixer of the PoolFormer paper: a learnable depthwise
    ``kernel_size`` convolution in place of pooling."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                              groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Affine(nn.Module):
    """RIFormer's training-time mixer ``affine(x) - x`` (depthwise 1x1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.affine = nn.Conv2d(dim, dim, 1, groups=dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.affine(x) - x


TOKEN_MIXERS = dict(Pooling=Pooling, Identity=IdentityMixer,
                    RandomMixing=RandomMixing, SpatialFC=SpatialFC,
                    SepConv=SepConv, Attention=Attention, Affine=Affine,
                    DepthwiseConv=DepthwiseConv)
#: mixers that run on (B, N, C) tokens in a token stage
TOKEN_STAGE_MIXERS = ('Attention', 'Identity')


def build_token_mixer(cfg: dict, dim: int, tokens_last: bool = False) -> nn.Module:
    """A mixer from ``dict(type=<name in TOKEN_MIXERS>, **kwargs)`` for
    ``dim`` channels; ``tokens_last``: it runs in a token stage."""
    cfg = dict(cfg)
    mixer_type = cfg.pop('type')
    if mixer_type not in TOKEN_MIXERS:
        raise ValueError(f'Unknown token mixer {mixer_type!r}; choose one of '
                         f'{sorted(TOKEN_MIXERS)}.')
    if mixer_type == 'Attention':
        cfg['tokens_last'] = tokens_last
    return TOKEN_MIXERS[mixer_type](dim, **cfg)
