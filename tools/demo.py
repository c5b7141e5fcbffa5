"""Train a shipped config from scratch on synthetic shapes, on a CPU, in minutes.

    python tools/demo.py              # RetinaNet + PoolFormer-S12, COCO bbox mAP
    python tools/demo.py --task seg   # Semantic FPN + PoolFormer-S12, mIoU

It writes a small data set in the real COCO / ADE20K layouts, loads our
config (``configs/poolformer/retinanet_poolformer_s12_coco.py`` or
``configs/poolformer/fpn_poolformer_s12_ade20k.py``), overrides only what a short
from-scratch CPU run needs (printed), evaluates the untrained model with the
real metric, trains with mmengine's Runner, evaluates again and draws the
predictions of a few validation images into a PNG.
"""
import argparse
import os.path as osp
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import PixelData

from mmpoolformer import register_all_modules
from mmpoolformer.fileio import write_image_atomic
from mmpoolformer.visualization import draw_prediction

from cli.data_check import leaf_datasets
from cli.synthetic_shapes import SEG_CLASSES, SHAPE_CLASSES, write_ade_shapes, write_coco_shapes

ROOT = Path(__file__).resolve().parents[1]
TASKS = {
    'det': dict(config='configs/poolformer/retinanet_poolformer_s12_coco.py',
                metric='coco/bbox_mAP', title='bbox mAP'),
    'seg': dict(config='configs/poolformer/fpn_poolformer_s12_ade20k.py',
                metric='mIoU', title='mIoU'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=sorted(TASKS), default='det')
    parser.add_argument('--config', help='another config of the same task '
                        '(default: the PoolFormer-S12 one)')
    parser.add_argument('--work-dir', default='work_dirs/demo',
                        help='where data, logs, checkpoints and the PNG go')
    parser.add_argument('--iters', type=positive_int, default=300,
                        help='training iterations, >= 1 (default: 300)')
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--num-train', type=int, default=160)
    parser.add_argument('--num-val', type=int, default=32)
    return parser.parse_args(argv)


def positive_int(text):
    """An argparse type: an integer >= 1 (argparse names the flag)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a whole number >= 1')
    return value


def set_in_pipeline(pipeline, type_name, **values):
    """Override keys of every transform of ``type_name`` in ``pipeline``."""
    found = [t for t in pipeline if t['type'] == type_name]
    if not found:
        raise KeyError(f'no {type_name} transform in the pipeline')
    for transform in found:
        transform.update(values)


def base_dataset(loader):
    """The dataset config inside wrappers such as RepeatDataset."""
    (_, dataset), = leaf_datasets(loader.dataset, 'dataset')
    return dataset


def set_test_pipeline_scale(cfg, size):
    """The config's top-level ``test_pipeline``, which inference tools and
    mmdeploy read, at the demo's test scale like the loaders'."""
    if 'test_pipeline' in cfg:
        set_in_pipeline(cfg.test_pipeline, 'Resize', scale=(size, size))


def set_num_classes(model, num_classes):
    """Every head of the model config that has ``num_classes`` (RetinaNet's
    ``bbox_head``; Mask R-CNN's ``roi_head.bbox_head`` and ``mask_head``;
    the lists of cascades), in place; the dotted paths set."""
    paths = []

    def walk(node, path):
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if key == 'num_classes':
                node[key] = num_classes
                paths.append(path)
            else:
                walk(value, f'{path}.{key}')
    walk(model, 'model')
    return paths


def det_overrides(cfg, data_root, size, iters):
    """What a short CPU run on synthetic shapes changes in the COCO config."""
    ann = {s: f'annotations/instances_{s}2017.json' for s in ('train', 'val')}
    for split, loader in (('train', cfg.train_dataloader),
                          ('val', cfg.val_dataloader),
                          ('val', cfg.test_dataloader)):
        dataset = base_dataset(loader)
        dataset.update(data_root=data_root, ann_file=ann[split],
                       data_prefix=dict(img=f'{split}2017/'),
                       metainfo=dict(classes=SHAPE_CLASSES))
        set_in_pipeline(dataset.pipeline, 'Resize', scale=(size, size))
    set_test_pipeline_scale(cfg, size)
    evaluator = dict(cfg.val_evaluator, ann_file=osp.join(data_root, ann['val']))
    heads = set_num_classes(cfg.model, len(SHAPE_CLASSES))
    return {
        'data': f'synthetic COCO-layout shapes in {data_root}, classes {SHAPE_CLASSES}',
        'image scale': (size, size),
        **{f'{head}.num_classes': len(SHAPE_CLASSES) for head in heads},
        'model.backbone.init_cfg': 'None (from scratch: no download here)',
        'train_dataloader.batch_size': 8,
        'schedule': f'{iters} iterations, '
                    + 'linear warm-up, ' * (iters >= 5) + 'cosine to 0',
        'optimizer': 'AdamW lr 1e-3 (config: 1e-4 for fine-tuning at batch 16)',
    }, dict(
        model=dict(backbone=dict(init_cfg=None)),
        val_evaluator=evaluator, test_evaluator=evaluator,
        train_dataloader=dict(batch_size=8))


def seg_overrides(cfg, data_root, size, iters):
    """What a short CPU run on synthetic shapes changes in the ADE20K config.

    ADE20KDataset only accepts a subset of its own class names, so the label
    ids 1-4 of the synthetic maps keep ADE's first four names.
    """
    from mmseg.datasets import ADE20KDataset
    classes = ADE20KDataset.METAINFO['classes'][:len(SEG_CLASSES)]
    for split, loader in (('training', cfg.train_dataloader),
                          ('validation', cfg.val_dataloader),
                          ('validation', cfg.test_dataloader)):
        base_dataset(loader).update(
            data_root=data_root, metainfo=dict(classes=classes),
            data_prefix=dict(img_path=f'images/{split}',
                             seg_map_path=f'annotations/{split}'))
    train_pipeline = base_dataset(cfg.train_dataloader).pipeline
    set_in_pipeline(train_pipeline, 'RandomResize', scale=(size, size))
    set_in_pipeline(train_pipeline, 'RandomCrop', crop_size=(size, size))
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        set_in_pipeline(base_dataset(loader).pipeline, 'Resize',
                        scale=(size, size))
    set_test_pipeline_scale(cfg, size)
    return {
        'data': f'synthetic ADE-layout shapes in {data_root}: '
                + ', '.join(f'{ours} as ADE "{ade}"'
                            for ours, ade in zip(SEG_CLASSES, classes)),
        'image scale / crop': (size, size),
        'model.decode_head.num_classes': len(classes),
        'model.backbone.init_cfg': 'None (from scratch: no download here)',
        'train_dataloader.batch_size': 8,
        'schedule': f'{iters} iterations, '
                    + 'linear warm-up, ' * (iters >= 5) + 'cosine to 0',
        'optimizer': 'AdamW lr 1e-3 (config: 2e-4 for fine-tuning at batch 32)',
    }, dict(
        model=dict(decode_head=dict(num_classes=len(classes)),
                   backbone=dict(init_cfg=None),
                   data_preprocessor=dict(size=(size, size))),
        train_dataloader=dict(batch_size=8))


def common_overrides(work_dir, iters):
    """Iteration-based short schedule, single-process CPU friendly."""
    warmup = min(50, iters // 5)  # none for runs under 5 iterations
    warmup_lr = [dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                      begin=0, end=warmup)] if warmup else []
    loader = dict(num_workers=1, persistent_workers=False)
    return dict(
        work_dir=work_dir,
        train_dataloader=loader, val_dataloader=loader, test_dataloader=loader,
        train_cfg=dict(_delete_=True, type='IterBasedTrainLoop',
                       max_iters=iters, val_begin=iters + 1),  # val below
        val_cfg=dict(type='ValLoop'), test_cfg=dict(type='TestLoop'),
        optim_wrapper=dict(_delete_=True, type='OptimWrapper',
                           optimizer=dict(type='AdamW', lr=1e-3,
                                          weight_decay=1e-4),
                           clip_grad=dict(max_norm=5.0)),
        param_scheduler=warmup_lr + [
            dict(type='CosineAnnealingLR', T_max=iters - warmup, eta_min=0.,
                 by_epoch=False, begin=warmup, end=iters)],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=max(1, min(25, iters // 10))),
            checkpoint=dict(type='mmpoolformer.SafeCheckpointHook', by_epoch=False,
                            interval=iters, max_keep_ckpts=1)),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        visualizer=dict(vis_backends=[dict(type='LocalVisBackend')]),
    )


def upscale(image, sample, factor):
    """Image and predictions ``factor`` times larger, so that the
    visualizer's labels stay readable on the small synthetic images."""
    image = cv2.resize(image, None, fx=factor, fy=factor,
                       interpolation=cv2.INTER_NEAREST)
    if 'pred_instances' in sample:
        sample.pred_instances.bboxes *= factor
    if 'pred_sem_seg' in sample:
        seg = sample.pred_sem_seg.data[None].float()
        sample.pred_sem_seg = PixelData(data=F.interpolate(
            seg, scale_factor=factor, mode='nearest')[0].long())
    return image, sample


def draw_predictions(runner, task, out_file, num_images=4, factor=3):
    """Predictions of the first validation images, drawn by
    :func:`mmpoolformer.visualization.draw_prediction` (the task's
    OpenMMLab visualizer, as ``tools/demo/image_demo.py``), side by side."""
    dataset = runner.val_dataloader.dataset
    model = runner.model.eval()
    model.cfg = runner.cfg
    model.dataset_meta = dict(dataset.metainfo)
    if task == 'seg':  # name the ADE ids by what the synthetic maps hold
        model.dataset_meta['classes'] = SEG_CLASSES
    panels = []
    for i in range(min(num_images, len(dataset))):
        batch = runner.val_dataloader.collate_fn([dataset[i]])
        with torch.no_grad():  # Mask R-CNN's boxes would keep their graph
            sample = model.test_step(batch)[0]
        image, sample = upscale(cv2.imread(sample.img_path)[..., ::-1],
                                sample, factor)
        panels.append(draw_prediction(model, task, image, sample,
                                      score_thr=0.5))
    height = max(p.shape[0] for p in panels)
    panels = [cv2.resize(p, (p.shape[1] * height // p.shape[0], height))
              for p in panels]
    write_image_atomic(out_file, np.ascontiguousarray(
        np.concatenate(panels, 1)[..., ::-1]))


class EvaluateBeforeTraining(Hook):
    """Validate the initialised model, i.e. exactly the weights training
    starts from. CocoMetric returns nothing when the model detects nothing
    at all (an untrained detector), which scores 0."""

    def __init__(self, metric):
        self.metric, self.value = metric, None

    def before_train(self, runner):
        self.value = runner.val_loop.run().get(self.metric, 0.0)


def main(argv=None):
    args = parse_args(argv)
    register_all_modules()
    task = TASKS[args.task]
    iters = args.iters
    work_dir = osp.abspath(osp.join(args.work_dir, args.task))
    data_root = osp.abspath(osp.join(
        args.work_dir, 'data', 'coco' if args.task == 'det'
        else 'ade/ADEChallengeData2016'))
    start = time.time()

    writer = write_coco_shapes if args.task == 'det' else write_ade_shapes
    writer(data_root, num_train=args.num_train, num_val=args.num_val,
           image_size=args.image_size, seed=0)

    config = args.config or str(ROOT / task['config'])
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    make_overrides = det_overrides if args.task == 'det' else seg_overrides
    shown, overrides = make_overrides(cfg, data_root, args.image_size, iters)
    cfg.merge_from_dict(overrides)
    cfg.merge_from_dict(common_overrides(work_dir, iters))
    print(f'\n== demo: {osp.relpath(config)} with these overrides for a short '
          f'from-scratch CPU run ==')
    for key, value in shown.items():
        print(f'  {key}: {value}')

    runner = Runner.from_cfg(cfg)
    baseline = EvaluateBeforeTraining(task['metric'])
    runner.register_hook(baseline)
    runner.train()
    before = baseline.value
    after = runner.val().get(task['metric'], 0.0)
    png = osp.join(work_dir, 'predictions.png')
    draw_predictions(runner, args.task, png)

    print(f'\n== demo result ({time.time() - start:.0f} s) ==')
    print(f'  {task["title"]} untrained: {before:.3f}')
    print(f'  {task["title"]} after {iters} iterations: {after:.3f}')
    print(f'  predictions: {png}')
    print(f'  logs and checkpoint: {work_dir}')
    return before, after


if __name__ == '__main__':
    main()
