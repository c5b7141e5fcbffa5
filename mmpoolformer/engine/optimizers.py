"""Layer-wise learning-rate decay for fine-tuning a MetaFormer backbone.

Fine-tuning a pre-trained backbone goes better when its early layers, which
hold the most general features, move less than the late ones and the new
neck and heads. mmpretrain's ``LearningRateDecayOptimWrapperConstructor``
does this for classifiers only, mmdet's and mmseg's
``LearningRateDecayOptimizerConstructor`` for ConvNeXt and BEiT only (by
class name). :class:`LayerDecayOptimWrapperConstructor` works for any model
with a ``backbone`` that reports the depth of its parameters (every
mmpoolformer backbone, see :meth:`MetaFormer.get_layer_depth`), so the same
``optim_wrapper`` serves mmdet, mmseg and mmpretrain configs.
"""
import logging
from typing import Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from mmpoolformer.registry import OPTIM_WRAPPER_CONSTRUCTORS

#: decay_type -> the backbone method giving a parameter's depth
DECAY_TYPES = {'layer_wise': 'get_layer_depth', 'stage_wise': 'get_stage_depth'}
PARAMWISE_KEYS = ('decay_rate', 'decay_type', 'custom_keys', 'norm_decay_mult',
                  'bias_decay_mult', 'flat_decay_mult')
CUSTOM_KEY_OPTIONS = ('lr_mult', 'decay_mult')
NORMS = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def find_backbone(model: nn.Module, method: str) -> Tuple[nn.Module, str]:
    """The module whose parameters decay and the prefix of their names:
    ``model.backbone`` (detectors, segmentors, classifiers), or the model
    itself when it is a bare backbone."""
    model = getattr(model, 'module', model)  # (MM)DistributedDataParallel
    backbone, prefix = getattr(model, 'backbone', None), 'backbone.'
    if backbone is None:
        backbone, prefix = model, ''
    if not callable(getattr(backbone, method, None)):
        raise ValueError(
            f'LayerDecayOptimWrapperConstructor needs a model whose '
            f'`backbone` has {method}(param_name, prefix) (every mmpoolformer '
            f'backbone has get_layer_depth and get_stage_depth); '
            f'{type(backbone).__name__} has not.')
    return backbone, prefix


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Learning rates that decay from the head down to the stem.

    Each trainable parameter gets the depth its backbone reports
    (mmpretrain's protocol, ``get_layer_depth(name, 'backbone.')`` ->
    ``(depth, num_depths)``; the neck and heads are at the top,
    ``num_depths - 1``) and

        ``lr = base_lr * decay_rate ** (num_depths - 1 - depth)``

    the rule of mmpretrain's and mmseg's constructors: the neck, the heads
    and the backbone's output norms keep the base lr, the last block gets
    ``base_lr * decay_rate``, the stem the smallest. For a MetaFormer with
    ``L`` blocks ``num_depths`` is ``L + 2`` (``layer_wise``: one depth per
    block) or 6 (``stage_wise``: stem, four stages, top). Frozen parameters
    (``requires_grad=False``, e.g. ``frozen_stages``) are left out of the
    optimizer, as mmpretrain does.

    Weight decay is ``base_wd`` except on one-dimensional parameters
    (norms, biases, layer / residual scales), which get none by default, as
    mmseg's constructor and mmpretrain's layer-decay recipes have it. The parameters are grouped by
    (depth, lr, weight decay); the groups come head first, so the ``lr``
    that mmengine logs (the first group's) is the base lr, and each is
    logged in one line at INFO.

    ``paramwise_cfg`` keys:

    - ``decay_rate`` (float in (0, 1], required): the factor per depth.
    - ``decay_type`` (str): ``'layer_wise'`` (default) or ``'stage_wise'``.
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..., decay_mult=...)}``
      as in mmengine; the longest key in a parameter's full name (e.g.
      ``'backbone.stem'``, ``'decode_head'``) wins. ``lr_mult`` multiplies
      the decayed lr; ``decay_mult``, when given, sets the weight decay to
      ``base_wd * decay_mult`` instead of the rules below.
    - ``norm_decay_mult``, ``bias_decay_mult`` (float, optional): weight
      decay multipliers of norm-layer parameters and of other biases.
    - ``flat_decay_mult`` (float): that of the remaining 1-D parameters.
      Defaults to 0.

    Example::

        optim_wrapper = dict(
            constructor='mmpoolformer.LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'),
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
    """

    def __init__(self, optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        unknown = sorted(set(paramwise_cfg) - set(PARAMWISE_KEYS))
        if unknown:
            raise ValueError(
                f'paramwise_cfg of LayerDecayOptimWrapperConstructor has '
                f'unknown keys {unknown}; known: {list(PARAMWISE_KEYS)}. The '
                f'depths come from the backbone (no num_layers); over a base '
                f'config with another constructor, replace its paramwise_cfg '
                f'(_delete_=True).')
        rate = paramwise_cfg.get('decay_rate')
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or not 0 < rate <= 1:
            raise ValueError(
                f'paramwise_cfg["decay_rate"] must be a number in (0, 1] '
                f'(the lr factor per depth, e.g. 0.7), got {rate!r}.')
        decay_type = paramwise_cfg.setdefault('decay_type', 'layer_wise')
        if decay_type not in DECAY_TYPES:
            raise ValueError(
                f'paramwise_cfg["decay_type"] must be one of '
                f'{list(DECAY_TYPES)}, got {decay_type!r}.')
        for key, options in paramwise_cfg.get('custom_keys', {}).items():
            extra = sorted(set(options) - set(CUSTOM_KEY_OPTIONS))
            if extra:
                raise ValueError(
                    f'paramwise_cfg["custom_keys"][{key!r}] may set '
                    f'{list(CUSTOM_KEY_OPTIONS)}, got {extra}.')
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module,
                   **kwargs) -> None:
        """Append the parameter groups of ``module`` (the whole model) to
        ``params``."""
        decay_type = self.paramwise_cfg['decay_type']
        backbone, prefix = find_backbone(module, DECAY_TYPES[decay_type])
        depth_of = getattr(backbone, DECAY_TYPES[decay_type])
        rate = self.paramwise_cfg['decay_rate']
        groups: Dict[tuple, dict] = {}
        seen, frozen, top = set(), 0, None
        for module_name, owner in module.named_modules():
            for name, param in owner.named_parameters(recurse=False):
                if id(param) in seen:  # shared: the first owner decides
                    continue
                seen.add(id(param))
                if not param.requires_grad:
                    frozen += 1
                    continue
                full_name = f'{module_name}.{name}' if module_name else name
                depth, num_depths = depth_of(full_name, prefix)
                top = num_depths - 1
                custom = self._custom_options(full_name)
                scale = rate**(top - depth) * custom.get('lr_mult', 1.)
                weight_decay = self._weight_decay(name, param, owner, custom)
                group = groups.setdefault((depth, scale, weight_decay), dict(
                    params=[], lr=self.base_lr * scale, layer_id=depth,
                    lr_scale=scale, names=[]))
                if weight_decay is not None:
                    group['weight_decay'] = weight_decay
                group['params'].append(param)
                group['names'].append(full_name)
        # head first: mmengine logs the first group's lr as the run's lr
        ordered = [groups[key] for key in sorted(
            groups, key=lambda k: (-k[0], -k[1], -(k[2] or 0.)))]
        self._log_groups(ordered, top, frozen, backbone, prefix)
        for group in ordered:
            del group['names']  # for the log only: keep the state dict small
        params.extend(ordered)

    def _custom_options(self, full_name: str) -> dict:
        """The options of the longest ``custom_keys`` key in the name."""
        custom_keys = self.paramwise_cfg.get('custom_keys', {})
        for key in sorted(sorted(custom_keys), key=len, reverse=True):
            if key in full_name:
                return custom_keys[key]
        return {}

    def _weight_decay(self, name: str, param: nn.Parameter, owner: nn.Module,
                      custom: dict) -> Optional[float]:
        if self.base_wd is None:  # the optimizer takes none
            return None
        cfg = self.paramwise_cfg
        if 'decay_mult' in custom:
            mult = custom['decay_mult']
        elif isinstance(owner, NORMS) and cfg.get('norm_decay_mult') is not None:
            mult = cfg['norm_decay_mult']
        elif name == 'bias' and cfg.get('bias_decay_mult') is not None:
            mult = cfg['bias_decay_mult']
        elif param.ndim <= 1:
            mult = cfg.get('flat_decay_mult', 0.)
        else:
            mult = 1.
        return self.base_wd * mult

    def _log_groups(self, groups: List[dict], top: Optional[int], frozen: int,
                    backbone: nn.Module, prefix: str) -> None:
        cfg = self.paramwise_cfg
        lines = [f'Layer-wise lr decay ({cfg["decay_type"]}, decay_rate='
                 f'{cfg["decay_rate"]}) on {type(backbone).__name__}: '
                 f'{len(groups)} groups, lr = {self.base_lr:.3g} * lr_scale, '
                 f'depth {top} = neck and heads, {frozen} frozen parameters '
                 f'left out']
        for group in groups:
            weight_decay = group.get('weight_decay')
            wd = '-' if weight_decay is None else f'{weight_decay:.3g}'
            lines.append(
                f'  depth {group["layer_id"]:>2}  lr_scale='
                f'{group["lr_scale"]:<7.4g} weight_decay={wd:<5} '
                f'{len(group["params"]):>3} params: '
                f'{module_summary(group["names"], prefix)}')
        print_log('\n'.join(lines), logger='current', level=logging.INFO)


def module_summary(names: List[str], prefix: str, limit: int = 4) -> str:
    """The modules of a group's parameters, numbered ones as ranges:
    ``backbone.stages.2.downsample, backbone.stages.2.blocks.0-5,
    backbone.norm0-3, neck``."""
    modules: Dict[str, list] = {}
    for name in names:
        if not name.startswith(prefix):
            modules.setdefault(name.split('.')[0], [])  # neck, heads
            continue
        parts = name[len(prefix):].split('.')
        if parts[0] == 'stages' and len(parts) > 3:  # a block or downsampling
            parts = parts[:4] if parts[2] == 'blocks' else parts[:3]
        else:  # the stem, a position embedding, an output norm
            parts = parts[:3] if parts[0] == 'stages' else parts[:1]
        path = prefix + '.'.join(parts)
        base = path.rstrip('0123456789')
        if base != path and base.endswith(('blocks.', 'norm')):
            modules.setdefault(base, []).append(int(path[len(base):]))
        else:
            modules.setdefault(path, [])
    shown = []
    for path, numbers in modules.items():
        numbers = sorted(set(numbers))
        if len(numbers) > 1 and numbers[-1] - numbers[0] == len(numbers) - 1:
            path += f'{numbers[0]}-{numbers[-1]}'
        elif numbers:
            path += ','.join(map(str, numbers))
        shown.append(path)
    more = f' +{len(shown) - limit} more' if len(shown) > limit else ''
    return ', '.join(shown[:limit]) + more
