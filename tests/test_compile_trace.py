"""Compilers, tracers and tools see through the default (fast) models.

Every family, eval and train: ``torch._dynamo.explain`` finds no graph
break, ``torch.compile(fullgraph=True)`` computes the eager function (the
aot_eager backend keeps the test free of a C++ toolchain), one compiled
model survives eval -> train -> eval, ``torch.jit.trace`` follows weights
loaded after tracing, ``torch.fx.symbolic_trace`` works at any input size,
and ``torch.jit.script`` says what to use instead.
"""
import copy

import pytest
import torch

from mmpoolformer.models import (
    CAFormer,
    ConvFormer,
    IdentityFormer,
    PoolFormer,
    PoolFormerV2,
    RandFormer,
    RIFormer,
)

from helpers import randomise_, rel_error

ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 32], mlp_ratios=2)
FAMILIES = {
    'PoolFormer': lambda **kw: PoolFormer(dict(ARCH), **kw),
    'PoolFormerV2': lambda **kw: PoolFormerV2(dict(ARCH), **kw),
    'IdentityFormer': lambda **kw: IdentityFormer(dict(ARCH), **kw),
    'RandFormer': lambda **kw: RandFormer(dict(ARCH), **kw),
    'ConvFormer': lambda **kw: ConvFormer(dict(ARCH), **kw),
    'CAFormer': lambda **kw: CAFormer(dict(ARCH, embed_dims=[8, 16, 32, 64]),
                                      **kw),
    'RIFormer': lambda **kw: RIFormer(dict(ARCH), **kw),
}
X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def build(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomise_(FAMILIES[name](**kwargs), seed)


def loss(outs):
    return sum(o.square().mean() + o.mean() for o in outs)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_no_graph_breaks_in_eval_and_train(name):
    model = build(name)
    assert model.fast_path
    for mode in ('eval', 'train'):
        getattr(model, mode)()
        explanation = torch._dynamo.explain(model)(X)
        assert explanation.graph_break_count == 0, (
            mode, [str(b.reason) for b in explanation.break_reasons])
        assert explanation.graph_count == 1


@pytest.mark.parametrize('name', ['PoolFormer', 'ConvFormer', 'CAFormer'])
def test_fullgraph_compile_survives_eval_train_eval(name):
    model = build(name)
    eager = copy.deepcopy(model)
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    for mode in ('eval', 'train', 'eval'):
        compiled.zero_grad(), eager.zero_grad()
        getattr(compiled, mode)(), getattr(eager, mode)()
        with torch.set_grad_enabled(mode == 'train'):
            got, expected = compiled(X), eager(X)
            assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))
            if mode == 'train':
                loss(got).backward()
                loss(expected).backward()
                grads = [(p.grad, q.grad) for p, q in zip(
                    model.parameters(), eager.parameters()) if q.grad is not None]
                assert len(grads) == sum(p.requires_grad
                                         for p in eager.parameters())
                # as one vector: the GroupNorm bias before pooling has an
                # exact zero gradient in the fused kernel, rounding elsewhere
                assert rel_error(torch.cat([a.flatten() for a, _ in grads]),
                                 torch.cat([b.flatten() for _, b in grads])) <= 1e-5


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_jit_trace_follows_weights_loaded_afterwards(name):
    model = build(name).eval()
    with torch.no_grad():
        model(X)  # an eager call first: nothing may be cached by it
        traced = torch.jit.trace(model, X)
        other = build(name, seed=1).eval()
        model.load_state_dict(other.state_dict())
        got, expected = traced(X), other(X)
    assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))
    # the trace holds the plain formulation's ordinary torch ops
    graph = str(traced.inlined_graph)
    assert 'mkldnn' not in graph and 'PythonOp' not in graph


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_fx_symbolic_trace_at_any_size(name):
    model = build(name).eval()
    graph_module = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        for hw in [(64, 64), (57, 83)]:
            x = torch.randn(1, 3, *hw)
            got, expected = graph_module(x), model(x)
            assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))


def test_jit_script_names_the_alternatives():
    with pytest.raises(RuntimeError, match=r'torch\.jit\.trace.*torch\.export'):
        torch.jit.script(build('PoolFormer'))
