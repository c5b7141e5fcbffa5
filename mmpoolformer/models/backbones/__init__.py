from .fast_blocks import convert_blocks
from .metaformer import MetaFormer
from .metaformer_baselines import CAFormer, ConvFormer, IdentityFormer, PoolFormerV2, RandFormer
from .poolformer import PoolFormer
from .riformer import RIFormer

__all__ = [
    'MetaFormer', 'PoolFormer', 'PoolFormerV2', 'IdentityFormer', 'RandFormer',
    'ConvFormer', 'CAFormer', 'RIFormer', 'convert_blocks'
]

from mmpoolformer.registry import publish_backbones  # noqa: E402

publish_backbones()  # the classes replace their stand-ins in the root registry
