"""Token mixers: what distinguishes one MetaFormer from another.

Each takes the block's normalised input, NCHW maps (or ``(B, N, C)`` tokens
in token stages), and returns the same shape. They are registered in
:data:`mmpoolformer.registry.TOKEN_MIXERS`, so an arch dict names them by
type, a user's mixer included (see :class:`TokenMixer`). The mixers that
depend on the token grid (random mixing, the spatial FC ablation) resample
their matrices in functions that ``torch.fx`` records as calls
(``torch.fx.wrap``), so the models trace symbolically at any input size.
"""
import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpoolformer.registry import TOKEN_MIXERS

from . import fused, lean
from .algebra import product
from .layers import StarReLU, norm_kind

Tensor = torch.Tensor


class TokenMixer(nn.Module):
    """Base class of the token mixers (any ``nn.Module`` taking ``dim`` and
    its config's keywords can be one; this class adds the fast forms).

    ``forward(x)`` is the plain formulation and defines the function. A
    mixer may also state how the fast formulations compute its residual
    half-block ``res * x + ls * keep * mixer(norm(x))``, with a method per
    formulation, ``lean_half(x, norm, ls, res, keep)`` in standard torch
    ops, ``fused_half(...)`` with the eager CPU kernels and
    ``packed_half(...)`` with them on weights prepared once, inference
    only: ``x`` NCHW maps (channels-last in memory for ``'fused'`` and
    ``'packed'``) or ``(B, N, C)`` tokens,
    ``ls`` / ``res`` the layer / residual scale as ``(C,)`` vectors and
    ``keep`` the stochastic-depth factor shaped like ``x`` (None: one). A
    form returns None where it does not apply (another norm, say); the
    packed formulation then tries the fused form, the fused one the lean
    form, and all fall back to ``norm`` and ``forward()`` as they are.

    A subclass that overrides ``forward()`` and not a form has none: the
    inherited form would compute its parent's function.

    ``runs_on_tokens``: the mixer also works on ``(B, N, C)`` tokens in
    token stages (CAFormer's); it then takes a ``tokens_last`` keyword.
    """
    FORMS = ('lean_half', 'fused_half', 'packed_half')
    runs_on_tokens = False
    lean_half = fused_half = packed_half = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if 'forward' in vars(cls):
            for name in TokenMixer.FORMS:
                if name not in vars(cls):
                    setattr(cls, name, None)


@TOKEN_MIXERS.register_module()
class Pooling(TokenMixer):
    """PoolFormer's mixer ``avgpool(x) - x``; border windows average only
    real tokens (``count_include_pad=False``). Behind a one-group GroupNorm
    both fast forms use the pooling identity
    (:func:`.algebra.pooling_identity_scale`)."""

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

    def lean_half(self, x, norm, ls, res, keep):
        if norm_kind(norm) == 'group' and x.dim() == 4:
            return lean.pooling_half(x, norm, ls, res, keep, self.pool_size)

    def fused_half(self, x, norm, ls, res, keep):
        if norm_kind(norm) == 'group' and x.dim() == 4:
            return fused.pooling_half(x, norm, ls, res, keep, self.pool_size)


class ChannelAffineMixer(TokenMixer):
    """A mixer that is a per-channel affine ``scale * n + shift`` of its
    input: both fast forms fold it into the norm before it, so the branch is
    one norm (:func:`.lean.channel_affine_half`)."""

    def channel_affine(self):
        """``(scale, shift)`` as ``(C,)`` vectors (None: one / zero)."""
        raise NotImplementedError

    def lean_half(self, x, norm, ls, res, keep):
        return lean.channel_affine_half(self.channel_affine(), x, norm, ls,
                                        res, keep)


@TOKEN_MIXERS.register_module(name='Identity')
class IdentityMixer(ChannelAffineMixer):
    """IdentityFormer's mixer: no token mixing at all (also what
    RIFormer's deployed blocks have)."""
    runs_on_tokens = True

    def __init__(self, dim: int, tokens_last: bool = False):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x

    def channel_affine(self):
        return None, None

    lean_half = ChannelAffineMixer.lean_half


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


@TOKEN_MIXERS.register_module()
class RandomMixing(TokenMixer):
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


@TOKEN_MIXERS.register_module()
class SpatialFC(TokenMixer):
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


@TOKEN_MIXERS.register_module()
class SepConv(TokenMixer):
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

    def lean_half(self, x, norm, ls, res, keep):
        branch = lean.sep_conv_branch(self, lean.normalise(norm, x))
        return lean.residual(x, branch, product(lean.channels(ls, x), keep),
                             lean.channels(res, x))

    def fused_half(self, x, norm, ls, res, keep):
        return fused.sep_conv_half(self, x, norm, ls, res, keep)

    def packed_half(self, x, norm, ls, res, keep):
        return fused.sep_conv_half(self, x, norm, ls, res, keep, packed=True)


@TOKEN_MIXERS.register_module()
class Attention(TokenMixer):
    """Multi-head self-attention, heads of ``head_dim`` channels, on (B, N, C)
    tokens (CAFormer's token stages) or, with ``tokens_last=False``, on NCHW
    maps (the PoolFormer paper's hybrid stages, which keep GroupNorm)."""
    runs_on_tokens = True

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


@TOKEN_MIXERS.register_module()
class DepthwiseConv(TokenMixer):
    """Ablation mixer of the PoolFormer paper: a learnable depthwise
    ``kernel_size`` convolution in place of pooling."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                              groups=dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


@TOKEN_MIXERS.register_module()
class Affine(ChannelAffineMixer):
    """RIFormer's training-time mixer ``affine(x) - x`` (depthwise 1x1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.affine = nn.Conv2d(dim, dim, 1, groups=dim, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.affine(x) - x

    def channel_affine(self):
        return self.affine.weight.reshape(-1) - 1, self.affine.bias

    lean_half = ChannelAffineMixer.lean_half


def mixer_class(mixer_type):
    """The registered mixer class of a config's ``type`` (a name or a
    class); a clear error for an unknown name."""
    if not isinstance(mixer_type, str):
        return mixer_type
    cls = TOKEN_MIXERS.get(mixer_type)
    if cls is None:
        raise ValueError(
            f'Unknown token mixer {mixer_type!r}; choose one of '
            f'{sorted(TOKEN_MIXERS.module_dict)}, or register your own with '
            f'@mmpoolformer.registry.TOKEN_MIXERS.register_module() in a '
            f'module that the config\'s custom_imports names.')
    return cls


def build_token_mixer(cfg: dict, dim: int, tokens_last: bool = False) -> nn.Module:
    """A mixer from ``dict(type=<registered name or class>, **kwargs)`` for
    ``dim`` channels; ``tokens_last``: it runs in a token stage."""
    cfg = dict(cfg)
    cls = mixer_class(cfg.pop('type'))
    if getattr(cls, 'runs_on_tokens', False):
        cfg['tokens_last'] = tokens_last
    return cls(dim, **cfg)
