"""Speed and memory of our backbones against the reference implementations.

    python tools/analysis_tools/benchmark.py [--arch poolformer_s12] \
        [--batch 8] [--size 224] [--reps 15] [--warmup 3] \
        [--dtype fp32|bf16|amp] [--device cpu|cuda] [--channels-last] \
        [--compile] [--compile-deploy] [--no-onnx] [--json out.json]
    python tools/analysis_tools/benchmark.py --detector retinanet --size 512

Rows (backbone mode), all computing the same function (checked first):

* ``ours``: our backbone as shipped (fast path) with its output norms;
* ``ours-plain``: the same weights, plain NCHW formulation;
* ``ours-deploy``: ``switch_to_deploy()`` (inference only);
  ``ours-deploy+compile`` with ``--compile-deploy`` (inductor, frozen);
* ``ours-raw``: ours without output norms, as timm's ``features_only``;
* ``mmpretrain``: mmpretrain's ``PoolFormer`` (PoolFormer archs);
* ``timm``: ``timm.create_model(ARCH, features_only=True)``;
* ``onnxruntime``: the reference (mmpretrain's model, else timm's) exported
  to ONNX, run by onnxruntime (inference only): the deployment yardstick,
  interleaved with its threads not spinning, and once more alone with its
  default spinning threads (which would slow any row timed after them);
  the target compares against the faster of the two.

Detector mode (``--detector retinanet|fpn``): the training step of our
RetinaNet-S12 / Semantic FPN-S12 config against the same model with
``mmpretrain.PoolFormer`` as its backbone, same weights, same batch.

Measured interleaved (every round runs every row, starting from a different
one): inference (forward under ``inference_mode``) and a training step
(forward, loss, backward, AdamW), medians in ms; the peak memory of one
training step (CPU: bytes of the tensors the step allocates and holds at
once, see :mod:`mmpoolformer.benchmark.memory`; CUDA: the allocator's
peak); the bytes autograd saves for backward. Ratios against the targets of
issue 5 are printed as MET / MISS; ``--json`` writes everything.
"""
import argparse
import copy
import json
import os
import platform
import tempfile

import torch

from mmpoolformer.benchmark import (ARCHS, DETECTORS, PeakLiveBytes,
                                    build_backbones, build_detectors,
                                    saved_activation_bytes)
from mmpoolformer.benchmark.models import detector_batch
from mmpoolformer.benchmark.report import (BACKBONE_TARGETS, DETECTOR_TARGETS,
                                           check_targets, format_table)
from mmpoolformer.benchmark.timing import (autocast, backbone_steps,
                                           detector_steps, interleaved_medians)
from mmpoolformer.utils.errors import ToolError, exit_on_tool_error

TOL = 1e-4  # relative (2-norm) agreement required between rows, fp32
INFER_ONLY = ('ours-deploy', 'ours-deploy+compile', 'onnxruntime')  # rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='poolformer_s12', choices=ARCHS)
    parser.add_argument('--detector', choices=sorted(DETECTORS),
                        help='time a detector / segmentor training step '
                        'instead of the bare backbones')
    parser.add_argument('--batch', type=int, default=None,
                        help='default 8 (backbones) or 2 (detectors)')
    parser.add_argument('--size', type=int, default=None,
                        help='default 224 (backbones) or 512 (detectors)')
    parser.add_argument('--reps', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--dtype', default='fp32',
                        choices=['fp32', 'bf16', 'amp'])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last input and weights for every row')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile every PyTorch row')
    parser.add_argument('--compile-deploy', action='store_true',
                        help='add ours-deploy+compile (inductor, frozen '
                        'weights, inference)')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the onnxruntime row')
    parser.add_argument('--modes', default='infer,train')
    parser.add_argument('--rows', default=None,
                        help='comma-separated subset of the rows')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='write results here')
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(',') if m]
    if not args.modes or set(args.modes) - {'infer', 'train'}:
        parser.error(f'--modes takes infer and/or train, got {args.modes}')
    if args.detector:
        args.modes = ['train']
    args.batch = args.batch or (2 if args.detector else 8)
    args.size = args.size or (512 if args.detector else 224)
    if args.reps < 1 or args.warmup < 0 or args.batch < 1 or args.size < 32:
        parser.error('need --reps >= 1, --warmup >= 0, --batch >= 1, '
                     '--size >= 32')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ToolError('--device cuda: no CUDA device is available here')
    return args


def rel(a, b):
    return ((a.double() - b.double()).norm() /
            b.double().norm().clamp_min(1e-30)).item()


def outputs(model, x, dtype, device):
    with torch.inference_mode(), autocast(dtype, device):
        return [o.float() for o in model(x)]


def onnx_row(reference, x, workdir):
    """The reference exported to ONNX (dynamic axes), a step running it in
    onnxruntime without spinning threads (interleaved: idle spinning threads
    would slow the next PyTorch row), one with onnxruntime's default
    spinning (timed alone, after the interleaved rounds), and its outputs
    for the equality check."""
    from mmpoolformer.deployment import export_onnx, ort_session, run_session
    path = os.path.join(workdir, 'reference.onnx')
    export_onnx(copy.deepcopy(reference).float().cpu(), path,
                input_shape=tuple(x.shape))
    quiet = ort_session(path, spinning=False)
    x_cpu = x.float().cpu()

    def spinning_step():
        session = ort_session(path)
        return lambda: run_session(session, x_cpu)
    return (lambda: run_session(quiet, x_cpu)), spinning_step, \
        run_session(quiet, x_cpu)


def check_equal(outs, pairs, label):
    diffs = {}
    for a, b in pairs:
        if a in outs and b in outs:
            d = max(rel(p, q) for p, q in zip(outs[a], outs[b]))
            diffs[f'{a} vs {b}'] = d
            print(f'{label}: {a} vs {b}: relative difference {d:.2e}')
            if label == 'fp32' and d > TOL:
                raise ToolError(f'{a} and {b} differ by {d:.2e} (> {TOL}): '
                                'they do not compute the same function')
    return diffs


def peak_train_mb(step, device):
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    step()  # optimizer state exists before the measured step
    with PeakLiveBytes() as meter:
        step()
    return meter.peak / 2**20


def run_backbones(args):
    models = build_backbones(args.arch, args.seed)
    ref_name = 'mmpretrain' if 'mmpretrain' in models else 'timm'
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(args.seed + 3)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    x = x.to(args.device).contiguous(memory_format=fmt)
    for m in models.values():
        m.to(args.device, memory_format=fmt)
    if args.rows:
        keep = set(args.rows.split(','))
        models = {k: v for k, v in models.items() if k in keep}

    outs = {n: outputs(m, x, 'fp32', args.device) for n, m in models.items()}
    steps = {}
    with tempfile.TemporaryDirectory() as workdir:
        if not args.no_onnx and 'infer' in args.modes and \
                (not args.rows or 'onnxruntime' in args.rows):
            print(f'exporting {ref_name} to ONNX for onnxruntime')
            ort_step, ort_spinning, outs['onnxruntime'] = onnx_row(
                models[ref_name], x, workdir)
            steps['onnxruntime'] = dict(infer=ort_step)
        pairs = [('ours', 'mmpretrain'), ('ours-plain', 'mmpretrain'),
                 ('ours-raw', 'timm'), ('ours-deploy', 'ours'),
                 ('onnxruntime', ref_name)]
        diffs = check_equal(outs, pairs, 'fp32')
        bf16 = None
        if args.dtype != 'fp32':  # the deviation of the low-precision path
            low = {n: outputs(m, x, args.dtype, args.device)
                   for n, m in models.items()}
            bf16 = {n: max(rel(p, q) for p, q in zip(low[n], outs[n]))
                    for n in low}
            for n, d in bf16.items():
                print(f'{args.dtype} vs fp32, {n}: relative deviation {d:.2e}')

        peak, saved = {}, {}
        for name, m in models.items():
            if args.compile:
                m = torch.compile(m)
            steps[name] = backbone_steps(m, x, args.dtype, args.device)
            if name in INFER_ONLY:
                del steps[name]['train']
            elif 'train' in args.modes:
                peak[name] = peak_train_mb(steps[name]['train'], args.device)
                models[name].train()
                with autocast(args.dtype, args.device):
                    saved[name] = saved_activation_bytes(
                        lambda: models[name](x), models[name].parameters())
        if args.compile_deploy and 'ours-deploy' in models:
            compiled = torch.compile(models['ours-deploy'],
                                     options={'freezing': True})
            got = outputs(compiled, x, 'fp32', args.device)
            d = max(rel(p, q) for p, q in zip(got, outs['ours']))
            print(f'fp32: ours-deploy+compile vs ours: relative difference '
                  f'{d:.2e}')
            if d > TOL:
                raise ToolError(f'compiled deploy model differs by {d:.2e}')
            steps['ours-deploy+compile'] = backbone_steps(
                compiled, x, args.dtype, args.device)
            del steps['ours-deploy+compile']['train']
        timed = interleaved_medians(steps, args.modes, args.reps, args.warmup,
                                    args.device)
        if 'onnxruntime' in steps:
            print('onnxruntime with its default (spinning) threads, alone')
            alone = {'onnxruntime (spinning, alone)': dict(
                infer=ort_spinning())}
            timed.update(interleaved_medians(alone, ['infer'], args.reps,
                                             args.warmup))
            steps.update(alone)

    rows = {}
    for name in steps:
        r = {f'{m}_ms': t['median_ms'] for m, t in timed[name].items()}
        r.update({f'{m}_ms_all': t['all_ms'] for m, t in timed[name].items()})
        if name in peak:
            r['peak_train_mb'] = peak[name]
            r['saved_activations_mb'] = saved[name] / 2**20
        rows[name] = r
    targets = BACKBONE_TARGETS['onnxruntime'] + BACKBONE_TARGETS[ref_name]
    extra = dict(max_rel_diff_fp32=diffs, low_precision_rel_deviation=bf16,
                 reference=ref_name)
    return rows, targets, extra


def run_detectors(args):
    models = build_detectors(args.detector, args.seed)
    inputs, samples = detector_batch(args.detector, args.batch, args.size,
                                     args.seed)
    inputs = inputs.to(args.device)
    losses = {}
    for name, m in models.items():
        m.to(args.device).train()
        with torch.no_grad():
            torch.manual_seed(args.seed)
            loss, _ = m.parse_losses(m.loss(inputs, samples))
        losses[name] = loss.item()
    d = abs(losses['ours'] - losses['mmpretrain']) / abs(losses['mmpretrain'])
    print(f'loss ours {losses["ours"]:.6f}, mmpretrain backbone '
          f'{losses["mmpretrain"]:.6f}: relative difference {d:.2e}')
    if d > TOL:
        raise ToolError(f'the two {args.detector} models disagree ({d:.2e})')
    steps, peak = {}, {}
    for name, m in models.items():
        steps[name] = detector_steps(torch.compile(m) if args.compile else m,
                                     inputs, samples, args.dtype, args.device)
        peak[name] = peak_train_mb(steps[name]['train'], args.device)
    timed = interleaved_medians(steps, ['train'], args.reps, args.warmup,
                                args.device)
    rows = {n: dict(train_ms=timed[n]['train']['median_ms'],
                    train_ms_all=timed[n]['train']['all_ms'],
                    peak_train_mb=peak[n]) for n in steps}
    return rows, DETECTOR_TARGETS[args.detector], dict(
        loss_rel_diff=d, losses=losses)


def main(argv=None):
    with exit_on_tool_error('benchmark.py'):
        args = parse_args(argv)
        torch.manual_seed(args.seed)
        rows, targets, extra = (run_detectors if args.detector
                                else run_backbones)(args)
        results = dict(
            config={k: v for k, v in vars(args).items() if k != 'json'},
            environment=dict(
                torch=torch.__version__, threads=torch.get_num_threads(),
                machine=platform.machine(), python=platform.python_version(),
                processor=platform.processor(),
                device=(torch.cuda.get_device_name() if args.device == 'cuda'
                        else f'CPU, {os.cpu_count()} cores')),
            rows=rows, **extra)
        results['targets'] = check_targets(results, targets)
        what = args.detector or args.arch
        print(f'\n{what}  batch {args.batch}  {args.size}x{args.size}  '
              f'{args.dtype}  {args.device}'
              f'{"  channels_last" if args.channels_last else ""}'
              f'{"  compiled" if args.compile else ""}  '
              f'{torch.get_num_threads()} threads  median of {args.reps}')
        print(format_table(results))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(results, f, indent=2)
            print(f'results written to {args.json}')
        return results


if __name__ == '__main__':
    main()
