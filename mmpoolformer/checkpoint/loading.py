"""Load a backbone checkpoint of any recognised layout into a model, and say
when a classifier checkpoint comes without its head."""
import logging
import os
import re
from typing import Optional

import torch.nn as nn
from mmengine.logging import print_log

from .convert import convert_to_mmpoolformer, output_norm_keys, strip_prefix, unwrap_checkpoint
from .files import torch_file_problem
from .torch_load import load_checkpoint_file


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model."""


class CheckpointFileError(ValueError):
    """A file that is no (complete) PyTorch checkpoint."""


def check_checkpoint_file(filename: str) -> None:
    """Raise :class:`CheckpointFileError` naming ``filename`` if a local file
    is empty, cut short or no checkpoint at all (torch.load would say e.g.
    ``KeyError: 101`` for a text file), FileNotFoundError if it is missing."""
    if '://' in str(filename):
        return  # a URL: mmengine downloads and reports it
    if not os.path.exists(filename):
        raise FileNotFoundError(f'cannot load checkpoint {filename}: the file '
                                'does not exist')
    problem = torch_file_problem(str(filename))
    if problem:
        raise CheckpointFileError(f'cannot load checkpoint {filename}: '
                                  f'{problem}')


def target_shapes(model: nn.Module) -> dict:
    """``{key: shape}`` of the model's state dict, for
    :func:`~mmpoolformer.checkpoint.convert.fit_shapes`."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def load_backbone_checkpoint(model: nn.Module,
                             filename: str,
                             prefix: Optional[str] = None,
                             map_location: str = 'cpu',
                             logger: str = 'current') -> str:
    """Convert and load ``filename`` into ``model``; return the layout name.

    ``prefix`` (e.g. ``'backbone.'``) selects a sub-model of a detector or
    classifier checkpoint; a classifier head (``head.*``, which the
    converter keeps by default) is ignored with or without it. Output norms
    may be absent (ImageNet checkpoints carry only the last one, the official
    MetaFormer baselines none) and then keep their initialisation; any other
    missing, unexpected or mis-shaped key raises
    :class:`CheckpointMismatchError`.
    """
    check_checkpoint_file(filename)
    state_dict = unwrap_checkpoint(load_checkpoint_file(filename, map_location))
    # a whole classifier's head (the converter keeps it by default): no
    # backbone weight, not a mismatch
    head = [k for k in state_dict if k.startswith('head.')]
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
    fmt, converted = convert_to_mmpoolformer(state_dict, target_shapes(model))
    own = model.state_dict()
    # output norms of stages this model does not return have no home, nor
    # the stages past its last output (which it does not build)
    unused = [k for k in output_norm_keys(list(converted)) if k not in own]
    unbuilt = unbuilt_stage_keys(model, converted)
    converted = {k: v for k, v in converted.items()
                 if k not in unused and k not in unbuilt}
    check_compatible(model, converted, fmt, filename)
    model.load_state_dict(converted, strict=False)
    fresh = sorted(set(output_norm_keys(list(own))) - set(converted))
    stages = sorted({int(k.split('.')[1]) for k in unbuilt})
    print_log(
        f'Loaded {len(converted)} tensors of {fmt}-format checkpoint '
        f'{filename}' + (f'; output norms left as initialised: {fresh}'
                         if fresh else '') +
        (f'; skipped output norms of stages not returned: {unused}'
         if unused else '') +
        (f'; skipped the {len(unbuilt)} tensors of stages {stages}, which '
         f'the model does not build (past its last out_indices)'
         if unbuilt else '') +
        (f'; ignored the {len(head)} tensors of the classifier head'
         if head else ''), logger=logger)
    return fmt


def unbuilt_stage_keys(model: nn.Module, keys) -> list:
    """The keys of ``stages.<i>`` that ``model`` does not build (a backbone
    builds no stage past its last output)."""
    built = len(getattr(model, 'stages', ()))
    return [k for k in keys
            if (m := re.match(r'stages\.(\d+)\.', k)) and int(m[1]) >= built]


def describe_arch(model: nn.Module) -> str:
    """``PoolFormer arch 's24' (depths [...], embed_dims [...])``: the preset
    whose depths and widths the model has, or just its shape."""
    arch = getattr(model, 'arch_settings', None)
    if arch is None:
        return type(model).__name__
    preset = next((name for name, a in getattr(model, 'arch_zoo', {}).items()
                   if list(a['depths']) == list(arch['depths']) and
                   list(a['embed_dims']) == list(arch['embed_dims'])), None)
    deploy = ', deploy=True' if getattr(model, 'mixers_folded', False) \
        else ''
    return (f'{type(model).__name__}' +
            (f' arch {preset!r}' if preset else '') +
            f' (depths {arch["depths"]}, embed_dims {arch["embed_dims"]}'
            f'{deploy})')


def _riformer_hint(model, missing, unexpected, mis_shaped) -> str:
    """The keys of a training-time RIFormer and of a deployed one differ by
    the affine mixers only: say which way to build the model."""
    if mis_shaped or not hasattr(model, 'mixers_folded'):
        return ''

    def only_affine(keys):
        return bool(keys) and all('.token_mixer.affine.' in k for k in keys)

    if only_affine(missing) and not unexpected:
        return ('  Only the affine token mixers are missing, as in a deployed '
                'RIFormer checkpoint (mixers folded into norm1; PoolFormer '
                'v1 has the same keys): build the model with deploy=True, or '
                'load the training-time checkpoint and call '
                'switch_to_deploy() afterwards.')
    if only_affine(unexpected) and not missing:
        return ('  The checkpoint is a training-time RIFormer (with '
                'token_mixer.affine) but the model is deployed: build it '
                'with deploy=False, load, then call switch_to_deploy().')
    return ''


def check_compatible(model: nn.Module, state_dict: dict, fmt: str,
                     source: str = 'checkpoint') -> None:
    """Raise one error listing every key that keeps ``state_dict`` out."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict
               and k not in output_norm_keys([k])]
    unexpected = [k for k in state_dict if k not in own]
    mis_shaped = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(own[k].shape)}' for k, v in state_dict.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if not (missing or unexpected or mis_shaped):
        return
    lines = [f'{source} ({fmt} format) does not fit the expected '
             f'{describe_arch(model)}; is it a checkpoint of another arch '
             f'or family?']
    for title, keys in (('missing keys', missing),
                        ('unexpected keys', unexpected),
                        ('shape mismatches', mis_shaped)):
        if keys:
            shown = ', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '')
            lines.append(f'  {len(keys)} {title}: {shown}')
    hint = _riformer_hint(model, missing, unexpected, mis_shaped)
    raise CheckpointMismatchError('\n'.join(lines + ([hint] if hint else [])))


def missing_head_message(head: nn.Module, prefix: str) -> str:
    """What to say when a checkpoint loaded into a classifier has no
    ``prefix`` (e.g. ``head.``) keys: the head keeps its initialisation."""
    return (
        f'The checkpoint has no classifier head (no "{prefix}*" key), so '
        f'{type(head).__name__} keeps its random initialisation: its '
        f'predictions mean nothing until it is trained. A checkpoint written by '
        f'tools/model_converters/convert_checkpoint.py --backbone-only (or a '
        f'headless source) has none: convert the released classifier again '
        f'without --backbone-only (the converter keeps the head by default). '
        f'To fine-tune from backbone weights on purpose, load them with '
        f'model.backbone.init_cfg=dict(type="Pretrained", checkpoint=...) '
        f'instead.')


def warn_if_head_missing(head: nn.Module, state_dict: dict, prefix: str,
                         logger: str = 'current') -> bool:
    """For a classifier head's ``_load_from_state_dict``: warn (and return
    True) when ``state_dict`` holds none of the head's weights. mmengine's
    ``load_checkpoint`` (behind ``load_from``, ``tools/test.py`` and
    mmpretrain's ``init_model``) only lists missing keys then. mmengine and
    torch 2 pass each module the keys under its own prefix only, older
    torch the whole state dict: neither shows a head key here when the
    checkpoint has no head."""
    own = [prefix + key for key in head.state_dict()]
    if not own or any(key in state_dict for key in own):
        return False
    print_log(missing_head_message(head, prefix), logger=logger,
              level=logging.WARNING)
    return True
