"""PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones.

``import mmpoolformer`` (what ``custom_imports=dict(imports=['mmpoolformer'])``
does) creates our registries (children of mmengine's, scope
``mmpoolformer``: configs name ``type='mmpoolformer.PoolFormer'``) and adds
the ``mmpoolformer`` config scope to mmengine's table of ``pkg::`` scopes
(on the onedl fork it also maps ``mmseg`` there, whose distribution has
another name); it changes nothing else. mmdet, mmseg and mmpretrain are imported only
when a config or a lookup needs them (see :mod:`mmpoolformer.registry`).
"""
import importlib
import importlib.util

from .stack import INSTALL_HINT, check_torch, register_config_scope

try:
    import torch
except ImportError as exc:
    raise ImportError(f'mmpoolformer needs torch ({exc}); {INSTALL_HINT}.') \
        from exc
check_torch(torch.__version__)
try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
except ImportError as exc:  # name the two stacks rather than one package
    raise ImportError(f'mmpoolformer needs mmengine and mmcv ({exc}); '
                      f'{INSTALL_HINT}.') from exc

from .registry import HOOKS, LAZY_MODULES, MODELS, TOKEN_MIXERS, TRANSFORMS  # noqa: E402
from .version import __version__  # noqa: E402


def __getattr__(name):
    """``mmpoolformer.PoolFormer``, ``mmpoolformer.SafeCheckpointHook``,
    ``mmpoolformer.LayerDecayOptimWrapperConstructor`` and every other
    registered class, imported on first use."""
    if name in LAZY_MODULES:
        return getattr(importlib.import_module(LAZY_MODULES[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def register_all_modules() -> None:
    """Import every module that registers something (the head and the
    distiller only where mmpretrain is installed), as mmdet's function of
    that name does. Idempotent; our scripts call it to say so explicitly."""
    has_mmpretrain = importlib.util.find_spec('mmpretrain') is not None
    for module in sorted(set(LAZY_MODULES.values())):
        if has_mmpretrain or module not in (
                'mmpoolformer.models.heads', 'mmpoolformer.models.classifiers'):
            importlib.import_module(module)


register_config_scope()

__all__ = ['HOOKS', 'MODELS', 'TOKEN_MIXERS', 'TRANSFORMS', '__version__',
           'register_all_modules', *LAZY_MODULES]
