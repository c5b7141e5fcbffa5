"""Speed and activation memory of our backbone against the references.

    python tools/analysis_tools/benchmark.py [--arch poolformer_s12] \
        [--batch 8] [--size 224] [--reps 20] [--warmup 3] [--dtype fp32|bf16] \
        [--channels-last] [--compile] [--json out.json] [--modes infer,train]

Models (all compute the same function, checked before timing):

* ``ours``: our backbone (``PoolFormer`` / ``PoolFormerV2`` / ``ConvFormer``)
  with its output norms, as the detectors and segmentors use it;
* ``ours-raw``: the same weights with the output norms replaced by
  ``nn.Identity``, i.e. the raw stage maps that timm's ``features_only``
  model returns;
* ``mmpretrain`` (poolformer_s12 only): mmpretrain's ``PoolFormer('s12',
  out_indices=(0, 2, 4, 6))``, which has output norms like ``ours``;
* ``timm``: ``timm.create_model(ARCH, features_only=True)``.

Weights: mmpretrain's model (or, for the other archs, timm's full model) is
randomised, converted with :func:`convert_to_mmpoolformer` and loaded into
ours (as in ``tests/test_reference_equality.py``); timm gets the same values
through the converter's key mapping (matched by value). Before timing, every
pair is asserted to agree within ``1e-4`` in fp32 and the max abs difference
is printed. Pairs compared: ours vs mmpretrain, ours-raw vs timm (same math)
and ours vs timm (ours pays for its four output norms).

Measurements, interleaved round-robin over the models for every repetition
(the starting model rotates each repetition) so that machine noise hits all
of them alike:

* ``infer``: one forward under ``torch.inference_mode``; median ms per batch;
* ``train``: forward of the four stage outputs, loss = sum of their means,
  backward, ``AdamW`` step (each model its own optimizer); median ms;
* ``saved activations MB``: not a peak-RSS measurement but the bytes of the
  distinct tensor storages that autograd saves for backward during one
  training forward (``torch.autograd.graph.saved_tensors_hooks``),
  parameters and autocast's bf16 copies of them excluded; measured once per model, eagerly (also with
  ``--compile``), with the chosen dtype and memory layout.

Ratios are reference / ours: ``> 1`` means ours is faster (or saves less).
Threads are left at the torch default.
"""
import argparse
import contextlib
import copy
import json
import os.path as osp
import platform
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))

from mmengine.utils import track_iter_progress  # noqa: E402

from mmpoolformer.checkpoint import convert_to_mmpoolformer  # noqa: E402

ARCHS = {  # timm name -> (our family, our arch, mmpretrain arch or None)
    'poolformer_s12': ('PoolFormer', 's12', 's12'),
    'poolformerv2_s12': ('PoolFormerV2', 's12', None),
    'convformer_s18': ('ConvFormer', 's18', None),
}
TOL = 1e-4
PAIRS = [('ours', 'mmpretrain'), ('ours-raw', 'timm'), ('ours', 'timm')]


# ----------------------------------------------------------------- weights
def randomise_(model, seed=0):
    """Non-trivial values everywhere (layer/residual scales and norm affines
    included) so that a mistake in any branch would change the outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'scale' in name or name.endswith(('norm1.weight',
                                                 'norm2.weight')):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def key_mapping(source, converted):
    """``{source_key: converted_key}`` by value: the converter only renames
    and reshapes, and randomised values are unique."""
    by_numel = {}
    for k, v in converted.items():
        by_numel.setdefault(v.numel(), []).append(k)
    mapping = {}
    for k, v in source.items():
        flat = v.reshape(-1)
        hits = [c for c in by_numel.get(v.numel(), [])
                if torch.equal(converted[c].reshape(-1), flat)]
        if len(hits) != 1:
            raise RuntimeError(f'cannot map {k!r} to our layout: {hits}')
        mapping[k] = hits[0]
    return mapping


def build_models(timm_name, seed=0):
    """The models, all computing the same function, in eval mode, fp32."""
    import timm

    from mmpoolformer import models as our_models
    family, arch, mm_arch = ARCHS[timm_name]
    ours = getattr(our_models, family)(arch)
    randomise_(ours, seed)  # output norms get values even if no ref has them
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    built = {}
    if mm_arch is not None:
        from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
        mm = randomise_(MMPretrainPoolFormer(mm_arch, out_indices=(0, 2, 4, 6)),
                        seed + 1)
        fmt, sd = convert_to_mmpoolformer(
            {f'backbone.{k}': v for k, v in mm.state_dict().items()}, shapes)
        assert fmt == 'mmpretrain', fmt
        ours.load_state_dict(sd, strict=True)
        built['mmpretrain'] = mm

    full = randomise_(timm.create_model(timm_name), seed + 2)
    fmt, sd = convert_to_mmpoolformer(full.state_dict(), shapes)
    full_sd = {k: v for k, v in full.state_dict().items()
               if not k.startswith('head.')}
    assert fmt == 'timm', fmt
    if mm_arch is None:  # timm is the only reference: ours from timm
        missing, unexpected = ours.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.startswith('norm') for k in missing)
    # timm gets ours' values (== mmpretrain's when there is one)
    ours_sd = ours.state_dict()
    timm_sd = {k: ours_sd[c].reshape(full_sd[k].shape).clone()
               for k, c in key_mapping(full_sd, sd).items()}
    features = timm.create_model(timm_name, features_only=True)
    # features_only flattens ``stages.i`` into ``stages_i``
    features.load_state_dict({k.replace('stages.', 'stages_'): v
                              for k, v in timm_sd.items()}, strict=True)

    raw = copy.deepcopy(ours)
    for i in raw.out_indices:
        setattr(raw, f'norm{i}', nn.Identity())
    result = {'ours': ours, 'ours-raw': raw}
    result.update(built)
    result['timm'] = features
    for m in result.values():
        m.eval()  # mmpretrain's train() override returns None: no chaining
    return result


# ------------------------------------------------------------------ timing
def autocast(dtype):
    if dtype == 'bf16':
        return torch.autocast('cpu', dtype=torch.bfloat16)
    return contextlib.nullcontext()


def as_tuple(outs):
    return tuple(outs)


def max_diffs(models, x, dtype):
    """Max abs difference of every compared pair, over the four outputs."""
    with torch.inference_mode(), autocast(dtype):
        outs = {n: [o.float() for o in as_tuple(m(x))]
                for n, m in models.items()}
    diffs = {}
    for a, b in PAIRS:
        if a in outs and b in outs and not (a == 'ours' and b == 'timm'):
            assert len(outs[a]) == len(outs[b]) == 4
            for i, (p, q) in enumerate(zip(outs[a], outs[b])):
                assert p.shape == q.shape, (a, b, i, p.shape, q.shape)
            diffs[f'{a} vs {b}'] = max(
                (p - q).abs().max().item() for p, q in zip(outs[a], outs[b]))
    return diffs


def is_weight_cast(t):
    """A dtype copy of a parameter (what autocast makes and caches)."""
    fn = t.grad_fn
    return (fn is not None and type(fn).__name__ == 'ToCopyBackward0'
            and all(type(n).__name__ == 'AccumulateGrad'
                    for n, _ in fn.next_functions if n is not None))


def saved_activation_bytes(model, x, dtype):
    """Bytes of distinct storages saved for backward by one forward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen = {}

    def pack(t):
        if is_weight_cast(t):  # autocast's low-precision copy of a weight
            return t
        try:
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in params:
                seen[ptr] = storage.nbytes()
        except (NotImplementedError, RuntimeError):  # e.g. mkldnn tensors
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            autocast(dtype):
        outs = as_tuple(model(x))
        loss = sum(o.float().mean() for o in outs)
    del loss, outs
    return sum(seen.values())


def make_steps(model, x, dtype):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=1e-4)

    def infer():
        with torch.inference_mode(), autocast(dtype):
            model(x)

    def train():
        opt.zero_grad(set_to_none=True)
        with autocast(dtype):
            outs = as_tuple(model(x))
            loss = sum(o.float().mean() for o in outs)
        loss.backward()
        opt.step()

    return dict(infer=infer, train=train)


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='poolformer_s12', choices=ARCHS)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--reps', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--dtype', default='fp32', choices=['fp32', 'bf16'])
    parser.add_argument('--channels-last', action='store_true')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile every model (after the checks)')
    parser.add_argument('--modes', default='infer,train',
                        help='comma-separated subset of infer,train')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', default=None, help='write the results here')
    args = parser.parse_args(argv)
    args.modes = [m for m in args.modes.split(',') if m]
    bad = set(args.modes) - {'infer', 'train'}
    if bad or not args.modes:
        parser.error(f'--modes takes infer and/or train, got {args.modes}')
    if args.reps < 1 or args.warmup < 0 or args.batch < 1 or args.size < 32:
        parser.error('need --reps >= 1, --warmup >= 0, --batch >= 1, '
                     '--size >= 32')
    return args


def _table(first, width, rows, columns):
    """Rows of {key: value} under ``columns`` = [(header, key, fmt), ...]."""
    head = f'{first:<{width}}' + ''.join(f'{h:>{len(h) + 3}}'
                                         for h, _, _ in columns)
    lines = [head, '-' * len(head)]
    for name, r in rows.items():
        lines.append(f'{name:<{width}}' + ''.join(
            f'{format(r[k], f):>{len(h) + 3}}' for h, k, f in columns))
    return lines + ['']


def format_table(results):
    modes = results['config']['modes']
    infer = 'infer' in modes
    train = 'train' in modes
    lines = _table('model', 12, results['models'],
                   [('infer ms', 'infer_ms', '.2f')] * infer +
                   [('train ms', 'train_ms', '.2f'),
                    ('saved act MB', 'saved_activations_mb', '.1f')] * train)
    lines += _table('ratio ref/ours (>1: ours better)', 34, results['ratios'],
                    [('infer', 'infer', '.3f')] * infer +
                    [('train', 'train', '.3f'),
                     ('saved act', 'saved_activations', '.3f')] * train)
    lines.append('onnxruntime yardstick: skipped: onnxruntime not installed'
                 if results['onnx'] is None else str(results['onnx']))
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    models = build_models(args.arch, args.seed)
    layout = torch.channels_last if args.channels_last \
        else torch.contiguous_format
    x = torch.randn(args.batch, 3, args.size, args.size,
                    generator=torch.Generator().manual_seed(args.seed + 3))
    x = x.contiguous(memory_format=layout)
    for m in models.values():
        m.to(memory_format=layout)

    # equality, in fp32 (asserted) and, with bf16, under autocast (reported)
    diffs = max_diffs(models, x, 'fp32')
    for pair, d in diffs.items():
        print(f'max abs diff {pair} (fp32): {d:.3e}')
        assert d <= TOL, f'{pair} differ by {d:.3e} > {TOL}'
    bf16_diffs = None
    if args.dtype == 'bf16':
        bf16_diffs = max_diffs(models, x, 'bf16')
        for pair, d in bf16_diffs.items():
            print(f'max abs diff {pair} (bf16 autocast, not asserted): '
                  f'{d:.3e}')

    saved = {}
    if 'train' in args.modes:
        for name, m in models.items():
            m.train()
            saved[name] = saved_activation_bytes(m, x, args.dtype)

    compiled = {n: torch.compile(m) if args.compile else m
                for n, m in models.items()}
    runners = {n: make_steps(m, x, args.dtype) for n, m in compiled.items()}
    compiled_diffs = None
    if args.compile:  # the compiled models must still agree (compiles infer)
        for m in models.values():
            m.eval()
        compiled_diffs = max_diffs(compiled, x, 'fp32')
        for pair, d in compiled_diffs.items():
            print(f'max abs diff {pair} (fp32, compiled): {d:.3e}')
            assert d <= TOL, f'compiled {pair} differ by {d:.3e} > {TOL}'
    names = list(models)

    def run_round(rep, record):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for mode in args.modes:
            for name in order:
                models[name].train(mode == 'train')
                ms = timed(runners[name][mode])
                if record is not None:
                    record[name][mode].append(ms)

    if args.warmup:
        print(f'warm-up ({args.warmup} rounds over {len(names)} models)')
        for rep in track_iter_progress(list(range(args.warmup))):
            run_round(rep, None)
    times = {n: {m: [] for m in args.modes} for n in names}
    print(f'timing ({args.reps} interleaved rounds)')
    for rep in track_iter_progress(list(range(args.reps))):
        run_round(rep, times)

    per_model = {}
    for name in names:
        r = {}
        for mode in args.modes:
            r[f'{mode}_ms'] = statistics.median(times[name][mode])
            r[f'{mode}_ms_all'] = times[name][mode]
        if 'train' in args.modes:
            r['saved_activations_mb'] = saved[name] / 2**20
        per_model[name] = r
    ratios = {}
    for a, b in PAIRS:
        if a in per_model and b in per_model:
            r = {}
            for mode in args.modes:
                r[mode] = per_model[b][f'{mode}_ms'] / per_model[a][f'{mode}_ms']
            if 'train' in args.modes:
                r['saved_activations'] = (per_model[b]['saved_activations_mb']
                                          / per_model[a]['saved_activations_mb'])
            ratios[f'{b} / {a}'] = r

    results = dict(
        config=dict(arch=args.arch, batch=args.batch, size=args.size,
                    reps=args.reps, warmup=args.warmup, dtype=args.dtype,
                    channels_last=args.channels_last, compile=args.compile,
                    modes=args.modes, seed=args.seed),
        environment=dict(torch=torch.__version__,
                         threads=torch.get_num_threads(),
                         machine=platform.machine(),
                         python=platform.python_version()),
        max_abs_diff_fp32=diffs, max_abs_diff_bf16=bf16_diffs,
        max_abs_diff_fp32_compiled=compiled_diffs,
        models=per_model, ratios=ratios,
        saved_activations_note=(
            'bytes of distinct storages saved for backward in one eager '
            'training forward, parameters (and their autocast copies) '
            'excluded; not peak RSS'),
        onnx=None, onnx_note='skipped: onnxruntime not installed')
    print()
    print(f"{args.arch}  batch {args.batch}  {args.size}x{args.size}  "
          f"{args.dtype}  {'channels_last' if args.channels_last else 'contiguous'}"
          f"{'  compiled' if args.compile else ''}  "
          f"{torch.get_num_threads()} threads  median of {args.reps}")
    print(format_table(results))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'results written to {args.json}')
    return results


if __name__ == '__main__':
    main()
