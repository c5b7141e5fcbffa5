"""Every registered backbone family in every formulation, as timm's
tests/test_models.py goes over every model: a new family costs its class
and nothing here.

Each formulation computes the plain formulation's function with the same
Parameters: float64 shows that the algebra is exact (differences at the
1e-10 level are rounding), float32 the promised 1e-5 (relative, 2-norm),
bf16 autocast the plain block's dtypes and accuracy. Two block variants on
top of the families cover what the fast forms fall back for (BatchNorm, no
norm, SiLU, a 5x5 pool).
"""
import copy

import pytest
import torch

import mmpoolformer
from mmpoolformer.models import MetaFormer
from mmpoolformer.models.backbones import FORMULATIONS, INFERENCE_ONLY, packed, torch_ops

from helpers import assert_every_parameter_learns, randomise_, rel_error

FAMILIES = sorted(name for name, cls in mmpoolformer.MODELS.module_dict.items()
                  if issubclass(cls, MetaFormer) and cls.arch_zoo)
SMALL = dict(depths=[1, 1, 2, 1], embed_dims=[16, 32, 64, 96])
VARIANTS = {
    'MetaFormer-bn-silu-pool5': dict(
        SMALL, norm_cfg=dict(type='BN'), mlp_act_cfg=dict(type='SiLU'),
        token_mixers=dict(type='Pooling', pool_size=5)),
    'MetaFormer-nonorm-relu': dict(SMALL, norm_cfg=None,
                                   mlp_act_cfg=dict(type='ReLU')),
}
MODELS = FAMILIES + sorted(VARIANTS)
FAST = [f for f in FORMULATIONS if f != 'plain']
TRAINABLE = [f for f in FAST if f not in INFERENCE_ONLY]
FUSED_NODES = {'PoolMixBackward', 'NormMlpBackward', 'SepConvMixBackward'}
ODD = (2, 3, 71, 97)


def build(name, **kwargs):
    if name in VARIANTS:
        return MetaFormer(dict(VARIANTS[name]), **kwargs)
    # scoped: other tests may leave mmpretrain as the default scope
    return mmpoolformer.MODELS.build(dict(
        dict(type=f'mmpoolformer.{name}', arch=dict(SMALL)), **kwargs))


def pair(name, formulation, dtype=torch.float32, **kwargs):
    """The model in ``formulation`` and a plain copy, same weights."""
    model = randomise_(build(name, **kwargs)).to(dtype)
    plain = copy.deepcopy(model)
    plain.formulation = 'plain'
    model.formulation = formulation
    return model, plain


def autograd_ops(tensors):
    """Names of the backward nodes that produced ``tensors``."""
    seen, todo, names = set(), [t.grad_fn for t in tensors], set()
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        todo.extend(next_node for next_node, _ in node.next_functions)
    return names


def step(model, x, seed=0):
    """Outputs, input gradient, parameter gradients and backward node names
    of one training step."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # the same stochastic-depth draws
    outs = model(x)
    ops = autograd_ops(outs)
    sum((o * o.detach().sign()).mean() + o.square().mean()
        for o in outs).backward()
    grads = {n.removeprefix('_orig_mod.'): p.grad  # torch.compile's wrapper
             for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], x.grad, grads, ops


def flat(grads):
    return torch.cat([grads[n].flatten().double() for n in sorted(grads)])


def assert_ran(formulation, name, ops):
    """The fused kernels ran for 'fused' / 'auto' on a CPU (every family
    has a fused MLP), never for 'lean'."""
    if formulation == 'lean':
        assert not FUSED_NODES & ops, ops
    elif name in FAMILIES:
        assert 'NormMlpBackward' in ops, ops


@pytest.mark.parametrize('formulation', TRAINABLE)
@pytest.mark.parametrize('name', MODELS)
def test_equals_plain_in_float64(name, formulation):
    """Outputs, the input gradient and every parameter gradient in training
    mode with stochastic depth at an odd size, and inference."""
    model, plain = pair(name, formulation, torch.float64, drop_path_rate=0.3)
    x = torch.randn(*ODD, dtype=torch.float64)
    outs_m, gx_m, g_m, ops = step(model.train(), x)
    outs_p, gx_p, g_p, _ = step(plain.train(), x)
    assert_ran(formulation, name, ops)
    assert set(g_m) == set(g_p), set(g_m) ^ set(g_p)  # DDP sees every one
    assert max(rel_error(a, b) for a, b in zip(outs_m, outs_p)) <= 1e-10
    assert rel_error(gx_m, gx_p) <= 1e-10
    largest = max(g.norm().item() for g in g_p.values())
    for n in g_m:
        if g_p[n].norm() <= 1e-12 * largest:
            # the GroupNorm bias before pooling: exactly 0 vs rounding
            assert g_m[n].abs().max() <= 1e-12, n
        else:
            assert rel_error(g_m[n], g_p[n]) <= 1e-10, n
    with torch.no_grad():
        for a, b in zip(model.eval()(x), plain.eval()(x)):
            assert rel_error(a, b) <= 1e-10


@pytest.mark.parametrize('formulation', TRAINABLE)
@pytest.mark.parametrize('name', MODELS)
def test_within_1e5_in_float32(name, formulation):
    model, plain = pair(name, formulation)
    x = torch.randn(2, 3, 67, 45)
    outs_m, gx_m, g_m, _ = step(model.train(), x)
    outs_p, gx_p, g_p, _ = step(plain.train(), x)
    assert max(rel_error(a, b) for a, b in zip(outs_m, outs_p)) <= 1e-5
    assert rel_error(gx_m, gx_p) <= 1e-5
    assert rel_error(flat(g_m), flat(g_p)) <= 1e-5


def block_dtypes(model):
    """The dtype of every block's output, recorded by hooks on the blocks
    themselves (which leave the formulation running)."""
    seen = []
    for stage in model.stages:
        for block in stage.blocks:
            block.register_forward_hook(
                lambda mod, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize('formulation', TRAINABLE)
@pytest.mark.parametrize('name', MODELS)
def test_bfloat16_autocast_as_the_plain_formulation(name, formulation):
    """Under CPU bf16 autocast every block returns the plain block's dtype
    (fp32 behind a layer or residual scale, bf16 without one), the GEMMs
    run in bf16, and a training step and inference are as close to fp32 as
    the plain formulation's."""
    model, plain = pair(name, formulation)
    x = torch.randn(2, 3, 64, 96)
    outs_e, gx_e, g_e, _ = step(copy.deepcopy(plain).train(), x)
    dtypes_m, dtypes_p = block_dtypes(model), block_dtypes(plain)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs_m, gx_m, g_m, ops = step(model.train(), x)
        outs_p, gx_p, g_p, _ = step(plain.train(), x)
    assert_ran(formulation, name, ops)
    assert dtypes_m == dtypes_p and len(dtypes_m) == sum(SMALL['depths'])
    assert all(g_m[n].dtype == g_e[n].dtype for n in g_e)
    for ours, theirs, exact in [(gx_m, gx_p, gx_e),
                                (flat(g_m), flat(g_p), flat(g_e)),
                                *zip(outs_m, outs_p, outs_e)]:
        error = rel_error(ours.float(), exact)
        assert 1e-4 < error <= 1.5 * rel_error(theirs.float(), exact) + 1e-3
    with torch.no_grad():
        exact = plain.eval()(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            ours, theirs = model.eval()(x), plain(x)
    for a, b, e in zip(ours, theirs, exact):
        assert a.dtype == b.dtype
        assert rel_error(a.float(), e) <= 1.5 * rel_error(b.float(), e) + 1e-3


@pytest.mark.parametrize('formulation', INFERENCE_ONLY)
@pytest.mark.parametrize('name', MODELS)
def test_inference_formulation_equals_plain(name, formulation):
    """Inference only: float64 exact, float32 within 1e-5, bf16 autocast
    with the plain block's dtypes and as close to fp32 as plain, the
    prepared weights made once per block and dtype."""
    model, plain = pair(name, formulation, torch.float64)
    model.eval(), plain.eval()
    x = torch.randn(*ODD, dtype=torch.float64)
    with torch.no_grad():
        assert all(rel_error(a, b) <= 1e-10
                   for a, b in zip(model(x), plain(x)))
        model.float(), plain.float()
        x = torch.randn(2, 3, 64, 96)
        for _ in range(2):  # the second call on the prepared weights
            assert all(rel_error(a, b) <= 1e-5
                       for a, b in zip(model(x), plain(x)))
        exact = plain(x)
        dtypes_m, dtypes_p = block_dtypes(model), block_dtypes(plain)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            ours, theirs = model(x), plain(x)
    assert dtypes_m == dtypes_p and len(dtypes_m) == sum(SMALL['depths'])
    for a, b, e in zip(ours, theirs, exact):
        assert a.dtype == b.dtype
        assert 1e-4 < rel_error(a.float(), e) <= \
            1.5 * rel_error(b.float(), e) + 1e-3
    if name in FAMILIES:  # every family has a fused MLP
        blocks = [b for s in model.stages for b in s.blocks]
        assert all(b in packed._PREPARED for b in blocks)
        kinds = {w.is_mkldnn for b in blocks
                 for w in packed._PREPARED[b]['mlp'][1]
                 if w is not None and w.dim() == 2}
        assert kinds == {torch_ops.works('onednn_packed_linear')}


def test_packed_follows_its_weights_and_refuses_autograd():
    """The prepared weights follow load_state_dict, in-place updates (an
    optimizer step) and dtype changes; they are in no state dict and the
    model deep-copies after using them."""
    model = randomise_(build('ConvFormer', formulation='packed')).eval()
    other = randomise_(build('ConvFormer', formulation='plain'), seed=1)
    x = torch.randn(2, 3, 64, 64)
    with pytest.raises(RuntimeError, match=r"'packed' is for inference.*"
                       r"torch\.no_grad\(\).*formulation='auto'"):
        model(x)
    keys = set(model.state_dict())
    with torch.no_grad():
        model(x)
        model.load_state_dict(other.state_dict())
        assert all(rel_error(a, b) <= 1e-5
                   for a, b in zip(model(x), other.eval()(x)))
        for m in (model, other):
            m.stages[0].blocks[0].mlp.fc1.weight.mul_(2)
            m.stages[1].blocks[0].token_mixer.pwconv2.weight.add_(0.1)
        assert all(rel_error(a, b) <= 1e-5
                   for a, b in zip(model(x), other(x)))
        model.double(), other.double()
        assert all(rel_error(a, b) <= 1e-10
                   for a, b in zip(model(x.double()), other(x.double())))
        copied = copy.deepcopy(model)
        assert all(rel_error(a, b) <= 1e-10
                   for a, b in zip(copied(x.double()), other(x.double())))
    assert set(model.state_dict()) == keys


def test_packed_without_onednn_layout_is_the_same_function(monkeypatch,
                                                           fresh_probes):
    def broken():
        raise TypeError('changed signature')
    monkeypatch.setitem(torch_ops.PROBES, 'onednn_packed_linear', broken)
    model, plain = pair('PoolFormerV2', 'packed')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert all(rel_error(a, b) <= 1e-5
                   for a, b in zip(model.eval()(x), plain.eval()(x)))
    block = model.stages[0].blocks[0]
    assert not any(w.is_mkldnn for w in packed._PREPARED[block]['mlp'][1]
                   if w is not None)


@pytest.mark.parametrize('formulation',
                         [f for f in FORMULATIONS if f not in INFERENCE_ONLY])
@pytest.mark.parametrize('name', FAMILIES)
def test_backbone_contract(name, formulation):
    """Stride-4/8/16/32 maps of the preset's widths (the smallest preset),
    every Parameter learns, gradient checkpointing changes nothing."""
    model = randomise_(build(name, arch=None, formulation=formulation))
    x = torch.randn(2, 3, 64, 96)
    outs = model.train()(x)
    assert [o.shape[1] for o in outs] == model.embed_dims
    assert [(x.shape[2] // o.shape[2], x.shape[3] // o.shape[3])
            for o in outs] == [(4, 4), (8, 8), (16, 16), (32, 32)]
    assert all(torch.isfinite(o).all() and o.is_contiguous() for o in outs)
    sum((o * o.detach().sign()).mean() for o in outs).backward()
    assert_every_parameter_learns(model)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert all(n.endswith('random_matrix') for n in frozen), frozen
    ckpt = copy.deepcopy(model)
    ckpt.with_cp = True
    a, b = model.eval()(x), ckpt.eval()(x)
    for oa, ob in zip(a, b):
        torch.testing.assert_close(oa, ob, rtol=0, atol=0)


@pytest.mark.parametrize('name', FAMILIES)
def test_deploy_mode_keeps_outputs_in_every_formulation(name):
    model = randomise_(build(name)).eval()
    x = torch.randn(2, 3, 57, 83)
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        model.switch_to_deploy()  # idempotent
        for formulation in FORMULATIONS:
            model.formulation = formulation
            for a, b in zip(model(x), before):
                assert rel_error(a, b) <= 1e-5, formulation
    assert sum(p.numel() for p in model.parameters()) < params
    blocks = [b for s in model.stages for b in s.blocks]
    assert all(isinstance(b.layer_scale2, torch.nn.Identity) for b in blocks)
    assert all(b.norm2.weight is None for b in blocks)


def test_deploy_respects_frozen_stages():
    model = build('PoolFormer', frozen_stages=2)
    model.switch_to_deploy()
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())


HOOKED = ('norm1', 'token_mixer', 'mlp', 'norm2')


@pytest.mark.parametrize('formulation', FORMULATIONS)
@pytest.mark.parametrize('name', FAMILIES)
def test_hooks_on_block_submodules_see_the_plain_tensors(name, formulation):
    """Forward hooks and pre-hooks on norm1 / token_mixer / mlp / norm2 fire
    once per call with the plain formulation's tensors, whatever the
    formulation; removed, the formulation runs again."""
    model, plain = pair(name, formulation)
    model.eval(), plain.eval()
    x = torch.randn(2, 3, 64, 96)
    want, seen = {}, {}
    with torch.no_grad():
        handles = [getattr(plain.stages[-1].blocks[0], n).register_forward_hook(
            lambda m, a, o, n=n: want.setdefault(n, o)) for n in HOOKED]
        expected = plain(x)
        for h in handles:
            h.remove()
        block = model.stages[-1].blocks[0]
        handles = []
        for n in HOOKED:
            module = getattr(block, n)
            handles.append(module.register_forward_pre_hook(
                lambda m, a, n=n: seen.setdefault(f'{n} in', []).append(a[0])))
            handles.append(module.register_forward_hook(
                lambda m, a, o, n=n: seen.setdefault(f'{n} out', []).append(o)))
        got = model(x)
        for h in handles:
            h.remove()
    assert sorted(seen) == sorted(f'{n} {w}' for n in HOOKED
                                  for w in ('in', 'out'))
    assert all(len(v) == 1 for v in seen.values())
    for n in HOOKED:
        assert rel_error(seen[f'{n} out'][0], want[n]) <= 1e-5, n
    assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))
    if formulation in ('auto', 'fused'):  # unhooked: the fused kernels again
        assert 'NormMlpBackward' in autograd_ops(model.train()(x))


def test_global_module_hooks_see_every_submodule():
    model = build('PoolFormer').eval()
    called = []
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda m, a, o: called.append(type(m).__name__))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    assert {'GroupNorm1', 'Pooling', 'Mlp', 'Scale'} <= set(called)


def test_the_lean_pooling_half_uses_the_pooling_identity():
    """No normalised map: the pooled input itself, blended (lerp)."""
    block = build('PoolFormer', formulation='lean').stages[0].blocks[0]
    y = block(torch.randn(2, 16, 9, 11, requires_grad=True))
    ops = autograd_ops([y])
    assert {'LerpBackward1', 'AvgPool2DBackward0'} <= ops
    assert 'NativeGroupNormBackward0' not in ops


class DispatchedOps(torch.utils._python_dispatch.TorchDispatchMode):
    """The ATen operators a region calls."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_other_devices_run_the_lean_formulation():
    """Off the CPU ('meta' here) 'auto' is the lean formulation: StarReLU's
    ReLU in the GEMM epilogue, no fused kernel; 'fused' says what to use."""
    model = build('ConvFormer').to('meta')
    x = torch.empty(2, 3, 64, 64, device='meta')
    with DispatchedOps() as ops:
        outs = model.train()(x)
    assert [tuple(o.shape)[1:] for o in outs] == [
        (16, 16, 16), (32, 8, 8), (64, 4, 4), (96, 2, 2)]
    assert not FUSED_NODES & autograd_ops(outs)
    assert '_addmm_activation' in ops.names and 'relu' not in ops.names
    model.formulation = 'fused'
    with pytest.raises(RuntimeError, match=r"on meta; use formulation='auto'"):
        model(x)
    with pytest.raises(ValueError, match=r"formulation must be one of \('auto'"):
        model.formulation = 'fast'


def test_fast_path_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="formulation='auto'"):
        model = build('PoolFormer', fast_path=False)
    assert model.formulation == 'plain'
    with pytest.warns(DeprecationWarning):
        model.fast_path = True
    assert model.formulation == 'auto' and model.fast_path
    assert {b.formulation for s in model.stages for b in s.blocks} == {'auto'}
    with pytest.raises(ValueError, match='not both'):
        build('PoolFormer', fast_path=True, formulation='lean')


# ------------------------------------------------ private torch operators
@pytest.fixture
def fresh_probes():
    torch_ops.forget()
    yield
    torch_ops.forget()


@pytest.mark.parametrize('probe', sorted(torch_ops.PROBES))
def test_a_failing_probe_leaves_the_plain_function(probe, monkeypatch,
                                                   fresh_probes):
    """A private operator that fails its probe (renamed, another signature)
    is not used: the model still computes the plain function, outputs and
    gradients, in 'auto' and in 'lean'."""
    def broken():
        raise TypeError('changed signature')
    monkeypatch.setitem(torch_ops.PROBES, probe, broken)
    assert torch_ops.probe_all()[probe] is False
    for name in ('PoolFormerV2', 'ConvFormer'):
        for formulation in ('auto', 'lean'):
            model, plain = pair(name, formulation)
            x = torch.randn(2, 3, 64, 96)
            outs_m, gx_m, g_m, ops = step(model.train(), x)
            outs_p, gx_p, g_p, _ = step(plain.train(), x)
            assert max(rel_error(a, b) for a, b in zip(outs_m, outs_p)) <= 1e-5
            assert rel_error(flat(g_m), flat(g_p)) <= 1e-5
            if probe in torch_ops.FUSED_KERNEL_OPS or probe == 'hook_tables':
                assert not FUSED_NODES & ops, (probe, ops)
    if probe == 'hook_tables':  # hooks cannot be ruled out: plain
        block = build('PoolFormerV2').stages[0].blocks[0]
        assert 'NativeGroupNormBackward0' in autograd_ops(
            [block(torch.randn(1, 16, 5, 5))])
    if probe == 'addmm_activation':
        with DispatchedOps() as found:
            build('ConvFormer').to('meta')(torch.empty(1, 3, 32, 32,
                                                        device='meta'))
        assert '_addmm_activation' not in found.names
        assert 'relu' in found.names


# ------------------------------------------------- compilers and tracers
@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize('name', FAMILIES)
def test_no_graph_breaks_in_eval_and_train(name, fresh_dynamo):
    model = randomise_(build(name))
    x = torch.randn(2, 3, 64, 64)
    for mode in ('eval', 'train'):
        explanation = torch._dynamo.explain(getattr(model, mode)())(x)
        assert explanation.graph_break_count == 0, (
            mode, [str(b.reason) for b in explanation.break_reasons])
        assert explanation.graph_count == 1


@pytest.mark.parametrize('name', ['PoolFormer', 'ConvFormer', 'CAFormer'])
def test_fullgraph_compile_survives_eval_train_eval(name, fresh_dynamo):
    """The aot_eager backend keeps the test free of a C++ toolchain."""
    model, plain = pair(name, 'auto')
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 3, 64, 64)
    for mode in ('eval', 'train', 'eval'):
        compiled.zero_grad(), plain.zero_grad()
        getattr(compiled, mode)(), getattr(plain, mode)()
        if mode == 'train':
            outs_c, _, g_c, _ = step(compiled, x)
            outs_p, _, g_p, _ = step(plain, x)
            assert set(g_c) == set(g_p)  # every Parameter (DDP)
            assert rel_error(flat(g_c), flat(g_p)) <= 1e-5
        else:
            with torch.no_grad():
                outs_c, outs_p = compiled(x), plain(x)
        assert all(rel_error(a, b) <= 1e-5 for a, b in zip(outs_c, outs_p))


def test_fused_refuses_inside_a_compiler(fresh_dynamo):
    model = build('PoolFormer', formulation='fused')
    compiled = torch.compile(model, backend='eager', fullgraph=True)
    with pytest.raises(Exception) as info:
        compiled(torch.randn(1, 3, 32, 32))
    # older dynamo reports an exception it traces without its text
    newer = tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 14)
    assert 'inside a compiler or tracer' in str(info.value) or not newer


@pytest.mark.parametrize('name', FAMILIES)
def test_jit_trace_follows_weights_loaded_afterwards(name):
    model = randomise_(build(name)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        model(x)  # an eager call first: nothing may be cached by it
        traced = torch.jit.trace(model, x)
        other = randomise_(build(name), seed=1).eval()
        model.load_state_dict(other.state_dict())
        got, expected = traced(x), other(x)
    assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))
    # the trace holds the lean formulation's ordinary torch ops
    graph = str(traced.inlined_graph)
    assert 'mkldnn' not in graph and 'PythonOp' not in graph


@pytest.mark.parametrize('name', FAMILIES)
def test_fx_symbolic_trace_at_any_size(name):
    """The graph records the plain formulation: it calls the blocks'
    submodules by name."""
    model = randomise_(build(name)).eval()
    graph_module = torch.fx.symbolic_trace(model)
    called = {n.target for n in graph_module.graph.nodes
              if n.op == 'call_module'}
    assert 'stages.0.blocks.0.mlp.fc1' in called
    with torch.no_grad():
        for hw in [(64, 64), (57, 83)]:
            x = torch.randn(1, 3, *hw)
            got, expected = graph_module(x), model(x)
            assert all(rel_error(a, b) <= 1e-5 for a, b in zip(got, expected))


def test_jit_script_names_the_alternatives():
    with pytest.raises(RuntimeError, match=r'torch\.jit\.trace.*torch\.export'):
        torch.jit.script(build('PoolFormer'))
