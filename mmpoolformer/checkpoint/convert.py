"""Pure key conversions from released MetaFormer layouts to mmpoolformer's.

Every function takes a flat ``{key: tensor}`` state dict and returns a new
one; nothing is loaded or written here, so the CLI converter
(``tools/model_converters/convert_checkpoint.py``), the ``Pretrained`` loader
and the tests share the same code.

Layouts, recognised by their keys (:func:`detect_format`):

* ``official`` (sail-sg/poolformer ``.pth.tar``, PoolFormer v1):
  ``patch_embed.proj``, ``network.{2i}.{j}`` blocks of stage ``i``,
  ``network.{2i-1}.proj`` downsampling into stage ``i``, ``layer_scale_1``,
  the final GroupNorm ``norm`` (on the last feature map, before pooling; it
  becomes ``norm3``) and ``head``. The hybrid models (metaformer_pppa /
  ppaa_s12_224) insert a ``network.{k}.pos_embed`` slot before their first
  attention stage (``stages.i.pos_embed`` here), shifting the later slots.
* ``official-metaformer`` (sail-sg/metaformer: PoolFormerV2, IdentityFormer,
  RandFormer, ConvFormer, CAFormer): ``downsample_layers.0.{conv,post_norm}``
  (the stem), ``downsample_layers.{1-3}.{pre_norm,conv}``, blocks
  ``stages.i.j.*`` with timm's block names, ``norm`` and ``head`` (a Linear
  or ``head.{fc1,norm,fc2}``). The model runs channels-last, so its
  ``pwconv*`` and ``mlp.fc*`` are Linear weights (O, I) where our NCHW
  stages have 1x1 convs (O, I, 1, 1): :func:`fit_shapes` reshapes them given
  the target model's shapes. ``norm`` is a LayerNorm on the pooled vector,
  not an output norm of ours, and is dropped with the head.
* ``mmpretrain``: the ``official`` names under ``backbone.`` with output
  norms ``norm{2i}`` (``norm6`` on ImageNet checkpoints) and ``head.fc``;
  ``RIFormer`` adds ``token_mixer.affine``, or in deploy mode has
  ``norm_reparam`` (the affine mixer folded into the first norm) instead of
  ``norm1`` and the mixer.
* ``timm``: ``stem.{conv,norm}``, ``stages.i.downsample.{norm,conv}``,
  ``stages.i.blocks.j``, ``layer_scale1.scale`` and ``head.{norm,fc}``.
  timm's ``head.norm`` acts on the pooled vector, not on the map, so it is
  not an output norm of ours.
* ``mmpoolformer``: timm's backbone names plus output norms ``norm{i}``,
  with or without ``backbone.``.

:func:`convert_to_mmpoolformer` keeps the backbone; :func:`convert_classifier`
keeps the classifier head too, under the names of our classifier configs
(:func:`convert_head` alone gives the head, :func:`head_problem` says whether
it fits the head of our classifier configs).

Key names cannot tell apart models whose only difference has no weights:
PoolFormerV2 / IdentityFormer (parameter-free mixers) and PoolFormer v1 / a
deployed RIFormer; :func:`infer_families` lists all candidates then.
"""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

StateDict = Dict[str, object]

FORMATS = ('mmpoolformer', 'timm', 'mmpretrain', 'official',
           'official-metaformer')

# arch-name prefix (``poolformer_s12``) -> registered backbone class
FAMILIES = dict(poolformer='PoolFormer', poolformerv2='PoolFormerV2',
                identityformer='IdentityFormer', randformer='RandFormer',
                convformer='ConvFormer', caformer='CAFormer',
                riformer='RIFormer')


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """Keep the keys under ``prefix`` without it (all keys if none has it)."""
    if not prefix or not any(k.startswith(prefix) for k in state_dict):
        return dict(state_dict)
    return {k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}


def detect_format(state_dict: StateDict) -> str:
    """Name the layout of a MetaFormer state dict by its keys."""
    prefixed = any(k.startswith('backbone.') for k in state_dict)
    keys = list(strip_prefix(state_dict, 'backbone.'))
    if any(k.startswith('network.') for k in keys):
        if prefixed or any(re.match(r'norm\d+\.', k) for k in keys):
            return 'mmpretrain'
        return 'official'
    # sail-sg/metaformer: blocks directly under the stage, no ``blocks.``
    if any(k.startswith('downsample_layers.') or
           re.match(r'stages\.\d+\.\d+\.', k) for k in keys):
        return 'official-metaformer'
    if any(re.match(r'stages\.\d+\.(blocks|downsample)\.', k) for k in keys):
        if not prefixed and any(k.startswith('head.') for k in keys) and \
                not any(re.match(r'norm\d+\.', k) for k in keys):
            return 'timm'
        return 'mmpoolformer'
    raise ValueError(
        'Unrecognised checkpoint layout: expected MetaFormer keys such as '
        '"network.0.0.norm1.weight" (official PoolFormer / mmpretrain), '
        '"stages.0.0.norm1.weight" with "downsample_layers.0.conv.weight" '
        '(official MetaFormer baselines) or "stages.0.blocks.0.norm1.weight" '
        f'(timm / mmpoolformer); its first keys are {keys[:5]}.')


def _v1_slots(keys) -> Dict[int, str]:
    """Our prefix for each ``network.{k}`` slot of the official / mmpretrain
    layout. Slots hold, in order, a stage's blocks (``network.k.j.*``), the
    downsampling into the next stage (``network.k.proj.*``) and, in the
    hybrid models (``metaformer_pppa/ppaa_s12_224``), a position embedding
    (``network.k.pos_embed``) before the stage it opens, which shifts every
    later slot by one."""
    kinds = {}
    for key in keys:
        m = re.match(r'network\.(\d+)\.(\d+\.)?', key)
        if m:
            kind = 'blocks' if m.group(2) else (
                'pos_embed' if key == f'network.{m.group(1)}.pos_embed'
                else 'downsample')
            kinds.setdefault(int(m.group(1)), kind)
    slots, stage = {}, 0
    for index in sorted(kinds):
        kind = kinds[index]
        if kind == 'blocks':
            slots[index] = f'stages.{stage}.blocks.'
            stage += 1
        elif kind == 'pos_embed':  # belongs to the stage that follows
            slots[index] = f'stages.{stage}.'
        else:
            slots[index] = f'stages.{stage}.downsample.'
    return slots


def _convert_v1_key(key: str, slots: Mapping[int, str]) -> str:
    """Rename one official / mmpretrain backbone key; '' marks keys to drop."""
    if key.startswith('head'):
        return ''
    key = key.replace('patch_embed.proj.', 'stem.conv.')
    key = re.sub(r'layer_scale_(\d)$', r'layer_scale\1.scale', key)
    # mmpretrain RIFormer in deploy mode: the norm that absorbed the mixer
    key = key.replace('.norm_reparam.', '.norm1.')
    m = re.match(r'network\.(\d+)\.(.*)$', key)
    if m:
        prefix, rest = slots[int(m.group(1))], m.group(2)
        if prefix.endswith('.downsample.'):
            rest = rest.replace('proj.', 'conv.', 1)
        return prefix + rest
    m = re.match(r'norm(\d+)\.(.*)$', key)  # mmpretrain output norms
    if m:
        return f'norm{int(m.group(1)) // 2}.{m.group(2)}'
    if key.startswith('norm.'):  # official final norm, on the stage-4 map
        return 'norm3.' + key[len('norm.'):]
    return key


def _rename(state_dict: StateDict, rename) -> StateDict:
    """Apply a key renaming; keys renamed to '' are dropped."""
    return {new: value for key, value in state_dict.items()
            if (new := rename(key))}


def convert_official_poolformer(state_dict: StateDict) -> StateDict:
    """sail-sg/poolformer v1 and its hybrid / ablation models ->
    mmpoolformer (``head`` dropped)."""
    slots = _v1_slots(state_dict)
    return _rename(state_dict, lambda key: _convert_v1_key(key, slots))


def convert_mmpretrain_poolformer(state_dict: StateDict) -> StateDict:
    """mmpretrain ``PoolFormer`` / ``RIFormer`` (``backbone.`` optional)."""
    return convert_official_poolformer(strip_prefix(state_dict, 'backbone.'))


def _convert_metaformer_key(key: str) -> str:
    """Rename one sail-sg/metaformer key; '' marks keys to drop."""
    if key.startswith(('head.', 'norm.')):  # classifier, pooled-vector norm
        return ''
    m = re.match(r'downsample_layers\.(\d+)\.(pre_norm|post_norm|conv)\.(.*)$',
                 key)
    if m:
        index, part, rest = int(m.group(1)), m.group(2), m.group(3)
        part = 'conv' if part == 'conv' else 'norm'
        where = 'stem' if index == 0 else f'stages.{index}.downsample'
        return f'{where}.{part}.{rest}'
    return re.sub(r'^stages\.(\d+)\.(\d+)\.', r'stages.\1.blocks.\2.', key)


def convert_official_metaformer(state_dict: StateDict) -> StateDict:
    """sail-sg/metaformer baselines -> mmpoolformer names (``head`` and the
    pooled-vector ``norm`` dropped). Linear weights keep their 2-D shape
    until :func:`fit_shapes` sees the target model."""
    return _rename(state_dict, _convert_metaformer_key)


def convert_timm_metaformer(state_dict: StateDict) -> StateDict:
    """timm ``metaformer.py`` models -> mmpoolformer (head dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith('head.')}


def convert_mmpoolformer(state_dict: StateDict) -> StateDict:
    """Our own layout, with or without ``backbone.``: backbone keys only."""
    return strip_prefix(state_dict, 'backbone.')


CONVERTERS = {
    'mmpoolformer': convert_mmpoolformer,
    'timm': convert_timm_metaformer,
    'mmpretrain': convert_mmpretrain_poolformer,
    'official': convert_official_poolformer,
    'official-metaformer': convert_official_metaformer,
}


def fit_shapes(state_dict: StateDict,
               target_shapes: Mapping[str, Sequence[int]]) -> StateDict:
    """Reshape Linear weights (O, I) to the 1x1 convs (O, I, 1, 1) that the
    target has under the same key, and nothing else: any other difference
    is a real mismatch and must still show as one."""
    out = {}
    for key, value in state_dict.items():
        target = tuple(target_shapes.get(key, ()))
        if (len(target) == 4 and target[2:] == (1, 1) and value.dim() == 2
                and tuple(value.shape) == target[:2]):
            value = value.reshape(target)
        out[key] = value
    return out


def convert_to_mmpoolformer(
        state_dict: StateDict,
        target_shapes: Optional[Mapping[str, Sequence[int]]] = None
) -> Tuple[str, StateDict]:
    """Detect the layout of ``state_dict`` and convert it to ours; with the
    target model's ``{key: shape}``, Linear weights become its 1x1 convs."""
    fmt = detect_format(state_dict)
    converted = CONVERTERS[fmt](state_dict)
    if target_shapes is not None:
        converted = fit_shapes(converted, target_shapes)
    return fmt, converted


# ---------------------------------------------------- whole classifiers
# head keys of each layout -> ours: ``head.fc`` is the classifier layer
# (mmpretrain's LinearClsHead, or MetaFormerClsHead's Linear / MlpHead) and
# ``head.norm`` the MetaFormer baselines' LayerNorm on the pooled vector
HEAD_RENAMES = {
    'official': [(r'^head\.(weight|bias)$', r'head.fc.\1')],
    'official-metaformer': [
        (r'^norm\.', 'head.norm.'),  # first: the MLP head has a norm too
        (r'^head\.(fc1|fc2|norm)\.', r'head.fc.\1.'),
        (r'^head\.(weight|bias)$', r'head.fc.\1')],
    'timm': [(r'^head\.(norm|fc)\.', r'head.\1.')],
    'mmpretrain': [(r'^(head|neck)\.', r'\1.')],
    'mmpoolformer': [(r'^(head|neck)\.', r'\1.')],
}


def _head_key(fmt: str, key: str) -> str:
    """Our classifier name of a head key of ``fmt``; '' if not a head key."""
    for pattern, repl in HEAD_RENAMES[fmt]:
        if re.match(pattern, key):
            return re.sub(pattern, repl, key)
    return ''


def convert_head(fmt: str, state_dict: StateDict) -> StateDict:
    """The classifier head of a whole-classifier ``state_dict`` of layout
    ``fmt`` under our classifier configs' names (``head.*``); {} if it has
    none. timm's PoolFormer v1 (no stem norm) moved the official final
    GroupNorm, which acts on the last map before pooling, into its head as
    ``head.norm``: it goes back to the backbone's ``norm3``, where our
    PoolFormer classifier configs (LinearClsHead) have it."""
    head = {new: v for k, v in state_dict.items()
            if (new := _head_key(fmt, k))}
    if fmt == 'timm' and 'head.norm.weight' in head and \
            not any(k.startswith('stem.norm.') for k in state_dict):
        for part in ('weight', 'bias'):
            if f'head.norm.{part}' in head:
                head[f'backbone.norm3.{part}'] = head.pop(f'head.norm.{part}')
    return head


def head_classes(head: StateDict) -> Optional[int]:
    """The number of classes of a head from :func:`convert_head`."""
    for key in ('head.fc.weight', 'head.fc.fc2.weight'):
        if key in head:
            return int(head[key].shape[0])
    return None


# the head of our classifier configs for each backbone class: mmpretrain's
# LinearClsHead after the backbone's norm3 (PoolFormer v1, RIFormer), or
# MetaFormerClsHead (pooled-vector LayerNorm, then a Linear or the MLP head)
CLASSIFIER_HEADS = dict(
    PoolFormer='linear', RIFormer='linear', PoolFormerV2='norm+linear',
    IdentityFormer='norm+linear', RandFormer='norm+linear',
    ConvFormer='norm+mlp', CAFormer='norm+mlp')


def classifier_head_shapes(cls_name: str, width: int, num_classes: int,
                           mlp_ratio: int = 4) -> Dict[str, Tuple[int, ...]]:
    """``{key: shape}`` of the head of our classifier configs for backbone
    class ``cls_name`` (last stage ``width`` wide); {} for an unknown class."""
    kind = CLASSIFIER_HEADS.get(cls_name)
    if kind is None:
        return {}
    shapes = {}
    if kind.startswith('norm+'):
        shapes.update({'head.norm.weight': (width, ),
                       'head.norm.bias': (width, )})
    if kind.endswith('+mlp'):
        hidden = mlp_ratio * width
        shapes.update({'head.fc.fc1.weight': (hidden, width),
                       'head.fc.fc1.bias': (hidden, ),
                       'head.fc.norm.weight': (hidden, ),
                       'head.fc.norm.bias': (hidden, ),
                       'head.fc.fc2.weight': (num_classes, hidden),
                       'head.fc.fc2.bias': (num_classes, )})
    else:
        shapes.update({'head.fc.weight': (num_classes, width),
                       'head.fc.bias': (num_classes, )})
    return shapes


def head_problem(head: StateDict, cls_name: str, width: int) -> str:
    """'' if the ``head.*`` keys of ``head`` (from :func:`convert_head`) are
    those of our classifier configs for ``cls_name``, else what differs."""
    num_classes = head_classes(head)
    expected = classifier_head_shapes(cls_name, width, num_classes or 0)
    if not expected:
        return ''
    got = {k: tuple(v.shape) for k, v in head.items()
           if k.startswith('head.')}
    if got == expected:
        return ''
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mis_shaped = [f'{k} {got[k]} vs {expected[k]}' for k in sorted(got)
                  if k in expected and got[k] != expected[k]]
    parts = [f'{title} {keys[:4]}' for title, keys in (
        ('missing', missing), ('unexpected', unexpected),
        ('mis-shaped', mis_shaped)) if keys]
    return (f'the classifier head does not fit the head of our {cls_name} '
            f'classifier configs ({CLASSIFIER_HEADS[cls_name]}): '
            + '; '.join(parts))


def convert_classifier(
        state_dict: StateDict,
        target_shapes: Optional[Mapping[str, Sequence[int]]] = None
) -> Tuple[str, StateDict]:
    """A whole classifier (backbone and head) of any recognised layout ->
    the state dict of our classifier configs (mmpretrain's
    ``ImageClassifier``): ``backbone.*`` and ``head.*``. ``target_shapes``
    (of that classifier's state dict) reshapes Linear weights into the
    backbone's 1x1 convs, as :func:`convert_to_mmpoolformer` does."""
    fmt, backbone = convert_to_mmpoolformer(state_dict)
    converted = {f'backbone.{k}': v for k, v in backbone.items()}
    head = convert_head(fmt, state_dict)
    if not head:
        raise ValueError(
            f'The {fmt}-format checkpoint has no classifier head (keys such '
            f'as "head.weight", "head.fc1.weight" or "head.fc.weight"); it '
            f'is a backbone checkpoint: load it with init_cfg=dict('
            f'type="Pretrained", checkpoint=...) of the backbone instead.')
    converted.update(head)
    if target_shapes is not None:
        converted = fit_shapes(converted, target_shapes)
    return fmt, converted


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


def stage_layout(converted: StateDict) -> Tuple[List[int], List[int]]:
    """Depths and widths of the four stages of a converted state dict (the
    MLP input width is the stage width in every family and layout)."""
    depths, dims = [0] * 4, [0] * 4
    for key, value in converted.items():
        m = re.match(r'stages\.(\d)\.blocks\.(\d+)\.mlp\.fc1\.weight$', key)
        if m and int(m.group(1)) < 4:
            i = int(m.group(1))
            depths[i] = max(depths[i], int(m.group(2)) + 1)
            dims[i] = int(value.shape[1])
    return depths, dims


def infer_families(fmt: str, state_dict: StateDict,
                   converted: StateDict) -> List[str]:
    """The families (keys of :data:`FAMILIES`) whose keys these are, from
    the token-mixer weights and the recipe (the baselines normalise in the
    stem); several when the difference has no weights, none when unknown."""
    mixers = {m.group(1) for m in (re.search(r'\.token_mixer\.(\w+)', k)
                                   for k in converted) if m}
    for weight, family in (('affine', 'riformer'), ('qkv', 'caformer'),
                           ('pwconv1', 'convformer'),
                           ('random_matrix', 'randformer')):
        if weight in mixers:
            return [family]
    if mixers:  # an ablation mixer (depthwise conv, spatial FC): no preset
        return []
    if any(k.startswith('stem.norm.') for k in converted):
        # timm has no IdentityFormer, so its parameter-free mixer is pooling
        return ['poolformerv2'] if fmt == 'timm' else [
            'poolformerv2', 'identityformer']
    if fmt == 'mmpretrain' and any('.norm_reparam.' in k for k in state_dict):
        return ['riformer']  # deployed: the mixer folded into the norm
    if fmt in ('official', 'timm', 'mmpretrain'):
        return ['poolformer']
    return ['poolformer', 'riformer']  # ours: a deployed RIFormer looks alike
