"""The layers a MetaFormer is made of, besides its token mixers: the norms,
the StarReLU activation, layer / residual scales, the channel MLP and the
(norm +) strided convolution of the stem and the downsamplings.

Every layer computes the plain NCHW formulation (tokens ``(B, N, C)`` in
attention stages); the fast formulations (:mod:`.lean`, :mod:`.fused`) read
their parameters.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_activation_layer, build_norm_layer

Tensor = torch.Tensor


# ------------------------------------------------------------------- norms
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

    def forward(self, x: Tensor) -> Tensor:
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
    """How a norm normalises a channels-last map: ``'group'`` (one group,
    statistics per sample), ``'layer'`` (over C per position), ``'none'``,
    or None when it has no channels-last formula (BatchNorm, GN with
    several groups)."""
    if isinstance(norm, nn.Identity):
        return 'none'
    if isinstance(norm, nn.GroupNorm) and norm.num_groups == 1:
        return 'group'
    if isinstance(norm, nn.LayerNorm) and len(norm.normalized_shape) == 1:
        return 'layer'  # LayerNorm2d on maps, TokenLayerNorm on tokens
    return None


# -------------------------------------------------------------- activation
class StarReLU(nn.Module):
    """``s * relu(x) ** 2 + b`` with learnable scalars s and b."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1, ), scale_value))
        self.bias = nn.Parameter(torch.full((1, ), bias_value))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * F.relu(x)**2 + self.bias


def build_act(cfg: dict) -> nn.Module:
    if cfg['type'] == 'StarReLU':
        cfg = dict(cfg)
        cfg.pop('type')
        return StarReLU(**cfg)
    return build_activation_layer(cfg)


# ------------------------------------------------------------------ layers
class Scale(nn.Module):
    """Learnable per-channel scale (layer scale or residual scale) of NCHW
    maps, or of (B, N, C) tokens with ``tokens_last``."""

    def __init__(self, dim: int, init_value: float, tokens_last: bool = False):
        super().__init__()
        self.shape = (dim, ) if tokens_last else (dim, 1, 1)
        self.scale = nn.Parameter(torch.full((dim, ), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.view(self.shape)


def scale_vector(module: nn.Module) -> Optional[Tensor]:
    """The (C,) vector of a :class:`Scale`, None for ``nn.Identity``."""
    return module.scale if isinstance(module, Scale) else None


def matrix(layer: nn.Module) -> Tensor:
    """(out, in) weight of a Linear or 1x1 Conv2d (a view)."""
    return layer.weight.reshape(layer.weight.shape[0], -1)


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

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


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

    def forward(self, x: Tensor) -> Tensor:
        if self.norm_first:
            return self.conv(self.norm(x))
        return self.norm(self.conv(x))
