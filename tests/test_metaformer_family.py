"""Family-specific behaviour: the papers' presets, each family's design,
any-size mixers (what every family shares is tests/test_models.py's)."""
import pytest
import torch

import mmpoolformer
from mmpoolformer.models import MetaFormer
from mmpoolformer.models.backbones.token_mixers import RandomMixing, resample_token_matrix

from helpers import assert_every_parameter_learns, randomise_

#: the papers' sizes
PRESETS = {
    'PoolFormerV2': ['s12', 's24', 's36', 'm36', 'm48'],
    'IdentityFormer': ['s12', 's24', 's36', 'm36', 'm48'],
    'RandFormer': ['s12', 's24', 's36', 'm36', 'm48'],
    'ConvFormer': ['s18', 's36', 'm36', 'b36'],
    'CAFormer': ['s18', 's36', 'm36', 'b36'],
    'PoolFormer': ['s12', 's24', 's36', 'm36', 'm48'],
    'RIFormer': ['s12', 's24', 's36', 'm36', 'm48'],
}


def build(name, **kwargs):
    # prefixed: other tests may leave mmpretrain as the default scope, where
    # the plain names PoolFormer / RIFormer are mmpretrain's own
    return mmpoolformer.MODELS.build(dict(type=f'mmpoolformer.{name}', **kwargs))


def test_the_papers_families_are_registered_with_their_presets():
    for name, archs in PRESETS.items():
        assert sorted(mmpoolformer.MODELS.get(name).arch_zoo) == sorted(archs)


@pytest.mark.parametrize('name', ['PoolFormerV2', 'ConvFormer', 'CAFormer'])
def test_baseline_recipe(name):
    model = build(name)
    assert type(model.stem.norm).__name__ == 'LayerNorm2d'
    assert model.stem.norm.bias is None and not model.stem.norm_first
    assert model.stages[1].downsample.norm_first
    block = model.stages[3].blocks[0]
    assert type(block.mlp.act).__name__ == 'StarReLU'
    assert block.mlp.fc1.bias is None
    assert hasattr(block.res_scale1, 'scale')
    assert not hasattr(model.stages[0].blocks[0].res_scale1, 'scale')


def test_caformer_attention_stages_and_head_dim():
    model = build('CAFormer')
    assert [s.tokens_last for s in model.stages] == [False, False, True, True]
    attn = model.stages[2].blocks[0].token_mixer
    assert attn.head_dim == 32 and attn.num_heads == 320 // 32


def test_randformer_any_size():
    model = build('RandFormer').eval()
    mixer = model.stages[2].blocks[0].token_mixer
    assert isinstance(mixer, RandomMixing) and mixer.base == (14, 14)
    with torch.no_grad():
        for hw in [(224, 224), (97, 131), (64, 64)]:
            outs = model(torch.randn(1, 3, *hw))
            assert all(torch.isfinite(o).all() for o in outs)
    # at the native grid the matrix is used as drawn; elsewhere resampled
    # rows still sum to one (a weighted average of tokens)
    m = mixer.random_matrix
    assert resample_token_matrix(m, (14, 14), (14, 14)) is m
    x = torch.ones(1, 8, 9, 5)
    torch.testing.assert_close(mixer(x), x)


def test_ablation_mixers_learn_at_any_size():
    for mixers in ([dict(type='Pooling', pool_size=7)] * 4,
                   [dict(type='Pooling')] * 3 + [dict(type='Attention')],
                   [dict(type='Pooling')] * 2 + [dict(type='SpatialFC', num_tokens=196),
                                                 dict(type='SpatialFC', num_tokens=49)],
                   [dict(type='Identity')] * 4,
                   [dict(type='DepthwiseConv', kernel_size=3)] * 4):
        model = MetaFormer(dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64],
                                token_mixers=mixers))
        for hw in [(224, 224), (64, 96)]:
            model.zero_grad()
            outs = model(torch.randn(1, 3, *hw))
            assert outs[3].shape[1] == 64 and torch.isfinite(outs[3]).all()
            sum(o.square().mean() for o in outs).backward()
            assert_every_parameter_learns(model, mixers)


def test_riformer_deploy_respects_frozen_stages():
    model = build('RIFormer', frozen_stages=2)
    model.switch_to_deploy()
    assert not any(p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[2].parameters())


def test_bad_arch_keys_give_clear_errors():
    with pytest.raises(ValueError, match=r"Unknown ConvFormer arch 's12'.*'s18'"):
        build('ConvFormer', arch='s12')
    with pytest.raises(ValueError, match='Unknown arch keys'):
        MetaFormer(dict(depths=[1] * 4, embed_dims=[8] * 4, mixer='Pooling'))
    with pytest.raises(ValueError, match="Unknown token mixer 'Pool'"):
        MetaFormer(dict(depths=[1] * 4, embed_dims=[8] * 4,
                        token_mixers=dict(type='Pool')))


CUSTOM = dict(depths=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64])


@pytest.mark.parametrize('name, mixers, norm, act', [
    ('PoolFormer', {'Pooling'}, 'GroupNorm1', 'GELU'),
    ('PoolFormerV2', {'Pooling'}, 'GroupNorm1', 'StarReLU'),
    ('ConvFormer', {'SepConv'}, 'LayerNorm2d', 'StarReLU'),
    ('CAFormer', {'SepConv', 'Attention'}, 'LayerNorm2d', 'StarReLU'),
    ('RandFormer', {'IdentityMixer', 'RandomMixing'}, 'GroupNorm1', 'StarReLU'),
    ('RIFormer', {'Affine'}, 'GroupNorm1', 'GELU'),
])
def test_custom_arch_dict_keeps_the_family_design(name, mixers, norm, act):
    model = build(name, arch=dict(CUSTOM))
    assert model.embed_dims == CUSTOM['embed_dims']
    assert [len(s.blocks) for s in model.stages] == CUSTOM['depths']
    blocks = [s.blocks[0] for s in model.stages]
    assert {type(b.token_mixer).__name__ for b in blocks} == mixers
    assert type(blocks[0].norm1).__name__ == norm
    assert type(blocks[0].mlp.act).__name__ == act
    # the dict still overrides the preset
    wider = build(name, arch=dict(CUSTOM, mlp_ratios=1))
    assert wider.stages[0].blocks[0].mlp.fc1.weight.shape[0] == 8


def test_riformer_custom_arch_deploys():
    model = randomise_(build('RIFormer', arch=dict(CUSTOM))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.switch_to_deploy()
        after = model(x)
    for a, b in zip(after, before):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match='affine mixer only'):
        build('RIFormer', arch=dict(CUSTOM, token_mixers=dict(type='Pooling')))


def test_pretrained_points_to_init_cfg():
    with pytest.raises(ValueError, match=r'no pretrained=.*init_cfg=dict\(type="Pretrained", '
                       r"checkpoint='x.pth'\)"):
        build('PoolFormer', pretrained='x.pth')


def test_feature_info_describes_the_returned_maps():
    model = build('ConvFormer', arch=dict(CUSTOM), out_indices=(1, 3)).eval()
    assert model.feature_info == [
        dict(num_chs=16, reduction=8, module='norm1', stage=1),
        dict(num_chs=64, reduction=32, module='norm3', stage=3)]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    for info, out in zip(model.feature_info, outs):
        assert out.shape[1] == info['num_chs']
        assert 96 // out.shape[3] == info['reduction']
