"""The fast path, the plain formulation and the deploy mode compute one
function, with the same gradients.

float64 shows that the math is exact (differences at the 1e-10 level are
rounding); float32 shows the promised tolerance (1e-5 relative, 2-norm).
Several families (every norm / mixer / activation kind of the fast path and
its fallbacks), odd input sizes and stochastic depth are covered.
"""
import copy

import pytest
import torch

from mmpoolformer.models import (
    CAFormer,
    ConvFormer,
    IdentityFormer,
    MetaFormer,
    PoolFormer,
    PoolFormerV2,
    RandFormer,
    RIFormer,
)
from mmpoolformer.models.backbones import fused_ops

from helpers import randomise_, rel_error

SMALL = dict(depths=[1, 1, 2, 1], embed_dims=[16, 32, 64, 96])
MODELS = {
    'poolformer': lambda **kw: PoolFormer(dict(SMALL), **kw),
    'poolformer_v2': lambda **kw: PoolFormerV2('s12', **SMALL, **kw),
    'convformer': lambda **kw: ConvFormer('s18', **SMALL, **kw),
    'caformer': lambda **kw: CAFormer('s18', **SMALL, **kw),
    'identityformer': lambda **kw: IdentityFormer('s12', **SMALL, **kw),
    'randformer': lambda **kw: RandFormer('s12', **SMALL, **kw),
    'riformer': lambda **kw: RIFormer('s12', **SMALL, **kw),
    # fallbacks: BatchNorm, no norm, SiLU (no fused formula), pool 5
    'batchnorm_silu': lambda **kw: MetaFormer(dict(
        SMALL, norm_cfg=dict(type='BN'), mlp_act_cfg=dict(type='SiLU'),
        token_mixers=dict(type='Pooling', pool_size=5)), **kw),
    'nonorm_relu': lambda **kw: MetaFormer(dict(
        SMALL, norm_cfg=None, mlp_act_cfg=dict(type='ReLU')), **kw),
}
SIZES = {'randformer': (2, 3, 64, 64)}  # its token matrix is 14x14-based


def pair(name, dtype, drop_path_rate=0.):
    fast = randomise_(MODELS[name](drop_path_rate=drop_path_rate)).to(dtype)
    plain = copy.deepcopy(fast)
    plain.fast_path = False
    assert fast.fast_path and not plain.fast_path
    return fast, plain


def run(model, x, seed=0):
    """Outputs, input gradient and parameter gradients of one train step."""
    x = x.clone().requires_grad_()
    torch.manual_seed(seed)  # same stochastic-depth draws in both
    outs = model(x)
    sum((o * o.detach().sign()).mean() + o.square().mean()
        for o in outs).backward()
    grads = {n.removeprefix('_orig_mod.'): p.grad  # torch.compile's wrapper
             for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach() for o in outs], x.grad, grads


def compare(fast, plain, x, tol):
    outs_f, gx_f, g_f = run(fast, x)
    outs_p, gx_p, g_p = run(plain, x)
    assert set(g_f) == set(g_p), set(g_f) ^ set(g_p)
    worst = max(rel_error(a, b) for a, b in zip(outs_f, outs_p))
    assert worst <= tol, ('outputs', worst)
    assert rel_error(gx_f, gx_p) <= tol, ('input gradient',
                                           rel_error(gx_f, gx_p))
    return g_f, g_p


@pytest.mark.parametrize('name', sorted(MODELS))
def test_exact_in_float64(name):
    """Fast path == plain formulation in float64, outputs and every
    gradient, in training mode with stochastic depth, odd sizes."""
    fast, plain = pair(name, torch.float64, drop_path_rate=0.3)
    fast.train(), plain.train()
    x = torch.randn(*SIZES.get(name, (2, 3, 71, 97)), dtype=torch.float64)
    g_f, g_p = compare(fast, plain, x, 1e-10)
    for n in g_f:
        scale = g_p[n].norm().item()
        if scale == 0 or scale < 1e-12 * max(g.norm().item()
                                             for g in g_p.values()):
            # the GroupNorm bias before pooling: exactly 0 vs rounding
            assert g_f[n].abs().max() <= 1e-12, n
            continue
        assert rel_error(g_f[n], g_p[n]) <= 1e-10, (n, rel_error(g_f[n],
                                                                 g_p[n]))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_inference_exact_in_float64(name):
    """The inference kernels (no autograd: norm affines applied in the
    normalisation pass, activations and residuals fused into the GEMMs)."""
    fast, plain = pair(name, torch.float64)
    fast.eval(), plain.eval()
    x = torch.randn(*SIZES.get(name, (2, 3, 71, 97)), dtype=torch.float64)
    with torch.no_grad():
        for a, b in zip(fast(x), plain(x)):
            assert rel_error(a, b) <= 1e-10


@pytest.mark.parametrize('name', sorted(MODELS))
def test_within_1e5_in_float32(name):
    """The promised fp32 tolerance: outputs, the input gradient and all
    parameter gradients (as one vector) within 1e-5 relative."""
    fast, plain = pair(name, torch.float32)
    fast.train(), plain.train()
    x = torch.randn(*SIZES.get(name, (2, 3, 67, 45)))
    g_f, g_p = compare(fast, plain, x, 1e-5)
    flat_f = torch.cat([g_f[n].flatten() for n in sorted(g_f)])
    flat_p = torch.cat([g_p[n].flatten() for n in sorted(g_p)])
    assert rel_error(flat_f, flat_p) <= 1e-5


@pytest.mark.parametrize('name', ['poolformer', 'poolformer_v2',
                                  'convformer', 'caformer', 'riformer'])
def test_deploy_mode_keeps_outputs(name):
    model = randomise_(MODELS[name]()).eval()
    x = torch.randn(2, 3, 57, 83)
    with torch.no_grad():
        before = model(x)
        params_before = sum(p.numel() for p in model.parameters())
        model.switch_to_deploy()
        model.switch_to_deploy()  # idempotent
        after_fast = model(x)
        model.fast_path = False
        after_plain = model(x)
    assert sum(p.numel() for p in model.parameters()) < params_before
    blocks = [b for s in model.stages for b in s.blocks]
    assert all(isinstance(b.layer_scale2, torch.nn.Identity) for b in blocks)
    assert all(b.norm2.weight is None for b in blocks)
    for a, p, b in zip(after_fast, after_plain, before):
        assert rel_error(a, b) <= 1e-5 and rel_error(p, b) <= 1e-5


def test_deploy_respects_frozen_stages():
    model = PoolFormer(dict(SMALL), frozen_stages=2)
    model.switch_to_deploy()
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())


def test_hooks_see_nchw_maps_in_both_formulations():
    model = randomise_(PoolFormer(dict(SMALL))).eval()
    x = torch.randn(1, 3, 64, 96)
    for fast in (True, False):
        model.fast_path = fast
        seen = []
        handles = [m.register_forward_hook(lambda m, i, o: seen.append(o))
                   for m in (model.stages[1], model.stages[1].blocks[0])]
        with torch.no_grad():
            outs = model(x)
        for h in handles:
            h.remove()
        assert [tuple(t.shape) for t in seen] == [(1, 32, 8, 12)] * 2
        # what the necks get is a plain contiguous NCHW tensor
        assert all(o.is_contiguous() for o in outs)


def test_gradient_checkpointing_same_as_without():
    fast, _ = pair('poolformer_v2', torch.float64)
    ckpt = copy.deepcopy(fast)
    ckpt.with_cp = True
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    g_a, g_b = compare(fast.train(), ckpt.train(), x, 1e-12)
    assert all(rel_error(g_a[n], g_b[n]) <= 1e-12 for n in g_a
               if g_b[n].norm() > 0)


def test_torch_compile_of_the_default_model():
    """torch.compile of the default model (which captures the plain
    formulation: tests/test_compile_trace.py) against the eager plain one;
    the aot_eager backend keeps the test free of a C++ toolchain."""
    fast, plain = pair('poolformer', torch.float32)
    compiled = torch.compile(fast, backend='aot_eager', fullgraph=False)
    x = torch.randn(2, 3, 64, 64)
    g_c, g_p = compare(compiled, plain.train(), x, 1e-5)
    assert set(g_c) == set(g_p)


def test_fused_ops_gradcheck():
    """The hand-written backward formulas, against finite differences."""
    gen = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=gen,
                           dtype=torch.float64).requires_grad_()

    x, k, a, beta = rnd(2, 5, 7, 3), rnd(2, 3), rnd(3), rnd(3)
    for res in (None, a):
        assert torch.autograd.gradcheck(
            lambda x, k, *r: fused_ops.pool_mix(x, k, r[0] if r else None,
                                                beta, 3, 1e-5),
            (x, k) + (() if res is None else (res, )))
    w1, b1, w2, b2 = rnd(8, 3), rnd(8), rnd(3, 8), rnd(3)
    s, b = rnd(1), rnd(1)
    for norm in ('group', 'layer', None):
        for act in fused_ops.ACTIVATIONS:
            for residual in (None, 'input'):
                def fn(x, w1, b1, w2, b2, s, b):
                    return fused_ops.norm_mlp(
                        x, w1, b1, w2, b2, act,
                        (s, b) if act == 'star_relu' else (None, None),
                        norm, 1e-5, x if residual else None)
                assert torch.autograd.gradcheck(
                    fn, (x, w1, b1, w2, b2, s, b)), (norm, act, residual)
    wd, bd = rnd(8, 1, 3, 5), rnd(8)  # ConvFormer's mixer, odd kernel
    for norm in ('group', 'layer', None):
        for biases in (True, False):
            def mix(x, w1, s, b, wd, w2, *bias):
                b1, bd, b2 = bias if bias else (None, None, None)
                return fused_ops.sep_conv_mix(x, w1, b1, (s, b), wd, bd, w2,
                                              b2, norm, 1e-5, (k[0], beta))
            assert torch.autograd.gradcheck(
                mix, (x, w1, s, b, wd, w2) + ((b1, bd, b2) if biases else ())
            ), (norm, biases)


def test_norm_backward_from_normalised_rows():
    """The low-precision NormMlp saves the normalised rows instead of its
    input; the norm's backward from them is the same in float64."""
    y, g = torch.randn(2, 5, 7, 6, dtype=torch.float64).unbind(0)
    y, g = y[None].expand(3, -1, -1, -1) * torch.rand(3, 1, 1, 1) + 2, \
        g[None].expand(3, -1, -1, -1).contiguous()
    for norm in ('group', 'layer'):
        xn, mean, rstd = fused_ops._norm_forward(y, norm, 1e-5)
        expected = fused_ops._norm_backward(g, y, norm, mean, rstd)
        got = fused_ops._norm_backward_normalised(g, xn, norm, rstd, y.shape)
        assert rel_error(got, expected) <= 1e-12, norm


def test_pool_mix_saves_less_than_the_plain_block():
    """What backward keeps alive: the fast block stores its input and
    small statistics, the plain one also the normalised and pooled maps."""
    def saved_bytes(model, x):
        params = {p.data_ptr() for p in model.parameters()}
        storages = {}

        def pack(t):
            if t.data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = \
                    t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return sum(storages.values())

    fast, plain = pair('poolformer', torch.float32)
    x = torch.randn(2, 3, 128, 128)
    assert saved_bytes(fast.train(), x) < 0.7 * saved_bytes(plain.train(), x)


def test_one_switch_swaps_twins_sharing_every_parameter():
    """``fast_path`` converts the blocks and downsamplings to their fused
    twins and back: same Parameter objects, same state dict."""
    from mmpoolformer.models.backbones.blocks import MetaFormerBlock
    from mmpoolformer.models.backbones.fast_blocks import FastDownsampling, FastMetaFormerBlock
    from mmpoolformer.models.backbones.layers import Downsampling
    model = MODELS['convformer'](fast_path=False)
    kinds = {type(m) for m in model.modules()}
    assert MetaFormerBlock in kinds and Downsampling in kinds
    assert not kinds & {FastMetaFormerBlock, FastDownsampling}
    params = dict(model.named_parameters())
    state = model.state_dict()
    model.fast_path = True
    kinds = {type(m) for m in model.modules()}
    assert {FastMetaFormerBlock, FastDownsampling} <= kinds
    assert not kinds & {MetaFormerBlock, Downsampling}
    assert all(p is params[n] for n, p in model.named_parameters())
    assert list(model.state_dict()) == list(state)
    model.fast_path = False
    assert all(p is params[n] for n, p in model.named_parameters())
    assert MetaFormerBlock in {type(m) for m in model.modules()}


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


def test_other_devices_run_the_plain_formulation():
    """Off the CPU the fused twins run their plain parents' ops (on the
    'meta' device here), on the CPU the fused kernels."""
    model = MODELS['poolformer']().train()
    x = torch.randn(2, 3, 64, 96)
    on_cpu = autograd_ops(model(x))
    assert {'PoolMixBackward', 'NormMlpBackward'} <= on_cpu
    outs = model.to('meta')(x.to('meta'))
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 16, 24), (2, 32, 8, 12), (2, 64, 4, 6), (2, 96, 2, 3)]
    on_meta = autograd_ops(outs)
    assert not {'PoolMixBackward', 'NormMlpBackward'} & on_meta
    assert 'NativeGroupNormBackward0' in on_meta
    convformer = MODELS['convformer']().train()
    assert 'SepConvMixBackward' in autograd_ops(convformer(x))


@pytest.mark.parametrize('name', ['poolformer', 'poolformer_v2',
                                  'convformer'])
def test_bfloat16_autocast_inference(name):
    """Under CPU bf16 autocast the fused inference kernels run their GEMMs
    in bf16 (no separate activation pass) and stay as close to the fp32
    function as autocast's per-op policy does on the plain formulation."""
    fast, plain = pair(name, torch.float32)
    fast.eval(), plain.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        exact = plain(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            with torch.profiler.profile() as prof:
                outs = fast(x)
            plain_outs = plain(x)
    ops = {e.name for e in prof.events()}
    assert 'aten::gelu' not in ops and 'aten::addmm' not in ops, ops
    for ours, ref, theirs in zip(outs, exact, plain_outs):
        error = rel_error(ours.float(), ref)
        assert 1e-4 < error <= 1.5 * rel_error(theirs.float(), ref) + 1e-3


@pytest.mark.parametrize('name', ['poolformer', 'poolformer_v2', 'convformer',
                                  'caformer'])
def test_bfloat16_autocast_training(name):
    """A training step under CPU bf16 autocast: the fused MLP (and
    ConvFormer's mixer) run their GEMMs in bf16 and save their activations
    in bf16, and outputs and gradients
    (all parameters as one vector: single reductions such as a StarReLU
    scalar's gradient cancel heavily in bf16, by 5-20 % in both) are as
    close to the fp32 step as the plain formulation's under autocast."""
    fast, plain = pair(name, torch.float32)
    fast.train(), plain.train()
    x = torch.randn(2, 3, 64, 96)
    outs_e, gx_e, g_e = run(copy.deepcopy(plain), x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs_f, gx_f, g_f = run(fast, x)
        outs_p, gx_p, g_p = run(plain, x)
        ops = autograd_ops(fast(x))
    assert 'NormMlpBackward' in ops
    assert ('SepConvMixBackward' in ops) == (name in ('convformer',
                                                      'caformer'))
    for ours, theirs, exact in [(gx_f, gx_p, gx_e), *zip(outs_f, outs_p,
                                                          outs_e)]:
        error = rel_error(ours.float(), exact)
        assert 1e-4 < error <= 1.5 * rel_error(theirs.float(), exact) + 1e-3
    assert all(g_f[n].dtype == g_e[n].dtype for n in g_e)
    flat = [torch.cat([g[n].flatten() for n in sorted(g_e)])
            for g in (g_f, g_p, g_e)]
    assert rel_error(flat[0], flat[2]) <= \
        1.5 * rel_error(flat[1], flat[2]) + 1e-3
