"""The classifier head of the MetaFormer baselines (Yu et al., TPAMI 2023).

sail-sg/metaformer (and timm) classify ConvFormer and CAFormer with
``global mean pool -> LayerNorm(eps 1e-6) -> MlpHead`` where ``MlpHead`` is
``fc1 (dim -> 4 dim), SquaredReLU, LayerNorm, dropout, fc2``; PoolFormerV2,
IdentityFormer and RandFormer use a single Linear after the same norm. The
pooled-vector norm is the official model's ``norm`` (timm: ``head.norm``),
not an output norm of the backbone, so configs using this head build the
backbone with ``out_norm_cfg=None``. Module names follow timm (``norm``,
``fc.fc1``, ``fc.norm``, ``fc.fc2``), as the backbone's do.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead

from mmpoolformer.registry import MODELS


class SquaredReLU(nn.Module):
    """``relu(x) ** 2`` (So et al., Primer)."""

    def forward(self, x):
        return F.relu(x).square()


class MlpHead(nn.Module):
    """fc1 (dim -> ``mlp_ratio`` dim), SquaredReLU, LayerNorm, dropout, fc2."""

    def __init__(self, dim: int, num_classes: int, mlp_ratio: float = 4,
                 dropout: float = 0., norm_eps: float = 1e-5):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = SquaredReLU()
        self.norm = nn.LayerNorm(hidden, eps=norm_eps)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.drop(self.norm(self.act(self.fc1(x)))))


@MODELS.register_module()
class MetaFormerClsHead(ClsHead):
    """Mean pool (of a 4-D map; a pooled (B, C) input passes) -> LayerNorm ->
    MlpHead, or -> Linear with ``mlp_ratio=None``.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone stage.
        mlp_ratio (float, optional): Hidden width of the MLP head over
            ``in_channels``; None for a single Linear layer. Defaults to 4
            (ConvFormer / CAFormer).
        dropout (float): Dropout before fc2 of the MLP head (the official
            ``head_dropout``; the single-Linear head has none). Defaults
            to 0.
        norm_eps (float): eps of the LayerNorm on the pooled vector; the
            official ``output_norm`` uses 1e-6.
        mlp_norm_eps (float): eps of the MLP head's LayerNorm. The official
            MlpHead builds ``nn.LayerNorm`` with its default 1e-5.
        init_cfg (dict | list[dict], optional): timm's trunc-normal init of
            the Linear layers by default.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of mmpretrain's ClsHead.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mlp_ratio: Optional[float] = 4,
                 dropout: float = 0.,
                 norm_eps: float = 1e-6,
                 mlp_norm_eps: float = 1e-5,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes must be positive, got '
                             f'{num_classes}.')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        self.fc = nn.Linear(in_channels, num_classes) if mlp_ratio is None \
            else MlpHead(in_channels, num_classes, mlp_ratio, dropout,
                         mlp_norm_eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        # a whole-model checkpoint without this head (converted with
        # --backbone-only) would leave random logits behind a bare list of
        # missing keys: say so, naming the converter flag
        from mmpoolformer.checkpoint.loading import warn_if_head_missing
        warn_if_head_missing(self, state_dict, prefix)

    def pre_logits(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        """The normalised pooled vector of the last stage."""
        x = feats[-1]
        if x.dim() == 4:
            x = x.mean((2, 3))
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expects the last stage as (B, '
                f'{self.in_channels}, H, W) maps or pooled (B, '
                f'{self.in_channels}) vectors (in_channels='
                f'{self.in_channels}), got shape {tuple(feats[-1].shape)}; '
                f'set in_channels to the last stage width.')
        return self.norm(x)

    def forward(self, feats: Tuple[torch.Tensor]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))
