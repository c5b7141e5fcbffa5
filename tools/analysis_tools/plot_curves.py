"""Plot the scalars of one or more mmengine runs into a PNG: one panel per
key, the runs overlaid.

    python tools/analysis_tools/plot_curves.py work_dirs/poolformer_s12_in1k \
        [work_dirs/other_run/20250101_120000 ...] [--keys loss lr ...] \
        [--x iter|epoch] [--legend s12 other] [--out curves.png] [--force]

A run is a Runner log folder ``<work_dir>/<timestamp>/`` holding
``vis_data/scalars.json`` (what mmengine's LocalVisBackend writes, the
default visualizer of every config here), or the work dir itself: then its
latest timestamp folder with training scalars is used (a later test run has
none).

Keys (``--keys``; default: every loss term, the learning rate, and the
task's headline metric if logged: coco/bbox_mAP, coco/segm_mAP, mIoU,
accuracy/top1, else every validation metric). Training scalars are drawn as
lines, validation metrics as lines with markers.

Where a point goes on the x axis (mmengine logs every training line with the
global ``iter``; validation lines carry only a ``step``):

* training: iteration ``iter``; epoch ``iter / L``, with L the iterations
  per epoch, the smallest value consistent with the logged (epoch, iter)
  pairs (exact once an epoch ends on a logged iteration);
* validation of an epoch-based run: ``step`` is the epoch e, at iteration
  ``e * L``;
* validation of an iteration-based run: ``step`` is the iteration if the
  LoggerHook has ``log_metric_by_epoch=False`` (mmseg's runtime); with
  mmengine's default it is always 0, and the point is placed at the last
  training iteration logged before it.

The image has ``--cols`` panels per row, each 5 x 3.5 inches at ``--dpi``
(500 x 350 pixels at the default 100).
"""
import argparse
import glob
import json
import math
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmpoolformer.fileio import atomic_output, check_output_path


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
SCALARS = osp.join('vis_data', 'scalars.json')
HEADLINE_METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU',
                    'accuracy/top1')
BOOKKEEPING = {'step', 'iter', 'epoch'}
VAL_TIMING = {'time', 'data_time'}  # the training lines' keys win
PANEL_INCHES = (5.0, 3.5)


@dataclass
class Run:
    """The scalars of one run: training lines, and validation lines each
    with the last training iteration logged before it."""
    folder: str
    label: str = ''
    train: List[dict] = field(default_factory=list)
    val: List[Tuple[dict, int]] = field(default_factory=list)

    @property
    def by_epoch(self) -> bool:
        return any('epoch' in line for line in self.train)

    @property
    def iters_per_epoch(self) -> Optional[int]:
        """The smallest L with (epoch - 1) * L < iter <= epoch * L for
        every logged training line."""
        pairs = [(line['epoch'], line['step']) for line in self.train
                 if 'epoch' in line]
        if not pairs:
            return None
        return max(math.ceil(it / ep) for ep, it in pairs if ep > 0)

    def keys(self) -> set:
        keys = {k for line in self.train for k in line}
        keys |= {k for line, _ in self.val for k in line
                 if k not in VAL_TIMING}
        return keys - BOOKKEEPING

    def val_keys(self) -> set:
        return {k for line, _ in self.val for k in line} - BOOKKEEPING - \
            VAL_TIMING


# ----------------------------------------------------------------- reading
def has_training(path: str) -> bool:
    return any('iter' in line for line in read_lines(path))


def find_scalars(path: str) -> str:
    """The scalars.json of a log folder, of the latest run of a work dir,
    or ``path`` itself."""
    if not osp.exists(path):
        raise ToolError(f'{path} does not exist')
    if osp.isfile(path):
        return path
    for candidate in (osp.join(path, SCALARS), osp.join(path,
                                                        'scalars.json')):
        if osp.isfile(candidate):
            return candidate
    runs = sorted(f for f in glob.glob(osp.join(path, '*', SCALARS))
                  if TIMESTAMP.match(osp.basename(osp.dirname(
                      osp.dirname(f)))))
    if not runs:
        raise ToolError(
            f'{path} holds no {SCALARS}, nor does any <timestamp>/ folder in '
            'it: give an mmengine work dir or one of its <timestamp>/ log '
            'folders (the Runner writes vis_data/scalars.json through '
            'LocalVisBackend)')
    trained = [f for f in runs if has_training(f)]
    return (trained or runs)[-1]


def read_lines(path: str) -> List[dict]:
    lines = []
    with open(path) as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ToolError(f'{path}, line {number} is not JSON: {exc}')
            if not isinstance(line, dict) or 'step' not in line:
                raise ToolError(f'{path}, line {number} is not an mmengine '
                                'scalars line (a JSON object with "step")')
            lines.append(line)
    return lines


def load_run(path: str) -> Run:
    scalars = find_scalars(path)
    run = Run(folder=osp.dirname(osp.dirname(osp.abspath(scalars))))
    last_step = 0
    for line in read_lines(scalars):
        if 'iter' in line:  # training lines carry the iteration
            run.train.append(line)
            last_step = line['step']
        else:
            run.val.append((line, last_step))
    if not run.train and not run.val:
        raise ToolError(f'{scalars} is empty: the run logged nothing yet')
    return run


def default_labels(runs: List[Run]) -> List[str]:
    """The work dir's name, plus the timestamp where that is ambiguous."""
    def name(run, full):
        parent, stamp = osp.split(run.folder)
        if not TIMESTAMP.match(stamp):
            return stamp
        return f'{osp.basename(parent)}/{stamp}' if full \
            else osp.basename(parent)
    short = [name(r, False) for r in runs]
    return [name(r, short.count(s) > 1) for r, s in zip(runs, short)]


# ----------------------------------------------------------------- series
def is_loss(key: str) -> bool:
    return re.split(r'[./]', key)[-1].startswith('loss')


def is_lr(key: str) -> bool:
    return re.split(r'[./]', key)[-1] == 'lr'


def default_keys(runs: List[Run]) -> List[str]:
    keys = set().union(*(r.keys() for r in runs))
    val_keys = set().union(*(r.val_keys() for r in runs))
    losses = sorted((k for k in keys if is_loss(k)),
                    key=lambda k: (k != 'loss', k))  # the total first
    lrs = sorted(k for k in keys if is_lr(k))
    metrics = [k for k in HEADLINE_METRICS if k in val_keys] or \
        sorted(val_keys)
    return losses + lrs + metrics


def series(run: Run, key: str, x: str) -> Optional[Tuple[list, list, bool]]:
    """(xs, ys, is_validation) of ``key`` in ``run``, None if absent."""
    train = [line for line in run.train if key in line]
    if train:
        if x == 'iter':
            return [ln['step'] for ln in train], [ln[key] for ln in train], \
                False
        per_epoch = run.iters_per_epoch
        return [ln['step'] / per_epoch for ln in train], \
            [ln[key] for ln in train], False
    val = [(line, last) for line, last in run.val if key in line]
    if not val:
        return None
    steps = [line['step'] for line, _ in val]
    ys = [line[key] for line, _ in val]
    if run.by_epoch:
        per_epoch = run.iters_per_epoch
        max_epoch = max(ln['epoch'] for ln in run.train)
        if all(0 < s <= max_epoch for s in steps):  # logged by epoch
            return ([s * per_epoch for s in steps] if x == 'iter'
                    else steps), ys, True
        return (steps if x == 'iter' else
                [s / per_epoch for s in steps]), ys, True
    if all(s == 0 for s in steps):  # mmengine's log_metric_by_epoch default
        steps = [last for _, last in val]
    return steps, ys, True


def check_x(runs: List[Run], x: str):
    if x != 'epoch':
        return
    for run in runs:
        if run.train and not run.by_epoch:
            raise ToolError(f'{run.folder} was trained by iteration (its log '
                            'has no epochs): use --x iter')


# ------------------------------------------------------------------- plot
def plot_curves(runs: List[Run], keys: List[str], x: str = 'iter',
                cols: int = 3, dpi: int = 100, title: str = None) -> Figure:
    """A figure with one panel per key, each run one line in it."""
    check_x(runs, x)
    cols = max(1, min(cols, len(keys)))
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows),
                 dpi=dpi, layout='constrained')
    FigureCanvasAgg(fig)  # render with Agg, whatever pyplot's backend
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colors = [f'C{i % 10}' for i in range(len(runs))]
    for ax, key in zip(axes, keys):
        for run, color in zip(runs, colors):
            found = series(run, key, x)
            if found is None:
                continue
            xs, ys, is_val = found
            ax.plot(xs, ys, color=color, label=run.label,
                    marker='o' if is_val else None, markersize=4)
        ax.set_title(key)
        ax.set_xlabel('iteration' if x == 'iter' else 'epoch')
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


# ------------------------------------------------------------------- main
def build_parser():
    parser = argparse.ArgumentParser(
        description='Plot loss, lr and metric curves of mmengine runs')
    parser.add_argument('runs', nargs='+', help='work dirs or their '
                        '<timestamp>/ log folders (or scalars.json files)')
    parser.add_argument('--keys', nargs='+', help='scalars to plot (default: '
                        'the losses, lr and the headline metric)')
    parser.add_argument('--x', choices=['iter', 'epoch'], default='iter',
                        help='x axis')
    parser.add_argument('--legend', nargs='+',
                        help='one label per run (default: work dir names)')
    parser.add_argument('--out', default='curves.png', help='PNG file')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file')
    parser.add_argument('--cols', type=int, default=3,
                        help='panels per row')
    parser.add_argument('--dpi', type=int, default=100)
    parser.add_argument('--title', help='figure title')
    return parser


def main(argv=None):
    """Returns the figure written to ``--out``."""
    args = build_parser().parse_args(argv)
    try:
        check_output_path(args.out, args.force)
        runs = [load_run(path) for path in args.runs]
        if args.legend and len(args.legend) != len(runs):
            raise ToolError(f'--legend has {len(args.legend)} labels for '
                            f'{len(runs)} runs')
        for run, label in zip(runs, args.legend or default_labels(runs)):
            run.label = label
        available = sorted(set().union(*(r.keys() for r in runs)))
        keys = args.keys or default_keys(runs)
        unknown = [k for k in keys if k not in available]
        if unknown:
            raise ToolError(f'no run logged {", ".join(unknown)}; available: '
                            f'{", ".join(available)}')
        if not keys:
            raise ToolError('nothing to plot by default (no loss, lr or '
                            f'metric); choose --keys from: '
                            f'{", ".join(available)}')
        for key in keys:
            missing = [r.label for r in runs if key not in r.keys()]
            if missing:
                print(f'{key}: not logged by {", ".join(missing)}')
        if args.cols < 1 or args.dpi < 10:
            raise ToolError('need --cols >= 1 and --dpi >= 10')
        fig = plot_curves(runs, keys, args.x, args.cols, args.dpi, args.title)
        with atomic_output(args.out) as partial:
            fig.savefig(partial, format='png')
        print(f'{len(keys)} panels ({", ".join(keys)}) of {len(runs)} '
              f'run(s) against {args.x} written to {args.out}')
        return fig
    except (ToolError, OSError, ValueError) as exc:
        raise SystemExit(f'{osp.basename(__file__)}: error: {exc}') from None


if __name__ == '__main__':
    main()
