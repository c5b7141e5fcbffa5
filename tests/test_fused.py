"""The fused CPU kernels' hand-written backward passes, against finite
differences, and what they keep for backward (their reason to exist: about
half the plain formulation's saved activations). That the models compute
the plain function with them is tests/test_models.py's."""
import torch
from test_models import pair

from mmpoolformer.models.backbones import fused

from helpers import rel_error


def rnd(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_()


def test_pool_mix_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x, k, a, beta = (rnd(gen, *s) for s in ((2, 5, 7, 3), (2, 3), (3, ), (3, )))
    for res in (None, a):
        assert torch.autograd.gradcheck(
            lambda x, k, *r: fused.PoolMix.apply(x, k, r[0] if r else None, beta,
                                                 3, 1e-5, torch.float64),
            (x, k) + (() if res is None else (res, )))


def test_norm_mlp_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = rnd(gen, 2, 5, 7, 3)
    w1, b1, w2, b2, s, b = (rnd(gen, *shape) for shape in
                            ((8, 3), (8, ), (3, 8), (3, ), (1, ), (1, )))
    for norm in ('group', 'layer', None):
        for act in fused.ACTIVATIONS:
            for add_input in (False, True):
                def fn(x, w1, b1, w2, b2, s, b):
                    star = act == 'star_relu'
                    return fused.NormMlp.apply(
                        x, w1, b1, w2, b2, s if star else None,
                        b if star else None, norm, 1e-5, act, add_input,
                        torch.float64)
                assert torch.autograd.gradcheck(
                    fn, (x, w1, b1, w2, b2, s, b)), (norm, act, add_input)


def test_sep_conv_mix_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = rnd(gen, 2, 5, 7, 3)
    w1, b1, s, b, w2, b2 = (rnd(gen, *shape) for shape in
                            ((8, 3), (8, ), (1, ), (1, ), (3, 8), (3, )))
    wd, bd = rnd(gen, 8, 1, 3, 5), rnd(gen, 8)  # an odd kernel
    for norm, biases in (('group', True), ('layer', False), (None, True)):
        def mix(x, w1, s, b, wd, w2, *bias):
            b1, bd, b2 = bias if bias else (None, None, None)
            return fused.SepConvMix.apply(x, w1, b1, s, b, wd, bd, w2, b2,
                                          norm, 1e-5, torch.float64)
        assert torch.autograd.gradcheck(
            mix, (x, w1, s, b, wd, w2) + ((b1, bd, b2) if biases else ())
        ), (norm, biases)


def test_norm_backward_from_normalised_rows():
    """Under autocast the kernels save the normalised rows (bf16) instead
    of their input; the norm's backward from them is the same in float64."""
    y, g = torch.randn(2, 5, 7, 6, dtype=torch.float64).unbind(0)
    y = y[None].expand(3, -1, -1, -1) * torch.rand(3, 1, 1, 1) + 2
    g = g[None].expand(3, -1, -1, -1).contiguous()
    for norm in ('group', 'layer'):
        xn, mean, rstd = fused._norm_forward(y, norm, 1e-5)
        expected = fused._kept_norm_backward(g, y, y.dtype, norm, mean, rstd,
                                             y.shape)
        got = fused._kept_norm_backward(g, xn.float().double().reshape(y.shape)
                                        .to(torch.float32), y.dtype, norm,
                                        mean, rstd, y.shape)
        assert rel_error(got, expected) <= 1e-6, norm


def saved_bytes(model, x):
    """What backward keeps alive, Parameters aside."""
    params = {p.data_ptr() for p in model.parameters()}
    storages = {}

    def pack(t):
        if t.data_ptr() not in params:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def test_fused_blocks_save_less_than_the_plain_ones():
    for name in ('PoolFormer', 'ConvFormer'):
        model, plain = pair(name, 'fused')
        x = torch.randn(2, 3, 128, 128)
        assert saved_bytes(model.train(), x) < 0.7 * saved_bytes(plain.train(), x), name
