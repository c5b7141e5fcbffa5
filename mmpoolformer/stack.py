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


#: the oldest torch the backbones' tests have run on (setup.py requires it)
TORCH_FLOOR = (2, 1)


def check_torch(version: str) -> None:
    """ImportError naming the floor for a torch older than
    :data:`TORCH_FLOOR` (``version``: ``torch.__version__``)."""
    found = tuple(int(v) for v in version.split('+')[0].split('.')[:2])
    if found < TORCH_FLOOR:
        raise ImportError(
            f'mmpoolformer needs torch >= {".".join(map(str, TORCH_FLOOR))}, '
            f'found {version}; upgrade torch (and mmcv built for it), or '
            f'{INSTALL_HINT}.')


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


def register_config_scope() -> None:
    """Let ``_base_ = 'mmpoolformer::<folder>/<file>.py'`` resolve, and
    ``mmseg::`` bases on every stack. Idempotent.

    mmengine turns the scope of a ``pkg::`` base into a distribution name
    with ``mmengine.config.utils.MODULE2PACKAGE`` and refuses scopes it does
    not list; ours is added. It also maps ``mmseg`` to the distribution
    ``mmsegmentation``, which the onedl fork calls
    ``onedl-mmsegmentation``, so that lookup fails there: only where the
    original distribution is missing and the module is installed, the entry
    becomes the module name, which mmengine's own fallback
    (``importlib.util.find_spec``) resolves on both mmengine versions.

    Config files parse their ``_base_`` before their ``custom_imports``, so
    the program must import mmpoolformer before it reads such a config (our
    tools do).
    """
    from mmengine.config import utils
    utils.MODULE2PACKAGE.setdefault('mmpoolformer', 'mmpoolformer')
    for module, dist in ORIGINAL_DISTRIBUTIONS.items():
        if utils.MODULE2PACKAGE.get(module) != dist or _has_distribution(dist):
            continue
        if importlib.util.find_spec(module) is not None:
            utils.MODULE2PACKAGE[module] = module
