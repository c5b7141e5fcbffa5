"""MetaFormer: one backbone for PoolFormer and the MetaFormer baselines.

A MetaFormer block is ``x = res_scale1 * x + ls1 * mixer(norm1(x))`` then
``x = res_scale2 * x + ls2 * mlp(norm2(x))``; a model is a stem, four stages
(downsampling + blocks) and, here, one output norm per returned stage.
Everything that distinguishes PoolFormer (v1, v2), IdentityFormer,
RandFormer, ConvFormer, CAFormer and the ablations of the PoolFormer paper is
configuration: the token mixer, the norms, the MLP activation and bias, the
layer / residual scales, per stage. Presets are data (``arch_zoo``); the
registered subclasses only name them.

Module names follow timm's ``metaformer.py`` so that its checkpoints map by
name; :mod:`mmpoolformer.checkpoint.convert` maps the other layouts.
"""
import copy
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmpoolformer.registry import MODELS
from .fused_ops import linear, norm_mlp, pool_mix, to_nchw, to_nhwc

NUM_STAGES = 4
POS_EMBED_BASE = 224  # input size the position embeddings are drawn for


# ----------------------------------------------------------------- norms
class GroupNorm1(nn.GroupNorm):
    """GroupNorm with one group: normalises over (C, H, W), the PoolFormer
    paper's "modified layer norm"."""

    def __init__(self, channels: int, eps: float = 1e-5, bias: bool = True):
        super().__init__(1, channels, eps=eps)
        if not bias:
            self.bias = None


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def __init__(self, channels: int, eps: float = 1e-6, bias: bool = True):
        super().__init__(channels, eps=eps, bias=bias)

    def forward(self, x):
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape,
                         self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class TokenLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, N, C) tokens (attention stages)."""

    def __init__(self, channels: int, eps: float = 1e-6, bias: bool = True):
        super().__init__(channels, eps=eps, bias=bias)


NORMS = dict(GroupNorm1=GroupNorm1, LayerNorm2d=LayerNorm2d,
             TokenLayerNorm=TokenLayerNorm)


def build_norm(cfg: Optional[dict], channels: int) -> nn.Module:
    """``dict(type='GroupNorm1' | 'LayerNorm2d' | 'TokenLayerNorm' |
    'BatchNorm2d', eps=..., bias=...)``, any mmcv norm of NCHW maps
    (``'BN'``, ``'SyncBN'``, ``'GN'``), or None for no norm."""
    if cfg is None:
        return nn.Identity()
    cfg = dict(cfg)
    if cfg['type'] not in NORMS:
        return build_norm_layer(cfg, channels)[1]
    return NORMS[cfg.pop('type')](channels, **cfg)


def norm_kind(norm: nn.Module) -> Optional[str]:
    """How the fast path normalises a (B, H, W, C) map with ``norm``:
    'group' (one group, statistics per sample), 'layer' (over C per
    position), 'none', or None when it has no channels-last formula."""
    if isinstance(norm, nn.Identity):
        return 'none'
    if isinstance(norm, nn.GroupNorm) and norm.num_groups == 1:
        return 'group'
    if isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) == 1:
        return 'layer'  # LayerNorm2d on maps, TokenLayerNorm on tokens
    return None


def norm_nhwc(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm`` applied to a (B, H, W, C) map, keeping that layout."""
    kind = norm_kind(norm)
    if kind == 'none':
        return x
    if kind == 'layer':
        return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias,
                            norm.eps)
    # GroupNorm and the BatchNorms keep a channels-last input channels-last
    return to_nhwc(norm(to_nchw(x)))


def norm_affine(norm: nn.Module):
    """(gamma, beta) of an elementwise-affine norm, either may be None."""
    return getattr(norm, 'weight', None), getattr(norm, 'bias', None)


# ------------------------------------------------------------ activation
class StarReLU(nn.Module):
    """``s * relu(x) ** 2 + b`` with learnable scalars s and b."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, ), scale_value))
        self.bias = nn.Parameter(torch.full((1, ), bias_value))

    def forward(self, x):
        return self.scale * F.relu(x)**2 + self.bias


def act_kind(act: nn.Module) -> Optional[str]:
    """The activation's name in :func:`fused_ops.norm_mlp`, or None."""
    if isinstance(act, StarReLU):
        return 'star_relu'
    if isinstance(act, nn.GELU) and act.approximate == 'none':
        return 'gelu'
    if isinstance(act, nn.ReLU):
        return 'relu'
    return None


def build_act(cfg: dict) -> nn.Module:
    if cfg['type'] == 'StarReLU':
        cfg = dict(cfg)
        cfg.pop('type')
        return StarReLU(**cfg)
    return build_activation_layer(cfg)


# ----------------------------------------------------------- token mixers
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

    def forward(self, x):
        return self.pool(x) - x


class IdentityMixer(nn.Identity):
    """IdentityFormer's mixer: no token mixing at all."""

    def __init__(self, dim: int):
        super().__init__()

    def forward_nhwc(self, x):
        return x


def resample_token_matrix(matrix: torch.Tensor, size: Tuple[int, int],
                          base: Tuple[int, int]) -> torch.Tensor:
    """Resample an (N0, N0) token-to-token matrix on a ``base`` grid to the
    (N, N) matrix of a ``size`` grid by bilinear interpolation over both the
    output and the input grid."""
    if tuple(size) == tuple(base):
        return matrix
    (h0, w0), (h, w) = base, size
    m = matrix.reshape(h0 * w0, 1, h0, w0)  # over the input grid
    m = F.interpolate(m, size=(h, w), mode='bilinear', align_corners=False)
    m = m.reshape(h0, w0, h * w).permute(2, 0, 1).unsqueeze(1)
    m = F.interpolate(m, size=(h, w), mode='bilinear', align_corners=False)
    return m.reshape(h * w, h * w).t()


def square_grid(num_tokens: int) -> Tuple[int, int]:
    """The (side, side) grid of the papers' fixed token count."""
    side = int(round(num_tokens**0.5))
    if side * side != num_tokens:
        raise ValueError(f'num_tokens must be a square number (a square '
                         f'grid), got {num_tokens}.')
    return side, side


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

    def forward(self, x):
        B, C, H, W = x.shape
        matrix = resample_token_matrix(self.random_matrix, (H, W), self.base)
        if (H, W) != self.base:
            matrix = matrix / matrix.sum(-1, keepdim=True)
        x = torch.einsum('mn,bcn->bcm', matrix, x.reshape(B, C, H * W))
        return x.reshape(B, C, H, W)


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

    def forward(self, x):
        B, C, H, W = x.shape
        weight = resample_token_matrix(self.weight, (H, W), self.base)
        bias = self.bias
        if (H, W) != self.base:
            weight = weight * (self.base[0] * self.base[1]) / (H * W)
            bias = F.interpolate(bias.reshape(1, 1, *self.base), (H, W),
                                 mode='bilinear', align_corners=False).flatten()
        x = torch.einsum('mn,bcn->bcm', weight, x.reshape(B, C, H * W)) + bias
        return x.reshape(B, C, H, W)


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

    def forward(self, x):
        return self.pwconv2(self.dwconv(self.act1(self.pwconv1(x))))

    def forward_nhwc(self, x):
        # 1x1 convolutions as GEMMs on (B*H*W, C), the depthwise one on a
        # channels-last view: no layout change anywhere
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        w1, b1 = _matrix(self.pwconv1), self.pwconv1.bias
        if torch.is_grad_enabled():
            x = self.act1(F.linear(x, w1, b1))
        else:  # StarReLU in place after a GEMM with the ReLU fused
            x = linear(x, w1, b1, 'relu').square_()
            x = x.mul_(self.act1.scale).add_(self.act1.bias)
        x = to_nhwc(self.dwconv(to_nchw(x.reshape(*shape[:-1], -1))))
        # oneDNN's matmul has no autograd: only without it
        project = F.linear if torch.is_grad_enabled() else linear
        return project(x.reshape(-1, x.shape[-1]), _matrix(self.pwconv2),
                       self.pwconv2.bias).reshape(*shape[:-1], -1)


class Attention(nn.Module):
    """Multi-head self-attention, heads of ``head_dim`` channels, on (B, N, C)
    tokens (CAFormer's stages) or on NCHW maps (the PoolFormer paper's hybrid
    stages, which keep GroupNorm)."""

    def __init__(self, dim: int, head_dim: int = 32, qkv_bias: bool = False,
                 proj_bias: bool = False, attn_drop: float = 0.):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        inner = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, inner * 3, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim, bias=proj_bias)
        self.attn_drop = attn_drop

    def forward(self, x):
        if x.dim() == 4:
            B, C, H, W = x.shape
            x = self.forward(x.flatten(2).transpose(1, 2))
            return x.transpose(1, 2).reshape(B, C, H, W)
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads,
                                      self.head_dim).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))

    def forward_nhwc(self, x):
        B, H, W, C = x.shape
        return self.forward(x.reshape(B, H * W, C)).reshape(B, H, W, C)


class DepthwiseConv(nn.Module):
    """Ablation mixer of the PoolFormer paper: a learnable depthwise
    ``kernel_size`` convolution in place of pooling."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2,
                              groups=dim)

    def forward(self, x):
        return self.conv(x)


class Affine(nn.Module):
    """RIFormer's training-time mixer ``affine(x) - x`` (depthwise 1x1)."""

    def __init__(self, dim: int):
        super().__init__()
        self.affine = nn.Conv2d(dim, dim, 1, groups=dim, bias=True)

    def forward(self, x):
        return self.affine(x) - x

    def forward_nhwc(self, x):
        return torch.addcmul(self.affine.bias, x,
                             self.affine.weight.reshape(-1) - 1)


TOKEN_MIXERS = dict(Pooling=Pooling, Identity=IdentityMixer,
                    RandomMixing=RandomMixing, SpatialFC=SpatialFC,
                    SepConv=SepConv, Attention=Attention, Affine=Affine,
                    DepthwiseConv=DepthwiseConv)


def build_token_mixer(cfg: dict, dim: int) -> nn.Module:
    cfg = dict(cfg)
    mixer_type = cfg.pop('type')
    if mixer_type not in TOKEN_MIXERS:
        raise ValueError(f'Unknown token mixer {mixer_type!r}; choose one of '
                         f'{sorted(TOKEN_MIXERS)}.')
    return TOKEN_MIXERS[mixer_type](dim, **cfg)


def _matrix(layer: nn.Module) -> torch.Tensor:
    """(out, in) weight of a Linear or 1x1 Conv2d."""
    return layer.weight.reshape(layer.weight.shape[0], -1)


def mixer_nhwc(mixer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A token mixer on a (B, H, W, C) map: its own channels-last formula
    if it has one, else its NCHW forward on a channels-last view."""
    if hasattr(mixer, 'forward_nhwc'):
        return mixer.forward_nhwc(x)
    return to_nhwc(mixer(to_nchw(x)))


# ------------------------------------------------------------ the network
def _scale(module: nn.Module) -> Optional[torch.Tensor]:
    """The (C,) vector of a :class:`Scale`, None for ``nn.Identity``."""
    return module.scale if isinstance(module, Scale) else None


def _drops(drop_path: nn.Module) -> bool:
    return isinstance(drop_path, DropPath) and drop_path.training and \
        drop_path.drop_prob > 0


def _keep(drop_path: nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
    """Per-sample factor of stochastic depth, drawn exactly as mmcv's
    ``DropPath`` draws it (same RNG calls), or None when inactive."""
    if not _drops(drop_path):
        return None
    keep_prob = 1 - drop_path.drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    noise = torch.rand(shape, dtype=x.dtype, device=x.device)
    return (keep_prob + noise).floor_() / keep_prob


class Scale(nn.Module):
    """Learnable per-channel scale (layer scale or residual scale)."""

    def __init__(self, dim: int, init_value: float, tokens_last: bool = False):
        super().__init__()
        self.shape = (dim, ) if tokens_last else (dim, 1, 1)
        self.scale = nn.Parameter(torch.full((dim, ), float(init_value)))

    def forward(self, x):
        return x * self.scale.view(self.shape)


class Mlp(nn.Module):
    """Channel MLP: 1x1 convolutions on maps, Linear layers on tokens."""

    def __init__(self, dim: int, hidden: int, act_cfg: dict, bias: bool,
                 drop: float = 0., tokens_last: bool = False):
        super().__init__()
        make = (lambda i, o: nn.Linear(i, o, bias=bias)) if tokens_last else \
            (lambda i, o: nn.Conv2d(i, o, 1, bias=bias))
        self.fc1 = make(dim, hidden)
        self.act = build_act(act_cfg)
        self.fc2 = make(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def _fold_norm_into(norm: nn.Module, layer: nn.Module):
    """``layer(gamma * n + beta) = layer'(n)``; the norm loses its affine."""
    gamma, beta = norm_affine(norm)
    w = _matrix(layer)
    if beta is not None:
        shift = w @ beta
        if layer.bias is None:
            layer.bias = nn.Parameter(shift)
        else:
            layer.bias.add_(shift)
    if gamma is not None:
        w.mul_(gamma)  # a view of layer.weight
    norm.weight = norm.bias = None


def _fold_scale_into(scale: 'Scale', layer: nn.Module):
    """``scale * layer(x) = layer'(x)``."""
    _matrix(layer).mul_(scale.scale[:, None])
    if layer.bias is not None:
        layer.bias.mul_(scale.scale)


class MetaFormerBlock(nn.Module):
    """norm -> token mixer -> (layer scale) residual, norm -> MLP -> residual.

    ``mlp_ratio=0`` drops the second sub-block (no norm2 / mlp / scales);
    ``residual=False`` drops the skip connections (and with them the
    residual scales and stochastic depth, which only act on a residual sum):
    the PoolFormer paper's ablations.
    """

    def __init__(self, dim: int, token_mixer: dict, norm_cfg: dict,
                 mlp_ratio: float, mlp_act_cfg: dict, mlp_bias: bool,
                 drop_rate: float = 0., drop_path_rate: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 res_scale_init_value: Optional[float] = None,
                 tokens_last: bool = False, residual: bool = True):
        super().__init__()

        def scale(value):
            return (nn.Identity() if value is None else
                    Scale(dim, value, tokens_last))

        self.residual = residual
        if not residual:
            res_scale_init_value, drop_path_rate = None, 0.
        self.norm1 = build_norm(norm_cfg, dim)
        self.token_mixer = build_token_mixer(token_mixer, dim)
        self.layer_scale1 = scale(layer_scale_init_value)
        self.res_scale1 = scale(res_scale_init_value)
        self.has_mlp = mlp_ratio > 0
        if self.has_mlp:
            self.norm2 = build_norm(norm_cfg, dim)
            self.mlp = Mlp(dim, max(int(dim * mlp_ratio), 1), mlp_act_cfg,
                           mlp_bias, drop_rate, tokens_last)
            self.layer_scale2 = scale(layer_scale_init_value)
            self.res_scale2 = scale(res_scale_init_value)
        self.drop_path = (DropPath(drop_path_rate)
                          if drop_path_rate > 0 else nn.Identity())

    fast_path = False  # set by MetaFormer.fast_path

    def forward(self, x):
        if self.fast_path:  # channels-last NCHW in and out
            return to_nchw(self.forward_nhwc(to_nhwc(x)))
        x = self._add(x, self.res_scale1, self.drop_path(
            self.layer_scale1(self.token_mixer(self.norm1(x)))))
        if self.has_mlp:
            x = self._add(x, self.res_scale2, self.drop_path(
                self.layer_scale2(self.mlp(self.norm2(x)))))
        return x

    def _add(self, x, res_scale, branch):
        return res_scale(x) + branch if self.residual else branch

    # ----------------------------------------------------------- deploy
    @torch.no_grad()
    def fold_affines(self):
        """Fold, in place and exactly, the per-channel affines that sit next
        to a linear map: norm2's affine into ``mlp.fc1``, layer_scale2 into
        ``mlp.fc2``; for a SepConv mixer norm1's affine into ``pwconv1`` and
        layer_scale1 into ``pwconv2``; for a Pooling mixer behind a one-group
        GroupNorm norm1's gamma into layer_scale1 (its beta cancels)."""
        if self.has_mlp and norm_kind(self.norm2) in ('group', 'layer'):
            _fold_norm_into(self.norm2, self.mlp.fc1)
        if self.has_mlp and isinstance(self.layer_scale2, Scale):
            _fold_scale_into(self.layer_scale2, self.mlp.fc2)
            self.layer_scale2 = nn.Identity()
        mixer = self.token_mixer
        if isinstance(mixer, SepConv) and norm_kind(self.norm1) in ('group',
                                                                     'layer'):
            _fold_norm_into(self.norm1, mixer.pwconv1)
            if isinstance(self.layer_scale1, Scale):
                _fold_scale_into(self.layer_scale1, mixer.pwconv2)
                self.layer_scale1 = nn.Identity()
        elif isinstance(mixer, Pooling) and norm_kind(self.norm1) == 'group' \
                and self.norm1.weight is not None:
            if not isinstance(self.layer_scale1, Scale):
                self.layer_scale1 = Scale(self.norm1.weight.numel(), 1.)
            self.layer_scale1.scale.mul_(self.norm1.weight)
            self.norm1.weight = self.norm1.bias = None

    # -------------------------------------------------------- fast path
    def forward_nhwc(self, x):
        """:meth:`forward` on a (B, H, W, C) map, by the fast formulas."""
        x = self._mixer_nhwc(x)
        return self._mlp_nhwc(x) if self.has_mlp else x

    def _mixer_nhwc(self, x):
        ls, res = _scale(self.layer_scale1), _scale(self.res_scale1)
        if isinstance(self.token_mixer, Pooling) and self.residual and \
                norm_kind(self.norm1) == 'group':
            if torch.is_autocast_enabled(x.device.type):
                x = x.float()  # as the plain path's fp32 norm promotes it
            # pool(GN(x)) - GN(x) == gamma / sigma * (pool(x) - x)
            gamma = self.norm1.weight
            k = x.new_ones(x.shape[-1]) if gamma is None else gamma
            k = k if ls is None else k * ls
            k = k.expand(x.shape[0], -1)
            keep = _keep(self.drop_path, x)
            if keep is not None:
                k = k * keep.reshape(-1, 1)
            return pool_mix(x, k, res, self.norm1.bias,
                            self.token_mixer.pool_size, self.norm1.eps)
        branch = mixer_nhwc(self.token_mixer, norm_nhwc(self.norm1, x))
        return self._residual(x, res, branch, ls)

    def _residual(self, x, res, branch, ls):
        if ls is not None:
            branch = branch * ls
        if not self.residual:
            return branch
        keep = _keep(self.drop_path, branch)
        if keep is not None:
            branch = branch * keep
        return branch + (x if res is None else x * res)

    def _folded_mlp(self, kind, ls):
        """fc1 / fc2 with the norm affine and the layer scale folded in.
        Without autograd the result is cached until a weight changes (its
        storage or version), so inference folds once, like deploy mode."""
        mlp = self.mlp
        gamma, beta = norm_affine(self.norm2) if kind != 'none' else (None,
                                                                      None)
        params = (mlp.fc1.weight, mlp.fc1.bias, gamma, beta, mlp.fc2.weight,
                  mlp.fc2.bias, ls)
        key = None
        if not torch.is_grad_enabled():
            key = tuple(None if p is None else (p.data_ptr(), p._version)
                        for p in params)
            cached = self.__dict__.get('_folded_cache')
            if cached is not None and cached[0] == key:
                return cached[1]
        w1, b1 = _matrix(mlp.fc1), mlp.fc1.bias
        if beta is not None:
            b1 = w1.mv(beta) if b1 is None else torch.addmv(b1, w1, beta)
        if gamma is not None:
            w1 = w1 * gamma
        w2, b2 = _matrix(mlp.fc2), mlp.fc2.bias
        if ls is not None:
            w2 = w2 * ls[:, None]
            b2 = None if b2 is None else b2 * ls
        folded = (w1, b1, w2, b2)
        if key is not None:
            self.__dict__['_folded_cache'] = (key, folded)
        else:
            self.__dict__.pop('_folded_cache', None)  # training: no stale copy
        return folded

    def _mlp_nhwc(self, y):
        mlp = self.mlp
        kind, act = norm_kind(self.norm2), act_kind(mlp.act)
        ls, res = _scale(self.layer_scale2), _scale(self.res_scale2)
        if kind is None or act is None or (self.training and mlp.drop.p > 0) \
                or torch.is_autocast_enabled(y.device.type):
            # autocast casts per op: the unfused ops keep its dtype policy
            h = F.linear(norm_nhwc(self.norm2, y), _matrix(mlp.fc1),
                         mlp.fc1.bias)
            branch = F.linear(mlp.drop(mlp.act(h)), _matrix(mlp.fc2),
                              mlp.fc2.bias)
            return self._residual(y, res, mlp.drop(branch), ls)
        w1, b1, w2, b2 = self._folded_mlp(kind, ls)
        act_params = (mlp.act.scale, mlp.act.bias) if act == 'star_relu' \
            else (None, None)
        norm = None if kind == 'none' else kind
        eps = getattr(self.norm2, 'eps', 0.)
        if not self.residual:  # the layer scale is folded into w2
            return norm_mlp(y, w1, b1, w2, b2, act, act_params, norm, eps)
        if not _drops(self.drop_path):
            residual = y if res is None else y * res
            return norm_mlp(y, w1, b1, w2, b2, act, act_params, norm, eps,
                            residual)
        branch = norm_mlp(y, w1, b1, w2, b2, act, act_params, norm, eps)
        return self._residual(y, res, branch, None)


class Downsampling(nn.Module):
    """(norm ->) conv: the stem (7x7/4, norm after) and the 3x3/2
    downsampling that opens stages 2-4 (norm before)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int, padding: int, norm_cfg: Optional[dict] = None,
                 norm_first: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.norm = build_norm(norm_cfg, in_channels if norm_first
                               else out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding)

    fast_path = False  # set by MetaFormer.fast_path

    def forward(self, x):
        if self.fast_path:  # channels-last NCHW out
            return to_nchw(self.forward_nhwc(to_nhwc(x)))
        if self.norm_first:
            return self.conv(self.norm(x))
        return self.norm(self.conv(x))

    def forward_nhwc(self, x):
        """(B, H, W, C) in and out; the convolution runs channels-last."""
        if self.norm_first:
            x = norm_nhwc(self.norm, x)
        x = to_nhwc(self.conv(to_nchw(x)))
        return x if self.norm_first else norm_nhwc(self.norm, x)


def resample_pos_embed(pos_embed: torch.Tensor,
                       size: Tuple[int, int]) -> torch.Tensor:
    """A (1, C, h0, w0) position embedding at an (H, W) token grid,
    resampled bilinearly when the grids differ."""
    if tuple(pos_embed.shape[2:]) == tuple(size):
        return pos_embed
    return F.interpolate(pos_embed, size=tuple(size), mode='bilinear',
                         align_corners=False)


class MetaFormerStage(nn.Module):
    """Optional downsampling, optional position embedding, then blocks;
    attention stages run on tokens.

    Args:
        pos_embed_grid: (h, w) token grid of a learnable position embedding
            added after the downsampling (zeros at first; resampled to other
            grids), or None for none.
    """

    def __init__(self, downsample: Optional[nn.Module], blocks, tokens_last: bool,
                 pos_embed_grid: Optional[Tuple[int, int]] = None,
                 dim: Optional[int] = None):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        if pos_embed_grid is not None:
            self.pos_embed = nn.Parameter(torch.zeros(1, dim, *pos_embed_grid))
        else:
            self.pos_embed = None
        self.blocks = nn.Sequential(*blocks)
        self.tokens_last = tokens_last

    fast_path = False  # set by MetaFormer.fast_path

    def forward(self, x, with_cp: bool = False):
        x = self.downsample(x)
        B, C, H, W = x.shape
        if self.pos_embed is not None:
            x = x + resample_pos_embed(self.pos_embed, (H, W))
        # the fast path's channels-last maps already are (B, N, C) tokens
        tokens = self.tokens_last and not self.fast_path
        if tokens:
            x = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = cp.checkpoint(block, x, use_reentrant=False) if with_cp \
                else block(x)
        if tokens:
            x = x.transpose(1, 2).reshape(B, C, H, W)
        return x


def _per_stage(value, name):
    if isinstance(value, (list, tuple)):
        if len(value) != NUM_STAGES:
            raise ValueError(f'arch["{name}"] must have {NUM_STAGES} entries, '
                             f'got {value}.')
        return list(value)
    return [value] * NUM_STAGES


@MODELS.register_module()
class MetaFormer(BaseModule):
    """MetaFormer backbone emitting stride 4/8/16/32 feature maps.

    Args:
        arch (str | dict): A preset of ``arch_zoo`` or a dict with
            ``depths`` and ``embed_dims`` (4 entries each) and optionally
            ``token_mixers`` (a mixer config or one per stage, e.g.
            ``dict(type='Pooling', pool_size=3)``), ``norm_cfg`` (one or per
            stage), ``mlp_ratios``, ``mlp_act_cfg``, ``mlp_bias``,
            ``stem_norm_cfg``, ``downsample_norm_cfg``, ``out_norm_cfg``,
            ``layer_scale_init_values`` and ``res_scale_init_values`` (one or
            per stage; None disables the scale). Ablations (one or per
            stage): ``mlp_ratios`` 0 removes the channel MLP sub-block,
            ``residual=False`` the skip connections, ``pos_embed=True`` adds
            a learnable position embedding after the stage's downsampling
            (``stages.i.pos_embed``, (1, C, 224 / 2**(i+2), ...), zeros at
            first, resampled bilinearly to other token grids).
        in_channels (int): Channels of the input image. Defaults to 3.
        drop_rate (float): Dropout in the channel MLP. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last block; it rises
            linearly from 0 over all blocks. Defaults to 0.
        out_indices (int | Sequence[int]): Stages (0-3, negative allowed)
            whose normalised outputs are returned. Defaults to all four.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem,
            stages ``< k`` and their output norms. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
        with_cp (bool): Recompute each block in backward to save memory.
        fast_path (bool): Run the blocks on channels-last maps with the
            fused formulas of :mod:`.fused_ops` (the pooling identity, norm
            affines and layer scales folded into the MLP GEMMs, activations
            recomputed in backward). Same function and gradients as the
            plain NCHW formulation (``False``) up to fp32 rounding; faster
            and with about half the activation memory. Modules still take
            and return NCHW tensors (channels-last in memory), so forward
            hooks see the usual maps. Can be switched at any time by
            setting the attribute. Defaults to True.
        init_cfg (dict | list[dict], optional): ``dict(type='Pretrained',
            checkpoint=..., prefix=...)`` loads any layout that
            :mod:`mmpoolformer.checkpoint` recognises. Weights are loaded by
            ``init_weights()``, never in ``__init__``.
        **arch_overrides: Keys of the arch dict to replace in a preset, e.g.
            ``token_mixers=dict(type='Pooling', pool_size=5)``.
    """
    arch_zoo: Dict[str, dict] = {}
    default_arch: Optional[str] = None

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 in_channels: int = 3,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 fast_path: bool = True,
                 init_cfg: Optional[Union[dict, list]] = [
                     dict(type='TruncNormal', layer=['Conv2d', 'Linear'],
                          std=.02, bias=0.),
                 ],
                 **arch_overrides):
        super().__init__(init_cfg=init_cfg)
        arch = self.parse_arch(arch if arch is not None else self.default_arch,
                               arch_overrides)
        self.arch_settings = arch
        self.depths = list(arch['depths'])
        self.embed_dims = list(arch['embed_dims'])
        self.in_channels = in_channels
        self.out_indices = self.parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(
                f'frozen_stages must be in [-1, {NUM_STAGES}] (-1: nothing, '
                f'0: the stem, k: the stem and stages < k), got '
                f'{frozen_stages}.')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        self.stem = Downsampling(in_channels, self.embed_dims[0], 7, 4, 2,
                                 arch['stem_norm_cfg'], norm_first=False)
        total = sum(self.depths)
        block_idx, stages = 0, []
        for i, (depth, dim) in enumerate(zip(self.depths, self.embed_dims)):
            mixer, norm_cfg = arch['token_mixers'][i], arch['norm_cfg'][i]
            # a stage whose norm acts on tokens runs on (B, N, C) throughout
            tokens_last = (norm_cfg or {}).get('type') == 'TokenLayerNorm'
            if tokens_last and mixer['type'] not in ('Attention', 'Identity'):
                raise ValueError(
                    f'Stage {i} normalises (B, N, C) tokens (TokenLayerNorm) '
                    f'but its {mixer["type"]} mixer needs NCHW maps; use '
                    f'LayerNorm2d or GroupNorm1 there.')
            blocks = []
            for _ in range(depth):
                blocks.append(MetaFormerBlock(
                    dim, mixer, norm_cfg, arch['mlp_ratios'][i],
                    arch['mlp_act_cfg'], arch['mlp_bias'], drop_rate,
                    # linear rule of the references: 0 first, full rate last
                    drop_path_rate * block_idx / max(total - 1, 1),
                    arch['layer_scale_init_values'][i],
                    arch['res_scale_init_values'][i], tokens_last,
                    arch['residual'][i]))
                block_idx += 1
            downsample = None if i == 0 else Downsampling(
                self.embed_dims[i - 1], dim, 3, 2, 1,
                arch['downsample_norm_cfg'], norm_first=True)
            # the papers' 224x224 grid: stride 4 in stage 0, then 8, 16, 32
            grid = (POS_EMBED_BASE // 2**(i + 2), ) * 2
            stages.append(MetaFormerStage(
                downsample, blocks, tokens_last,
                grid if arch['pos_embed'][i] else None, dim))
        self.stages = nn.ModuleList(stages)
        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm(arch['out_norm_cfg'], self.embed_dims[i]))
        self.fast_path = fast_path
        self._freeze_stages()

    @property
    def fast_path(self) -> bool:
        return self._fast_path

    @fast_path.setter
    def fast_path(self, enabled: bool):
        self._fast_path = bool(enabled)
        for m in self.modules():
            if isinstance(m, (MetaFormerBlock, Downsampling, MetaFormerStage)):
                m.fast_path = self._fast_path

    @torch.no_grad()
    def switch_to_deploy(self):
        """Inference structure, same outputs: the family's own structural
        folding (:meth:`_fold_mixers`, e.g. RIFormer's), then every block's
        :meth:`MetaFormerBlock.fold_affines`. In place; idempotent. Load
        (training-layout) weights first: the folded model has fewer
        parameters."""
        if getattr(self, 'deploy', False):
            return
        self._fold_mixers()
        for stage in self.stages:
            for block in stage.blocks:
                block.fold_affines()
        self.deploy = True
        self._freeze_stages()  # the new parameters of frozen stages too

    def _fold_mixers(self):
        """Hook for families whose mixer folds into its norm."""

    # ------------------------------------------------------------------ setup
    @classmethod
    def parse_arch(cls, arch, overrides=None) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown {cls.__name__} arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_zoo)} or pass a dict with "depths" and '
                    f'"embed_dims".')
            arch = cls.arch_zoo[key]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}.')
        arch = {**copy.deepcopy(arch), **copy.deepcopy(overrides or {})}
        missing = {'depths', 'embed_dims'} - set(arch)
        if missing:
            raise ValueError(
                f'Custom arch dict lacks {sorted(missing)}; it needs "depths" '
                f'and "embed_dims" with {NUM_STAGES} entries each.')
        defaults = dict(  # PoolFormer v1
            token_mixers=dict(type='Pooling', pool_size=3),
            norm_cfg=dict(type='GroupNorm1', eps=1e-5),
            mlp_ratios=4, mlp_act_cfg=dict(type='GELU'), mlp_bias=True,
            stem_norm_cfg=None, downsample_norm_cfg=None,
            out_norm_cfg=dict(type='GroupNorm1', eps=1e-5),
            layer_scale_init_values=1e-5, res_scale_init_values=None,
            residual=True, pos_embed=False)
        unknown = set(arch) - set(defaults) - {'depths', 'embed_dims'}
        if unknown:
            raise ValueError(f'Unknown arch keys {sorted(unknown)}; known: '
                             f'{sorted(set(defaults) | {"depths", "embed_dims"})}.')
        arch = {**defaults, **arch}
        for key in ('depths', 'embed_dims'):
            if len(arch[key]) != NUM_STAGES:
                raise ValueError(f'arch["{key}"] must have {NUM_STAGES} '
                                 f'entries, got {arch[key]}.')
        for key in ('token_mixers', 'norm_cfg', 'mlp_ratios',
                    'layer_scale_init_values', 'res_scale_init_values',
                    'residual', 'pos_embed'):
            arch[key] = _per_stage(arch[key], key)
        for key in ('residual', 'pos_embed'):
            if not all(isinstance(v, bool) for v in arch[key]):
                raise ValueError(f'arch["{key}"] must be a bool or one bool per '
                                 f'stage, got {arch[key]}.')
        for ratio in arch['mlp_ratios']:
            if not isinstance(ratio, (int, float)) or ratio < 0:
                raise ValueError(
                    f'arch["mlp_ratios"] must be >= 0 (0: no channel MLP), '
                    f'got {arch["mlp_ratios"]}.')
        return arch

    @staticmethod
    def parse_out_indices(out_indices) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        normalised = []
        for index in out_indices:
            if not -NUM_STAGES <= index < NUM_STAGES:
                raise ValueError(
                    f'out_indices are stage indices and must be in '
                    f'[-{NUM_STAGES}, {NUM_STAGES - 1}], got {index} in '
                    f'{tuple(out_indices)}; e.g. use (0, 1, 2, 3) for all '
                    f'four stages.')
            normalised.append(index % NUM_STAGES)
        if len(set(normalised)) != len(normalised) or not normalised:
            raise ValueError(
                f'out_indices must name distinct stages, got '
                f'{tuple(out_indices)}.')
        return tuple(sorted(normalised))

    def init_weights(self):
        if isinstance(self.init_cfg, dict) and \
                self.init_cfg.get('type') == 'Pretrained':
            # Released weights come in several key layouts; load through the
            # converter instead of mmengine's plain PretrainedInit.
            from mmpoolformer.checkpoint import load_backbone_checkpoint
            load_backbone_checkpoint(
                self, self.init_cfg['checkpoint'],
                prefix=self.init_cfg.get('prefix'),
                map_location=self.init_cfg.get('map_location', 'cpu'))
            self._is_init = True
        else:
            super().init_weights()

    # --------------------------------------------------------------- training
    def _freeze_stages(self):
        if self.frozen_stages < 0:
            return
        frozen = [self.stem]
        for i in range(self.frozen_stages):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expects NCHW input with '
                f'{self.in_channels} channels (in_channels='
                f'{self.in_channels}), got shape {tuple(x.shape)}; set '
                f'in_channels={x.shape[1] if x.dim() == 4 else "?"} or fix '
                f'the input.')
        with_cp = self.with_cp and torch.is_grad_enabled()
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, with_cp)
            if i in self.out_indices:
                # necks and heads get the default NCHW layout
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
            if i == self.out_indices[-1]:
                break  # later stages feed no output
        return tuple(outs)
