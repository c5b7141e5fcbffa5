"""PoolFormer: "MetaFormer Is Actually What You Need for Vision" (CVPR 2022).

A MetaFormer block is ``x = x + ls1 * mixer(norm1(x))`` followed by
``x = x + ls2 * mlp(norm2(x))``. PoolFormer's token mixer is ``pool(x) - x``
(3x3 average pooling that ignores padding; the subtraction removes the
identity that the residual already carries) and its norm is GroupNorm with a
single group, the paper's "modified layer norm" over (C, H, W).

Module names follow timm's ``metaformer.py`` (``stem``, ``stages.i.downsample``,
``stages.i.blocks.j``) plus one output norm ``norm{i}`` per returned stage, as
in mmdet's backbones. Other checkpoint layouts are mapped onto these names by
:mod:`mmpoolformer.checkpoint.convert`.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_activation_layer, build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmpoolformer.registry import MODELS

NUM_STAGES = 4


class Stem(nn.Module):
    """Overlapping patch embedding: conv 7x7, stride 4, padding 2."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int = 7, stride: int = 4, padding: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding)

    def forward(self, x):
        return self.conv(x)


class Downsampling(nn.Module):
    """Conv 3x3, stride 2, padding 1 that opens stages 2-4."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int = 3, stride: int = 2, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding)

    def forward(self, x):
        return self.conv(x)


class Pooling(nn.Module):
    """PoolFormer's token mixer: ``avgpool(x) - x``.

    ``count_include_pad=False`` makes border windows average only real
    tokens, so every window's weights sum to one.
    """

    def __init__(self, pool_size: int = 3):
        super().__init__()
        if pool_size % 2 != 1:
            raise ValueError(
                f'pool_size must be odd to keep the spatial size, got '
                f'{pool_size}; use 3, 5, 7 or 9.')
        self.pool = nn.AvgPool2d(
            pool_size, stride=1, padding=pool_size // 2,
            count_include_pad=False)

    def forward(self, x):
        return self.pool(x) - x


class ConvMlp(nn.Module):
    """Channel MLP as two 1x1 convolutions (works on NCHW directly)."""

    def __init__(self, channels: int, hidden_channels: int,
                 act_cfg: dict = dict(type='GELU'), drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden_channels, 1)
        self.act = build_activation_layer(act_cfg)
        self.fc2 = nn.Conv2d(hidden_channels, channels, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class LayerScale(nn.Module):
    """Learnable per-channel scale of a residual branch (NCHW)."""

    def __init__(self, channels: int, init_value: float):
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels, ), init_value))

    def forward(self, x):
        return x * self.scale.view(-1, 1, 1)


class PoolFormerBlock(nn.Module):
    """norm -> pooling mixer -> residual, norm -> channel MLP -> residual."""

    def __init__(self,
                 channels: int,
                 pool_size: int = 3,
                 mlp_ratio: float = 4.,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-5):
        super().__init__()
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.token_mixer = Pooling(pool_size)
        self.layer_scale1 = LayerScale(channels, layer_scale_init_value)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio), act_cfg,
                           drop_rate)
        self.layer_scale2 = LayerScale(channels, layer_scale_init_value)
        self.drop_path = (
            DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity())

    def forward(self, x):
        x = x + self.drop_path(self.layer_scale1(self.token_mixer(self.norm1(x))))
        x = x + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))
        return x


class PoolFormerStage(nn.Module):
    """Optional downsampling followed by a sequence of blocks."""

    def __init__(self, downsample: Optional[nn.Module], blocks: Sequence[nn.Module]):
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):
        return self.blocks(self.downsample(x))


@MODELS.register_module()
class PoolFormer(BaseModule):
    """PoolFormer backbone emitting stride 4/8/16/32 feature maps.

    Args:
        arch (str | dict): One of ``s12, s24, s36, m36, m48`` or a dict with
            ``depths`` and ``embed_dims`` (4 entries each) and optionally
            ``mlp_ratios`` (number or 4 numbers) and
            ``layer_scale_init_value``.
        in_channels (int): Channels of the input image. Defaults to 3.
        pool_size (int): Window of the pooling mixer. Defaults to 3.
        norm_cfg (dict): Norm of blocks and outputs. Defaults to GroupNorm
            with one group (the paper's modified layer norm).
        act_cfg (dict): Activation of the channel MLP. Defaults to GELU.
        drop_rate (float): Dropout in the channel MLP. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last block; it rises
            linearly from 0 over all blocks. Defaults to 0.
        out_indices (int | Sequence[int]): Stages (0-3, negative allowed)
            whose normalised outputs are returned. Defaults to all four.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem,
            stages ``< k`` and their output norms. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training
            (GroupNorm has no running statistics). Defaults to False.
        with_cp (bool): Recompute each block in backward to save memory.
            Defaults to False.
        init_cfg (dict | list[dict], optional): Initialisation config; use
            ``dict(type='Pretrained', checkpoint=..., prefix=...)`` for
            weights in any layout that :mod:`mmpoolformer.checkpoint`
            recognises. Weights are loaded by ``init_weights()``, never in
            ``__init__``.
    """

    # Official release settings; deeper models start their layer scale
    # lower (1e-6), as in sail-sg/poolformer.
    arch_zoo: Dict[str, dict] = {
        's12': dict(depths=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=4, layer_scale_init_value=1e-5),
        's24': dict(depths=[4, 4, 12, 4], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=4, layer_scale_init_value=1e-5),
        's36': dict(depths=[6, 6, 18, 6], embed_dims=[64, 128, 320, 512],
                    mlp_ratios=4, layer_scale_init_value=1e-6),
        'm36': dict(depths=[6, 6, 18, 6], embed_dims=[96, 192, 384, 768],
                    mlp_ratios=4, layer_scale_init_value=1e-6),
        'm48': dict(depths=[8, 8, 24, 8], embed_dims=[96, 192, 384, 768],
                    mlp_ratios=4, layer_scale_init_value=1e-6),
    }

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 in_channels: int = 3,
                 pool_size: int = 3,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 out_indices: Union[int, Sequence[int]] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, list]] = [
                     dict(type='TruncNormal', layer=['Conv2d', 'Linear'],
                          std=.02, bias=0.),
                     dict(type='Constant', layer=['GroupNorm', '_BatchNorm'],
                          val=1., bias=0.),
                 ]):
        super().__init__(init_cfg=init_cfg)
        arch = self.parse_arch(arch)
        self.arch_settings = arch
        self.embed_dims = list(arch['embed_dims'])
        self.depths = list(arch['depths'])
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

        self.stem = Stem(in_channels, self.embed_dims[0])
        total_depth = sum(self.depths)
        block_idx = 0
        stages = []
        for i, (depth, dim) in enumerate(zip(self.depths, self.embed_dims)):
            blocks = []
            for _ in range(depth):
                # linear rule of the reference: 0 at the first block, the
                # full rate at the last one
                dpr = drop_path_rate * block_idx / max(total_depth - 1, 1)
                blocks.append(PoolFormerBlock(
                    dim, pool_size=pool_size, mlp_ratio=arch['mlp_ratios'][i],
                    norm_cfg=norm_cfg, act_cfg=act_cfg, drop_rate=drop_rate,
                    drop_path_rate=dpr,
                    layer_scale_init_value=arch['layer_scale_init_value']))
                block_idx += 1
            downsample = (None if i == 0 else
                          Downsampling(self.embed_dims[i - 1], dim))
            stages.append(PoolFormerStage(downsample, blocks))
        self.stages = nn.ModuleList(stages)

        for i in self.out_indices:
            self.add_module(f'norm{i}',
                            build_norm_layer(norm_cfg, self.embed_dims[i])[1])
        self._freeze_stages()

    # ------------------------------------------------------------------ setup
    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown PoolFormer arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_zoo)} or pass a dict with "depths" and '
                    f'"embed_dims".')
            arch = cls.arch_zoo[key]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}.')
        missing = {'depths', 'embed_dims'} - set(arch)
        if missing:
            raise ValueError(
                f'Custom arch dict lacks {sorted(missing)}; it needs "depths" '
                f'and "embed_dims" with {NUM_STAGES} entries each.')
        arch = dict(arch)
        mlp_ratios = arch.get('mlp_ratios', 4)
        if isinstance(mlp_ratios, (int, float)):
            mlp_ratios = [mlp_ratios] * NUM_STAGES
        arch['mlp_ratios'] = list(mlp_ratios)
        arch.setdefault('layer_scale_init_value', 1e-5)
        for key in ('depths', 'embed_dims', 'mlp_ratios'):
            if len(arch[key]) != NUM_STAGES:
                raise ValueError(
                    f'arch["{key}"] must have {NUM_STAGES} entries, got '
                    f'{arch[key]}.')
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
                f'PoolFormer expects NCHW input with {self.in_channels} '
                f'channels (in_channels={self.in_channels}), got shape '
                f'{tuple(x.shape)}; set in_channels={x.shape[1] if x.dim() == 4 else "?"} '
                f'or fix the input.')
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            if self.with_cp and torch.is_grad_enabled():
                x = stage.downsample(x)
                for block in stage.blocks:
                    x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = stage(x)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
            if i == self.out_indices[-1]:
                break  # later stages feed no output
        return tuple(outs)
