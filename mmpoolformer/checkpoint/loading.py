"""Load a backbone checkpoint of any recognised layout into a model."""
from typing import Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import _load_checkpoint

from .convert import (convert_to_mmpoolformer, output_norm_keys,
                      strip_prefix, unwrap_checkpoint)


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model."""


def load_backbone_checkpoint(model: nn.Module,
                             filename: str,
                             prefix: Optional[str] = None,
                             map_location: str = 'cpu',
                             logger: str = 'current') -> str:
    """Convert and load ``filename`` into ``model``; return the layout name.

    ``prefix`` (e.g. ``'backbone.'``) selects a sub-model of a detector or
    classifier checkpoint. Output norms may be absent (ImageNet checkpoints
    carry only the last one) and then keep their initialisation; any other
    missing, unexpected or mis-shaped key raises
    :class:`CheckpointMismatchError`.
    """
    state_dict = unwrap_checkpoint(_load_checkpoint(filename, map_location))
    if prefix:
        state_dict = strip_prefix(state_dict, prefix)
    fmt, converted = convert_to_mmpoolformer(state_dict)
    own = model.state_dict()
    # output norms of stages this model does not return have no home
    unused = [k for k in output_norm_keys(list(converted)) if k not in own]
    converted = {k: v for k, v in converted.items() if k not in unused}
    check_compatible(model, converted, fmt, filename)
    model.load_state_dict(converted, strict=False)
    fresh = sorted(set(output_norm_keys(list(own))) - set(converted))
    print_log(
        f'Loaded {len(converted)} tensors of {fmt}-format checkpoint '
        f'{filename}' + (f'; output norms left as initialised: {fresh}'
                         if fresh else '') +
        (f'; skipped output norms of stages not returned: {unused}'
         if unused else ''), logger=logger)
    return fmt


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
    arch = getattr(model, 'arch_settings', None)
    lines = [f'{source} ({fmt} format) does not fit {type(model).__name__}'
             + (f' with depths {arch["depths"]}, embed_dims '
                f'{arch["embed_dims"]}' if arch else '')
             + '; is it a checkpoint of another arch?']
    for title, keys in (('missing keys', missing),
                        ('unexpected keys', unexpected),
                        ('shape mismatches', mis_shaped)):
        if keys:
            shown = ', '.join(keys[:8]) + (' ...' if len(keys) > 8 else '')
            lines.append(f'  {len(keys)} {title}: {shown}')
    raise CheckpointMismatchError('\n'.join(lines))
