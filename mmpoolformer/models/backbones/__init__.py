from .formulation import FORMULATIONS, INFERENCE_ONLY
from .metaformer import MetaFormer
from .metaformer_baselines import CAFormer, ConvFormer, IdentityFormer, PoolFormerV2, RandFormer
from .poolformer import PoolFormer
from .riformer import RIFormer
from .token_mixers import TokenMixer

__all__ = [
    'MetaFormer', 'PoolFormer', 'PoolFormerV2', 'IdentityFormer', 'RandFormer',
    'ConvFormer', 'CAFormer', 'RIFormer', 'TokenMixer', 'FORMULATIONS',
    'INFERENCE_ONLY'
]
