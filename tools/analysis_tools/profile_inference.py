"""Where inference time goes: a backbone's forward under torch.profiler,
each kernel's self time sorted into what it computes.

    python tools/analysis_tools/profile_inference.py --arch poolformer_s12 \
        [--dtype bf16|fp32] [--compile] [--formulation auto] \
        [--batch 8] [--size 224] [--reps 5] [--top 15]

Categories: ``gemm`` (linear layers and 1x1 convolutions: what the GEMM
floor of the benchmark counts), ``conv`` (stem and downsampling
convolutions), ``depthwise`` (ConvFormer's 7x7), ``fused`` (inductor's
generated kernels, one per group of fused element-wise and reduction ops),
``norm``, ``pool``, ``elementwise``, ``layout`` (copies, reorders,
dtype conversions) and ``other``. Under ``--compile`` inductor is asked to
name its kernels in the profile (``cpp.enable_kernel_profile``); the
kernels' names say which ops each one fuses.
"""
import argparse
import functools
import re
from collections import defaultdict

import torch

GEMM_OPS = ('linear', 'addmm', 'mm', 'bmm', 'matmul', '_linear_pointwise',
            'mkl_linear', 'baddbmm')
CONV_OPS = ('convolution', '_convolution_pointwise', 'mkldnn_convolution',
            'conv2d', '_convolution', 'cudnn_convolution')
LAYOUT_OPS = ('copy_', 'contiguous', 'clone', 'to', '_to_copy', 'reorder',
              'to_dense', 'to_mkldnn', 'permute', 'transpose', 'view',
              'reshape', 'as_strided', 'empty', 'empty_strided', 'resize_')
NORM_OPS = ('native_group_norm', 'group_norm', 'native_layer_norm',
            'layer_norm', 'var_mean', 'batch_norm')
POOL_OPS = ('avg_pool2d', 'max_pool2d')


def _conv_kind(shapes) -> str:
    """``gemm`` for a 1x1 convolution, ``depthwise`` for one group per
    channel, else ``conv``, from the recorded input shapes."""
    if len(shapes) < 2 or len(shapes[1]) != 4:
        return 'conv'
    out_c, in_per_group, kh, kw = shapes[1]
    if kh == kw == 1:
        return 'gemm'
    return 'depthwise' if in_per_group == 1 else 'conv'


def category(name: str, shapes) -> str:
    """What a profiled kernel computes (see the module doc)."""
    if 'cpp_fused' in name or name.startswith(('graph_', 'kernel_')):
        return 'fused'
    op = re.sub(r'^(aten|mkldnn|mkl|inductor)::', '', name).split('.')[0]
    if op in GEMM_OPS:
        return 'gemm'
    if op in CONV_OPS:
        return _conv_kind(shapes)
    if op in NORM_OPS:
        return 'norm'
    if op in POOL_OPS:
        return 'pool'
    if op in LAYOUT_OPS:
        return 'layout'
    if name.startswith('aten::'):
        return 'elementwise'
    return 'other'


def build(arch: str, formulation: str):
    """Our backbone of a benchmark arch (randomised weights, eval mode)."""
    from mmpoolformer import models as our_models

    from speed import ARCHS
    from speed.models import randomise_
    family, our_arch, _ = ARCHS[arch]
    model = getattr(our_models, family)(our_arch, formulation=formulation)
    return randomise_(model).eval()


def profile(model, x, dtype: str, reps: int):
    """Per-category self time (ms per forward, mean over ``reps``) and the
    events, from torch.profiler."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    autocast = functools.partial(torch.autocast, 'cpu', torch.bfloat16,
                                 enabled=dtype == 'bf16')
    with torch.inference_mode(), autocast():
        for _ in range(2):
            model(x)
        with torch_profile(activities=[ProfilerActivity.CPU],
                           record_shapes=True) as prof:
            for _ in range(reps):
                model(x)
    events = prof.key_averages(group_by_input_shape=True)
    per_category, per_kernel = defaultdict(float), defaultdict(float)
    for e in events:
        ms = e.self_cpu_time_total / 1e3 / reps
        if ms <= 0:
            continue
        kind = category(e.key, e.input_shapes or [])
        per_category[kind] += ms
        per_kernel[(kind, e.key)] += ms
    return dict(per_category), dict(per_kernel)


def main(argv=None):
    from speed import ARCHS
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='poolformer_s12', choices=ARCHS)
    parser.add_argument('--dtype', default='bf16', choices=['bf16', 'fp32'])
    parser.add_argument('--formulation', default='auto')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile (inductor) first')
    parser.add_argument('--freezing', action='store_true',
                        help='with --compile: inductor freezing (weights as '
                        'constants, prepacked)')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--reps', type=int, default=5)
    parser.add_argument('--top', type=int, default=15)
    args = parser.parse_args(argv)
    model = build(args.arch, args.formulation)
    if args.compile:
        import torch._inductor.config as inductor_config
        inductor_config.cpp.enable_kernel_profile = True
        model = torch.compile(model, options=dict(freezing=args.freezing))
    x = torch.randn(args.batch, 3, args.size, args.size)
    per_category, per_kernel = profile(model, x, args.dtype, args.reps)
    total = sum(per_category.values())
    what = f'{args.arch} {args.dtype} {args.formulation}' + \
        (' compiled' if args.compile else '') + \
        (' frozen' if args.freezing else '')
    print(f'{what}: batch {args.batch} at {args.size}², '
          f'{torch.get_num_threads()} threads, {total:.1f} ms of kernel '
          'self time per forward')
    print(f'{"category":<12} {"ms":>8} {"share":>6}')
    for kind, ms in sorted(per_category.items(), key=lambda kv: -kv[1]):
        print(f'{kind:<12} {ms:8.2f} {ms / total:6.1%}')
    print(f'\ntop {args.top} kernels')
    for (kind, name), ms in sorted(per_kernel.items(),
                                   key=lambda kv: -kv[1])[:args.top]:
        print(f'{ms:8.2f} ms  {kind:<11} {name[:90]}')


if __name__ == '__main__':
    main()
