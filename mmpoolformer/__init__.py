"""PoolFormer and the MetaFormer family as OpenMMLab 2.x backbones.

Importing the package registers everything (that is what
``custom_imports = dict(imports=['mmpoolformer'])`` relies on); scripts call
:func:`register_all_modules` to say so explicitly.
"""
from .stack import INSTALL_HINT, resolve_base_config_packages

try:
    import mmcv  # noqa: F401
    import mmengine  # noqa: F401
except ImportError as exc:  # name the two stacks rather than one package
    raise ImportError(f'mmpoolformer needs mmengine and mmcv ({exc}); '
                      f'{INSTALL_HINT}.') from exc

from . import models  # noqa: F401,E402  (registers the backbones)
from .checkpoint.torch_load import register_mmengine_safe_globals  # noqa: E402
from .registry import MODELS, share_with_scopes  # noqa: E402
from .version import __version__  # noqa: E402


def register_all_modules() -> None:
    """Register our backbones in the mmdet / mmseg registries, let
    mmengine's checkpoint loader read Runner checkpoints under torch>=2.6 and
    ``mmseg::`` base configs resolve on the onedl fork; make
    ``CheckpointHook`` the crash-safe one and share our transforms with the
    mmdet / mmseg / mmpretrain scopes. Idempotent."""
    resolve_base_config_packages()
    register_mmengine_safe_globals()
    share_with_scopes()
    from .engine import register_as_default
    register_as_default()
    from .datasets import loading  # noqa: F401  (registers LoadImageOrSkip)
    from .registry import share_transforms_with_scopes
    share_transforms_with_scopes()


register_all_modules()

__all__ = ['MODELS', '__version__', 'register_all_modules']
