"""Our models. ``mmpoolformer.models.PoolFormer`` etc. are imported on first
use (the backbones need mmengine's model stack, the classifier head and the
RIFormer distiller need mmpretrain)."""
import importlib

from mmpoolformer.registry import LAZY_MODULES

_NAMES = ('MetaFormer', 'PoolFormer', 'PoolFormerV2', 'IdentityFormer',
          'RandFormer', 'ConvFormer', 'CAFormer', 'RIFormer',
          'MetaFormerClsHead', 'RIFormerDistiller')


def __getattr__(name):
    if name in _NAMES:
        return getattr(importlib.import_module(LAZY_MODULES[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = list(_NAMES)
