"""The ablation keys of the arch dict (the PoolFormer paper's rows):
``mlp_ratios`` 0 (no channel MLP), ``residual=False`` (no skip
connections) and ``pos_embed`` (a learnable position embedding per stage),
in every formulation."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmpoolformer.models import MetaFormer, PoolFormer
from mmpoolformer.models.backbones import FORMULATIONS

from helpers import TINY, assert_every_parameter_learns, randomise_, rel_error


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def both_formulations(model):
    plain = copy.deepcopy(model)
    plain.formulation = 'plain'
    return model, plain


def train_step(model, x):
    model.zero_grad()
    outs = model(x)
    sum(o.square().mean() + o.mean() for o in outs).backward()
    return outs


def assert_same(fast, plain, x, tol=1e-5):
    outs_f, outs_p = train_step(fast, x), train_step(plain, x)
    for a, b in zip(outs_f, outs_p):
        assert rel_error(a, b) <= tol
    # gradients the fused pooling identity cancels exactly (norm1's bias)
    # are rounding noise in the plain formulation: compared only above it
    scale = max(p.grad.norm() for p in plain.parameters() if p.grad is not None)
    for (name, pf), (_, pp) in zip(fast.named_parameters(),
                                   plain.named_parameters()):
        if pp.grad is not None and pp.grad.norm() > 1e-6 * scale:
            assert rel_error(pf.grad, pp.grad) <= 1e-4, name


def test_no_channel_mlp_s12_params_and_structure():
    full = PoolFormer('s12')
    token_only = PoolFormer('s12', mlp_ratios=0)
    # the paper's "channel MLP -> none" row: S12 keeps ~2.5M parameters,
    # counted with the 1000-class head (512 * 1000 + 1000) as the paper does
    head = 512 * 1000 + 1000
    assert 2.4e6 < n_params(token_only) + head < 2.6e6, n_params(token_only)
    assert n_params(full) + head > 11.5e6
    block_keys = [k for k in token_only.state_dict() if '.blocks.' in k]
    assert block_keys and not [
        k for k in block_keys if any(part in k for part in
                                     ('mlp', 'norm2', 'layer_scale2'))]
    # one stage without the MLP, the others unchanged
    mixed = PoolFormer(TINY, mlp_ratios=[2, 2, 2, 0])
    assert hasattr(mixed.stages[2].blocks[0], 'mlp')
    assert not hasattr(mixed.stages[3].blocks[0], 'mlp')


@pytest.mark.parametrize('family', ['poolformer', 'caformer_like'])
def test_no_channel_mlp_formulations_agree_and_learn(family):
    mixers = None if family == 'poolformer' else (
        [dict(type='SepConv')] * 2 + [dict(type='Attention', head_dim=8)] * 2)
    arch = dict(TINY, mlp_ratios=0, res_scale_init_values=1.)
    if mixers:
        arch['token_mixers'] = mixers
    model = randomise_(MetaFormer(arch)).train()
    fast, plain = both_formulations(model)
    x = torch.randn(2, 3, 45, 61, generator=torch.Generator().manual_seed(0))
    assert_same(fast, plain, x)
    assert_every_parameter_learns(fast)


def test_no_residual_block_computes_the_specified_function():
    model = randomise_(PoolFormer(TINY, residual=False,
                                  res_scale_init_values=1.,
                                  drop_path_rate=0.3)).train()
    # no residual sum: no residual scale to learn, no stochastic depth
    assert not [n for n, _ in model.named_parameters() if 'res_scale' in n]
    block = model.stages[0].blocks[0]
    x = torch.randn(2, 8, 9, 11)
    n1 = F.group_norm(x, 1, block.norm1.weight, block.norm1.bias)
    pooled = F.avg_pool2d(n1, 3, 1, 1, count_include_pad=False)
    y = block.layer_scale1.scale.view(-1, 1, 1) * (pooled - n1)
    n2 = F.group_norm(y, 1, block.norm2.weight, block.norm2.bias)
    y = block.layer_scale2.scale.view(-1, 1, 1) * block.mlp.fc2(
        F.gelu(block.mlp.fc1(n2)))
    for formulation in FORMULATIONS:
        model.formulation = formulation
        torch.manual_seed(0)
        with torch.no_grad():
            assert rel_error(block(x), y) <= 1e-5, formulation
    # it is a different function from the residual block
    with_skip = PoolFormer(TINY).train()
    with_skip.load_state_dict(model.state_dict())
    skip_block = with_skip.stages[0].blocks[0]
    assert rel_error(skip_block(x), y) > 0.1


def test_no_residual_formulations_agree_and_learn():
    model = randomise_(MetaFormer(dict(
        TINY, residual=[False, True, False, True],
        token_mixers=[dict(type='Pooling'), dict(type='Pooling'),
                      dict(type='SepConv'), dict(type='Attention', head_dim=8)]
    ), drop_path_rate=0.2)).train()
    fast, plain = both_formulations(model)
    x = torch.randn(2, 3, 64, 40)
    torch.manual_seed(1)
    outs_f = train_step(fast, x)
    torch.manual_seed(1)
    outs_p = train_step(plain, x)
    assert all(rel_error(a, b) <= 1e-5 for a, b in zip(outs_f, outs_p))
    assert_every_parameter_learns(fast)


def test_pos_embed_shapes_and_zero_init_keeps_the_function():
    model = randomise_(PoolFormer(TINY, pos_embed=[False, True, False, True]))
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()
              if 'pos_embed' in n}
    assert shapes == {'stages.1.pos_embed': (1, 16, 28, 28),
                      'stages.3.pos_embed': (1, 32, 7, 7)}
    fresh = PoolFormer('s12', pos_embed=True)
    assert all(fresh.stages[i].pos_embed.shape == (1, c, 56 // 2**i, 56 // 2**i)
               and not fresh.stages[i].pos_embed.any()
               for i, c in enumerate([64, 128, 320, 512]))
    # zeros at first: the same outputs as the model without it
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'pos_embed' in name:
                p.zero_()
    without = PoolFormer(TINY).eval()
    missing, _ = without.load_state_dict(model.state_dict(), strict=False)
    model.eval()
    x = torch.randn(1, 3, 97, 131)
    with torch.no_grad():
        for a, b in zip(model(x), without(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('hw', [(224, 224), (97, 131)])
def test_pos_embed_is_added_after_downsampling_and_resampled(hw):
    model = randomise_(MetaFormer(dict(
        TINY, pos_embed=True,
        token_mixers=[dict(type='Pooling')] * 2 + [dict(type='Attention',
                                                        head_dim=8)] * 2,
        norm_cfg=[dict(type='GroupNorm1')] * 2 + [dict(type='TokenLayerNorm')] * 2)))
    model.eval()
    x = torch.randn(1, 3, *hw)
    for formulation in FORMULATIONS:
        model.formulation = formulation
        seen = {}
        hooks = []
        for i, stage in enumerate(model.stages):
            hooks.append(stage.downsample.register_forward_hook(
                lambda m, i_, o, i=i: seen.__setitem__(('down', i), o)))
            hooks.append(stage.blocks[0].register_forward_pre_hook(
                lambda m, args, i=i: seen.__setitem__(('block', i), args[0])))
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        for i, stage in enumerate(model.stages):
            down = seen[('down', i)]
            pe = F.interpolate(stage.pos_embed, size=down.shape[2:],
                               mode='bilinear', align_corners=False)
            if down.shape[2:] == stage.pos_embed.shape[2:]:
                pe = stage.pos_embed
            expected = down + pe
            got = seen[('block', i)]
            if got.dim() == 3:  # tokens of an attention stage
                got = got.transpose(1, 2).reshape(expected.shape)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # a nonzero embedding changes the outputs; it learns in both formulations
    model.formulation = 'auto'
    fast, plain = both_formulations(model.train())
    assert_same(fast, plain, x)
    assert_every_parameter_learns(fast)
    assert all(fast.stages[i].pos_embed.grad.abs().sum() > 0 for i in range(4))


@pytest.mark.parametrize('overrides, match', [
    (dict(residual='no'), r'arch\["residual"\] must be a bool'),
    (dict(pos_embed=[True, False]), r'arch\["pos_embed"\] must have 4 entries'),
    (dict(mlp_ratios=-1), r'mlp_ratios.* >= 0'),
])
def test_bad_ablation_keys_give_clear_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        PoolFormer(TINY, **overrides)
