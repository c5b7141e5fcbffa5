"""Behaviour of the PoolFormer backbone: shapes, gradients, freezing, errors."""
import pytest
import torch
import torch.nn as nn

from mmpoolformer.models import PoolFormer

from helpers import TINY, assert_every_parameter_learns, randomise_

ARCHS = ['s12', 's24', 's36', 'm36', 'm48']
DIMS = {'s': [64, 128, 320, 512], 'm': [96, 192, 384, 768]}


def expected_sizes(size):
    """Spatial size after the stem (7/4/2) and each 3/2/1 downsampling."""
    sizes = [(size + 2 * 2 - 7) // 4 + 1]
    for _ in range(3):
        sizes.append((sizes[-1] + 2 - 3) // 2 + 1)
    return sizes


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('hw', [(64, 64), (97, 131)])
def test_shapes_strides_channels(arch, hw):
    model = PoolFormer(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *hw))
    assert isinstance(outs, tuple) and len(outs) == 4
    for out, c, h, w in zip(outs, DIMS[arch[0]], expected_sizes(hw[0]),
                            expected_sizes(hw[1])):
        assert out.shape == (1, c, h, w)
        assert torch.isfinite(out).all()
    # strides 4/8/16/32 up to the floor of odd sizes
    assert [round(hw[0] / o.shape[2]) for o in outs[:3]] == [4, 8, 16]


def test_presets_match_paper():
    for arch, depths in [('s12', [2, 2, 6, 2]), ('s24', [4, 4, 12, 4]),
                         ('s36', [6, 6, 18, 6]), ('m36', [6, 6, 18, 6]),
                         ('m48', [8, 8, 24, 8])]:
        model = PoolFormer(arch)
        assert [len(s.blocks) for s in model.stages] == depths
        n_params = sum(p.numel() for p in model.parameters()) / 1e6
        published = dict(s12=12, s24=21, s36=31, m36=56, m48=73)[arch]
        # published counts include the 1000-class head and one output norm
        assert abs(n_params - published) < 1.5, (arch, n_params)
    block = PoolFormer('s12').stages[0].blocks[0]
    assert isinstance(block.norm1, nn.GroupNorm) and block.norm1.num_groups == 1
    pool = block.token_mixer.pool
    assert (pool.kernel_size, pool.stride, pool.padding,
            pool.count_include_pad) == (3, 1, 1, False)
    assert block.mlp.fc1.out_channels == 4 * 64
    assert torch.all(block.layer_scale1.scale == 1e-5)
    stem = PoolFormer('s12').stem.conv
    assert (stem.kernel_size, stem.stride, stem.padding) == ((7, 7), (4, 4), (2, 2))


def test_block_math_matches_paper_formula():
    model = randomise_(PoolFormer(TINY)).eval()
    block = model.stages[0].blocks[0]
    x = torch.randn(2, 8, 9, 11)
    n1 = nn.functional.group_norm(x, 1, block.norm1.weight, block.norm1.bias)
    pooled = nn.functional.avg_pool2d(n1, 3, 1, 1, count_include_pad=False)
    ls1 = block.layer_scale1.scale.view(-1, 1, 1)
    ls2 = block.layer_scale2.scale.view(-1, 1, 1)
    y = x + ls1 * (pooled - n1)
    n2 = nn.functional.group_norm(y, 1, block.norm2.weight, block.norm2.bias)
    y = y + ls2 * block.mlp.fc2(nn.functional.gelu(block.mlp.fc1(n2)))
    torch.testing.assert_close(block(x), y, rtol=0, atol=1e-6)


def test_custom_arch_pool_size_and_out_indices():
    model = PoolFormer(TINY, pool_size=5, out_indices=(-1, 1)).eval()
    assert model.out_indices == (1, 3)
    assert model.stages[0].blocks[0].token_mixer.pool.kernel_size == 5
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32]
    assert hasattr(model, 'norm1') and hasattr(model, 'norm3')
    assert not hasattr(model, 'norm0')


def test_every_parameter_gets_a_gradient():
    model = randomise_(PoolFormer(TINY, drop_path_rate=0.1)).train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outs).backward()
    assert_every_parameter_learns(model)


def test_drop_path_rises_linearly():
    model = PoolFormer(TINY, drop_path_rate=0.4)
    rates = [getattr(b.drop_path, 'drop_prob', 0.)
             for s in model.stages for b in s.blocks]
    assert rates == pytest.approx([0., 0.1, 0.2, 0.3, 0.4])


def test_with_cp_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = randomise_(PoolFormer(TINY)).train()
    ckpt = randomise_(PoolFormer(TINY, with_cp=True)).train()
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        outs = model(x)
        sum((o * torch.linspace(0, 1, o.numel()).view_as(o)).sum()
            for o in outs).backward()
        results.append((outs, {n: p.grad for n, p in model.named_parameters()}))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('frozen_stages', [-1, 0, 1, 2, 3, 4])
def test_frozen_stages_persist_through_train(frozen_stages):
    model = PoolFormer(TINY, frozen_stages=frozen_stages, norm_cfg=dict(type='BN'))
    model.train()
    frozen = []
    if frozen_stages >= 0:
        frozen.append(model.stem)
    for i in range(max(frozen_stages, 0)):
        frozen += [model.stages[i], getattr(model, f'norm{i}')]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for p in model.parameters():
        assert p.requires_grad == (id(p) not in frozen_ids)
    for m in frozen:
        assert all(not sub.training for sub in m.modules())
    trainable = [model.stages[i] for i in range(max(frozen_stages, 0), 4)]
    for m in trainable:
        assert m.training
    # frozen BatchNorm statistics do not move during a training forward
    if frozen_stages >= 1:
        bn = model.stages[0].blocks[0].norm1
        before = bn.running_mean.clone()
        model(torch.randn(2, 3, 64, 64) * 3 + 1)
        torch.testing.assert_close(bn.running_mean, before)


def test_norm_eval_keeps_batchnorm_statistics():
    model = PoolFormer(TINY, norm_cfg=dict(type='BN'), norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    before = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    for m, b in zip(bns, before):
        torch.testing.assert_close(m.running_mean, b)
    # without norm_eval the statistics move
    model = PoolFormer(TINY, norm_cfg=dict(type='BN')).train()
    bn = model.stages[0].blocks[0].norm1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 3 + 1)
    assert not torch.allclose(bn.running_mean, before)


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='s13'), r"Unknown PoolFormer arch 's13'.*'s12'"),
    (dict(arch=dict(depths=[1, 1, 1])), r'lacks \[.embed_dims.\]'),
    (dict(arch=dict(depths=[1, 1, 1], embed_dims=[8, 8, 8])), r'4 entries'),
    (dict(out_indices=(0, 4)), r'out_indices .* \[-4, 3\], got 4'),
    (dict(out_indices=(-5, )), r'\[-4, 3\], got -5'),
    (dict(out_indices=(1, -3)), r'distinct stages'),
    (dict(frozen_stages=5), r'frozen_stages must be in \[-1, 4\]'),
    (dict(frozen_stages=-2), r'frozen_stages must be in \[-1, 4\]'),
    (dict(pool_size=4), r'pool_size must be odd'),
    (dict(arch=dict(TINY, token_mixers=dict(type='Identity'))),
     r'always mixes tokens by pooling.*MetaFormer'),
])
def test_bad_arguments_give_clear_errors(kwargs, match):
    kwargs.setdefault('arch', TINY)
    with pytest.raises(ValueError, match=match):
        PoolFormer(**kwargs)


def test_wrong_input_channels_names_the_fix():
    model = PoolFormer(TINY, in_channels=3)
    with pytest.raises(ValueError, match=r'3 channels.*got shape \(1, 1, 64, 64\).*in_channels=1'):
        model(torch.randn(1, 1, 64, 64))
    gray = PoolFormer(TINY, in_channels=1).eval()
    assert gray(torch.randn(1, 1, 64, 64))[0].shape == (1, 8, 16, 16)


def test_weights_are_not_loaded_in_init(tmp_path):
    missing = str(tmp_path / 'nowhere.pth')
    model = PoolFormer(TINY, init_cfg=dict(type='Pretrained', checkpoint=missing))
    with pytest.raises(FileNotFoundError):
        model.init_weights()
