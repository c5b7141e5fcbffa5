"""The MetaFormer baselines (Yu et al., "MetaFormer Baselines for Vision",
TPAMI 2023): PoolFormerV2, IdentityFormer, RandFormer, ConvFormer, CAFormer.

All share the baselines' recipe: LayerNorm without bias in the stem (after
the conv) and before each downsampling, StarReLU MLPs without bias, no layer
scale but a residual scale (init 1) in the last two stages. They differ in
the token mixer and the block norm, as the presets below say.
"""
from mmpoolformer.registry import MODELS

from .metaformer import MetaFormer

LN_NO_BIAS = dict(type='LayerNorm2d', eps=1e-6, bias=False)
BASELINE = dict(
    stem_norm_cfg=LN_NO_BIAS, downsample_norm_cfg=LN_NO_BIAS,
    mlp_act_cfg=dict(type='StarReLU'), mlp_bias=False,
    layer_scale_init_values=None, res_scale_init_values=[None, None, 1., 1.],
    out_norm_cfg=dict(type='LayerNorm2d', eps=1e-6))
GN_NO_BIAS = dict(type='GroupNorm1', eps=1e-6, bias=False)
DIMS = dict(s=[64, 128, 320, 512], m=[96, 192, 384, 768])
DEPTHS = dict(s12=[2, 2, 6, 2], s24=[4, 4, 12, 4], s36=[6, 6, 18, 6],
              m36=[6, 6, 18, 6], m48=[8, 8, 24, 8])


def pool_family(token_mixers, norm_cfg=GN_NO_BIAS):
    """S12-M48 presets of PoolFormerV2 / IdentityFormer / RandFormer."""
    return {name: dict(BASELINE, depths=depths, embed_dims=DIMS[name[0]],
                       token_mixers=token_mixers, norm_cfg=norm_cfg)
            for name, depths in DEPTHS.items()}


def conv_family(token_mixers, norm_cfg):
    """S18/S36/M36/B36 presets of ConvFormer / CAFormer."""
    sizes = dict(s18=([3, 3, 9, 3], [64, 128, 320, 512]),
                 s36=([3, 12, 18, 3], [64, 128, 320, 512]),
                 m36=([3, 12, 18, 3], [96, 192, 384, 576]),
                 b36=([3, 12, 18, 3], [128, 256, 512, 768]))
    return {name: dict(BASELINE, depths=depths, embed_dims=dims,
                       token_mixers=token_mixers, norm_cfg=norm_cfg)
            for name, (depths, dims) in sizes.items()}


IDENTITY = dict(type='Identity')


@MODELS.register_module()
class PoolFormerV2(MetaFormer):
    """PoolFormer with the baselines' recipe (pooling mixer, GroupNorm)."""
    arch_zoo = pool_family(dict(type='Pooling', pool_size=3))
    default_arch = 's12'


@MODELS.register_module()
class IdentityFormer(MetaFormer):
    """No token mixing at all: the lower bound of MetaFormer."""
    arch_zoo = pool_family(IDENTITY)
    default_arch = 's12'


@MODELS.register_module()
class RandFormer(MetaFormer):
    """Identity mixers in stages 1-2, frozen random token mixing in 3-4.

    The random matrices are drawn for 224x224 inputs (14x14 and 7x7 token
    grids); other inputs resample them (see :class:`RandomMixing`).
    """
    arch_zoo = pool_family([IDENTITY, IDENTITY,
                            dict(type='RandomMixing', num_tokens=196),
                            dict(type='RandomMixing', num_tokens=49)])
    default_arch = 's12'


@MODELS.register_module()
class ConvFormer(MetaFormer):
    """Separable-convolution mixer (MobileNetV2 style) in every stage."""
    arch_zoo = conv_family(dict(type='SepConv'), LN_NO_BIAS)
    default_arch = 's18'


@MODELS.register_module()
class CAFormer(MetaFormer):
    """Separable convolutions in stages 1-2, self-attention (heads of 32
    channels) on tokens in stages 3-4."""
    arch_zoo = conv_family(
        [dict(type='SepConv')] * 2 + [dict(type='Attention', head_dim=32)] * 2,
        [LN_NO_BIAS] * 2 + [dict(type='TokenLayerNorm', eps=1e-6, bias=False)] * 2)
    default_arch = 's18'
