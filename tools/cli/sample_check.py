"""Samples a run will read: are the labels right and the images readable?

:func:`check_samples` runs after :func:`~.data_check.check_datasets` (the
files and folders exist) and before the Runner, so that a problem stops the
tool before the first iteration rather than hours into training:

* COCO json (mmdet): the config's class names must be category names of the
  file, exactly. mmdet silently keeps only the names that match and numbers
  the labels by them, so ``square`` against a category ``Square`` drops every
  square and trains circles as "square". Near matches (case, spelling) are
  named in the error. Boxes with a width or height <= 0 and annotations of
  category ids the file does not define are counted and reported (mmdet
  drops them without a word).
* every image (and segmentation map) the datasets list: missing, empty, or
  not an image (a fast check of the file's header and, for PNG / JPEG, of
  its end marker, which a truncated file lacks, read by a thread pool);
  ``decode=True`` decodes every file in full instead. A training list of
  more than :data:`FULL_CHECK_UP_TO` files (ImageNet's) is looked up in its
  folders' listings and a random sample of :data:`SAMPLE` headers is read:
  the training loader skips any other unreadable image with a warning.
* a dataset without a single usable sample is refused.

Each problem is one paragraph naming the files (the first few, and how many)
and the fix; they are raised together as one :class:`DatasetError`.
"""
import difflib
import functools
import json
import os
import os.path as osp
import random
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from .data_check import _is_local, _join, leaf_datasets
from .errors import DatasetError

#: how many file names a message shows before "and N more"
SHOWN = 5
#: file signatures of the formats OpenCV / PIL read in these datasets
SIGNATURES = (b'\x89PNG\r\n\x1a\n', b'\xff\xd8\xff', b'BM', b'GIF8',
              b'II*\x00', b'MM\x00*')
PNG_END = b'IEND\xaeB`\x82'
JPEG_END = b'\xff\xd9'
SKIP_HINT = ('(--skip-data-check starts the run anyway; unreadable training '
             'images are then skipped with a warning)')


def _listing(paths, total=None):
    total = len(paths) if total is None else total
    shown = [f'    {p}' for p in list(paths)[:SHOWN]]
    if total > SHOWN:
        shown.append(f'    ... and {total - SHOWN} more')
    return shown


def image_problem(path, decode=False):
    """Why ``path`` is not a readable image, or None."""
    if not osp.exists(path):
        return 'missing'
    size = osp.getsize(path)
    if size == 0:
        return 'empty'
    if decode:
        import cv2
        import numpy as np
        data = np.fromfile(path, np.uint8)
        ok = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None
        return None if ok else 'undecodable'
    with open(path, 'rb') as f:
        head = f.read(16)
        f.seek(max(0, size - 1024))
        tail = f.read()
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return None
    if not head.startswith(SIGNATURES):
        return 'undecodable'
    if head.startswith(SIGNATURES[0]) and PNG_END not in tail[-32:]:
        return 'truncated'
    if head.startswith(SIGNATURES[1]) and JPEG_END not in tail:
        return 'truncated'
    return None


def _progress(total, progress):
    if progress is None:
        progress = sys.stdout.isatty()
    return ProgressBar(total, file=sys.stdout) if progress and total else None


#: lists longer than this get the sampled check by default (ImageNet's
#: 1.28 M training images); evaluation sets (ImageNet val 50 k, COCO val
#: 5 k, ADE20K val 2 k) and smaller training sets are checked file by file
FULL_CHECK_UP_TO = 100_000
#: files whose headers the sampled check reads
SAMPLE = 5_000
#: threads reading headers: the reads wait on the disk, not the CPU
THREADS = 16


def _absent(paths):
    """The paths that are not in their folder's listing: one ``listdir``
    per folder instead of one ``stat`` per file."""
    listings, absent = {}, []
    for path in paths:
        folder, name = osp.split(path)
        names = listings.get(folder)
        if names is None:
            try:
                names = listings[folder] = frozenset(os.listdir(folder or '.'))
            except OSError:  # no such folder (or unreadable)
                names = listings[folder] = frozenset()
        if name not in names:
            absent.append(path)
    return absent


def check_images(paths, decode=False, progress=None, sample=None):
    """``{problem: [paths]}`` of the unreadable files of ``paths``.

    Every file's header and end are read (``decode``: every file is decoded)
    unless ``sample`` is given: then every path is looked up in its
    folder's listing and ``sample`` files chosen at random (seeded by the
    list) are read; the others are checked by the loader as it reads them."""
    found = {}
    if sample is not None and not decode and len(paths) > sample:
        absent = _absent(paths)
        if absent:
            found['missing'] = absent
        gone = set(absent)
        rest = [p for p in paths if p not in gone]
        paths = random.Random(len(paths)).sample(rest, min(sample, len(rest)))
    bar = _progress(len(paths), progress)
    with ThreadPoolExecutor(THREADS) as pool:
        for path, problem in zip(paths, pool.map(
                functools.partial(image_problem, decode=decode), paths)):
            if problem:
                found.setdefault(problem, []).append(path)
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.file.write('\n')
    return found


IMAGE_FIXES = {
    'missing': 'are listed by the annotations but do not exist',
    'empty': 'are empty (0 bytes)',
    'truncated': 'are cut short (no end marker: an interrupted copy?)',
    'undecodable': 'are not images the decoder can read',
}


def image_messages(key, problems):
    lines = []
    for problem, paths in problems.items():
        lines += [f'{len(paths)} image(s) of {key} {IMAGE_FIXES[problem]}:',
                  *_listing(paths),
                  '  Restore them from the original data, or remove them '
                  'from the annotations. ' + SKIP_HINT]
    return lines


# --------------------------------------------------------------- COCO json
def _config_classes(ds, scope):
    classes = (ds.get('metainfo') or {}).get('classes')
    if classes:
        return tuple(classes)
    try:
        import importlib
        registry = importlib.import_module(f'{scope}.registry').DATASETS
        return tuple(registry.get(ds.get('type')).METAINFO['classes'])
    except Exception:  # an unknown dataset type: nothing to compare
        return ()


def _near(name, names):
    same_case = [n for n in names if n.lower() == name.lower()]
    return same_case or difflib.get_close_matches(name, names, n=2,
                                                  cutoff=0.75)


def class_name_messages(key, ann_file, classes, categories):
    """The config's class names that are not category names of the json."""
    names = [c.get('name') for c in categories]
    absent = [c for c in classes if c not in names]
    if not absent:
        return []
    near = {c: _near(c, names) for c in absent}
    lines = [f'{len(absent)} class name(s) of {key}.metainfo.classes are no '
             f'category of {ann_file}: mmdet would drop their annotations '
             'and give the remaining classes wrong labels.']
    for name in absent[:SHOWN]:
        hint = (' (the file has ' + ' / '.join(map(repr, near[name])) + ')'
                if near[name] else '')
        lines.append(f'    {name!r}{hint}')
    if len(absent) > SHOWN:
        lines.append(f'    ... and {len(absent) - SHOWN} more')
    shown = ', '.join(map(repr, names[:12])) + (
        ', ...' if len(names) > 12 else '')
    lines.append(f'  Its categories are {shown}. Make the config\'s '
                 'classes equal to the category names, e.g. --cfg-options '
                 f'{key}.metainfo.classes="({",".join(map(repr, names[:3]))}'
                 f'{",..." if len(names) > 3 else ""})".')
    return lines


def _read_coco(ann_file):
    try:
        with open(ann_file) as f:
            content = json.load(f)
    except (OSError, ValueError):
        return None  # reported by the dataset itself, with its file
    keys = ('images', 'annotations', 'categories')
    if not isinstance(content, dict) or any(
            not isinstance(content.get(k), list) for k in keys):
        return None
    return content


def check_coco(key, ds, scope, filter_empty):
    """``(error lines, warning lines, image paths)`` of a COCO dataset
    config; ``None`` when its json is not a complete COCO file (the dataset
    reports that itself when it loads)."""
    root = ds.get('data_root') or ''
    ann_file = _join(root, ds['ann_file'])
    content = _read_coco(ann_file)
    if content is None:
        return None
    prefix = ds.get('data_prefix') or {}
    img_dir = _join(root, prefix.get('img', '') if isinstance(prefix, dict)
                    else prefix)
    errors, warnings = [], []
    classes = _config_classes(ds, scope)
    categories = content['categories']
    errors += class_name_messages(key, ann_file, classes, categories)

    known_ids = {c.get('id') for c in categories}
    used_ids = {c.get('id') for c in categories if c.get('name') in classes}
    files = {img.get('id'): osp.join(img_dir, str(img.get('file_name')))
             for img in content['images']}
    unknown, degenerate, usable = Counter(), Counter(), set()
    for ann in content['annotations']:
        image_id = ann.get('image_id')
        image = files.get(image_id, f'image id {image_id}')
        if ann.get('category_id') not in known_ids:
            unknown[image] += 1
            continue
        x, y, w, h = (list(ann.get('bbox') or []) + [0] * 4)[:4]
        if not (w > 0 and h > 0):
            degenerate[image] += 1
            continue
        if ann.get('category_id') in used_ids:
            usable.add(ann.get('image_id'))
    if unknown:
        warnings += [f'{sum(unknown.values())} annotation(s) in {ann_file} '
                     'name a category_id its "categories" do not define; '
                     'mmdet ignores them. In:', *_listing(unknown)]
    if degenerate:
        warnings += [f'{sum(degenerate.values())} box(es) in {ann_file} '
                     'have a width or height <= 0; mmdet ignores them. In:',
                     *_listing(degenerate)]
    if not files or (filter_empty and not usable and not errors):
        what = 'no images' if not files else (
            'no image with a usable box of the config\'s classes')
        errors.append(f'{ds.get("type", "the dataset")} found no usable '
                      f'samples in {ann_file} ({what}): {key} has nothing '
                      'to train on. Check the annotation file.')
    return errors, warnings, sorted(set(files.values()))


# ------------------------------------------------------------ other layouts
def dataset_files(ds, scope):
    """Image (and segmentation map) paths of a built dataset."""
    import importlib

    from mmengine.registry import DefaultScope

    from .data_check import dataset_errors
    registry = importlib.import_module(f'{scope}.registry').DATASETS
    # the pipeline's transforms resolve in the default scope; the list is
    # read as it is (not serialised: a million entries in seconds)
    with DefaultScope.overwrite_default_scope(scope), dataset_errors():
        dataset = registry.build(dict(ds, lazy_init=False,
                                      serialize_data=False))
    infos = getattr(dataset, 'data_list', None)
    if not isinstance(infos, list) or len(infos) != len(dataset):
        infos = (dataset.get_data_info(i) for i in range(len(dataset)))
    return type(dataset).__name__, [
        info[k] for info in infos for k in ('img_path', 'seg_map_path')
        if isinstance(info.get(k), str)]


def check_samples(cfg, loaders, decode=False, progress=None):
    """Raise one :class:`DatasetError` for every problem of the samples the
    datasets of ``loaders`` read; log the ones a run survives and return
    their lines."""
    scope = cfg.get('default_scope')
    errors, warnings = [], []
    for loader_key in loaders:
        loader = cfg.get(loader_key)
        if not isinstance(loader, dict):
            continue
        filter_empty = loader_key == 'train_dataloader'
        for key, ds in leaf_datasets(loader.get('dataset'),
                                     f'{loader_key}.dataset'):
            if not _is_local(ds.get('data_root') or ''):
                continue
            ann_file = str(ds.get('ann_file') or '')
            found = None
            if scope == 'mmdet' and ann_file.endswith('.json'):
                found = check_coco(key, ds, scope, filter_empty and (
                    ds.get('filter_cfg') or {}).get('filter_empty_gt', False))
            if found is None:
                name, paths = dataset_files(ds, scope)
                source = (f'in {_join(ds.get("data_root") or "", ann_file)} '
                          if ann_file else '')
                found = ([] if paths else [
                    f'{name} found no usable samples {source}for {key}: '
                    'check its data_root, data_prefix and ann_file.'], [],
                    paths)
            more_errors, more_warnings, paths = found
            errors += more_errors
            warnings += more_warnings
            paths = sorted(set(paths))
            # training skips unreadable images as it meets them; a long
            # list is sampled (evaluation reads every image: all checked)
            sample = SAMPLE if loader_key == 'train_dataloader' and \
                not decode and len(paths) > FULL_CHECK_UP_TO else None
            errors += image_messages(key, check_images(
                paths, decode, progress, sample))
            if sample is not None:
                print_log(f'{key}: all {len(paths)} images are in their '
                          f'folders; the headers of {sample} chosen at '
                          'random were read, the loader skips any other '
                          'unreadable image with a warning '
                          '(--full-data-check decodes every image first)',
                          logger='current')
    for line in warnings:
        print_log(line, logger='current', level=30)
    if errors:
        raise DatasetError('the data has problems; nothing was trained or '
                           'tested:\n' + '\n'.join(errors))
    return warnings
