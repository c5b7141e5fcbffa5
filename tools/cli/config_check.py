"""Config mistakes found when the tools read the config, not in the first
forward pass after the datasets have loaded."""
import importlib

import torch
from mmengine.logging import print_log

from .data_check import leaf_datasets
from .errors import ToolError

#: the loader that raises on an unreadable file, and ours that skips it
LOADER, SKIPPING_LOADER = 'LoadImageFromFile', 'mmpoolformer.LoadImageOrSkip'


def backbone_channels(backbone):
    """Channels of each map a built backbone returns: from our MetaFormer
    backbones' ``embed_dims`` / ``out_indices``, else from a forward pass of
    a small image (None if that fails: nothing to compare)."""
    dims, indices = (getattr(backbone, 'embed_dims', None),
                     getattr(backbone, 'out_indices', None))
    if isinstance(dims, (list, tuple)) and indices is not None:
        return [dims[i] for i in indices]
    try:
        channels = getattr(backbone, 'in_channels', 3)
        with torch.no_grad():
            outs = backbone.eval()(torch.zeros(1, channels, 64, 64))
        return [o.shape[1] for o in outs]
    except Exception:  # noqa: BLE001  a backbone that needs other inputs
        return None


def check_neck_channels(cfg):
    """A neck's ``in_channels`` must be the channels of the maps the
    backbone returns (its ``out_indices``); mmdet's / mmseg's FPN only
    asserts it in ``forward``, after the datasets have loaded."""
    model = cfg.get('model') or {}
    neck, backbone_cfg = model.get('neck'), model.get('backbone')
    if isinstance(neck, (list, tuple)):
        neck = neck[0] if neck else None
    if not isinstance(neck, dict) or not isinstance(backbone_cfg, dict) or \
            not isinstance(neck.get('in_channels'), (list, tuple)):
        return
    scope = cfg.get('default_scope')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    try:
        backbone = registry.build(dict(backbone_cfg, init_cfg=None))
    except Exception:  # noqa: BLE001  the Runner reports its own build error
        return
    channels = backbone_channels(backbone)
    expected = list(neck['in_channels'])
    if channels is None or channels == expected:
        return
    indices = getattr(backbone, 'out_indices', None)
    source = (f'out_indices {tuple(indices)}' if indices is not None
              else 'its outputs')
    raise ToolError(
        f'model.neck.in_channels {expected} do not match the channels '
        f'{channels} of the maps the backbone returns ({source}); set '
        f'model.neck.in_channels={channels} (or change '
        'model.backbone.out_indices)')


def skip_unreadable_training_images(cfg):
    """Load training images with :class:`LoadImageOrSkip`, so that one
    unreadable file costs a warning, not the run. Returns the keys changed.
    """
    changed = []
    loader = cfg.get('train_dataloader')
    if not isinstance(loader, dict):
        return changed
    for key, ds in leaf_datasets(loader.get('dataset'),
                                 'train_dataloader.dataset'):
        for i, transform in enumerate(ds.get('pipeline') or []):
            if isinstance(transform, dict) and \
                    transform.get('type') in (LOADER, f'mmcv.{LOADER}'):
                transform['type'] = SKIPPING_LOADER
                changed.append(f'{key}.pipeline.{i}')
    if changed:
        print_log(f'Training images are loaded with {SKIPPING_LOADER} '
                  f'({", ".join(changed)}): an unreadable image is skipped '
                  'with a warning naming it.', logger='current')
    return changed
