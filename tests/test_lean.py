"""The lean formulation (standard torch ops, what compilers, tracers and
non-CPU devices run) computes the plain formulation's function, and hooks on
a block's submodules fire whatever formulation would otherwise run.

The lean path is reached in eager CPU mode through a tensor subclass, one of
the cases where the fused CPU kernels step aside; 'meta' tensors show what a
GPU runs.
"""
import copy

import pytest
import torch
from test_fast_path import MODELS, SIZES, autograd_ops, pair

from mmpoolformer.models import ConvFormer, PoolFormer

from helpers import rel_error


class Routed(torch.Tensor):
    """A tensor subclass: the blocks run the lean formulation on it."""


def step(model, x, seed=0):
    """Outputs, input gradient and parameter gradients (as one vector) of a
    training pass, and the names of its backward nodes."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # same stochastic-depth draws in both
    outs = [o.as_subclass(torch.Tensor) for o in model(x)]
    ops = autograd_ops(outs)
    sum((o * o.detach().sign()).mean() + o.square().mean()
        for o in outs).backward()
    names = sorted(n for n, p in model.named_parameters()
                   if p.grad is not None)
    grads = torch.cat([dict(model.named_parameters())[n].grad.as_subclass(
        torch.Tensor).flatten() for n in names])
    return outs, x.grad.as_subclass(torch.Tensor), names, grads, ops


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10),
                                       (torch.float32, 1e-5)],
                         ids=['float64', 'float32'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_lean_equals_plain(name, dtype, tol):
    """Outputs, the input gradient and every parameter gradient, training
    mode with stochastic depth, odd sizes: float64 shows the algebra is
    exact, float32 the promised 1e-5."""
    lean, plain = pair(name, dtype, drop_path_rate=0.3)
    lean.train(), plain.train()
    x = torch.randn(*SIZES.get(name, (2, 3, 71, 97)), dtype=dtype)
    outs_l, gx_l, names_l, g_l, ops = step(lean, x.as_subclass(Routed))
    outs_p, gx_p, names_p, g_p, _ = step(plain, x)
    assert names_l == names_p  # every Parameter in the graph (DDP)
    assert max(rel_error(a, b) for a, b in zip(outs_l, outs_p)) <= tol
    assert rel_error(gx_l, gx_p) <= tol
    assert rel_error(g_l, g_p) <= tol
    assert not {'PoolMixBackward', 'NormMlpBackward',
                'SepConvMixBackward'} & ops  # no fused kernel ran
    if name == 'poolformer':  # the pooling identity: no normalised map
        block = lean.stages[0].blocks[0]
        y = block(torch.randn(2, 16, 9, 11, dtype=dtype,
                              requires_grad=True).as_subclass(Routed))
        block_ops = autograd_ops([y.as_subclass(torch.Tensor)])
        assert {'LerpBackward1', 'AvgPool2DBackward0'} <= block_ops
        assert 'NativeGroupNormBackward0' not in block_ops


HOOKED = ('norm1', 'token_mixer', 'mlp', 'norm2')


@pytest.mark.parametrize('name', ['poolformer', 'poolformer_v2',
                                  'convformer', 'caformer', 'identityformer',
                                  'randformer', 'riformer'])
def test_hooks_on_block_submodules_fire(name):
    """Forward hooks and pre-hooks on norm1 / token_mixer / mlp / norm2 fire
    once per call with the plain formulation's tensors, on the fused path
    and on the lean one; removing them brings the fast formulation back."""
    model, plain = pair(name, torch.float32)
    model.eval(), plain.eval()
    block = model.stages[-1].blocks[0]
    x = torch.randn(*SIZES.get(name, (2, 3, 64, 96)))
    seen = {}

    def record(key):
        return lambda module, *args: seen.setdefault(key, []).append(
            args[-1] if key.endswith('out') else args[0][0])

    with torch.no_grad():
        expected = plain(x)
        plain_block = plain.stages[-1].blocks[0]
        want = {}
        handles = [getattr(plain_block, n).register_forward_hook(
            lambda m, a, o, n=n: want.setdefault(n, o)) for n in HOOKED]
        plain(x)
        for h in handles:
            h.remove()
        for inp in (x, x.as_subclass(Routed)):
            seen.clear()
            handles = []
            for n in HOOKED:
                module = getattr(block, n)
                handles.append(module.register_forward_pre_hook(
                    record(f'{n} in')))
                handles.append(module.register_forward_hook(
                    record(f'{n} out')))
            got = model(inp)
            for h in handles:
                h.remove()
            assert sorted(seen) == sorted(f'{n} {w}' for n in HOOKED
                                          for w in ('in', 'out'))
            assert all(len(v) == 1 for v in seen.values())
            for n in HOOKED:
                assert rel_error(seen[f'{n} out'][0].as_subclass(
                    torch.Tensor), want[n]) <= 1e-5, n
            assert all(rel_error(a.as_subclass(torch.Tensor), b) <= 1e-5
                       for a, b in zip(got, expected))
    if name == 'poolformer':  # unhooked: the fused kernels again
        assert 'PoolMixBackward' in autograd_ops(model.train()(x))


def test_global_module_hooks_see_every_submodule():
    model = PoolFormer(dict(depths=[1, 1, 1, 1],
                            embed_dims=[8, 16, 32, 32])).eval()
    called = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: called.append(type(m).__name__))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    assert {'GroupNorm1', 'Pooling', 'Mlp', 'Scale'} <= set(called)


def test_a_gpu_runs_the_lean_formulation_with_relu_in_the_gemm():
    """On a non-CPU device ('meta' here) the default ConvFormer runs the
    lean ops: StarReLU's ReLU in the GEMM epilogue."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.overloadpacket.__name__)
            return func(*args, **(kwargs or {}))

    arch = dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 32])
    found = {}
    for fast in (True, False):
        model = ConvFormer(arch, fast_path=fast).to('meta').eval()
        with torch.no_grad(), Ops() as ops:
            outs = model(torch.empty(2, 3, 64, 64, device='meta'))
        assert [tuple(o.shape)[1:] for o in outs] == [
            (8, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)]
        found[fast] = ops.names
    assert '_addmm_activation' in found[True] and 'relu' not in found[True]
    assert 'relu' in found[False]
    assert '_addmm_activation' not in found[False]


def test_every_parameter_reaches_the_graph_under_compile():
    """The GroupNorm bias before pooling cancels; it keeps an exact zero
    gradient in the lean formulation too (DDP needs every Parameter)."""
    model = copy.deepcopy(MODELS['poolformer']()).train()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    sum(o.sum() for o in compiled(torch.randn(2, 3, 64, 64))).backward()
    biases = [b.norm1.bias for s in model.stages for b in s.blocks]
    assert all(b.grad is not None and not b.grad.any() for b in biases)
    assert all(p.grad is not None for p in model.parameters())


def block_dtypes(model):
    """Records the dtype of every block's output (hooks on the blocks
    themselves leave the lean formulation running)."""
    seen = []
    for stage in model.stages:
        for block in stage.blocks:
            block.register_forward_hook(
                lambda mod, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize('name', sorted(MODELS))
def test_bfloat16_autocast_keeps_the_plain_residual_dtype(name):
    """Under CPU bf16 autocast the residual stream has the plain block's
    dtype after every block (fp32 behind a layer or residual scale, bf16
    without one: no wider stream than the references'), and a training
    step is as close to the fp32 step as the plain formulation's."""
    lean, plain = pair(name, torch.float32)
    lean.train(), plain.train()
    x = torch.randn(2, 3, 64, 96)
    outs_e, gx_e, _, g_e, _ = step(copy.deepcopy(plain), x)
    dtypes_l, dtypes_p = block_dtypes(lean), block_dtypes(plain)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs_l, gx_l, _, g_l, ops = step(lean, x.as_subclass(Routed))
        outs_p, gx_p, _, g_p, _ = step(plain, x)
    assert not {'PoolMixBackward', 'NormMlpBackward'} & ops
    assert dtypes_l == dtypes_p
    for ours, theirs, exact in [(gx_l, gx_p, gx_e), (g_l, g_p, g_e),
                                *zip(outs_l, outs_p, outs_e)]:
        error = rel_error(ours.float(), exact)
        assert error <= 1.5 * rel_error(theirs.float(), exact) + 1e-3
