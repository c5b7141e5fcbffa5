"""Convert a PoolFormer / MetaFormer-baseline / RIFormer checkpoint of any
recognised layout into an mmpoolformer checkpoint.

    python tools/model_converters/convert_checkpoint.py SRC DST \
        [--arch NAME | --config CONFIG] [--backbone-only] [--force] \
        [--progress | --no-progress]

SRC may be an official sail-sg/poolformer or sail-sg/metaformer checkpoint,
an mmpretrain, timm or mmpoolformer one (the layouts of
``mmpoolformer/checkpoint/convert.py``). The layout is detected from the
keys; the arch (``poolformer_s12``, ``poolformerv2_s12``,
``identityformer_s12``, ``randformer_s12``, ``convformer_s18``,
``caformer_s18``, ``riformer_s12``, ...) is inferred from the keys and shapes
when only one preset fits, else ``--arch`` names it. The converted weights
must load into that backbone with no key left over (output norms may be
absent: they are then trained from scratch).

DST is ``{'state_dict': {'backbone.<key>': tensor, 'head.<key>': tensor},
'meta': {...}}``. A classifier head of SRC is kept by default, under our
classifier configs' names (``head.fc.*``, and ``head.norm.*`` of the
MetaFormer baselines' MetaFormerClsHead), and must fit the head of our
classifier configs for that arch: ``mmpretrain.apis.init_model(config,
DST)``, ``tools/test.py config DST`` and ``load_from`` then run the released
classifier. Backbone configs (``init_cfg=dict(type='Pretrained',
checkpoint=DST)`` of a detector or segmentor) read only the ``backbone.``
keys, so the same DST serves both. ``--backbone-only`` drops the head;
``--with-head`` (the default) is still accepted and then requires SRC to have
a head. One line says what was kept or dropped.

SRC is never overwritten, nor an existing DST without ``--force``; DST
appears only complete (written under a temporary name and renamed; one left
by a killed run is removed by the next). A progress bar over the converted
keys shows when stdout is a terminal (``--progress`` / ``--no-progress``
force it on / off), so logs and tests stay clean.
"""
import argparse
import os.path as osp
import pickle
import sys

import torch
from mmengine.runner import CheckpointLoader
from mmengine.utils import track_iter_progress

import mmpoolformer
from mmpoolformer import models
from mmpoolformer.checkpoint import (
    FAMILIES,
    CheckpointMismatchError,
    check_compatible,
    convert_to_mmpoolformer,
    fit_shapes,
    infer_families,
    stage_layout,
    target_shapes,
    unwrap_checkpoint,
)
from mmpoolformer.checkpoint.convert import convert_head, head_classes, head_problem
from mmpoolformer.checkpoint.files import torch_file_problem
from mmpoolformer.fileio import atomic_output, check_output_path


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


def arch_names() -> dict:
    """``{'poolformer_s12': ('PoolFormer', 's12'), ...}``."""
    return {f'{family}_{preset}': (cls_name, preset)
            for family, cls_name in FAMILIES.items()
            for preset in getattr(models, cls_name).arch_zoo}


def fitting_archs(families, depths, dims) -> list:
    """Presets of ``families`` with these stage depths and widths."""
    return [f'{family}_{preset}' for family in families
            for preset, arch in getattr(models, FAMILIES[family]).arch_zoo.items()
            if list(arch['depths']) == depths and
            list(arch['embed_dims']) == dims]


def choose_arch(requested, fmt, state_dict, converted, meta) -> str:
    if requested:
        return requested.lower()
    depths, dims = stage_layout(converted)
    found = fitting_archs(infer_families(fmt, state_dict, converted),
                          depths, dims)
    hint = (meta or {}).get('arch')  # written by this converter
    if hint in found:
        return hint
    if len(found) == 1:
        return found[0]
    if found:
        raise ToolError(
            f'the {fmt}-format keys fit {" and ".join(found)} alike (they '
            f'differ in no weight); pass --arch NAME.')
    raise ToolError(
        f'cannot infer the arch of this {fmt}-format checkpoint (depths '
        f'{depths}, embed_dims {dims} match no preset of its family); pass '
        f'--arch NAME, one of {", ".join(sorted(arch_names()))}.')


def backbone_of_config(config: str):
    """The backbone a config builds (weights untouched), for layouts no
    preset describes, e.g. the hybrid ablations with position embeddings."""
    from mmengine.config import Config

    from mmpoolformer.registry import MODELS
    if not osp.isfile(config):
        raise ToolError(f'--config {config} is not a file.')
    backbone = Config.fromfile(config).get('model', {}).get('backbone')
    if not backbone or not str(backbone.get('type', '')).startswith('mmpoolformer.'):
        raise ToolError(f'--config {config} has no mmpoolformer backbone '
                        '(model.backbone.type mmpoolformer.<Family>).')
    # the scoped type ('mmpoolformer.X') builds ours whatever the default scope
    return MODELS.build(dict(backbone, init_cfg=None))


def check_paths(src: str, dst: str, force: bool) -> None:
    """Refuse before reading anything: the user's files stay untouched."""
    is_url = '://' in src
    if not is_url and not osp.isfile(src):
        raise ToolError(f'SRC {src} is not a file.')
    if not is_url and osp.realpath(src) == osp.realpath(dst):
        raise ToolError(f'DST is SRC ({src}); refusing to overwrite the '
                        f'source checkpoint, choose another DST.')
    check_output_path(dst, force, flag='DST')


def head_line(head: dict, keep: bool, explicit: bool) -> str:
    """What happened to the classifier head, for the one line printed."""
    if not head:
        return ('no classifier head in SRC: DST is a backbone checkpoint '
                '(a classifier config loading it keeps a random head)')
    classes = head_classes(head)
    count = f'{classes} classes' if classes else f'{len(head)} tensors'
    if keep:
        return (f'kept the classifier head ({count})' +
                ('' if explicit else '; --backbone-only drops it'))
    return (f'dropped the classifier head ({count}) as --backbone-only asks: '
            'DST is for backbone init_cfg, not for classifier configs')


def convert(src: str, dst: str, arch=None, progress: bool = False,
            with_head=None, config=None) -> dict:
    """``with_head``: True (--with-head) keeps the head and needs one, False
    (--backbone-only) drops it, None (the default) keeps one if SRC has it."""
    problem = None if '://' in src else torch_file_problem(src)
    if problem:
        raise ToolError(f'cannot read {src} as a checkpoint: {problem}. '
                        'Pass the .pth / .pth.tar file itself (a download '
                        'saved as a web page looks like this).')
    try:
        checkpoint = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    except (OSError, RuntimeError, EOFError, KeyError, ValueError,
            pickle.UnpicklingError) as err:
        raise ToolError(f'cannot read {src} as a checkpoint: '
                        f'{type(err).__name__}: {err}') from None
    try:
        state_dict = unwrap_checkpoint(checkpoint)
        fmt, converted = convert_to_mmpoolformer(state_dict)
    except (TypeError, ValueError) as err:
        raise ToolError(f'{src}: {err}') from None
    head = convert_head(fmt, state_dict)
    if with_head and not head:
        raise ToolError(f'--with-head: {src} ({fmt} format) has no classifier '
                        'head (keys such as "head.weight", "head.fc1.weight" '
                        'or "head.fc.weight"): it is a backbone checkpoint; '
                        'convert it without --with-head.')
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    kwargs = {}
    if config:
        model = backbone_of_config(config)
        cls_name, name = type(model).__name__, osp.splitext(osp.basename(config))[0]
    else:
        name = choose_arch(arch, fmt, state_dict, converted,
                           meta if isinstance(meta, dict) else None)
        cls_name, preset = arch_names()[name]
        kwargs = dict(arch=preset, init_cfg=None)
        if cls_name == 'RIFormer':  # a checkpoint without mixers is deployed
            kwargs['deploy'] = not any('.token_mixer.affine.' in k
                                       for k in converted)
        model = getattr(models, cls_name)(**kwargs)
    converted = fit_shapes(converted, target_shapes(model))
    try:
        check_compatible(model, converted, fmt, src)
    except CheckpointMismatchError as err:
        raise ToolError(f'cannot convert to {name}: {err}') from None
    model.load_state_dict(converted, strict=False)  # the proof it loads

    keep = bool(head) and with_head is not False
    if keep:
        problem = head_problem(head, cls_name, stage_layout(converted)[1][-1])
        if problem:
            raise ToolError(f'{src} ({fmt} format): {problem}. Pass '
                            '--backbone-only to convert the backbone alone.')

    print(f'{src}: {fmt} format -> {name} ({cls_name}); '
          f'{head_line(head, keep, bool(with_head))}; writing {dst}')
    out = {}
    items = [('backbone.' + k, v) for k, v in converted.items()]
    if keep:
        items += list(head.items())
    if progress:
        items = track_iter_progress(items, file=sys.stdout)
    for key, value in items:
        out[key] = value.contiguous()
    meta = dict(arch=name, type=cls_name, source=src, source_format=fmt,
                converter='tools/model_converters/convert_checkpoint.py',
                mmpoolformer_version=mmpoolformer.__version__)
    if 'deploy' in kwargs:  # which RIFormer structure DST is for
        meta['deploy'] = kwargs['deploy']
    meta['with_head'] = keep
    if keep and head_classes(head):
        meta['num_classes'] = head_classes(head)
    # an interrupted run leaves DST as it was (and a partial file that the
    # next run removes)
    with atomic_output(dst) as partial:
        torch.save(dict(state_dict=out, meta=meta), partial)
    return meta


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a PoolFormer / MetaFormer checkpoint (official, '
        'mmpretrain, timm or mmpoolformer layout) to an mmpoolformer '
        'checkpoint: the backbone, and the classifier head when SRC has one')
    parser.add_argument('src', help='source checkpoint (path or URL)')
    parser.add_argument('dst', help='output checkpoint path')
    parser.add_argument(
        '--arch', help='target backbone, e.g. poolformer_s12, '
        'poolformerv2_s12, convformer_s18, caformer_s18, riformer_s12 '
        '(default: inferred from the keys when only one fits)')
    parser.add_argument(
        '--config', help='convert into the backbone of this config instead of '
        'a preset (e.g. configs/ablations/poolformer_s12_pppa_in1k.py for the '
        'hybrid releases with a position embedding)')
    head = parser.add_mutually_exclusive_group()
    head.add_argument(
        '--backbone-only', dest='with_head', action='store_false',
        default=None,
        help='drop the classifier head of SRC (by default it is kept, for '
        'the classifier configs: init_model / tools/test.py / load_from; '
        'backbone configs ignore it either way)')
    head.add_argument(
        '--with-head', dest='with_head', action='store_true', default=None,
        help='the default; kept for compatibility: fails if SRC has no head')
    parser.add_argument('--force', action='store_true',
                        help='overwrite an existing DST')
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument(
        '--progress', dest='progress', action='store_true', default=None,
        help='progress bar over the keys (default: when stdout is a '
        'terminal)')
    progress.add_argument('--no-progress', dest='progress',
                          action='store_false', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Returns the ``meta`` written into DST."""
    args = parse_args(argv)
    try:
        check_paths(args.src, args.dst, args.force)
        if args.arch and args.arch.lower() not in arch_names():
            raise ToolError(f'unknown --arch {args.arch!r}; choose one of '
                            f'{", ".join(sorted(arch_names()))}.')
        progress = sys.stdout.isatty() if args.progress is None \
            else args.progress
        if args.arch and args.config:
            raise ToolError('give --arch or --config, not both.')
        return convert(args.src, args.dst, args.arch, progress,
                       args.with_head, args.config)
    except (ToolError, OSError) as exc:
        raise SystemExit(f'{osp.basename(__file__)}: error: {exc}') from None


if __name__ == '__main__':
    main()
