"""MetaFormer: one backbone for PoolFormer and the MetaFormer baselines.

A model is a stem, four stages (downsampling + blocks, see :mod:`.blocks`)
and one output norm per returned stage. Everything that distinguishes
PoolFormer (v1, v2), IdentityFormer, RandFormer, ConvFormer, CAFormer,
RIFormer and the ablations of the PoolFormer paper is configuration: the
token mixer, the norms, the MLP activation and bias, the layer / residual
scales, per stage. Presets are data (``arch_zoo``); the registered
subclasses only name them.

Module names follow timm's ``metaformer.py`` so that its checkpoints map by
name; :mod:`mmpoolformer.checkpoint.convert` maps the other layouts.
"""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch.nn.modules.batchnorm import _BatchNorm

from mmpoolformer.registry import MODELS

from . import torch_ops
from .blocks import MetaFormerBlock, MetaFormerStage
from .deploy import fold_block_affines
from .formulation import check_formulation
from .layers import Downsampling, build_norm
from .token_mixers import mixer_class

NUM_STAGES = 4
POS_EMBED_BASE = 224  # input size the position embeddings are drawn for
#: arch keys that take one value or one per stage
PER_STAGE_KEYS = ('token_mixers', 'norm_cfg', 'mlp_ratios',
                  'layer_scale_init_values', 'res_scale_init_values',
                  'residual', 'pos_embed')
#: PoolFormer v1: what a key not set by the preset or the dict means
ARCH_DEFAULTS = dict(
    token_mixers=dict(type='Pooling', pool_size=3),
    norm_cfg=dict(type='GroupNorm1', eps=1e-5),
    mlp_ratios=4, mlp_act_cfg=dict(type='GELU'), mlp_bias=True,
    stem_norm_cfg=None, downsample_norm_cfg=None,
    out_norm_cfg=dict(type='GroupNorm1', eps=1e-5),
    layer_scale_init_values=1e-5, res_scale_init_values=None,
    residual=True, pos_embed=False)


def _per_stage(value, name: str) -> list:
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
            per stage; None disables the scale). A family's dict starts
            from its default preset (a ``ConvFormer`` dict keeps SepConv
            mixers). Ablations (one or per stage): ``mlp_ratios`` 0 removes
            the channel MLP sub-block, ``residual=False`` the skip
            connections, ``pos_embed=True`` adds a learnable position
            embedding after the stage's downsampling (``stages.i.pos_embed``,
            (1, C, 224 / 2**(i+2), ...), zeros at first, resampled bilinearly
            to other token grids).
        in_channels (int): Channels of the input image. Defaults to 3.
        drop_rate (float): Dropout in the channel MLP. Defaults to 0.
        drop_path_rate (float): Stochastic depth of the last block; it rises
            linearly from 0 over all blocks. Defaults to 0.
        out_indices (int | Sequence[int]): Stages (0-3, negative allowed)
            whose normalised outputs are returned. Defaults to all four.
            Stages after the last one are not built (no Parameter without
            a gradient); a checkpoint's weights for them are skipped and
            reported.
        frozen_stages (int): -1 freezes nothing, 0 the stem, ``k`` the stem,
            stages ``< k`` and their output norms. Defaults to -1.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
        with_cp (bool): Recompute each block in backward to save memory.
        formulation (str): How the blocks compute their function, the same
            in every case (parameters, state dict and NCHW module
            boundaries): ``'auto'`` (default: the ``'fused'`` eager CPU
            kernels where they run, else ``'lean'`` standard ops: under
            compilers and tracers, on other devices), ``'plain'``,
            ``'lean'``, ``'fused'`` or ``'packed'`` (eager CPU inference
            on weights prepared once). A block whose submodules hooks watch
            runs ``'plain'`` whatever the value. See docs/speed.md; setting
            the attribute switches the model.
        fast_path (bool, optional): Deprecated: ``True`` is
            ``formulation='auto'``, ``False`` ``'plain'``.
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
                 formulation: str = 'auto',
                 fast_path: Optional[bool] = None,
                 init_cfg: Optional[Union[dict, list]] = [
                     dict(type='TruncNormal', layer=['Conv2d', 'Linear'],
                          std=.02, bias=0.),
                 ],
                 **arch_overrides):
        if 'pretrained' in arch_overrides:
            raise ValueError(
                f'{type(self).__name__} takes no pretrained=; load weights '
                f'with init_cfg=dict(type="Pretrained", checkpoint='
                f'{arch_overrides["pretrained"]!r}) (any layout that '
                f'mmpoolformer.checkpoint recognises).')
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
        self.deploy = False

        self.stem = Downsampling(in_channels, self.embed_dims[0], 7, 4, 2,
                                 arch['stem_norm_cfg'], norm_first=False)
        total = sum(self.depths)
        block_idx, stages = 0, []
        for i, (depth, dim) in enumerate(zip(self.depths, self.embed_dims)):
            if i > self.out_indices[-1]:
                break  # later stages would feed no output
            mixer, norm_cfg = arch['token_mixers'][i], arch['norm_cfg'][i]
            # a stage whose norm acts on tokens runs on (B, N, C) throughout
            tokens_last = (norm_cfg or {}).get('type') == 'TokenLayerNorm'
            if tokens_last and not getattr(mixer_class(mixer['type']),
                                           'runs_on_tokens', False):
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
        torch_ops.probe_all()  # now, not inside a compiler's first trace
        if fast_path is not None:
            if formulation != 'auto':
                raise ValueError(
                    f'give formulation={formulation!r} or the deprecated '
                    f'fast_path={fast_path}, not both.')
            self.fast_path = fast_path
        else:
            self.formulation = formulation
        self._freeze_stages()

    # ------------------------------------------------------------ formulation
    @property
    def formulation(self) -> str:
        """The blocks' formulation (see the class doc)."""
        return self._formulation

    @formulation.setter
    def formulation(self, formulation: str) -> None:
        self._formulation = check_formulation(formulation)
        for module in self.modules():
            if isinstance(module, MetaFormerBlock):
                module.formulation = formulation

    @property
    def fast_path(self) -> bool:
        """Deprecated alias: whether the formulation is not ``'plain'``."""
        return self.formulation != 'plain'

    @fast_path.setter
    def fast_path(self, enabled: bool) -> None:
        warnings.warn("fast_path is deprecated: use formulation='auto' (for "
                      "fast_path=True) or 'plain' (for False)",
                      DeprecationWarning, stacklevel=2)
        self.formulation = 'auto' if enabled else 'plain'

    @torch.no_grad()
    def switch_to_deploy(self) -> None:
        """Inference structure, same outputs: the family's own structural
        folding (:meth:`_fold_mixers`, e.g. RIFormer's), then every block's
        affines (:func:`.deploy.fold_block_affines`). In place; idempotent.
        Load (training-layout) weights first: the folded model has fewer
        parameters."""
        if self.deploy:
            return
        self._fold_mixers()
        for stage in self.stages:
            for block in stage.blocks:
                fold_block_affines(block)
        self.deploy = True
        self._freeze_stages()  # the new parameters of frozen stages too

    def _fold_mixers(self) -> None:
        """Hook for families whose mixer folds into its norm."""

    def __prepare_scriptable__(self):
        raise RuntimeError(
            f'{type(self).__name__} cannot be compiled by torch.jit.script '
            f'(its blocks are assembled from configs in Python); use '
            f'torch.jit.trace(model, example_input), torch.export.export('
            f'model, (example_input,)), torch.compile(model) or the ONNX '
            f'export of mmpoolformer.deployment instead.')

    @property
    def feature_info(self) -> List[dict]:
        """timm-style description of the returned maps: channels
        (``num_chs``), stride w.r.t. the input (``reduction``) and the
        module that makes each one."""
        return [dict(num_chs=self.embed_dims[i], reduction=2**(i + 2),
                     module=f'norm{i}', stage=i) for i in self.out_indices]

    # ------------------------------------------------------------------ setup
    @classmethod
    def parse_arch(cls, arch: Union[str, dict],
                   overrides: Optional[dict] = None) -> dict:
        """The full arch dict (every key, per-stage keys as 4-entry lists):
        a preset name, or a dict on top of the family's default preset,
        then ``overrides``."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(
                    f'Unknown {cls.__name__} arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_zoo)} or pass a dict with "depths" and '
                    f'"embed_dims".')
            arch = cls.arch_zoo[key]
        elif isinstance(arch, dict):
            missing = {'depths', 'embed_dims'} - set(arch)
            if missing:
                raise ValueError(
                    f'Custom arch dict lacks {sorted(missing)}; it needs '
                    f'"depths" and "embed_dims" with {NUM_STAGES} entries '
                    f'each.')
            # the family's design (mixers, norms, scales) under new sizes
            arch = {**cls.arch_zoo.get(cls.default_arch, {}), **arch}
        else:
            raise TypeError(f'arch must be a str or a dict, got {type(arch)}.')
        arch = {**copy.deepcopy(arch), **copy.deepcopy(overrides or {})}
        known = set(ARCH_DEFAULTS) | {'depths', 'embed_dims'}
        unknown = set(arch) - known
        if unknown:
            raise ValueError(f'Unknown arch keys {sorted(unknown)}; known: '
                             f'{sorted(known)}.')
        arch = {**copy.deepcopy(ARCH_DEFAULTS), **arch}
        for key in ('depths', 'embed_dims'):
            if len(arch[key]) != NUM_STAGES:
                raise ValueError(f'arch["{key}"] must have {NUM_STAGES} '
                                 f'entries, got {arch[key]}.')
        for key in PER_STAGE_KEYS:
            arch[key] = _per_stage(arch[key], key)
        for key in ('residual', 'pos_embed'):
            if not all(isinstance(v, bool) for v in arch[key]):
                raise ValueError(f'arch["{key}"] must be a bool or one bool '
                                 f'per stage, got {arch[key]}.')
        for ratio in arch['mlp_ratios']:
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
                    or ratio < 0:
                raise ValueError(
                    f'arch["mlp_ratios"] must be numbers >= 0 (0: no channel '
                    f'MLP), got {arch["mlp_ratios"]}.')
        return arch

    @staticmethod
    def parse_out_indices(
            out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
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

    def init_weights(self) -> None:
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
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.stem]
        for i in range(min(self.frozen_stages, len(self.stages))):
            frozen.append(self.stages[i])
            if i in self.out_indices:
                frozen.append(getattr(self, f'norm{i}'))
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'MetaFormer':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------- lr decay depths
    def _param_position(self, param_name: str,
                        prefix: str) -> Optional[Tuple[int, int]]:
        """``(stage, block)`` whose depth a parameter shares: ``(-1, 0)``
        for the stem; a stage's downsampling and position embedding run
        just before its first block and share that block's. None for what
        follows the blocks (output norms) and for names outside the
        backbone (without ``prefix``: neck, heads)."""
        if not param_name.startswith(prefix):
            return None
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stem':
            return -1, 0
        if parts[0] == 'stages':
            return int(parts[1]), (int(parts[3]) if parts[2] == 'blocks' else 0)
        return None

    def get_layer_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """Depth of a parameter for layer-wise learning-rate decay.

        mmpretrain's protocol (its ViT / ConvNeXt): with ``L`` blocks in
        all, the stem is depth 0, the blocks in forward order (stage by
        stage) ``1 .. L``, a stage's downsampling (and position embedding)
        that of the stage's first block, and the output norms, like
        everything outside the backbone (names not starting with
        ``prefix``, e.g. ``'backbone.'``), ``L + 1``. Returns ``(depth,
        L + 2)``: decay constructors (``mmpoolformer.
        LayerDecayOptimWrapperConstructor``, mmpretrain's) scale the lr by
        ``decay_rate ** (L + 2 - depth - 1)``, so the neck and heads keep
        the base lr and the stem gets the smallest.
        """
        num_depths = sum(self.depths) + 2
        position = self._param_position(param_name, prefix)
        if position is None:
            return num_depths - 1, num_depths
        stage, block = position
        if stage < 0:
            return 0, num_depths
        return sum(self.depths[:stage]) + block + 1, num_depths

    def get_stage_depth(self, param_name: str,
                        prefix: str = '') -> Tuple[int, int]:
        """:meth:`get_layer_depth` at the granularity of stages (for
        ``decay_type='stage_wise'``): the stem 0, all of stage ``i``
        (downsampling, position embedding, blocks) ``i + 1``, the output
        norms and everything outside the backbone 5. Returns
        ``(depth, 6)``."""
        position = self._param_position(param_name, prefix)
        depth = NUM_STAGES + 1 if position is None else position[0] + 1
        return depth, NUM_STAGES + 2

    # ---------------------------------------------------------------- forward
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__} expects NCHW input with '
                f'{self.in_channels} channels (in_channels='
                f'{self.in_channels}), got shape {tuple(x.shape)}; set '
                f'in_channels={x.shape[1] if x.dim() == 4 else "?"} or fix '
                f'the input.')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not isinstance(x, torch.fx.Proxy):  # symbolic shapes: no check
            self._check_input(x)
        with_cp = self.with_cp and torch.is_grad_enabled()
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, with_cp)
            if i in self.out_indices:
                # necks and heads get the default NCHW layout
                outs.append(getattr(self, f'norm{i}')(x).contiguous())
        return tuple(outs)
