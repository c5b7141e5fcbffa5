"""The ``mmpoolformer`` registry scope.

Our ``MODELS`` is a child of mmengine's root registry, so
``type='mmpoolformer.PoolFormer'`` resolves from the mmdet, mmseg and
mmpretrain scopes alike (mmengine imports ``mmpoolformer.registry`` on demand
and then ``locations``).

With ``custom_imports=dict(imports=['mmpoolformer'])`` the plain names also
resolve under ``default_scope='mmdet'`` and ``'mmseg'``: :func:`share_with_scopes`
adds our classes to those registries wherever they hold no class of the same
name. mmpretrain is left alone on purpose: it has a ``PoolFormer`` of its own
with a different layout, and neither may silently stand in for the other.
"""
import importlib
import importlib.util
import warnings

from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmpoolformer',
    locations=['mmpoolformer.models'])

#: downstream scopes whose configs may name our backbones without a prefix
SHARED_SCOPES = ('mmdet', 'mmseg')


def share_with_scopes(scopes=SHARED_SCOPES):
    """Register every model of ours in the ``MODELS`` of installed ``scopes``.

    A name the scope already uses keeps its own class; ours stays reachable
    as ``mmpoolformer.<Name>``.
    """
    for scope in scopes:
        if importlib.util.find_spec(scope) is None:
            continue  # optional dependency not installed
        try:
            target = importlib.import_module(f'{scope}.registry').MODELS
        except Exception as exc:  # e.g. a version check of the package
            warnings.warn(f'mmpoolformer: cannot share models with {scope}: {exc}')
            continue
        for name, cls in MODELS.module_dict.items():
            if name not in target.module_dict:
                target.register_module(name=name, module=cls)


# Hooks and data transforms of ours (additions of issue 12). Our classes
# are registered here; mmpoolformer/__init__ adds them where configs look.
from mmengine.registry import HOOKS as MMENGINE_HOOKS  # noqa: E402
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS  # noqa: E402

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmpoolformer',
                 locations=['mmpoolformer.engine'])
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS,
                      scope='mmpoolformer',
                      locations=['mmpoolformer.datasets'])

#: scopes whose pipelines may name our transforms without a prefix
TRANSFORM_SCOPES = ('mmdet', 'mmseg', 'mmpretrain')


def share_transforms_with_scopes(scopes=TRANSFORM_SCOPES):
    """Register our transforms in the ``TRANSFORMS`` of installed ``scopes``
    (a name the scope already uses keeps its own class)."""
    for scope in scopes:
        if importlib.util.find_spec(scope) is None:
            continue
        try:
            target = importlib.import_module(f'{scope}.registry').TRANSFORMS
        except Exception as exc:
            warnings.warn(f'mmpoolformer: cannot share transforms with '
                          f'{scope}: {exc}')
            continue
        for name, cls in TRANSFORMS.module_dict.items():
            if name not in target.module_dict:
                target.register_module(name=name, module=cls)
