"""The MetaFormer block and stage.

A block is ``x = res_scale1 * x + ls1 * mixer(norm1(x))`` then
``x = res_scale2 * x + ls2 * mlp(norm2(x))``; a stage is an optional
downsampling, an optional position embedding and blocks. Stages whose
norms act on tokens (CAFormer's attention stages) run their blocks on
``(B, N, C)`` tokens; every stage takes and returns NCHW maps.

A block computes its function in the formulation its ``formulation``
attribute names (:mod:`.formulation`): :meth:`MetaFormerBlock.forward_plain`
is the definition, the fast formulations assemble the same two half-blocks
from the mixer's forms (:class:`.token_mixers.TokenMixer`) and
:mod:`.lean` / :mod:`.fused`.
"""
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath

from . import fused, lean
from .algebra import product
from .formulation import choose_formulation
from .layers import Mlp, Scale, build_norm, scale_vector
from .token_mixers import build_token_mixer

Tensor = torch.Tensor


#: the mixer forms each formulation tries, in order (then the norm and the
#: mixer's forward)
FORMS = dict(lean=('lean_half', ), fused=('fused_half', 'lean_half'),
             packed=('packed_half', 'fused_half', 'lean_half'))


class MetaFormerBlock(nn.Module):
    """norm -> token mixer -> (layer scale) residual, norm -> MLP -> residual.

    ``mlp_ratio=0`` drops the second sub-block (no norm2 / mlp / scales);
    ``residual=False`` drops the skip connections (and with them the
    residual scales and stochastic depth, which only act on a residual sum):
    ablations of the PoolFormer paper. ``formulation``: see
    :mod:`.formulation` (the backbone sets it on every block).
    """
    formulation = 'plain'

    def __init__(self, dim: int, token_mixer: dict, norm_cfg: Optional[dict],
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
        self.tokens_last = tokens_last
        if not residual:
            res_scale_init_value, drop_path_rate = None, 0.
        self.norm1 = build_norm(norm_cfg, dim)
        self.token_mixer = build_token_mixer(token_mixer, dim, tokens_last)
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

    def forward(self, x: Tensor) -> Tensor:
        how = choose_formulation(self.formulation, self, x)
        if how == 'plain':
            return self.forward_plain(x)
        x = lean.residual_stream(self, x)
        if how in ('fused', 'packed') and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self._mixer_half(how, x)
        return self._mlp_half(how, x) if self.has_mlp else x

    def forward_plain(self, x: Tensor) -> Tensor:
        """The definition: the modules' own forward."""
        branch = self.layer_scale1(self.token_mixer(self.norm1(x)))
        x = self.res_scale1(x) + self.drop_path(branch) if self.residual \
            else branch
        if self.has_mlp:
            branch = self.layer_scale2(self.mlp(self.norm2(x)))
            x = self.res_scale2(x) + self.drop_path(branch) if self.residual \
                else branch
        return x

    def _mixer_half(self, how: str, x: Tensor) -> Tensor:
        """``res1 * x + ls1 * mixer(norm1(x))``: the mixer's form for the
        formulation (the packed one falls back to the fused one, the fused
        one to the lean one: :data:`FORMS`), else the norm and the mixer's
        forward."""
        ls, res = scale_vector(self.layer_scale1), scale_vector(self.res_scale1)
        keep = lean.keep_factor(self.drop_path, x)
        if self.residual:
            forms = FORMS[how]
            for name in forms:
                form = getattr(self.token_mixer, name, None)
                out = None if form is None else form(x, self.norm1, ls, res,
                                                     keep)
                if out is not None:
                    return out
        branch = self.token_mixer(self.norm1(x))
        return lean.residual(x, branch, product(lean.channels(ls, x), keep),
                             lean.channels(res, x), self.residual)

    def _mlp_half(self, how: str, x: Tensor) -> Tensor:
        keep = lean.keep_factor(self.drop_path, x)
        out = fused.mlp_half(self, x, keep, how == 'packed') \
            if how in ('fused', 'packed') else None
        return lean.mlp_half(self, x, keep) if out is None else out


def add_pos_embed(x: Tensor, pos_embed: Tensor) -> Tensor:
    """``x + pos_embed``, the (1, C, h0, w0) embedding resampled bilinearly
    to the grid of the NCHW map ``x`` when the grids differ."""
    if tuple(x.shape[2:]) != tuple(pos_embed.shape[2:]):
        pos_embed = F.interpolate(pos_embed, size=tuple(x.shape[2:]),
                                  mode='bilinear', align_corners=False)
    return x + pos_embed


torch.fx.wrap('add_pos_embed')  # grid-dependent Python: one fx call node


class MetaFormerStage(nn.Module):
    """Optional downsampling, optional position embedding, then blocks.

    Args:
        downsample: The stage's downsampling, or None (the first stage,
            after the stem).
        blocks: The stage's :class:`MetaFormerBlock` s.
        tokens_last: Run the blocks on (B, N, C) tokens.
        pos_embed_grid: (h, w) token grid of a learnable position embedding
            (``pos_embed``, zeros at first) added after the downsampling and
            resampled to other grids, or None for none.
        dim: Channels of the stage (for the position embedding).
    """

    def __init__(self, downsample: Optional[nn.Module],
                 blocks: Sequence[nn.Module], tokens_last: bool = False,
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

    def forward(self, x: Tensor, with_cp: bool = False) -> Tensor:
        x = self.downsample(x)
        if self.pos_embed is not None:
            x = add_pos_embed(x, self.pos_embed)
        shape = x.shape
        if self.tokens_last:
            x = x.flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = cp.checkpoint(block, x, use_reentrant=False) if with_cp \
                else block(x)
        if self.tokens_last:
            x = x.transpose(1, 2).reshape(shape)
        return x
