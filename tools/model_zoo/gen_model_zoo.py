"""The model zoo from ``model-index.yml``: its tables and measured metadata.

    python tools/model_zoo/gen_model_zoo.py              # write both tables
    python tools/model_zoo/gen_model_zoo.py --check      # 1 + diff if stale
    python tools/model_zoo/gen_model_zoo.py FILE [--summary] [--check]
    python tools/model_zoo/gen_model_zoo.py --print [--summary]
    python tools/model_zoo/gen_model_zoo.py --update-metadata [--only NAME ...]

``model-index.yml`` imports one ``metafile.yml`` per config folder
(OpenMMLab's schema: Collections with Paper and Code; Models with Name, In
Collection, Config, Metadata, Results, Weights). People maintain everything
in them except the measured metadata, which ``--update-metadata`` rewrites
for every listed config:

* ``Parameters``: every parameter of the model the config builds (backbone,
  neck and heads), ``Frozen Parameters`` those without gradient, if any;
* ``FLOPs``: multiply-accumulates (the papers' "MACs") counted by
  ``tools/analysis_tools/get_flops.py`` on ``FLOPs Input``, the papers'
  input of the task (224x224 ImageNet, or the classifier's test crop, e.g.
  384x384; 1280x800 COCO, 512x512 ADE20K), of the part named in
  ``FLOPs Counted``: the whole model for classifiers and segmentors,
  backbone+neck for detectors (the heads of a two-stage detector cost what
  its random-weight proposals make them cost), and the whole model of
  mmdet's Mask2Former, which has no neck (its pixel decoder and
  transformer decoder are its head).

Two renderings go between ``<!-- model-zoo:start -->`` and
``<!-- model-zoo:end -->`` of a markdown file: the full tables (one row per
config; ``docs/model_zoo.md`` by default) and a summary (one row per family
and task; ``README.md``). Without FILE both files are written (or checked);
links are relative to the folder of the file written. Results are the
numbers the papers or official releases publish (``Results Source``), never
ours.
"""
import argparse
import contextlib
import difflib
import importlib.util
import os
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / 'model-index.yml'
README = ROOT / 'README.md'
DOCS = ROOT / 'docs' / 'model_zoo.md'
START, END = '<!-- model-zoo:start -->', '<!-- model-zoo:end -->'
PROG = 'gen_model_zoo.py'


class ToolError(Exception):
    """A problem this tool reports as one message (``main`` exits 1)."""

# default_scope -> (input N x C x H x W, part of the model counted)
FLOPS_SETTINGS = {
    'mmpretrain': ((1, 3, 224, 224), 'whole model'),
    'mmdet': ((1, 3, 800, 1280), 'backbone+neck'),
    'mmseg': ((1, 3, 512, 512), 'whole model'),
}
MEASURED = ('Parameters', 'Frozen Parameters', 'FLOPs', 'FLOPs Input',
            'FLOPs Counted')
DATASET_TITLES = {
    'ImageNet-1k': 'ImageNet-1k classification',
    'ImageNet-21k': 'ImageNet-21k classification (pre-training)',
    'COCO': 'COCO object detection and instance segmentation',
    'COCO-panoptic': 'COCO panoptic segmentation',
    'ADE20K': 'ADE20K semantic segmentation',
}
METRIC_LABELS = {'Top 1 Accuracy': 'top-1', 'box AP': 'box AP',
                 'mask AP': 'mask AP', 'mIoU': 'mIoU'}


# ------------------------------------------------------------------ index
def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ToolError(f'cannot read {path}: {err}') from None


def load_index(index: Path = INDEX) -> 'OrderedDict[Path, dict]':
    """``{metafile path: its content}`` in the order ``Import`` lists them;
    checks that names are unique and that every Config exists."""
    data = _read_yaml(index) or {}
    metafiles = OrderedDict()
    for rel in data.get('Import') or []:
        path = index.parent / rel
        metafiles[path] = _read_yaml(path) or {}
    if not metafiles:
        raise ToolError(f'{index} imports no metafile')
    seen, collections = set(), set()
    for meta in metafiles.values():
        collections |= {c['Name'] for c in meta.get('Collections') or []}
    for path, meta in metafiles.items():
        for model in meta.get('Models') or []:
            name = model.get('Name')
            if name in seen:
                raise ToolError(f'{path}: model {name!r} is listed twice')
            seen.add(name)
            if not (ROOT / str(model.get('Config'))).is_file():
                raise ToolError(f'{path}: {name}: no config '
                                f'{model.get("Config")}')
            if model.get('In Collection') not in collections:
                raise ToolError(f'{path}: {name}: unknown collection '
                                f'{model.get("In Collection")!r}')
    return metafiles


def models_of(metafiles) -> list:
    return [m for meta in metafiles.values() for m in meta.get('Models') or []]


def dump_metafile(meta: dict, header: str = '') -> str:
    """The one YAML layout of our metafiles (``--update-metadata`` rewrites
    them): keys in the given order, block style, no line wrapping."""
    return header + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True,
                                   default_flow_style=False, width=10_000)


def _header(text: str) -> str:
    """The leading comment lines, which YAML itself would drop."""
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith('#'):
            break
        lines.append(line)
    return ''.join(lines)


# ---------------------------------------------------------------- measure
def _get_flops_tool():
    """tools/analysis_tools/get_flops.py, loaded by path (tools/ is not a
    package)."""
    path = ROOT / 'tools' / 'analysis_tools' / 'get_flops.py'
    spec = importlib.util.spec_from_file_location(
        'mmpoolformer_tools_get_flops', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _quiet():
    """Silence build-time warnings and mmengine's INFO/scope messages, which
    would break the progress bar's line."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('ERROR')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        logger.setLevel(level)


def flops_setting(cfg) -> tuple:
    """(input shape, part counted) of a config: its scope's, but a
    classifier evaluated at another crop (e.g. 384x384) at that crop, and
    the whole model of an mmdet model without a neck (Mask2Former)."""
    scope = cfg.get('default_scope')
    if scope not in FLOPS_SETTINGS:
        raise ToolError(f'{cfg.filename}: no FLOPs setting for default_scope '
                        f'{scope!r}')
    shape, part = FLOPS_SETTINGS[scope]
    if scope == 'mmpretrain':
        crops = [t.get('crop_size') for t in
                 cfg.get('test_dataloader', {}).get('dataset', {}).get(
                     'pipeline', []) if t.get('type') == 'CenterCrop']
        if crops and isinstance(crops[-1], int):
            shape = (*shape[:2], crops[-1], crops[-1])
    if scope == 'mmdet' and cfg.model.get('neck') is None:
        part = 'whole model'
    return shape, part


def measure(config, get_flops=None) -> dict:
    """The measured metadata of one config (see the module docstring), with
    get_flops.py's model building and counting, for the one part recorded
    (its ``get_flops()`` would also count the other two)."""
    import torch
    from mmengine.config import Config

    get_flops = get_flops or _get_flops_tool()
    config = Path(config)
    with _quiet():
        cfg = Config.fromfile(str(config if config.is_absolute()
                                  else ROOT / config))
    shape, part = flops_setting(cfg)
    torch.manual_seed(0)
    with _quiet(), torch.no_grad():
        model = get_flops.build_model(cfg)
        x = torch.rand(*shape)
        if part == 'whole model':
            samples = get_flops.data_samples_for(model, tuple(shape[2:]))
            row = get_flops.count(model, [model],
                                  get_flops.whole_model(model, samples), x)
        else:  # backbone+neck
            row = get_flops.count(model, [model.backbone, model.neck],
                                  model.extract_feat, x)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    out = {'Parameters': sum(p.numel() for p in model.parameters())}
    if frozen:
        out['Frozen Parameters'] = frozen
    out.update({'FLOPs': int(row['flops']),
                'FLOPs Input': 'x'.join(map(str, shape)),
                'FLOPs Counted': part})
    return out


def _show_progress(requested) -> bool:
    return sys.stdout.isatty() if requested is None else requested


def update_metadata(index: Path = INDEX, only=None, progress=None):
    """Re-measure the listed models (all by default) and rewrite their
    metafiles. Returns ``{name: (old metadata, new metadata)}`` of the models
    that changed and the metafiles rewritten."""
    from mmengine.utils import ProgressBar

    import mmpoolformer

    mmpoolformer.register_all_modules()
    metafiles = load_index(index)
    todo = [m for m in models_of(metafiles) if not only or m['Name'] in only]
    unknown = set(only or ()) - {m['Name'] for m in todo}
    if unknown:
        raise ToolError(f'no model named {", ".join(sorted(unknown))} in '
                        f'{index}')
    get_flops = _get_flops_tool()
    bar = ProgressBar(len(todo), file=sys.stdout) \
        if _show_progress(progress) else None
    changed = {}
    for model in todo:
        metadata = model.setdefault('Metadata', {})
        old = {k: metadata[k] for k in MEASURED if k in metadata}
        new = measure(model['Config'], get_flops)
        # the people's keys first, in their order, then the measured ones
        kept = {k: v for k, v in metadata.items() if k not in MEASURED}
        metadata.clear()
        metadata.update(kept)
        metadata.update(new)
        if old != new:
            changed[model['Name']] = (old, new)
        if bar:
            bar.update()
    if bar:
        bar.file.write('\n')
    written = []
    for path, meta in metafiles.items():
        text = path.read_text()
        new_text = dump_metafile(meta, _header(text))
        if new_text != text:
            path.write_text(new_text)
            written.append(path)
    return changed, written


def zoo_configs() -> list:
    """The configs of the model zoo: every ``configs/<folder>/**.py`` but
    ``configs/deploy/`` (mmdeploy's deploy configs, no models). Files
    directly in ``configs/`` are aliases of those (e.g.
    ``configs/retinanet_poolformer_s24_coco.py``), not entries of their own."""
    return sorted(p.relative_to(ROOT).as_posix()
                  for p in (ROOT / 'configs').glob('*/**/*.py')
                  if p.relative_to(ROOT / 'configs').parts[0] != 'deploy')


def unlisted_configs(index: Path = INDEX) -> list:
    """Configs of the model zoo (:func:`zoo_configs`) that no metafile
    lists."""
    listed = {m['Config'] for m in models_of(load_index(index))}
    return [c for c in zoo_configs() if c not in listed]


# ----------------------------------------------------------------- tables
def _millions(n) -> str:
    return f'{n / 1e6:.2f}'


def _link(url: str) -> str:
    return f'[{url.rstrip("/").rsplit("/", 1)[-1]}]({url})'


def _rel(path, base: Path) -> str:
    """``path`` (relative to the repository root, or absolute) as a link
    from ``base``, the folder of the markdown file it goes into."""
    return Path(os.path.relpath(ROOT / path, base)).as_posix()


def _schedule(meta: dict) -> str:
    if 'Epochs' in meta:
        return f'{meta["Epochs"]} ep'
    if 'Iterations' in meta:
        return f'{meta["Iterations"] // 1000}k it'
    return '-'


def _counted(meta: dict) -> str:
    shape = meta.get('FLOPs Input', '?').replace('x', '×')
    return f'{meta.get("FLOPs Counted", "?")} at {shape}'


def _training_data(model, collections) -> str:
    return model.get('Metadata', {}).get('Training Data') or \
        collections[model['In Collection']].get('Metadata', {}).get(
            'Training Data')


def _group(model, collections) -> tuple:
    return model['In Collection'], _training_data(model, collections)


def _collections(metafiles) -> dict:
    return {c['Name']: c for meta in metafiles.values()
            for c in meta.get('Collections') or []}


def _metrics(models: list) -> list:
    metrics = []
    for model in models:
        for result in model.get('Results') or []:
            for metric in result['Metrics']:
                if metric not in metrics:
                    metrics.append(metric)
    return metrics


def _values(model) -> dict:
    values = {}
    for result in model.get('Results') or []:
        values.update(result['Metrics'])
    return values


def _table(models: list, base: Path = ROOT) -> list:
    metrics = _metrics(models)
    extra = [('released weights', 'Weights')] * any('Weights' in m
                                                     for m in models)
    if any('Pretrained Backbone' in m.get('Metadata', {}) for m in models):
        extra.append(('backbone init', 'Pretrained Backbone'))
    header = ['config', 'architecture', 'schedule', 'params (M)', 'FLOPs (G)']
    header += [f'{METRIC_LABELS.get(m, m)} (published)' for m in metrics]
    header += [title for title, _ in extra]
    rows = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    # a table whose rows count different parts names each row's
    mixed = len({m.get('Metadata', {}).get('FLOPs Counted')
                 for m in models}) > 1
    for model in models:
        meta = model.get('Metadata', {})
        config = model['Config']
        params = meta.get('Parameters')
        params = '?' if params is None else _millions(params)
        if meta.get('Frozen Parameters'):
            params += f' ({_millions(meta["Frozen Parameters"])} frozen)'
        flops = meta.get('FLOPs')
        flops = '?' if flops is None else f'{flops / 1e9:.2f}'
        if mixed:
            flops += f' ({meta.get("FLOPs Counted", "?")})'
        cells = [f'[{Path(config).stem}]({_rel(config, base)})',
                 ', '.join(meta.get('Architecture') or []) or '-',
                 _schedule(meta), params, flops]
        values = _values(model)
        cells += [str(values[m]) if m in values else '-' for m in metrics]
        for _, key in extra:
            url = model.get(key) or meta.get(key)
            cells.append(_link(url) if url else '-')
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows


GENERATED = ('<!-- generated by tools/model_zoo/gen_model_zoo.py from '
             'model-index.yml: edit the metafiles, not this block -->')


def render(index: Path = INDEX, base: Path = ROOT) -> str:
    """The full tables (one row per config) that go between the markers
    (without them) of a file in the folder ``base``."""
    metafiles = load_index(index)
    collections = _collections(metafiles)
    groups = OrderedDict()
    for model in models_of(metafiles):
        groups.setdefault(_group(model, collections), []).append(model)
    out = [
        GENERATED,
        '',
        'Params: every parameter of the model the config builds (backbone, '
        'neck and heads; frozen ones named). FLOPs: multiply-accumulates '
        '(the papers\' "MACs") from `tools/analysis_tools/get_flops.py` '
        '(mmengine\'s `FlopAnalyzer`, fvcore\'s rules) of the part and input '
        'named under each table. Both are measured by '
        '`python tools/model_zoo/gen_model_zoo.py --update-metadata`. '
        '"published" columns are the numbers of the papers / official '
        'releases, not results of ours; "-" where none is published.',
    ]
    for (collection, data), models in groups.items():
        paper = collections[collection].get('Paper') or {}
        title = DATASET_TITLES.get(data, data)
        heading = f'**{collection}: {title}**'
        if paper.get('URL'):
            heading += f' ([paper]({paper["URL"]}))'
        out += ['', heading, '']
        counted = sorted({_counted(m.get('Metadata', {})) for m in models})
        notes = [f'FLOPs: {"; ".join(counted)}.']
        sources = list(OrderedDict.fromkeys(
            m['Results Source'] for m in models if m.get('Results Source')))
        if sources:
            notes.append('Published numbers: ' + ', '.join(
                f'<{s}>' for s in sources) + '.')
        out += [' '.join(notes), ''] + _table(models, base)
    return '\n'.join(out) + '\n'


# the summary: one row per family and task
TASKS = {'ImageNet-1k': 'classification', 'ImageNet-21k': 'classification',
         'COCO': 'detection', 'ADE20K': 'segmentation',
         'COCO-panoptic': 'panoptic segmentation'}
# collections summarised as one row per task (their models are variations of
# one network, not a family of sizes)
ONE_ROW_COLLECTIONS = {'PoolFormer Ablations': 'PoolFormer ablations'}


def _family_and_size(model) -> tuple:
    """('PoolFormer', 'S12') from the first architecture entry
    'PoolFormer-S12'."""
    first = (model.get('Metadata', {}).get('Architecture') or ['?'])[0]
    family, _, size = first.partition('-')
    return family, size


def _span(values, fmt) -> str:
    low, high = min(values), max(values)
    return fmt(low) if fmt(low) == fmt(high) else f'{fmt(low)}–{fmt(high)}'


def _summary_row(family: str, task: str, models: list, collections,
                 base: Path) -> str:
    data = list(OrderedDict.fromkeys(
        _training_data(m, collections) for m in models))
    heads = OrderedDict()  # the detectors / segmentors: the last entry
    for model in models:
        arch = model['Metadata'].get('Architecture') or []
        if TASKS.get(_training_data(model, collections)) != \
                'classification' and len(arch) > 1:
            heads[arch[-1]] = None
    task_cell = f'{task} ({", ".join(data)})'
    if heads:
        task_cell += ': ' + ', '.join(heads)
    sizes = ', '.join(OrderedDict.fromkeys(
        _family_and_size(m)[1] for m in models))
    trainable = [m['Metadata']['Parameters'] -
                 m['Metadata'].get('Frozen Parameters', 0) for m in models]
    flops = [m['Metadata']['FLOPs'] for m in models]
    published = []
    for metric in _metrics(models):
        values = [v[metric] for v in map(_values, models) if metric in v]
        published.append(f'{METRIC_LABELS.get(metric, metric)} '
                         f'{_span(values, str)}')
    folders = OrderedDict.fromkeys(Path(m['Config']).parent.as_posix()
                                   for m in models)
    configs = ', '.join(f'[{folder}/]({_rel(folder, base)}/)'
                        for folder in folders)
    cells = [family, task_cell, sizes, str(len(models)),
             _span(trainable, lambda n: f'{n / 1e6:.1f}'),
             _span(flops, lambda n: f'{n / 1e9:.1f}'),
             '; '.join(published) or '-', configs]
    return '| ' + ' | '.join(cells) + ' |'


def render_summary(index: Path = INDEX, base: Path = ROOT) -> str:
    """One row per family and task (sizes, ranges of params and FLOPs, of
    the published numbers, the config folders), for a file in ``base``."""
    metafiles = load_index(index)
    collections = _collections(metafiles)
    rows = OrderedDict()
    families = OrderedDict()
    for model in models_of(metafiles):
        family = ONE_ROW_COLLECTIONS.get(model['In Collection']) or \
            _family_and_size(model)[0]
        task = TASKS.get(_training_data(model, collections), 'other')
        families.setdefault(family, len(families))
        rows.setdefault((family, task), []).append(model)
    order = list(OrderedDict.fromkeys(TASKS.values())) + ['other']
    keys = sorted(rows, key=lambda k: (families[k[0]], order.index(k[1])))
    docs = _rel(DOCS, base)
    out = [
        GENERATED,
        '',
        f'One row per family and task; every config, its weights and the '
        f'FLOPs settings are in [the model zoo]({docs}). Params: trainable '
        f'parameters of the whole model (frozen teachers and random '
        f'matrices not counted); FLOPs: multiply-accumulates at the papers\' '
        f'input (224² or the test crop; 1280×800 backbone+neck, or the whole '
        f'model of Mask2Former; 512² whole model); published: the papers\' '
        f'numbers, not results of ours.',
        '',
        '| family | task | sizes | configs | params (M) | FLOPs (G) | '
        'published | folder |',
        '|---|---|---|---|---|---|---|---|',
    ]
    out += [_summary_row(family, task, rows[family, task], collections, base)
            for family, task in keys]
    return '\n'.join(out) + '\n'


def _marker_lines(text: str):
    """``(lines, start, end)`` when ``text`` has exactly one start and one
    end marker line, in that order (a marker quoted inside a line does not
    count), else None."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START]
    ends = [i for i, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        return None
    return lines, starts[0], ends[0]


def has_markers(text: str) -> bool:
    return _marker_lines(text) is not None


def splice(text: str, block: str, path) -> str:
    """``text`` with ``block`` between the marker lines."""
    found = _marker_lines(text)
    if found is None:
        raise ToolError(f'{path} needs one {START} line followed by one '
                        f'{END} line')
    lines, start, end = found
    return ''.join(lines[:start + 1]) + block + ''.join(lines[end:])


# -------------------------------------------------------------------- CLI
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Model-zoo tables from model-index.yml, and the measured '
        'params/FLOPs of its metafiles. Without FILE: the full tables in '
        'docs/model_zoo.md and the summary in README.md.')
    parser.add_argument(
        'file', nargs='?', default=None,
        help='one markdown file with the model-zoo markers (full tables, or '
        'the summary with --summary)')
    parser.add_argument('--index', default=str(INDEX),
                        help='model index (default model-index.yml)')
    parser.add_argument('--summary', action='store_true',
                        help='with FILE or --print: the summary (one row per '
                        'family and task) instead of the full tables')
    action = parser.add_mutually_exclusive_group()
    action.add_argument('--check', action='store_true',
                        help='only compare: exit 1 and print a diff when a '
                        'file is out of date')
    action.add_argument('--print', action='store_true',
                        help='print the tables (links relative to the '
                        'repository root) instead of writing a file')
    action.add_argument(
        '--update-metadata', action='store_true',
        help='re-measure params and FLOPs of every model (or --only) and '
        'rewrite the metafiles (minutes on a CPU)')
    parser.add_argument('--only', nargs='+', metavar='NAME',
                        help='with --update-metadata: these models only')
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument('--progress', dest='progress', action='store_true',
                          default=None,
                          help='progress bar even when stdout is no terminal')
    progress.add_argument('--no-progress', dest='progress',
                          action='store_false', help='no progress bar')
    args = parser.parse_args(argv)
    if args.only and not args.update_metadata:
        parser.error('--only goes with --update-metadata')
    if args.summary and not (args.file or args.print):
        parser.error('--summary goes with FILE or --print')
    return args


def _targets(args) -> list:
    """``[(path, render function)]`` of the files to write or check."""
    if args.file is None:
        return [(DOCS, render), (README, render_summary)]
    return [(Path(args.file), render_summary if args.summary else render)]


def _shown(path: Path) -> str:
    """``path`` relative to the working directory where it is below it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _write_or_check(path: Path, renderer, index: Path, check: bool,
                    hint: str = '') -> int:
    try:
        text = path.read_text()
    except OSError as err:
        raise ToolError(f'cannot read {path}: {err}') from None
    block = renderer(index, path.resolve().parent)
    new_text = splice(text, block, path)
    shown = _shown(path)
    if check:
        if new_text == text:
            print(f'{shown}: model-zoo tables up to date')
            return 0
        sys.stdout.writelines(difflib.unified_diff(
            text.splitlines(keepends=True), new_text.splitlines(keepends=True),
            f'{shown} (now)', f'{shown} (generated)'))
        print(f'{shown}: model-zoo tables out of date; run '
              f'python tools/model_zoo/gen_model_zoo.py{hint}')
        return 1
    if new_text != text:
        path.write_text(new_text)
        print(f'{shown}: model-zoo tables written')
    else:
        print(f'{shown}: model-zoo tables already up to date')
    return 0


def run(args) -> int:
    index = Path(args.index)
    if args.update_metadata:
        changed, written = update_metadata(index, args.only, args.progress)
        for name, (old, new) in changed.items():
            print(f'{name}: {old or "-"} -> {new}')
        print(f'{len(changed)} model(s) changed; rewritten: '
              f'{", ".join(str(p) for p in written) or "none"}')
        if changed:
            print('Now run this tool without --update-metadata for the '
                  'tables.')
        for config in unlisted_configs(index):
            print(f'warning: {config} is in no metafile')
        return 0
    if args.print:
        sys.stdout.write((render_summary if args.summary else render)(index))
        return 0
    status = 0
    hint = '' if args.file is None else \
        f' {args.file}' + ' --summary' * args.summary
    for path, renderer in _targets(args):
        status |= _write_or_check(path, renderer, index, args.check, hint)
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except ToolError as exc:
        raise SystemExit(f'{PROG}: error: {exc}') from None


if __name__ == '__main__':
    sys.exit(main())
