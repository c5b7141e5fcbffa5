"""Export a backbone or a classifier to ONNX, check it in onnxruntime and
time both runtimes.

    # a config's classifier (image -> logits), or only its backbone
    python tools/deployment/export_onnx.py configs/poolformer/poolformer_s12_in1k.py \
        --checkpoint work_dirs/poolformer_s12_in1k/epoch_300.pth [--deploy]
    python tools/deployment/export_onnx.py \
        configs/poolformer/retinanet_poolformer_s12_coco.py --backbone-only
    # a bare backbone, with a checkpoint of any layout the converter reads
    python tools/deployment/export_onnx.py --arch PoolFormer/s12 \
        [--checkpoint poolformer_s12.pth.tar] [--deploy] [--out s12.onnx]

The graph has one input ``input`` (N, 3, H, W) with a dynamic batch, height
and width, and returns the logits (classifier) or the backbone's stage maps
(``output``, or ``output0``, ``output1``, ... for several). A classifier's
graph has no data preprocessor: feed normalised images. See
:mod:`mmpoolformer.deployment` for what the graph contains (no fast-path
ops, GroupNorm as ReduceMean/Sub/Mul/Sqrt/Div instead of an ONNX GroupNorm
operator).

``--deploy`` calls the backbone's ``switch_to_deploy()`` (norm affines and
layer scales folded into the convolutions) on the export copy only. Either
way the ONNX outputs are compared with the PyTorch model as loaded (eager,
its own formulation, nothing folded) on several input shapes; a
difference above ``--atol`` is an error. Then both run the same
``--batch`` x 3 x H x W input, interleaved, and the medians are printed side
by side.

An existing ``--out`` is replaced only with ``--force``, and only by an
export that passed the check: the graph is written and verified under a
temporary name beside it and renamed at the end.
"""
import argparse
import importlib
import os.path as osp
import statistics
import time

import torch
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import _load_checkpoint
from mmengine.utils import track_iter_progress

import mmpoolformer
from mmpoolformer.checkpoint import (
    CheckpointMismatchError,
    load_backbone_checkpoint,
    runner_checkpoint_globals,
    unwrap_checkpoint,
)
from mmpoolformer.deployment import (
    DEFAULT_OPSET,
    ClassifierLogits,
    export_onnx,
    ort_session,
    run_session,
    switched_to_deploy,
    verify,
)
from mmpoolformer.fileio import atomic_output, check_output_path
from mmpoolformer.models import MetaFormer
from mmpoolformer.models import backbones as families


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


#: the configs this tool builds: default_scope -> task
SCOPES = {'mmdet': 'detection', 'mmseg': 'segmentation',
          'mmpretrain': 'classification'}
EXPORTERS = {'dynamo': 'torch.export-based exporter',
             'torchscript': 'TorchScript exporter (fallback)'}


def build_parser():
    parser = argparse.ArgumentParser(
        description='Export a backbone or classifier to ONNX (dynamic batch '
        'and spatial size), verify it in onnxruntime, time both runtimes')
    parser.add_argument('config', nargs='?',
                        help='config file (or use --arch)')
    parser.add_argument('--arch', help='a bare backbone instead of a config: '
                        'FAMILY/ARCH, e.g. PoolFormer/s12, ConvFormer/s18')
    parser.add_argument('--checkpoint', help='weights; default: random')
    parser.add_argument('--backbone-only', action='store_true',
                        help="export the config's backbone, not the whole "
                        'classifier (needed for detection/segmentation)')
    parser.add_argument('--deploy', action='store_true',
                        help='fold the backbone (switch_to_deploy) first')
    parser.add_argument('--out', help='ONNX file (default: '
                        'work_dirs/onnx/<config or arch>[_backbone][_deploy]'
                        '.onnx)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file (once the new '
                        'export has passed its check)')
    parser.add_argument('--shape', type=int, nargs='+', default=None,
                        help='H W (or one size) of the traced and timed '
                        'input; default 224 for classifiers and --arch, 512 '
                        'otherwise')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch of the timed input')
    parser.add_argument('--verify-shapes', nargs='+', default=None,
                        metavar='NxHxW', help='inputs compared with PyTorch '
                        '(default: three batch sizes and spatial sizes '
                        'around --shape)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest allowed max abs difference')
    parser.add_argument('--runs', type=int, default=10,
                        help='timed runs per runtime (0: no timing)')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=0,
                        help='threads of both runtimes (default: each '
                        "runtime's own default)")
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs')
    return parser


# ------------------------------------------------------------------ models
def parse_arch(spec: str):
    """``'PoolFormer/s12'`` -> the backbone, random weights."""
    known = {name.lower(): cls for name in families.__all__
             if isinstance(cls := getattr(families, name), type) and
             issubclass(cls, MetaFormer) and cls is not MetaFormer}
    family, _, arch = spec.partition('/')
    cls = known.get(family.lower())
    if cls is None:
        names = ', '.join(c.__name__ for c in known.values())
        raise ToolError(f'--arch {spec}: unknown family {family!r}; choose '
                        f'one of {names} as FAMILY/ARCH, e.g. PoolFormer/s12')
    if not arch:
        arch = cls.default_arch
    if arch is None or arch.lower() not in cls.arch_zoo:
        raise ToolError(f'--arch {spec}: unknown {cls.__name__} arch '
                        f'{arch!r}; choose one of {sorted(cls.arch_zoo)}')
    return cls(arch.lower())


def build_from_config(args):
    if not osp.isfile(args.config):
        raise ToolError(f'config file {args.config} does not exist')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ToolError(f'{args.config} has default_scope={scope!r}; this '
                        f'tool builds {", ".join(SCOPES)} configs')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    try:
        model = registry.build(cfg.model)
    except (KeyError, ValueError, TypeError) as exc:
        raise ToolError(
            f'cannot build the model of {args.config}: {exc}') from None
    model = revert_sync_batchnorm(model)
    model.eval()  # not chained: some train() overrides return None
    return model, scope


def read_state_dict(path):
    """The state dict of any checkpoint file mmengine reads."""
    try:
        with runner_checkpoint_globals():  # a Runner's, under torch >= 2.6
            return unwrap_checkpoint(_load_checkpoint(path,
                                                      map_location='cpu'))
    except Exception as exc:  # unreadable file: say so, not a traceback
        raise ToolError(f'cannot read checkpoint {path}: '
                        f'{type(exc).__name__}: {exc}') from None


def load_whole_model(model, path, config):
    """Strict load of a Runner checkpoint, with one message per kind of
    mismatch (mmengine's would list every key)."""
    state = {k[len('module.'):] if k.startswith('module.') else k: v
             for k, v in read_state_dict(path).items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f'{k}: checkpoint {tuple(v.shape)} vs model '
                  f'{tuple(own[k].shape)}' for k, v in state.items()
                  if k in own and v.shape != own[k].shape]
    if missing or unexpected or mis_shaped:
        lines = [f'checkpoint {path} does not fit the model of {config} '
                 '(another arch, or another config?)']
        for title, keys in (('missing keys', missing),
                            ('unexpected keys', unexpected),
                            ('shape mismatches', mis_shaped)):
            if keys:
                lines.append(f'  {len(keys)} {title}: ' + ', '.join(keys[:5]) +
                             (' ...' if len(keys) > 5 else ''))
        if not any(k.startswith('backbone.') for k in state):
            lines.append('  It has no backbone.* keys: for a backbone '
                         'checkpoint use --backbone-only or --arch.')
        raise ToolError('\n'.join(lines))
    model.load_state_dict(state)


def load_backbone(backbone, path):
    """Any layout the converter knows (released, timm, mmpretrain, a
    Runner checkpoint's ``backbone.*``)."""
    try:
        load_backbone_checkpoint(backbone, path, logger='silent')
    except CheckpointMismatchError as exc:
        raise ToolError(str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:  # unknown layout
        raise ToolError(f'cannot load checkpoint {path} into '
                        f'{type(backbone).__name__}: {exc}') from None


def build_module(args):
    """(module to export, name for the file, default input size)."""
    if args.arch:
        backbone = parse_arch(args.arch)
        backbone.eval()
        if args.checkpoint:
            load_backbone(backbone, args.checkpoint)
        name = args.arch.replace('/', '_').lower()
        return backbone, name, 224
    model, scope = build_from_config(args)
    name = osp.splitext(osp.basename(args.config))[0]
    size = 224 if scope == 'mmpretrain' else 512
    if args.backbone_only:
        backbone = model.backbone
        if args.checkpoint and isinstance(backbone, MetaFormer):
            load_backbone(backbone, args.checkpoint)  # any layout
        elif args.checkpoint:
            load_whole_model(model, args.checkpoint, args.config)
        return backbone, name + '_backbone', size
    if scope != 'mmpretrain':
        raise ToolError(f'{args.config} is a {SCOPES[scope]} config: only '
                        'classifiers are exported whole; add --backbone-only')
    if args.checkpoint:
        load_whole_model(model, args.checkpoint, args.config)
    return ClassifierLogits(model), name, size


def deployed_copy(module):
    """A copy with its backbone folded by ``switch_to_deploy``."""
    inner = module.classifier if isinstance(module, ClassifierLogits) \
        else module
    folded, switched = switched_to_deploy(inner)
    if not switched:
        backbone = getattr(inner, 'backbone', inner)
        raise ToolError(f'{type(backbone).__name__} has no switch_to_deploy();'
                        ' export it without --deploy')
    return ClassifierLogits(folded) if inner is not module else folded


def input_channels(module):
    """The image channels the backbone expects (3 unless configured)."""
    backbone = module.classifier.backbone \
        if isinstance(module, ClassifierLogits) else module
    return getattr(backbone, 'in_channels', 3)


def describe_reference(module):
    """``eager, formulation='auto'``: how the PyTorch reference runs."""
    found = [m.formulation for m in module.modules()
             if isinstance(m, MetaFormer)]
    return 'eager' + (f', formulation={found[0]!r}' if found else '')


# -------------------------------------------------------------- arguments
def hw(shape):
    """--shape as (H, W)."""
    if shape is None:
        return None
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2 or min(shape) < 8:
        raise ToolError(f'--shape takes H W or one size (>= 8), got {shape}')
    return tuple(shape)


def parse_verify_shapes(specs, batch, h, w, channels):
    """--verify-shapes as (N, C, H, W) tuples."""
    if specs is None:  # non-multiples of 32 check the padding arithmetic
        return [(batch, channels, h, w), (batch + 1, channels, h + 32, w + 64),
                (batch + 2, channels, h // 2 + 8, w // 2 + 24)]
    shapes = []
    for spec in specs:
        try:
            n, sh, sw = (int(v) for v in spec.lower().split('x'))
        except ValueError:
            raise ToolError(f'--verify-shapes takes NxHxW, e.g. 2x224x224, '
                            f'got {spec!r}') from None
        shapes.append((n, channels, sh, sw))
    return shapes


def fmt_shape(shape):
    return 'x'.join(map(str, shape))


# ----------------------------------------------------------------- timing
def time_both(module, session, x, runs, warmup):
    """Median ms of PyTorch eager and onnxruntime on ``x``, interleaved so
    machine noise hits both alike."""
    steps = {'pytorch': lambda: module(x),
             'onnxruntime': lambda: run_session(session, x)}
    times = {k: [] for k in steps}
    with torch.inference_mode():
        for i in track_iter_progress(list(range(warmup + runs))):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


# ------------------------------------------------------------------- main
def main(argv=None):
    """Returns dict(out, exporter, diffs={shape: max abs diff}, timings)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = osp.basename(__file__)
    try:
        mmpoolformer.register_all_modules()
        if bool(args.config) == bool(args.arch):
            raise ToolError('give a config file or --arch FAMILY/ARCH '
                            '(exactly one)')
        if args.arch and args.backbone_only:
            raise ToolError('--arch exports a backbone already; drop '
                            '--backbone-only')
        if args.checkpoint:
            if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
                raise ToolError(f'checkpoint {args.checkpoint} does not exist')
        if args.out:  # before the slow part
            check_output_path(args.out, args.force)
        if min(args.batch - 1, args.runs, args.warmup, args.threads) < 0:
            raise ToolError('need --batch >= 1 and --runs, --warmup, '
                            '--threads >= 0')
        if args.threads:
            torch.set_num_threads(args.threads)
        shape = hw(args.shape)
        module, name, size = build_module(args)
        h, w = shape or (size, size)
        channels = input_channels(module)
        checks = parse_verify_shapes(args.verify_shapes, args.batch, h, w,
                                     channels)
        exported = deployed_copy(module) if args.deploy else module
        out = args.out or osp.join('work_dirs', 'onnx', name +
                                   '_deploy' * args.deploy + '.onnx')
        check_output_path(out, args.force)

        with atomic_output(out) as partial:  # out only once verified
            print(f'exporting {name}{" (deploy)" * args.deploy} to {out} ...')
            exporter = export_onnx(exported, partial,
                                   (args.batch, channels, h, w),
                                   dynamic=True, opset=args.opset)
            print(f'{out}: {EXPORTERS[exporter]}, opset {args.opset}, '
                  'dynamic batch/height/width, GroupNorm as '
                  'ReduceMean/Sub/Mul/Sqrt/Div')
            # no spinning: idle onnxruntime threads would steal the cores
            # from the PyTorch runs interleaved with its own
            session = ort_session(partial, threads=args.threads,
                                  spinning=False)
            diffs = verify(module, partial, checks, session=session)
            reference = describe_reference(module)
            print(f'max abs difference onnxruntime vs PyTorch ({reference}'
                  f'{", not folded" * args.deploy}):')
            for s, d in diffs.items():
                print(f'  {fmt_shape(s):>16}  {d:.3e}')
            bad = {s: d for s, d in diffs.items() if not d <= args.atol}
            if bad:
                kept = (f'; {out} is left as it was' if osp.exists(out)
                        else '; nothing was written')
                raise ToolError(
                    f'the export differs from PyTorch by more than --atol '
                    f'{args.atol:g}: ' + ', '.join(
                        f'{fmt_shape(s)}: {d:.3e}' for s, d in bad.items())
                    + kept)

        timings = None
        if args.runs:
            x = torch.randn(args.batch, channels, h, w)
            print(f'timing: {args.warmup} warm-up + {args.runs} runs each, '
                  f'interleaved; {torch.get_num_threads()} torch threads, '
                  f'onnxruntime {args.threads or "default"} threads (no '
                  'spinning)')
            timings = time_both(module, session, x, args.runs, args.warmup)
            head = ['input', f'PyTorch {reference} ms', 'onnxruntime ms',
                    'PyTorch / onnxruntime']
            row = [fmt_shape(x.shape), f'{timings["pytorch"]:.2f}',
                   f'{timings["onnxruntime"]:.2f}',
                   f'{timings["pytorch"] / timings["onnxruntime"]:.2f}']
            widths = [max(len(a), len(b)) for a, b in zip(head, row)]
            print('median  ' + '  '.join(f'{a:>{n}}'
                                         for a, n in zip(head, widths)))
            print('        ' + '  '.join(f'{a:>{n}}'
                                         for a, n in zip(row, widths)))
        return dict(out=out, exporter=exporter, diffs=diffs, timings=timings)
    except (ToolError, OSError, ValueError, TypeError, ImportError) as exc:
        raise SystemExit(f'{prog}: error: {exc}') from None


if __name__ == '__main__':
    main()
