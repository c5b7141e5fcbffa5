"""The ``mmpoolformer`` registry scope.

Our registries are children of mmengine's root registries, so a scoped
name such as ``type='mmpoolformer.PoolFormer'`` resolves from the mmdet,
mmseg and mmpretrain scopes alike (mmengine imports ``mmpoolformer.registry``
on demand). Every class of ours is registered when a lookup first names it:
the backbones need mmengine's model stack (seconds to import), the
classifier head and the distiller need mmpretrain, so importing
mmpoolformer imports none of that.

Plain names: :func:`publish_backbones` adds our backbones to mmengine's root
``MODELS`` under names no class has there. A scope looks a plain name up in
its own registry first and then in the root, so ``type='PoolFormer'`` builds
ours in mmdet and mmseg configs, while a scope with a class of the same
name keeps its own: in mmpretrain configs ``PoolFormer`` and ``RIFormer``
stay mmpretrain's (a different module layout); name ours with the prefix
there. Until the backbones are imported, the root holds a :class:`LazyClass`
for each; importing them puts the classes themselves in its place. Nothing
of mmengine, mmdet, mmseg or mmpretrain is replaced.
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


class LazyClass(type):
    """Stands for a backbone of ours in mmengine's root ``MODELS`` until
    the backbones are imported: building it (calling it) imports them and
    returns an instance of the real class, as do ``isinstance`` /
    ``issubclass`` checks against it."""

    def resolve(cls):
        return getattr(importlib.import_module(BACKBONES_MODULE), cls.__name__)

    def __call__(cls, *args, **kwargs):
        return cls.resolve()(*args, **kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls.resolve())

    def __subclasscheck__(cls, subclass):
        return issubclass(subclass, cls.resolve())


def publish_backbones() -> list:
    """Give each backbone of ours a plain name in mmengine's root ``MODELS``
    where the root has no class of that name: the class itself if the
    backbones are imported, else a :class:`LazyClass`. Returns the names
    added or updated; idempotent."""
    import sys
    loaded = sys.modules.get(BACKBONES_MODULE)
    changed = []
    for name in BACKBONES:
        current = MMENGINE_MODELS.module_dict.get(name)
        if current is not None and not isinstance(current, LazyClass):
            continue  # the root's own class, or ours already
        if loaded is not None and hasattr(loaded, name):
            target = getattr(loaded, name)
        elif current is None:
            target = LazyClass(name, (), dict(
                __module__=BACKBONES_MODULE,
                __doc__=f'mmpoolformer.{name}, imported when first built.'))
        else:
            continue
        MMENGINE_MODELS.register_module(name=name, module=target, force=True)
        changed.append(name)
    return changed
