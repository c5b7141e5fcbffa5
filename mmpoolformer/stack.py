"""Which OpenMMLab 2.x stack is installed, and what differs between them.

Two stacks provide the same import names (``mmengine``, ``mmcv``, ``mmdet``,
``mmseg``, ``mmpretrain``): the original OpenMMLab releases and the
maintained onedl fork (distributions ``onedl-mmengine``, ``onedl-mmcv``, ...).
"""
import importlib.util
from importlib import metadata
from typing import Optional

#: import name -> distribution name of the original OpenMMLab releases
ORIGINAL_DISTRIBUTIONS = {
    'mmengine': 'mmengine', 'mmcv': 'mmcv', 'mmdet': 'mmdet',
    'mmseg': 'mmsegmentation', 'mmpretrain': 'mmpretrain'}
#: import name -> distribution name of the onedl fork
FORK_DISTRIBUTIONS = {
    'mmengine': 'onedl-mmengine', 'mmcv': 'onedl-mmcv',
    'mmdet': 'onedl-mmdetection', 'mmseg': 'onedl-mmsegmentation',
    'mmpretrain': 'onedl-mmpretrain'}

INSTALL_HINT = ('install a stack with `make install` (original OpenMMLab 2.x) '
                'or `make install STACK=onedl` (the maintained onedl fork), or '
                'by hand `pip install -e .[mim]` / `pip install -e .[onedl]`')


def _has_distribution(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def distribution_of(module: str) -> Optional[str]:
    """The installed distribution that provides ``module`` (one of
    :data:`ORIGINAL_DISTRIBUTIONS`), or None if neither stack's is there."""
    for name in (ORIGINAL_DISTRIBUTIONS[module], FORK_DISTRIBUTIONS[module]):
        if _has_distribution(name):
            return name
    return None


def installed_stack() -> str:
    """``'openmmlab'``, ``'onedl'`` or ``'unknown'`` (e.g. a source checkout
    on PYTHONPATH), judged by the distribution that provides mmengine."""
    dist = distribution_of('mmengine')
    if dist is None:
        return 'unknown'
    return 'onedl' if dist == FORK_DISTRIBUTIONS['mmengine'] else 'openmmlab'


def resolve_base_config_packages() -> None:
    """Let ``mmseg::`` base configs resolve on every stack.

    mmengine turns ``mmseg::x.py`` into the distribution name
    ``mmsegmentation`` (``mmengine.config.utils.MODULE2PACKAGE``) and looks
    that distribution up; the fork's is ``onedl-mmsegmentation``, so the
    lookup fails. Mapped to the import name, mmengine's own fallback
    (``importlib.util.find_spec``) finds the installed module on both
    mmengine versions. Nothing changes where the original distribution is
    installed. Idempotent.

    Config files parse their ``_base_`` before their ``custom_imports``, so
    this runs when mmpoolformer is imported: our tools do that before they
    read a config.
    """
    from mmengine.config import utils
    for module, dist in ORIGINAL_DISTRIBUTIONS.items():
        if utils.MODULE2PACKAGE.get(module) != dist or _has_distribution(dist):
            continue
        if importlib.util.find_spec(module) is not None:
            utils.MODULE2PACKAGE[module] = module
