"""Pure key conversions from released PoolFormer layouts to mmpoolformer's.

Every function takes a flat ``{key: tensor}`` backbone state dict and returns
a new one; nothing is loaded or written here, so the CLI converter, the
``Pretrained`` loader and the tests share the same code.

Layouts (v1 PoolFormer):

* ``official`` (sail-sg/poolformer ``.pth.tar``): ``patch_embed.proj``,
  ``network.{2i}.{j}`` blocks of stage ``i``, ``network.{2i-1}.proj``
  downsampling into stage ``i``, ``layer_scale_1``, the final GroupNorm
  ``norm`` (on the last feature map, before pooling) and ``head``.
* ``mmpretrain``: the official names under ``backbone.`` with output norms
  ``norm{2i}`` (``norm6`` on ImageNet checkpoints) and ``head.fc``.
* ``timm``: ``stem.conv``, ``stages.i.downsample.conv``, ``stages.i.blocks.j``,
  ``layer_scale1.scale`` and ``head.{norm,fc}``. timm's ``head.norm`` acts on
  the pooled vector, not on the map, so it is not an output norm of ours.
* ``mmpoolformer``: timm's backbone names plus output norms ``norm{i}``.
"""
import re
from typing import Dict, List, Tuple

StateDict = Dict[str, object]

FORMATS = ('mmpoolformer', 'timm', 'mmpretrain', 'official')


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep the keys under ``prefix`` without it (all keys if none has it)."""
    if not prefix or not any(k.startswith(prefix) for k in state_dict):
        return dict(state_dict)
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}


def detect_format(state_dict: StateDict) -> str:
    """Name the layout of a PoolFormer state dict by its keys."""
    prefixed = any(k.startswith('backbone.') for k in state_dict)
    keys = list(strip_prefix(state_dict, 'backbone.'))
    if any(k.startswith('network.') for k in keys):
        if prefixed or any(re.match(r'norm\d+\.', k) for k in keys):
            return 'mmpretrain'
        return 'official'
    if any(k.startswith('stages.') for k in keys):
        if not prefixed and any(k.startswith('head.') for k in keys):
            return 'timm'
        return 'mmpoolformer'
    raise ValueError(
        'Unrecognised checkpoint layout: expected PoolFormer keys such as '
        '"network.0.0.norm1.weight" (official / mmpretrain) or '
        '"stages.0.blocks.0.norm1.weight" (timm / mmpoolformer); its first '
        f'keys are {keys[:5]}.')


def _convert_v1_key(key: str) -> str:
    """Rename one official / mmpretrain key; '' marks keys to drop."""
    if key.startswith('head'):
        return ''
    key = key.replace('patch_embed.proj.', 'stem.conv.')
    key = re.sub(r'layer_scale_(\d)$', r'layer_scale\1.scale', key)
    # mmpretrain RIFormer in deploy mode: the norm that absorbed the mixer
    key = key.replace('.norm_reparam.', '.norm1.')
    m = re.match(r'network\.(\d+)\.(.*)$', key)
    if m:
        index, rest = int(m.group(1)), m.group(2)
        if index % 2 == 0:  # even slots hold the blocks of stage index/2
            return f'stages.{index // 2}.blocks.{rest}'
        # odd slots hold the downsampling that opens stage (index+1)/2
        return f'stages.{(index + 1) // 2}.downsample.' + rest.replace(
            'proj.', 'conv.', 1)
    m = re.match(r'norm(\d+)\.(.*)$', key)  # mmpretrain output norms
    if m:
        return f'norm{int(m.group(1)) // 2}.{m.group(2)}'
    if key.startswith('norm.'):  # official final norm, on the stage-4 map
        return 'norm3.' + key[len('norm.'):]
    return key


def convert_official_poolformer(state_dict: StateDict) -> StateDict:
    """sail-sg/poolformer v1 -> mmpoolformer (``head`` dropped)."""
    out = {}
    for key, value in state_dict.items():
        new_key = _convert_v1_key(key)
        if new_key:
            out[new_key] = value
    return out


def convert_mmpretrain_poolformer(state_dict: StateDict) -> StateDict:
    """mmpretrain ``PoolFormer`` (``backbone.`` optional) -> mmpoolformer."""
    return convert_official_poolformer(strip_prefix(state_dict, 'backbone.'))


def convert_timm_poolformer(state_dict: StateDict) -> StateDict:
    """timm ``poolformer_*`` -> mmpoolformer (classifier head dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith('head.')}


def convert_mmpoolformer(state_dict: StateDict) -> StateDict:
    """Our own layout, with or without ``backbone.``: backbone keys only."""
    return strip_prefix(state_dict, 'backbone.')


CONVERTERS = {
    'mmpoolformer': convert_mmpoolformer,
    'timm': convert_timm_poolformer,
    'mmpretrain': convert_mmpretrain_poolformer,
    'official': convert_official_poolformer,
}


def convert_to_mmpoolformer(state_dict: StateDict) -> Tuple[str, StateDict]:
    """Detect the layout of ``state_dict`` and convert it to ours."""
    fmt = detect_format(state_dict)
    return fmt, CONVERTERS[fmt](state_dict)


def unwrap_checkpoint(checkpoint) -> StateDict:
    """The state dict inside a checkpoint object (``state_dict``/``model``)."""
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    if not isinstance(checkpoint, dict):
        raise TypeError(f'A checkpoint must be a dict, got {type(checkpoint)}.')
    return checkpoint


def output_norm_keys(keys: List[str]) -> List[str]:
    """Keys of output norms, which downstream heads may train from scratch."""
    return [k for k in keys if re.match(r'norm\d+\.', k)]
