"""A config + checkpoint as an inference model of its task, its prediction
for an image, and that prediction drawn by the task's OpenMMLab visualizer
(mmdet's boxes and masks, mmseg's label map, mmpretrain's top-k labels)."""
import os.path as osp
import uuid
from typing import Optional

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

from mmpoolformer import register_all_modules
from mmpoolformer.checkpoint.torch_load import load_checkpoint_file
from mmpoolformer.fileio import write_image_atomic

TASKS = {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}


def _registry(scope, name):
    import importlib
    return getattr(importlib.import_module(f'{scope}.registry'), name)


def load_config(config) -> Config:
    if isinstance(config, Config):
        return config
    if not osp.isfile(str(config)):
        raise FileNotFoundError(f'config {config} does not exist')
    return Config.fromfile(str(config))


def load_model(config, checkpoint: Optional[str] = None,
               device: str = 'cpu'):
    """``(model, task)``: the config's model in eval mode with the
    checkpoint's weights (strictly: a checkpoint of another model is an
    error naming the keys), without downloading pretrained backbones."""
    cfg = load_config(config)
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ValueError(f'{config}: default_scope {scope!r} is none of '
                         f'{sorted(TASKS)}: not a det / seg / cls config')
    register_all_modules()
    init_default_scope(scope)
    cfg.model.setdefault('backbone', {})['init_cfg'] = None
    model = _registry(scope, 'MODELS').build(cfg.model)
    model.cfg = cfg
    meta = {}
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
        ckpt = load_checkpoint_file(checkpoint, map_location='cpu')
        state = ckpt.get('state_dict', ckpt)
        meta = ckpt.get('meta', {}) or {}
        missing, unexpected = [], []
        own = model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state)
                        if own[k].shape != state[k].shape)
        if missing or unexpected or shapes:
            raise ValueError(
                f'checkpoint {checkpoint} does not fit {config}: '
                f'{len(missing)} missing keys {missing[:3]}, '
                f'{len(unexpected)} unexpected keys {unexpected[:3]}, '
                f'{len(shapes)} of another shape {shapes[:3]}; pass the '
                'checkpoint trained with this config')
        model.load_state_dict(state, strict=True)
    model.dataset_meta = meta.get('dataset_meta') or _dataset_meta(cfg,
                                                                   scope)
    return model.to(device).eval(), TASKS[scope]


def _dataset_meta(cfg, scope):
    """The class names of the config's test dataset type."""
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    try:
        cls = _registry(scope, 'DATASETS').get(dataset.get('type'))
        meta = dict(getattr(cls, 'METAINFO', {}))
    except Exception:  # a custom dataset type: no names
        meta = {}
    if dataset.get('metainfo'):
        meta.update(dataset['metainfo'])
    return meta


def _test_pipeline(cfg):
    """The config's test pipeline, fed with an image array."""
    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline
                if not t['type'].startswith(('LoadImageFromFile',
                                             'LoadAnnotations',
                                             'mmdet.LoadAnnotations'))]
    return Compose(pipeline)


def predict(model, task, image: np.ndarray):
    """The data sample predicted for an RGB uint8 ``image`` (H, W, 3)."""
    bgr = np.ascontiguousarray(image[..., ::-1])
    data = dict(img=bgr, img_shape=bgr.shape[:2], ori_shape=bgr.shape[:2],
                img_path=None, img_id=0)
    init_default_scope({'det': 'mmdet', 'seg': 'mmseg',
                        'cls': 'mmpretrain'}[task])
    batch = pseudo_collate([_test_pipeline(model.cfg)(data)])
    with torch.no_grad():
        return model.test_step(batch)[0]


def draw_prediction(model, task, image: np.ndarray, sample,
                    out_file: Optional[str] = None, score_thr: float = 0.3,
                    topk: int = 5) -> np.ndarray:
    """``image`` with ``sample``'s prediction drawn (RGB array), also
    written to ``out_file`` if given."""
    scope = {'det': 'mmdet', 'seg': 'mmseg', 'cls': 'mmpretrain'}[task]
    init_default_scope(scope)
    vis_cfg = dict(model.cfg.get('visualizer', {}))
    vis_cfg.update(name=f'mmpoolformer-{uuid.uuid4().hex}', vis_backends=None,
                   save_dir=None)
    visualizer = _registry(scope, 'VISUALIZERS').build(vis_cfg)
    visualizer.dataset_meta = dict(model.dataset_meta or {})
    if task == 'cls':
        classes = visualizer.dataset_meta.get('classes')
        if 'pred_score' in sample and topk:
            scores = sample.pred_score
            top = scores.topk(min(topk, scores.numel()))
            names = [classes[i] if classes else str(int(i))
                     for i in top.indices]
            text = '\n'.join(f'{n}: {s:.2f}' for n, s in
                             zip(names, top.values.tolist()))
            visualizer.set_image(image)
            visualizer.draw_texts(text, np.array([5, 5]), colors='white',
                                  font_sizes=max(8, image.shape[0] // 24),
                                  bboxes=[dict(facecolor='black', alpha=0.6)])
            drawn = visualizer.get_image()
        else:
            drawn = visualizer.visualize_cls(image, sample, classes=classes,
                                             draw_gt=False)
    else:
        kwargs = dict(pred_score_thr=score_thr) if task == 'det' else {}
        visualizer.add_datasample('prediction', image, sample, draw_gt=False,
                                  show=False, **kwargs)
        drawn = visualizer.get_image()
    if out_file:  # complete or not at all, even if the process is killed
        write_image_atomic(out_file, np.ascontiguousarray(drawn[..., ::-1]))
    return drawn
