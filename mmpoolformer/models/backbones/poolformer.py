"""PoolFormer (v1): "MetaFormer Is Actually What You Need for Vision" (CVPR 2022).

The MetaFormer block with a 3x3 average-pooling token mixer (``pool(x) - x``,
padding not counted), GroupNorm with one group (the paper's "modified layer
norm"), a GELU MLP with bias and layer scale; no norm in the stem and the
downsampling. The official layer scale starts at 1e-5 for S12/S24 and at
1e-6 for the deeper S36/M36/M48.
"""
from typing import Optional, Union

from mmpoolformer.registry import MODELS

from .metaformer import MetaFormer

DIMS_S, DIMS_M = [64, 128, 320, 512], [96, 192, 384, 768]


@MODELS.register_module()
class PoolFormer(MetaFormer):
    """PoolFormer v1 backbone; see :class:`MetaFormer` for the arguments.

    Args:
        arch (str | dict): ``s12, s24, s36, m36, m48`` or a dict with
            ``depths`` and ``embed_dims`` (and optionally other MetaFormer
            arch keys such as ``mlp_ratios``).
        pool_size (int): Window of the pooling mixer. Defaults to 3.
        norm_cfg (dict, optional): Norm of the blocks and outputs instead of
            GroupNorm with one group (e.g. ``dict(type='BN')``).
        act_cfg (dict, optional): MLP activation instead of GELU.
    """
    arch_zoo = {
        's12': dict(depths=[2, 2, 6, 2], embed_dims=DIMS_S),
        's24': dict(depths=[4, 4, 12, 4], embed_dims=DIMS_S),
        's36': dict(depths=[6, 6, 18, 6], embed_dims=DIMS_S,
                    layer_scale_init_values=1e-6),
        'm36': dict(depths=[6, 6, 18, 6], embed_dims=DIMS_M,
                    layer_scale_init_values=1e-6),
        'm48': dict(depths=[8, 8, 24, 8], embed_dims=DIMS_M,
                    layer_scale_init_values=1e-6),
    }
    default_arch = 's12'

    def __init__(self, arch: Union[str, dict] = 's12', pool_size: int = 3,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = None, **kwargs):
        if isinstance(arch, dict) and 'token_mixers' in arch:
            raise ValueError(
                'PoolFormer always mixes tokens by pooling (set pool_size); '
                'use type="mmpoolformer.MetaFormer" for other token mixers.')
        overrides = dict(token_mixers=dict(type='Pooling', pool_size=pool_size))
        if norm_cfg is not None:
            overrides.update(norm_cfg=norm_cfg, out_norm_cfg=norm_cfg)
        if act_cfg is not None:
            overrides.update(mlp_act_cfg=act_cfg)
        super().__init__(arch, **overrides, **kwargs)
