"""The GEMM-only floor of a model: how long its matrix products alone take.

How it is measured:

1. The shapes. One forward pass of the model in the plain formulation runs
   under :class:`GemmRecorder`, a dispatch mode that sees every ATen op and
   records the matrix products with their real shapes as ``(b, M, K, N)``
   (``b`` products of ``(M, K) @ (K, N)``):

   * ``mm`` / ``addmm`` (``nn.Linear``) and ``bmm`` / ``baddbmm``
     (``torch.matmul`` on batches);
   * 1x1 convolutions with one group: ``M = B * H_out * W_out``,
     ``K = C_in``, ``N = C_out``;
   * fused attention kernels (``scaled_dot_product_attention``): the two
     batched products ``Q @ K^T`` and ``P @ V`` with ``b = B * heads``;
   * separately (kind ``'conv'``), dense convolutions with a larger kernel
     (the stem and the downsampling layers) as the GEMM of their im2col:
     ``K = C_in * k_h * k_w``. Depthwise convolutions, pooling, norms,
     activations and elementwise ops are not GEMMs and are left out.

2. The time. :func:`gemm_floor_steps` returns an inference step that runs
   every recorded product once, in the order and number the model runs them,
   with preallocated operands (``out=``, no allocation in the loop) in the
   benchmark's dtype (bf16 GEMMs for ``--dtype bf16``, as autocast runs
   them) and the layouts ``nn.Linear`` uses (``X @ W^T``), and a training
   step that runs, for every product, the forward and the two backward
   GEMMs: ``dX = dY @ W`` (``(M, N) @ (N, K)``) and ``dW = dY^T @ X``
   (``(N, M) @ (M, K)``). These steps are rows of the interleaved timing
   loop like the models, so the floor sees the same machine noise; its
   median is the time no implementation of the model can beat with these
   GEMM kernels, and ``ours / floor`` measures everything else (norms,
   pooling, activations, memory traffic, framework overhead).
"""
from collections import Counter
from typing import Dict, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
Gemm = Tuple[int, int, int, int]  # (b, M, K, N)


def _prod(shape):
    out = 1
    for s in shape:
        out *= s
    return out


class GemmRecorder(TorchDispatchMode):
    """``with GemmRecorder() as rec: model(x)``, then ``rec.gemms['gemm']``
    and ``rec.gemms['conv']``: Counters of ``(b, M, K, N)``."""

    def __init__(self):
        super().__init__()
        self.gemms = {'gemm': Counter(), 'conv': Counter()}

    def _add(self, kind, b, m, k, n):
        self.gemms[kind][(int(b), int(m), int(k), int(n))] += 1

    def _record(self, func, args):
        packet = func.overloadpacket
        if packet is aten.mm:
            (m, k), n = args[0].shape, args[1].shape[-1]
            self._add('gemm', 1, m, k, n)
        elif packet is aten.addmm:
            (m, k), n = args[1].shape, args[2].shape[-1]
            self._add('gemm', 1, m, k, n)
        elif packet in (aten.bmm, aten.baddbmm):
            a, w = (args[0], args[1]) if packet is aten.bmm else args[1:3]
            self._add('gemm', a.shape[0], a.shape[1], a.shape[2], w.shape[2])
        elif packet is aten.convolution:
            x, weight = args[0], args[1]
            transposed, groups = args[6], args[8]
            if transposed or groups != 1:
                return  # depthwise / grouped: not a GEMM
            out_c, in_c, *kernel = weight.shape
            out_pixels = self._conv_out_pixels(x.shape[2:], kernel, *args[3:6])
            kind = 'gemm' if all(k == 1 for k in kernel) else 'conv'
            self._add(kind, 1, x.shape[0] * out_pixels, in_c * _prod(kernel),
                      out_c)
        elif 'scaled_dot_product' in packet.__name__ and \
                'backward' not in packet.__name__:
            q, k, v = args[:3]
            b = _prod(q.shape[:-2])
            self._add('gemm', b, q.shape[-2], q.shape[-1], k.shape[-2])
            self._add('gemm', b, q.shape[-2], k.shape[-2], v.shape[-1])

    @staticmethod
    def _conv_out_pixels(size, kernel, stride, padding, dilation):
        n = len(size)
        stride, padding, dilation = (
            list(v) * (n if len(v) == 1 else 1)
            for v in (stride, padding, dilation))
        return _prod((s + 2 * p - d * (k - 1) - 1) // st + 1
                     for s, k, st, p, d in zip(size, kernel, stride, padding,
                                               dilation))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self._record(func, args)
        return func(*args, **(kwargs or {}))


def record_gemms(model, x) -> Dict[str, Counter]:
    """The matrix products of one forward pass of ``model`` on ``x``."""
    with torch.no_grad(), GemmRecorder() as rec:
        model(x)
    return rec.gemms


def _gemm_calls(gemms: Counter, dtype, device, training):
    """``[(fn, count)]``: each call runs one product of a recorded shape on
    preallocated operands laid out as an ``nn.Linear`` lays them out."""
    calls = []
    for (b, m, k, n), count in gemms.items():
        def make(*shape):
            return torch.randn(b, *shape, dtype=dtype, device=device)
        x, w, dy = make(m, k), make(n, k), make(m, n)
        products = [(x, w.transpose(1, 2), make(m, n))]  # Y = X @ W^T
        if training:
            products += [(dy, w, make(m, k)),                 # dX = dY @ W
                         (dy.transpose(1, 2), x, make(n, k))]  # dW = dY^T @ X
        for a, c, out in products:
            if b == 1:
                a, c, out = a[0], c[0], out[0]
                calls.append((lambda a=a, c=c, out=out: torch.mm(a, c, out=out),
                              count))
            else:
                calls.append((lambda a=a, c=c, out=out: torch.bmm(a, c, out=out),
                              count))
    return calls


def gemm_floor_steps(gemms: Counter, dtype: torch.dtype = torch.float32,
                     device='cpu') -> dict:
    """``{'infer': fn, 'train': fn}`` running the products of ``gemms``
    (see the module docstring)."""
    steps = {}
    for mode in ('infer', 'train'):
        calls = _gemm_calls(gemms, dtype, device, mode == 'train')

        def step(calls=calls):
            for fn, count in calls:
                for _ in range(count):
                    fn()
        steps[mode] = step
    return steps


def gemm_flops(gemms: Counter, training: bool) -> int:
    """Floating-point operations of the products (2 per multiply-add)."""
    per_pass = sum(2 * b * m * k * n * c for (b, m, k, n), c in gemms.items())
    return per_pass * (3 if training else 1)
