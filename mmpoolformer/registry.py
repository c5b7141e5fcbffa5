"""The ``mmpoolformer`` registry scope.

Our registries are children of mmengine's root registries, so a scoped
name such as ``type='mmpoolformer.PoolFormer'`` resolves from the mmdet,
mmseg and mmpretrain scopes alike (mmengine imports ``mmpoolformer.registry``
on demand). Every class of ours is registered when a lookup first names it:
the backbones need mmengine's model stack (seconds to import), the
classifier head and the distiller need mmpretrain, so importing
mmpoolformer imports none of that.

Only scoped names: configs name our classes ``mmpoolformer.PoolFormer``,
as mmdet configs name mmpretrain's backbones ``mmpretrain.ConvNeXt``, so no
name of ours can shadow or collide with another package's. Nothing of
mmengine, mmdet, mmseg or mmpretrain is replaced; outside our registries
only mmengine's table of config scopes changes
(:func:`mmpoolformer.stack.register_config_scope`): ours, which
``mmpoolformer::`` bases need, and on the onedl fork mmseg's.

:data:`TOKEN_MIXERS` holds the token mixers an arch dict names by type; a
user's module imported by ``custom_imports`` can register more.
"""
import importlib

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

BACKBONES_MODULE = 'mmpoolformer.models.backbones'
#: the registered backbones (presets of one MetaFormer)
BACKBONES = ('MetaFormer', 'PoolFormer', 'PoolFormerV2', 'IdentityFormer',
             'RandFormer', 'ConvFormer', 'CAFormer', 'RIFormer')
#: class name -> the module that registers it on import
LAZY_MODULES = {
    **{name: BACKBONES_MODULE for name in BACKBONES},
    'MetaFormerClsHead': 'mmpoolformer.models.heads',
    'RIFormerDistiller': 'mmpoolformer.models.classifiers',
    'SafeCheckpointHook': 'mmpoolformer.engine',
    'RankZeroLoggerHook': 'mmpoolformer.engine',
    'LayerDecayOptimWrapperConstructor': 'mmpoolformer.engine.optimizers',
    'LoadImageOrSkip': 'mmpoolformer.datasets',
}


class LazyRegistry(Registry):
    """A :class:`~mmengine.registry.Registry` that imports the module of a
    class in :data:`LAZY_MODULES` when a lookup names it."""

    def get(self, key):
        name = key.rpartition('.')[2] if isinstance(key, str) else None
        if name in LAZY_MODULES and name not in self._module_dict:
            importlib.import_module(LAZY_MODULES[name])
        return super().get(key)


# ``locations`` are imported at the first lookup in the registry (without
# them mmengine would look for ``mmpoolformer.utils.register_all_modules``)
MODELS = LazyRegistry('model', parent=MMENGINE_MODELS, scope='mmpoolformer',
                      locations=[BACKBONES_MODULE])
HOOKS = LazyRegistry('hook', parent=MMENGINE_HOOKS, scope='mmpoolformer',
                     locations=['mmpoolformer.engine'])
TRANSFORMS = LazyRegistry('transform', parent=MMENGINE_TRANSFORMS,
                          scope='mmpoolformer',
                          locations=['mmpoolformer.datasets'])
OPTIM_WRAPPER_CONSTRUCTORS = LazyRegistry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope='mmpoolformer',
    locations=['mmpoolformer.engine.optimizers'])
TOKEN_MIXERS = Registry('token mixer', scope='mmpoolformer',
                        locations=['mmpoolformer.models.backbones.token_mixers'])
