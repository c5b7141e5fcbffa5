"""Datasets a run needs: are they there, and can they be read?

:func:`check_datasets` runs before the Runner is built: it resolves the
files and folders each dataset config names (``data_root`` joined with
``ann_file`` and ``data_prefix``, as mmengine's ``BaseDataset`` joins them)
so that a missing dataset stops the tool with one message and the expected
layout instead of a traceback from deep inside a loop.

:func:`dataset_errors` wraps the part of a run that builds datasets (the
Runner builds them lazily, when a loop starts): an error raised while a
dataset loads its annotations, e.g. pycocotools' ``JSONDecodeError`` on a
truncated file or mmdet's ``KeyError`` on a COCO json without
``categories``, or an empty dataset (a COCO json without ``images``, or
without ``annotations`` once images without objects are filtered out,
makes mmengine fail in ``np.concatenate``), becomes one message naming the
dataset and its file.
"""
import contextlib
import os
import os.path as osp
import traceback

from mmengine.dataset import BaseDataset

from .errors import DatasetError

#: the standard layouts of the datasets our configs train on
LAYOUTS = {
    'mmdet': ('COCO 2017', '''\
data/coco/
  annotations/instances_train2017.json
  annotations/instances_val2017.json
  train2017/   training images
  val2017/     validation images'''),
    'mmseg': ('ADE20K (ADEChallengeData2016)', '''\
data/ade/ADEChallengeData2016/
  images/training/         *.jpg
  images/validation/       *.jpg
  annotations/training/    *.png label maps
  annotations/validation/  *.png label maps'''),
    'mmpretrain': ('ImageNet-1k', '''\
data/imagenet/
  train/<class>/*.JPEG   one folder per class
  val/                   validation images
  meta/train.txt         "<file relative to train/> <label>" per line
  meta/val.txt           (optional for train/, required for a flat val/)'''),
}

#: the methods of mmengine's BaseDataset (and subclasses) that read the
#: annotations; an error raised inside them is the dataset's. ``__init__``
#: is left out on purpose: it also builds the pipeline, whose errors are not.
LOAD_STEPS = frozenset({'full_init', 'load_data_list', 'parse_data_info',
                        'filter_data', '_serialize_data', '_join_prefix'})


def _is_local(path):
    return '://' not in str(path)


def _join(root, path):
    """``data_root`` joined to a relative path, as BaseDataset does."""
    return osp.join(root, path) if root and not osp.isabs(path) else path


def leaf_datasets(cfg, key):
    """(key path, dataset config) of every dataset inside wrappers such as
    RepeatDataset, ClassBalancedDataset ('dataset') or ConcatDataset
    ('datasets')."""
    if isinstance(cfg, (list, tuple)):
        for i, item in enumerate(cfg):
            yield from leaf_datasets(item, f'{key}.{i}')
    elif isinstance(cfg, dict):  # a built dataset object has nothing to check
        inner = [k for k in ('dataset', 'datasets') if k in cfg]
        if not inner:
            yield key, cfg
        for k in inner:
            yield from leaf_datasets(cfg[k], f'{key}.{k}')


def required_paths(ds):
    """(path, config key) of what a dataset config reads: its data_root,
    ann_file and data_prefix folders. mmpretrain's ``split`` stands for
    ``data_prefix=split`` (its ``meta/<split>.txt`` is optional)."""
    root = ds.get('data_root') or ''
    prefix = ds.get('data_prefix') or ds.get('split') or ''
    if isinstance(prefix, str):
        prefix = {'img_path': prefix}
    paths = []
    if ds.get('ann_file'):
        paths.append((_join(root, ds['ann_file']), 'ann_file'))
    for name, value in prefix.items():
        if value:
            paths.append((_join(root, value), f'data_prefix.{name}'))
    return root, paths


def _evaluator_ann_files(cfg, key):
    """(path, key) of annotation files evaluators read (mmdet's CocoMetric)."""
    evaluator = cfg.get(key)
    if isinstance(evaluator, dict) and 'metrics' in evaluator:
        evaluator = evaluator['metrics']
    metrics = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    for i, metric in enumerate(metrics):
        if isinstance(metric, dict) and metric.get('ann_file'):
            suffix = f'.{i}' if isinstance(evaluator, (list, tuple)) else ''
            yield metric['ann_file'], f'{key}{suffix}.ann_file'


def check_datasets(cfg, loaders, evaluators=()):
    """Raise one :class:`DatasetError` listing every file or folder that the
    datasets of ``loaders`` (e.g. ``['train_dataloader']``) and the
    annotation files of ``evaluators`` need and that does not exist."""
    missing, seen, first_root_key = [], set(), None
    for loader_key in loaders:
        loader = cfg.get(loader_key)
        if not isinstance(loader, dict):
            continue
        for key, ds in leaf_datasets(loader.get('dataset'),
                                     f'{loader_key}.dataset'):
            root, paths = required_paths(ds)
            if root and _is_local(root) and not osp.isdir(root):
                paths = [(root, 'data_root')]  # its contents go with it
            for path, what in paths:
                if _is_local(path) and not osp.exists(path) \
                        and path not in seen:
                    seen.add(path)
                    is_dir = what != 'ann_file'
                    shown = path.rstrip('/') + ('/' if is_dir else '')
                    missing.append(f'  {shown}  ({key}.{what})')
                    first_root_key = first_root_key or f'{key}.data_root'
    for key in evaluators:
        for path, what in _evaluator_ann_files(cfg, key):
            if _is_local(path) and not osp.exists(path) and path not in seen:
                seen.add(path)
                missing.append(f'  {path}  ({what})')
    if not missing:
        return
    scope = cfg.get('default_scope')
    name, layout = LAYOUTS.get(scope, ('the dataset', ''))
    lines = [f'the {name} data this run needs is missing '
             f'(relative paths are from {os.getcwd()}):', *missing]
    if layout:
        lines += [f'Expected layout ({name}):',
                  *('  ' + line for line in layout.splitlines())]
    lines += [
        'Put (or symlink) the data there, or point the config at it, e.g. '
        f'--cfg-options {first_root_key or "<dataset key>.data_root"}=...',
        'To try the project without it, `make demo` trains and evaluates '
        'on generated synthetic shapes.']
    raise DatasetError('\n'.join(lines))


def _failing_dataset(tb):
    """The innermost dataset whose annotation loading raised, with the names
    of the traceback's functions from there on, or (None, ())."""
    frames = [frame for frame, _ in traceback.walk_tb(tb)]
    for i in range(len(frames) - 1, -1, -1):
        frame = frames[i]
        owner = frame.f_locals.get('self')
        if frame.f_code.co_name in LOAD_STEPS and isinstance(owner, BaseDataset):
            return owner, {f.f_code.co_name for f in frames[i:]}
    return None, ()


def _describe(ds, exc, steps):
    name = type(ds).__name__
    prefix = {k: v for k, v in (getattr(ds, 'data_prefix', None) or {}).items()
              if v}
    ann_file = getattr(ds, 'ann_file', '') or ''
    source = ann_file or ', '.join(prefix.values()) or \
        getattr(ds, 'data_root', '') or '?'
    empty = '_serialize_data' in steps and not getattr(ds, 'data_list', None)
    if empty:
        text = f'{name} found no usable samples in {source}'
    else:
        text = (f'{name} could not read {source}: '
                f'{type(exc).__name__}: {exc}')
    if str(ann_file).endswith('.json'):
        text += ('\nA COCO annotation file is a JSON object with "images", '
                 '"annotations" and "categories" lists')
        classes = tuple((getattr(ds, 'metainfo', None) or {}).get(
            'classes') or ())
        if empty and classes:  # the other way to lose every annotation
            shown = ', '.join(map(repr, classes[:6])) + (
                f', ... ({len(classes)} in all)' if len(classes) > 6 else '')
            text += (', and its category names must include the '
                     f'config\'s classes ({shown})')
        text += '.'
    elif prefix:
        text += f'\n(data_prefix {prefix})'
    return text


@contextlib.contextmanager
def dataset_errors():
    """Re-raise an error from a dataset's annotation loading as one
    :class:`DatasetError`; every other error passes unchanged."""
    try:
        yield
    except DatasetError:
        raise
    except Exception as exc:
        ds, steps = _failing_dataset(exc.__traceback__)
        if ds is None:
            raise
        raise DatasetError(_describe(ds, exc, steps)) from exc
