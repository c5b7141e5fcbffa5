"""PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones."""
from .checkpoint.torch_load import register_mmengine_safe_globals
from .registry import MODELS, share_with_scopes
from .version import __version__
from . import models  # noqa: F401,E402  (registers the backbones)

register_mmengine_safe_globals()
share_with_scopes()

__all__ = ['MODELS', '__version__']
