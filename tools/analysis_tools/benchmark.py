"""Speed and memory of our backbones against the reference implementations.

    python tools/analysis_tools/benchmark.py [--arch poolformer_s12] \
        [--batch 8] [--size 224] [--reps 15] [--warmup 3] \
        [--dtype fp32|bf16|amp] [--device cpu|cuda] [--channels-last] \
        [--rows ours,timm+compile,...] [--no-compile] [--compile-deploy] \
        [--no-onnx] [--json out.json]
    python tools/analysis_tools/benchmark.py --detector retinanet --size 512
    python tools/analysis_tools/benchmark.py --gpu-table gpu.json

Rows (backbone mode), all computing the same function (checked first):

* ``ours``: our backbone from its default constructor, with output norms;
* ``ours-plain``, ``ours-lean``: the same weights, ``formulation='plain'``
  / ``'lean'`` (``ours`` is ``'auto'``: the fused kernels in eager CPU
  mode, lean elsewhere);
* ``ours-deploy``: ``switch_to_deploy()`` (inference only);
  ``ours-deploy+compile`` with ``--compile-deploy`` (inductor, frozen);
* ``ours-raw``: ours without output norms (``out_norm_cfg=None``), the
  function of timm's ``features_only``;
* ``mmpretrain``: mmpretrain's ``PoolFormer`` (PoolFormer archs);
* ``timm``: ``timm.create_model(ARCH, features_only=True)``;
* ``ours+compile``, ``ours-raw+compile``, ``mmpretrain+compile``,
  ``timm+compile``: a copy of the row under ``torch.compile`` (defaults:
  inductor; ``--compile-backend`` for another). Compilation happens in
  untimed first calls (equality check, gradient check, one call per mode and
  dtype) and is reported apart; the
  warm-up rounds run as for every row. A row that fails to compile is
  reported as FAILED, the others go on;
* ``ours-packed``: ``formulation='packed'`` (inference only: weights
  prepared once);
* ``ours-int8``, ``reference-int8``: ours and the reference exported to
  ONNX and quantized to int8 by onnxruntime's static quantization (the
  flow of ``tools/deployment/quantize.py``; calibrated on random batches,
  a timing row), inference only;
* ``onnxruntime``: the reference (mmpretrain's model, else timm's) exported
  to ONNX, run by onnxruntime (inference only): the deployment yardstick,
  interleaved with its threads not spinning, and once more alone with its
  default spinning threads (which would slow any row timed after them);
* ``floor``, ``floor+convs``: the model's GEMMs alone with its real shapes
  (see :mod:`speed.floor`), printed as ours / floor.

Detector mode (``--detector retinanet|fpn``): the training step of our
RetinaNet-S12 / Semantic FPN-S12 config against the same model with
``mmpretrain.PoolFormer`` as its backbone, same weights, same batch; with
``--modes infer`` the whole model's tensor forward (batch 1 at the config's
test size unless ``--batch`` / ``--size``), ours also with its backbone in
the packed formulation, and both models under ``torch.compile``
(``+compile``) and, in fp32 on a CPU, in onnxruntime (``-onnxruntime``,
ours after ``switch_to_deploy()``).

On a CPU the run first prints which matrix engines the CPU has (AMX,
AVX-512 BF16, VNNI): every ratio is against this machine's own GEMM floor
and peers.

GPU table (``--gpu-table OUT.json``): every arch of ``--items``
(default: PoolFormer-S12/S24/M36, PoolFormerV2-S12, ConvFormer-S18,
CAFormer-S18, then RetinaNet-S12 and Semantic FPN-S12) with the rows ours,
ours-raw, ours-raw+compile (ours compiled), mmpretrain, timm, timm+compile;
defaults ``--device cuda --dtype bf16`` (AMP bf16), batch 128 at 224², the
detectors at their configs' batch and resolution. Each item is written to
OUT.json as soon as it is measured and items already there are skipped, so
a run cut short continues where it stopped; the markdown table (img/s,
it/s, peak MB) and the targets are printed at the end.

Measured interleaved (every round runs every row, starting from a different
one): inference (forward under ``inference_mode``) and a training step
(forward, loss, backward, AdamW), medians in ms; the peak memory of one
training step (CPU: bytes of the tensors the step allocates and holds at
once, see :mod:`speed.memory`, eager rows only; CUDA: the
allocator's peak over the step, reset per row, less what was allocated
before it); the bytes autograd saves for backward. The targets (against the
reference implementations, against the fastest peer; the GPU table's own)
are printed as MET / MISS; ``--json`` writes
everything.
"""
import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import tempfile
from collections import Counter
from functools import partial

import torch
import torch.nn as nn

from speed import (
    ARCHS,
    DETECTORS,
    PeakLiveBytes,
    build_backbones,
    build_detectors,
    saved_activation_bytes,
)
from speed.floor import gemm_floor_steps, gemm_flops, record_gemms
from speed.models import (
    COMPILABLE,
    compiled,
    detector_batch,
    detector_test_input,
    detector_training_input,
    has_output_norms,
)
from speed.report import (
    BACKBONE_TARGETS,
    DETECTOR_TARGETS,
    check_targets,
    format_gpu_table,
    format_table,
    gpu_table_targets,
    low_precision_targets,
    peer_targets,
)
from speed.timing import (
    autocast,
    backbone_steps,
    detector_steps,
    interleaved_medians,
    is_cuda,
    time_ms,
)
from speed.traffic import eager_traffic, format_traffic


class ToolError(Exception):
    """A problem the user can fix: main() prints its message alone and exits
    with status 1."""


TOL = 1e-4  # relative (2-norm) agreement required between rows, fp32
# a whole model in onnxruntime: its fp32 kernels round differently, through
# 20+ layers of randomised weights (RetinaNet at 800x1088: 1.05e-4)
ORT_TOL = 1e-3
INFER_ONLY = ('ours-packed', 'ours-deploy', 'ours-deploy+compile',
              'onnxruntime', 'ours-int8', 'reference-int8')
INT8_ROWS = ('ours-int8', 'reference-int8')
DEFAULT_ROWS = ('ours', 'ours+compile', 'ours-plain', 'ours-lean',
                'ours-packed', 'ours-deploy', 'ours-raw', 'ours-raw+compile',
                'mmpretrain', 'mmpretrain+compile', 'timm', 'timm+compile',
                'onnxruntime', 'ours-int8', 'reference-int8', 'floor',
                'floor+convs')
KNOWN_ROWS = DEFAULT_ROWS + ('ours-deploy+compile', 'ours-plain+compile')
# ours compiled is ours-raw+compile there: the function timm computes (the
# inference targets), one compiled model of ours less to build per arch
GPU_TABLE_ROWS = ('ours', 'ours-plain', 'ours-raw', 'ours-raw+compile',
                  'mmpretrain', 'timm', 'timm+compile')
GPU_TABLE_ITEMS = tuple(ARCHS) + tuple(DETECTORS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='poolformer_s12', choices=ARCHS)
    parser.add_argument('--detector', choices=sorted(DETECTORS),
                        help='time a detector / segmentor training step '
                        'instead of the bare backbones')
    parser.add_argument('--gpu-table', metavar='OUT.json', default=None,
                        help='measure the GPU table into '
                        'OUT.json (resumes: items already there are kept)')
    parser.add_argument('--items', default=None,
                        help='--gpu-table: comma-separated subset of '
                        f'{",".join(GPU_TABLE_ITEMS)}')
    parser.add_argument('--batch', type=int, default=None,
                        help='default 8 (backbones), 2 (detectors), 128 '
                        '(--gpu-table backbones; its detectors: the '
                        "config's batch)")
    parser.add_argument('--size', type=int, default=None,
                        help='default 224 (backbones), 512 (detectors); '
                        "--gpu-table detectors: the config's resolution")
    parser.add_argument('--reps', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--dtype', default=None,
                        choices=['fp32', 'bf16', 'amp'],
                        help='default fp32 (bf16 with --gpu-table)')
    parser.add_argument('--device', default=None, choices=['cpu', 'cuda'],
                        help='default cpu (cuda with --gpu-table)')
    parser.add_argument('--channels-last', action='store_true',
                        help='channels-last input and weights for every row')
    parser.add_argument('--rows', default=None,
                        help='comma-separated subset of the rows: '
                        f'{",".join(KNOWN_ROWS)}')
    parser.add_argument('--no-compile', action='store_true',
                        help='leave out the +compile rows')
    parser.add_argument('--compile-backend', default='inductor',
                        help='torch.compile backend of the +compile rows '
                        '(default inductor; aot_eager compiles in seconds, '
                        'for checking the tool)')
    parser.add_argument('--compile-deploy', action='store_true',
                        help='add ours-deploy+compile (inductor, frozen '
                        'weights, inference)')
    parser.add_argument('--no-traffic', action='store_true',
                        help='leave out the count of eager memory traffic')
    parser.add_argument('--no-onnx', action='store_true',
                        help='leave out the onnxruntime row')
    parser.add_argument('--modes', default='infer,train')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='write results here')
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(',') if m]
    if not args.modes or set(args.modes) - {'infer', 'train'}:
        parser.error(f'--modes takes infer and/or train, got {args.modes}')
    if args.gpu_table and args.detector:
        parser.error('--gpu-table runs the detectors itself; use --items')
    gpu = bool(args.gpu_table)
    args.device = args.device or ('cuda' if gpu else 'cpu')
    args.dtype = args.dtype or ('bf16' if gpu else 'fp32')
    if args.detector and args.modes != ['infer']:
        args.modes = ['train']  # a detector's training step, or inference
    args.size_given = args.size is not None
    if args.batch is not None and args.batch < 1 or \
            args.size is not None and args.size < 32 or \
            args.reps < 1 or args.warmup < 0:
        parser.error('need --reps >= 1, --warmup >= 0, --batch >= 1, '
                     '--size >= 32')
    args.items = _subset(parser, '--items', args.items, GPU_TABLE_ITEMS)
    args.rows = _subset(parser, '--rows', args.rows, KNOWN_ROWS)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ToolError('--device cuda: no CUDA device is available here; '
                        'run on a machine with a GPU, or pass --device cpu '
                        'for a dry run with a small --batch and --size')
    return args


def _subset(parser, flag, value, known):
    if value is None:
        return None
    chosen = [v for v in value.split(',') if v]
    unknown = [v for v in chosen if v not in known]
    if unknown or not chosen:
        parser.error(f'{flag}: unknown {unknown or "empty list"}; choose '
                     f'from {",".join(known)}')
    return chosen


@contextlib.contextmanager
def exact_fp32():
    """The fp32 equality checks in full fp32: on CUDA, cuDNN convolutions
    default to TF32 (10-bit mantissa), which alone differs by ~1e-3."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def rel(a, b):
    return ((a.double() - b.double()).norm() /
            b.double().norm().clamp_min(1e-30)).item()


def outputs(model, x, dtype, device):
    model.eval()
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
        [torch.as_tensor(o).to(x.device) for o in run_session(quiet, x_cpu)]


def int8_row(model, x, workdir, name):
    """``model`` exported to ONNX and quantized to int8 by onnxruntime's
    static quantization (:func:`mmpoolformer.deployment.quantize_onnx`,
    calibrated on a few random batches: a timing row), a step running it
    without spinning threads, and its outputs."""
    from mmpoolformer.deployment import (
        export_onnx,
        ort_session,
        quantize_onnx,
        run_session,
    )
    path = os.path.join(workdir, f'{name}.float.onnx')
    export_onnx(copy.deepcopy(model).float().cpu(), path,
                input_shape=tuple(x.shape))
    gen = torch.Generator().manual_seed(7)
    calibration = [torch.randn(x.shape, generator=gen) for _ in range(4)]
    quantized = quantize_onnx(path, os.path.join(workdir, f'{name}.onnx'),
                              calibration)
    session = ort_session(quantized, spinning=False)
    x_cpu = x.float().cpu()
    return (lambda: run_session(session, x_cpu)), \
        [torch.as_tensor(o).to(x.device) for o in run_session(session, x_cpu)]


def check_equal(outs, pairs, label, tol=TOL):
    """Relative differences of the rows' outputs, pair by pair; in fp32 one
    above ``tol`` (a number, or ``{row: number}`` for the first of a pair)
    is an error."""
    diffs = {}
    for a, b in pairs:
        if a in outs and b in outs:
            d = max(rel(p, q) for p, q in zip(outs[a], outs[b]))
            diffs[f'{a} vs {b}'] = d
            print(f'{label}: {a} vs {b}: relative difference {d:.2e}')
            limit = tol.get(a, TOL) if isinstance(tol, dict) else tol
            if label == 'fp32' and d > limit:
                raise ToolError(f'{a} and {b} differ by {d:.2e} (> {limit}):'
                                ' they do not compute the same function')
    return diffs


def _train_pass(model, x, seed):
    """Outputs, input gradient and parameter gradients (by state-dict key)
    of a forward and backward pass in training mode, fp32; the loss weighs
    every output element by a fixed random number."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    outs = [o if o.dtype == torch.float64 else o.float() for o in model(x)]
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(o.shape, generator=gen).to(o)
               for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    state = getattr(model, '_orig_mod', model).state_dict(keep_vars=True)
    grads = {k: v.grad for k, v in state.items()
             if isinstance(v, nn.Parameter) and v.requires_grad}
    model.zero_grad(set_to_none=True)
    return [o.detach() for o in outs], x.grad, grads


def _pass_diffs(got, want):
    """Relative differences of two :func:`_train_pass` results: outputs
    (worst), the input gradient, all parameter gradients as one vector, and
    the worst single parameter gradient among those not ~0 by construction."""
    (outs, gx, grads), (outs_w, gx_w, grads_w) = got, want
    if set(grads) != set(grads_w):
        raise ToolError(f'the model and its plain formulation have different '
                        f'parameters: {sorted(set(grads) ^ set(grads_w))}')
    keys = sorted(grads_w)

    def grad(g, k):
        g = g[k] if g[k] is not None else torch.zeros_like(grads_w[k])
        return g.double()
    flat = torch.cat([grad(grads, k).flatten() for k in keys])
    flat_w = torch.cat([grad(grads_w, k).flatten() for k in keys])
    largest = max(grad(grads_w, k).norm().item() for k in keys)
    per_tensor = {k: rel(grad(grads, k), grad(grads_w, k)) for k in keys
                  if grad(grads_w, k).norm().item() > 1e-6 * largest}
    worst = max(per_tensor, key=per_tensor.get)
    return dict(outputs=max(rel(a, b) for a, b in zip(outs, outs_w)),
                input_gradient=rel(gx, gx_w),
                parameter_gradients=rel(flat, flat_w),
                worst_parameter=(worst, per_tensor[worst]))


def _worst(diffs):
    return max(diffs['outputs'], diffs['input_gradient'],
               diffs['parameter_gradients'])


def plain_references(plain, x, seed):
    """The plain formulation's fp32 training pass and the same in float64,
    computed once for every row checked against them."""
    return (_train_pass(plain, x, seed),
            _train_pass(copy.deepcopy(plain).double(), x.double(), seed))


def plain_equality(model, references, x, seed):
    """One fp32 training pass of ``model`` against the plain formulation
    (the fp32 promise of tests/test_models.py), and both against the
    plain formulation in float64 (``references``: :func:`plain_references`):
    fp32 rounding alone moves deep random models by ~1e-5, so
    ``rounding_floor`` (plain fp32 vs float64) says how close two correct
    fp32 implementations can be expected to agree, and ``vs_float64``
    whether ours is any less accurate than the plain one."""
    plain32, exact = references
    ours = _train_pass(model, x, seed)
    out = _pass_diffs(ours, plain32)
    out['vs_float64'] = _worst(_pass_diffs(ours, exact))
    out['rounding_floor'] = _worst(_pass_diffs(plain32, exact))
    return out


def peak_train_mb(step, model, device):
    """Peak memory of one training step (optimizer state already made)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)
        model.zero_grad(set_to_none=True)  # the step's gradients count
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with PeakLiveBytes() as meter:
        step()
    return meter.peak / 2**20


def _graph_breaks():
    from torch._dynamo.utils import counters
    return sum(counters['graph_break'].values())


class _RecompileLimitHits(logging.Handler):
    """Counts dynamo's 'hit config.recompile_limit' warnings: from then on
    that function runs eagerly, so the compiled row is partly eager."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record):
        self.count += str(record.msg).startswith('torch._dynamo hit config.')


def _short(error: BaseException) -> str:
    text = f'{type(error).__name__}: {error}'.strip().splitlines()[0]
    return text[:200]


class FirstCalls:
    """The untimed first calls of the compiled rows: their time (the
    compilation) and graph breaks are recorded; a failure in eval mode
    drops the row, one in training mode its training step."""

    def __init__(self):
        self.seconds, self.breaks, self.failed = {}, {}, {}
        self.limit_hits = {}

    def has_failed(self, name, mode='infer'):
        return name in self.failed or (
            mode == 'train' and f'{name} (train)' in self.failed)

    def run(self, name, fn, mode='infer'):
        """``fn()``'s result, or None when ``name`` is a compiled row that
        failed in ``mode`` (now or earlier)."""
        if self.has_failed(name, mode):
            return None
        if '+compile' not in name:
            return fn()
        breaks = _graph_breaks()
        result = []
        hits = _RecompileLimitHits()
        dynamo_log = logging.getLogger('torch._dynamo.convert_frame')
        dynamo_log.addHandler(hits)
        try:
            ms = time_ms(lambda: result.append(fn()), 'cpu')
        except Exception as e:  # noqa: BLE001 (any compiler error)
            key = name if mode == 'infer' else f'{name} (train)'
            self.failed[key] = _short(e)
            print(f'{key}: FAILED ({self.failed[key]})')
            return None
        finally:
            dynamo_log.removeHandler(hits)
        self.seconds[name] = self.seconds.get(name, 0.) + ms / 1e3
        self.breaks[name] = self.breaks.get(name, 0) + _graph_breaks() - \
            breaks
        self.limit_hits[name] = self.limit_hits.get(name, 0) + hits.count
        return result[0]


def select_rows(args, defaults):
    rows = list(args.rows or defaults)
    if args.no_compile:
        rows = [r for r in rows if '+compile' not in r]
    if args.no_onnx or 'infer' not in args.modes:
        rows = [r for r in rows if r != 'onnxruntime']
    if args.compile_deploy and 'ours-deploy+compile' not in rows:
        rows.append('ours-deploy+compile')
    return rows


def run_backbones(args, wanted=None):
    wanted = wanted or select_rows(args, DEFAULT_ROWS)
    eager = build_backbones(args.arch, args.seed)
    ref_name = 'mmpretrain' if 'mmpretrain' in eager else 'timm'
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(args.seed + 3)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    x = x.to(args.device).contiguous(memory_format=fmt)
    for m in eager.values():
        m.to(args.device, memory_format=fmt)
    models = {n: m for n, m in eager.items() if n in wanted}
    for base in COMPILABLE + ('ours-deploy', ):
        name = f'{base}+compile'
        if name in wanted and base in eager:
            models[name] = compiled(eager[base], base == 'ours-deploy',
                                    args.compile_backend)

    first = FirstCalls()
    outs = {}
    for name, m in models.items():
        with exact_fp32():
            got = first.run(name, lambda: outputs(m, x, 'fp32', args.device))
        if got is not None:
            outs[name] = got
    steps, ort_spinning = {}, None
    workdir = tempfile.TemporaryDirectory()
    if 'onnxruntime' in wanted:
        print(f'exporting {ref_name} to ONNX for onnxruntime')
        ort_step, ort_spinning, outs['onnxruntime'] = onnx_row(
            eager[ref_name], x, workdir.name)
        steps['onnxruntime'] = dict(infer=ort_step)
    int8 = {}
    for name in INT8_ROWS:
        if name in wanted:
            source = eager['ours' if name == 'ours-int8' else ref_name]
            print(f'quantizing {"ours" if name == "ours-int8" else ref_name}'
                  ' to int8 (onnxruntime, static)')
            step, got = int8_row(source, x, workdir.name, name)
            steps[name] = dict(infer=step)
            int8[name] = max(rel(p, q) for p, q in zip(
                got, outputs(source, x, 'fp32', args.device)))
            print(f'int8 vs fp32, {name}: relative deviation '
                  f'{int8[name]:.2e}')
    pairs = [('ours', 'mmpretrain'), ('ours-plain', 'mmpretrain'),
             ('ours', 'ours-plain'), ('ours-lean', 'ours-plain'),
             ('ours-packed', 'ours-plain'),
             ('ours-raw', 'timm'),
             ('ours-deploy', 'ours'), ('onnxruntime', ref_name)] + \
        [(n, n.split('+')[0]) for n in models if '+compile' in n]
    diffs = check_equal(outs, pairs, 'fp32')
    low = None
    if args.dtype != 'fp32':  # the deviation of the low-precision path
        low = {}
        for n, m in models.items():
            got = first.run(n, lambda: outputs(m, x, args.dtype, args.device))
            if got is not None:
                low[n] = max(rel(p, q) for p, q in zip(got, outs[n]))
                print(f'{args.dtype} vs fp32, {n}: relative deviation '
                      f'{low[n]:.2e}')

    # ours (and, in fp32 runs, ours compiled) against the plain
    # formulation, outputs and gradients in fp32
    equality = {}
    checked = [n for n in ('ours', 'ours+compile')
               if n in models and (n == 'ours' or args.dtype == 'fp32')]
    if 'train' in args.modes and checked:
        with exact_fp32():
            references = plain_references(eager['ours-plain'], x, args.seed)
        for n in checked:
            with exact_fp32():
                got = first.run(n, lambda: plain_equality(
                    models[n], references, x, args.seed), 'train')
            if got is not None:
                equality[n] = got
                print(f'fp32 train pass, {n} vs ours-plain: outputs '
                      f'{got["outputs"]:.2e}, input gradient '
                      f'{got["input_gradient"]:.2e}, parameter '
                      f'gradients {got["parameter_gradients"]:.2e} '
                      f'(worst tensor {got["worst_parameter"][0]}: '
                      f'{got["worst_parameter"][1]:.2e}); against '
                      f'float64: ours {got["vs_float64"]:.2e}, '
                      f'ours-plain {got["rounding_floor"]:.2e}')

    peak, saved, floor_info = {}, {}, {}
    for name, m in models.items():
        if name in first.failed:
            continue
        steps[name] = backbone_steps(m, x, args.dtype, args.device)
        if name in INFER_ONLY:
            del steps[name]['train']
        for mode in args.modes:  # compiles the dtype's graphs; AdamW state
            if mode in steps[name]:
                first.run(name, steps[name][mode], mode)
                if first.has_failed(name, mode):
                    del steps[name][mode]
        if not steps[name]:
            del steps[name]
            continue
        if 'train' in args.modes and 'train' in steps[name] and (
                is_cuda(args.device) or '+compile' not in name):
            peak[name] = peak_train_mb(steps[name]['train'], m, args.device)
            if '+compile' not in name:
                m.train()
                with autocast(args.dtype, args.device):
                    saved[name] = saved_activation_bytes(
                        lambda: m(x), m.parameters())
    floors = [n for n in ('floor', 'floor+convs') if n in wanted]
    if floors:  # the products of the plain formulation, autocast's dtype
        recorded = record_gemms(eager['ours-plain'].eval(), x)
        dtype = torch.float32 if args.dtype == 'fp32' else \
            torch.float16 if args.dtype == 'amp' and is_cuda(args.device) \
            else torch.bfloat16
        for name in floors:
            gemms = recorded['gemm'] + (recorded['conv'] if name ==
                                        'floor+convs' else Counter())
            steps[name] = {m: s for m, s in gemm_floor_steps(
                gemms, dtype, args.device).items() if m in args.modes}
            floor_info[name] = dict(
                gemms=len(gemms), products=sum(gemms.values()),
                infer_gflop=gemm_flops(gemms, False) / 1e9,
                train_gflop=gemm_flops(gemms, True) / 1e9)
    timed = interleaved_medians(steps, args.modes, args.reps, args.warmup,
                                args.device)
    if ort_spinning is not None:
        print('onnxruntime with its default (spinning) threads, alone')
        alone = {'onnxruntime (spinning, alone)': dict(infer=ort_spinning())}
        timed.update(interleaved_medians(alone, ['infer'], args.reps,
                                         args.warmup))
        steps.update(alone)
    workdir.cleanup()

    rows = {}
    for name in sorted(steps, key=lambda n: wanted.index(n) if n in wanted
                       else len(wanted)):
        r = {f'{m}_ms': t['median_ms'] for m, t in timed[name].items()}
        r.update({f'{m}_ms_all': t['all_ms'] for m, t in timed[name].items()})
        r['output_norms'] = has_output_norms(name, ref_name)
        if name in peak:
            r['peak_train_mb'] = peak[name]
        if name in saved:
            r['saved_activations_mb'] = saved[name] / 2**20
        if name in first.seconds:
            r['compile_s'] = first.seconds[name]
            r['graph_breaks'] = first.breaks[name]
            r['recompile_limit_hits'] = first.limit_hits[name]
        rows[name] = r
    targets = BACKBONE_TARGETS['onnxruntime'] + BACKBONE_TARGETS[ref_name]
    traffic = None
    if not args.no_traffic:
        traffic = eager_traffic(eager, args.size)
        print(format_traffic(traffic))
    extra = dict(traffic=traffic, max_rel_diff_fp32=diffs,
                 low_precision_rel_deviation=low, int8_rel_deviation=int8,
                 reference=ref_name, failed_rows=first.failed,
                 plain_equality_detail=equality,
                 plain_equality={n: _worst(e) for n, e in equality.items()},
                 floor=floor_info)
    return rows, targets, extra


def run_detectors(args, kind=None, batch=None, size_hw=None):
    """Training steps (ours, mmpretrain's backbone) or inference (those and
    ours-packed), by ``args.modes``."""
    kind = kind or args.detector
    models = build_detectors(kind, args.seed)
    if args.modes == ['infer']:
        return run_detector_inference(args, kind, models, batch, size_hw)
    models.pop('ours-packed')
    inputs, samples = detector_batch(kind, batch or args.batch,
                                     size_hw or args.size, args.seed,
                                     args.device)
    losses = {}
    for name, m in models.items():
        m.to(args.device).train()
        with torch.no_grad(), exact_fp32():
            torch.manual_seed(args.seed)
            loss, _ = m.parse_losses(m.loss(inputs, samples))
        losses[name] = loss.item()
    d = abs(losses['ours'] - losses['mmpretrain']) / abs(losses['mmpretrain'])
    print(f'loss ours {losses["ours"]:.6f}, mmpretrain backbone '
          f'{losses["mmpretrain"]:.6f}: relative difference {d:.2e}')
    if d > TOL:
        raise ToolError(f'the two {kind} models disagree ({d:.2e})')
    steps, peak = {}, {}
    for name, m in models.items():
        steps[name] = detector_steps(m, inputs, samples, args.dtype,
                                     args.device)
        steps[name]['train']()  # optimizer state exists before the peak
        peak[name] = peak_train_mb(steps[name]['train'], m, args.device)
    timed = interleaved_medians(steps, ['train'], args.reps, args.warmup,
                                args.device)
    rows = {n: dict(train_ms=timed[n]['train']['median_ms'],
                    train_ms_all=timed[n]['train']['all_ms'],
                    peak_train_mb=peak[n]) for n in steps}
    return rows, DETECTOR_TARGETS[kind], dict(loss_rel_diff=d, losses=losses)


def run_detector_inference(args, kind, models, batch, size_hw):
    """The whole model's tensor forward at its config's test size (batch
    1 by default), ours (default and packed backbone) against the same
    model on mmpretrain's backbone, in ``args.dtype``; unless left out, both
    under ``torch.compile`` and both in onnxruntime (:func:`whole_model_rows`).
    """
    size_hw = size_hw or ((args.size, args.size) if args.size_given else
                          detector_test_input(kind))
    inputs, samples = detector_batch(kind, batch or args.batch, size_hw,
                                     args.seed, args.device)
    for m in models.values():
        m.to(args.device).eval()
    steps = {n: dict(infer=detector_steps(m, inputs, samples, args.dtype,
                                          args.device)['infer'],
                     fp32=partial(_infer, m._forward, inputs, 'fp32',
                                  args.device))
             for n, m in models.items()}
    workdir = tempfile.TemporaryDirectory()
    steps.update(whole_model_rows(models, inputs, args, workdir.name))
    outs = {}
    for name, step in steps.items():
        with exact_fp32():
            outs[name] = [torch.as_tensor(o).float()
                          for o in flat_outputs(step['fp32']())]
    diffs = check_equal(outs, [(n, 'mmpretrain') for n in steps
                               if n != 'mmpretrain'], 'fp32',
                        {n: ORT_TOL for n in steps if 'onnxruntime' in n})
    timed = interleaved_medians(steps, ['infer'], args.reps, args.warmup,
                                args.device)
    workdir.cleanup()
    rows = {n: dict(infer_ms=timed[n]['infer']['median_ms'],
                    infer_ms_all=timed[n]['infer']['all_ms']) for n in steps}
    print(f'{kind} inference input {size_hw[0]}x{size_hw[1]}')
    return rows, DETECTOR_TARGETS[f'{kind} inference'], dict(
        max_rel_diff_fp32=diffs, size_hw=list(size_hw))


def flat_outputs(outs):
    """A model's tensor outputs flattened (heads return per-level lists)."""
    flat = []
    for o in outs:
        flat.extend(o if isinstance(o, (list, tuple)) else [o])
    return flat


def whole_model_rows(models, inputs, args, workdir):
    """``{row: {'infer': fn, 'fp32': fn}}``: ``ours+compile`` and
    ``mmpretrain+compile`` (``torch.compile`` of the model's tensor part, as
    a user compiles it)
    and, on a CPU in fp32, ``ours-onnxruntime`` / ``mmpretrain-onnxruntime``
    (the tensor part exported to ONNX at the input's shape by the
    TorchScript exporter, ours after ``switch_to_deploy()``, run by
    onnxruntime without spinning threads): the graph mmdeploy writes
    without its post-processing, which is the same for every row."""
    from mmpoolformer.deployment import (
        TensorPart,
        export_onnx,
        ort_session,
        run_session,
        switched_to_deploy,
    )
    rows = {}
    for name in ('ours', 'mmpretrain'):
        model = models[name]
        if not args.no_compile:
            part = compiled(TensorPart(model).eval(),
                            backend=args.compile_backend)
            rows[f'{name}+compile'] = dict(
                infer=partial(_infer, part, inputs, args.dtype, args.device),
                fp32=partial(_infer, part, inputs, 'fp32', args.device))
        if args.no_onnx or args.device != 'cpu' or args.dtype != 'fp32':
            continue
        deployed = switched_to_deploy(model)[0].eval()
        path = os.path.join(workdir, f'{name}.onnx')
        print(f'exporting the {name} model to ONNX for onnxruntime')
        export_onnx(TensorPart(deployed), path,
                    input_shape=tuple(inputs.shape), dynamic=False,
                    dynamo=False)
        session = ort_session(path, spinning=False)
        step = partial(run_session, session, inputs)
        rows[f'{name}-onnxruntime'] = dict(infer=step, fp32=step)
    return rows


def _infer(model, inputs, dtype, device):
    with torch.inference_mode(), autocast(dtype, device):
        return model(inputs)


#: the CPU flags that say which matrix engine runs bf16 and int8 GEMMs
MATRIX_FLAGS = ('amx_bf16', 'amx_int8', 'avx512_bf16', 'avx512_vnni')


def cpu_matrix_engines() -> dict:
    """``{flag: present}`` of :data:`MATRIX_FLAGS` (Linux: /proc/cpuinfo;
    elsewhere all unknown, None)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next((line.split(':', 1)[1].split() for line in f
                          if line.startswith('flags')), [])
    except OSError:
        return dict.fromkeys(MATRIX_FLAGS)
    return {flag: flag in flags for flag in MATRIX_FLAGS}


def describe_matrix_engines(engines: dict) -> str:
    if engines.get('amx_bf16') is None:
        return 'CPU matrix engines: unknown (no /proc/cpuinfo)'
    amx = 'AMX (bf16 and int8 tiles)' if engines['amx_bf16'] else 'no AMX'
    rest = ', '.join(f'{name}: {"yes" if engines[name] else "no"}'
                     for name in ('avx512_bf16', 'avx512_vnni'))
    return (f'CPU matrix engines: {amx}; {rest}. Every ratio is against '
            "this machine's own GEMM floor and peers")


def environment(args):
    return dict(
        torch=torch.__version__, threads=torch.get_num_threads(),
        machine=platform.machine(), python=platform.python_version(),
        processor=platform.processor(),
        cpu_matrix_engines=cpu_matrix_engines(),
        device=(torch.cuda.get_device_name() if is_cuda(args.device)
                else f'CPU, {os.cpu_count()} cores'))


def gpu_table(args):
    """The GPU table, item by item into ``args.gpu_table`` (resumable)."""
    path = args.gpu_table
    table = dict(items={})
    if os.path.exists(path):
        with open(path) as f:
            table = json.load(f)
    items = args.items or list(GPU_TABLE_ITEMS)
    for item in items:
        if item in table['items']:
            print(f'{item}: already in {path}, kept (delete it there to '
                  'measure again)')
            continue
        item_args = copy.copy(args)
        if item in DETECTORS:
            batch, size_hw = detector_training_input(item)
            batch = args.batch or batch
            size_hw = (args.size, args.size) if args.size else size_hw
            item_args.modes = ['train']
            print(f'\n=== {item}: {batch} x {size_hw[0]}x{size_hw[1]}')
            rows, targets, extra = run_detectors(item_args, item, batch,
                                                 size_hw)
            config = dict(batch=batch, size_hw=list(size_hw))
            kind = 'detector'
        else:
            item_args.arch = item
            item_args.batch = args.batch or 128
            item_args.size = args.size or 224
            print(f'\n=== {item}: {item_args.batch} x {item_args.size}²')
            rows, _, extra = run_backbones(
                item_args, select_rows(item_args, GPU_TABLE_ROWS))
            config = dict(batch=item_args.batch, size=item_args.size)
            kind = 'backbone'
            targets = None
        res = dict(kind=kind, config=config, rows=rows, **extra)
        res['targets'] = check_targets(res, targets) if targets else \
            gpu_table_targets(res)
        table['items'][item] = res
        torch._dynamo.reset()  # the item's compiled graphs and models go
        gc.collect()
        if is_cuda(args.device):
            torch.cuda.empty_cache()
        table.update(dtype=args.dtype, device=args.device,
                     reps=args.reps, environment=environment(args))
        with open(path, 'w') as f:
            json.dump(table, f, indent=2)
        print(f'{item} written to {path}')
    print(f'\nGPU table: {table.get("environment", {}).get("device")}, '
          f'{args.dtype}, medians of {args.reps}')
    print(format_gpu_table(table))
    return table


def main(argv=None):
    try:
        args = parse_args(argv)
        torch.manual_seed(args.seed)
        if args.gpu_table:
            return gpu_table(args)
        detector_infer = args.detector and args.modes == ['infer']
        args.batch = args.batch or (1 if detector_infer else
                                    2 if args.detector else 8)
        args.size = args.size or (512 if args.detector else 224)
        rows, targets, extra = (run_detectors if args.detector
                                else run_backbones)(args)
        results = dict(
            config={k: v for k, v in vars(args).items() if k != 'json'},
            environment=environment(args), rows=rows, **extra)
        results['targets'] = check_targets(results, targets)
        if not args.detector:
            results['targets'] += peer_targets(results) + \
                low_precision_targets(results)
        what = args.detector or args.arch
        if not is_cuda(args.device):
            print(describe_matrix_engines(cpu_matrix_engines()))
        h, w = results.get('size_hw') or (args.size, args.size)
        print(f'\n{what}  batch {args.batch}  {h}x{w}  '
              f'{args.dtype}  {args.device}'
              f'{"  channels_last" if args.channels_last else ""}  '
              f'{torch.get_num_threads()} threads  median of {args.reps}')
        print(format_table(results))
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(results, f, indent=2)
            print(f'results written to {args.json}')
        return results
    except ToolError as exc:
        raise SystemExit(f'benchmark.py: error: {exc}') from None


if __name__ == '__main__':
    main()
