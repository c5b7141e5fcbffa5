"""tools/train.py and tools/test.py on the shipped S12 configs, end to end.

RetinaNet, Mask R-CNN, Semantic FPN and the ImageNet classifier each train a
few iterations on synthetic shapes written in the real COCO / ADE20K /
ImageNet layouts (read by mmdet's CocoDataset, mmseg's ADE20KDataset and
mmpretrain's ImageNet), overfitting one fixed batch so the loss must fall;
then ``--resume`` continues from the saved checkpoint and ``tools/test.py``
computes the task's real metric from it. The tools run as subprocesses, as a
user runs them: mmengine keeps visualizers and loggers as process-wide
singletons, so several Runners in one process would share them.

Everything else comes from the shipped configs; ``--cfg-options`` sets data
paths, classes, image sizes, batch size, schedule length, logging, random
augmentations off (where an option can), warm-ups off, and, with reasons at
each, the classifier's lr and Mixup and the detectors' test score threshold.
"""
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from cli.synthetic_shapes import (
    SEG_CLASSES,
    SHAPE_CLASSES,
    write_ade_shapes,
    write_coco_shapes,
    write_imagenet_shapes,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64  # pixels; every transform that sizes images is set to this


def run_tool(tool, *args, check=True, timeout=420, env=None, cwd=ROOT):
    """Run tools/<tool> with this interpreter; on failure show its output."""
    proc = subprocess.run([sys.executable, str(ROOT / 'tools' / tool),
                           *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, failure_report(tool, proc)
    return proc


def failure_report(what, proc):
    """A failed subprocess's error first (the traceback is on stderr, and CI
    logs keep only the start of a long message), then the end of its log."""
    return (f'{what} exited with {proc.returncode}\n--- stderr (end) ---\n'
            f'{proc.stderr[-6000:]}\n--- stdout (end) ---\n'
            f'{proc.stdout[-1500:]}')


def fmt(value):
    """A value as DictAction parses it back (no spaces)."""
    if isinstance(value, (tuple, list)):
        inner = ','.join(fmt(v) for v in value)
        return f'({inner},)' if len(value) == 1 else f'({inner})'
    return str(value)


def dataset_key(cfg, loader):
    """Key path and config of the dataset inside wrappers (RepeatDataset)."""
    key, ds = f'{loader}.dataset', cfg[loader]['dataset']
    while 'dataset' in ds:
        key, ds = f'{key}.dataset', ds['dataset']
    return key, ds


def transform_opts(cfg, loader, type_name, **values):
    """Options setting keys of every ``type_name`` transform of a loader's
    pipeline, addressed by list index as --cfg-options allows."""
    key, ds = dataset_key(cfg, loader)
    found = [i for i, t in enumerate(ds['pipeline']) if t['type'] == type_name]
    assert found, f'no {type_name} in {loader} of {cfg.filename}'
    return [f'{key}.pipeline.{i}.{k}={fmt(v)}' for i in found
            for k, v in values.items()]


LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def common_opts(cfg, classes, batch_size):
    """Every loader: classes (unless None), no worker processes; the train
    loader: one fixed batch; seeded, every iteration logged unsmoothed."""
    opts = ['model.backbone.init_cfg=None', 'optim_wrapper.type=OptimWrapper',
            f'train_dataloader.batch_size={batch_size}',
            'train_dataloader.sampler.shuffle=False', 'randomness.seed=0',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1']
    for loader in LOADERS:
        key, _ = dataset_key(cfg, loader)
        if classes:
            opts.append(f'{key}.metainfo.classes={fmt(classes)}')
        opts += [f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    return opts


def coco_opts(cfg, root, num_classes_keys):
    ann = f'{root}/annotations/instances_val2017.json'
    opts = common_opts(cfg, SHAPE_CLASSES, 2) + [
        f'{k}={len(SHAPE_CLASSES)}' for k in num_classes_keys]
    for loader in LOADERS:
        opts.append(f'{dataset_key(cfg, loader)[0]}.data_root={root}/')
        opts += transform_opts(cfg, loader, 'Resize', scale=(SIZE, SIZE))
    return opts + transform_opts(cfg, 'train_dataloader', 'RandomFlip',
                                 prob=0.0) + [
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        # the 500-iteration warm-up from 0.001 x lr would stall a short run
        'param_scheduler.0.start_factor=1.0']


def retinanet_opts(cfg, root):
    # an under-trained detector scores below 0.05 everywhere, and CocoMetric
    # reports nothing without detections: keep them all for the metric
    return coco_opts(cfg, root, ['model.bbox_head.num_classes']) + [
        'model.test_cfg.score_thr=0.0']


def mask_rcnn_opts(cfg, root):
    return coco_opts(cfg, root, ['model.roi_head.bbox_head.num_classes',
                                 'model.roi_head.mask_head.num_classes']) + [
        'model.test_cfg.rcnn.score_thr=0.0']


def fpn_opts(cfg, root):
    # ADE20KDataset accepts only a subset of its own class names as metainfo
    # classes; its first four stand for ours. Labels 1-4 of the files
    # (background and the shapes) become 0-3 with reduce_zero_label, which
    # is what those four map to.
    from mmseg.datasets import ADE20KDataset
    classes = ADE20KDataset.METAINFO['classes'][:len(SEG_CLASSES)]
    opts = common_opts(cfg, classes, 2) + [
        f'model.decode_head.num_classes={len(SEG_CLASSES)}',
        f'model.data_preprocessor.size={fmt((SIZE, SIZE))}',
        'train_dataloader.dataset.times=1']  # the RepeatDataset
    for loader in LOADERS:
        opts.append(f'{dataset_key(cfg, loader)[0]}.data_root={root}')
    for loader in LOADERS[1:]:
        opts += transform_opts(cfg, loader, 'Resize', scale=(SIZE, SIZE))
    train = 'train_dataloader'
    return opts + transform_opts(
        cfg, train, 'RandomResize', scale=(SIZE, SIZE),
        ratio_range=(1.0, 1.0)) + transform_opts(
        cfg, train, 'RandomCrop', crop_size=(SIZE, SIZE)) + transform_opts(
        cfg, train, 'RandomFlip', prob=0.0)


def cls_opts(cfg, root):
    opts = common_opts(cfg, SHAPE_CLASSES, 6) + [
        f'model.head.num_classes={len(SHAPE_CLASSES)}',
        f'data_preprocessor.num_classes={len(SHAPE_CLASSES)}',
        'model.train_cfg=None',  # no Mixup/CutMix: overfit plain labels
        # lr 4e-3 is for batches of 4096; AdamW's first steps at that size
        # throw the layer scales (init 1e-5) far off on one batch of 6
        'optim_wrapper.optimizer.lr=0.0002',
        'val_evaluator.topk=(1,)', 'test_evaluator.topk=(1,)',  # 3 classes
        # the 5-epoch warm-up from ~0 becomes 1 flat epoch, then cosine
        'param_scheduler.0.start_factor=1.0', 'param_scheduler.0.end=1',
        'param_scheduler.1.begin=1']
    for loader in LOADERS:
        opts.append(f'{dataset_key(cfg, loader)[0]}.data_root={root}')
    for loader in LOADERS[1:]:
        opts += transform_opts(cfg, loader, 'ResizeEdge', scale=SIZE)
        opts += transform_opts(cfg, loader, 'CenterCrop', crop_size=SIZE)
    train = 'train_dataloader'
    # the whole image, and RandAugment at magnitude 0 (it cannot be removed
    # with --cfg-options; Invert / Equalize / AutoContrast still apply)
    return opts + transform_opts(
        cfg, train, 'RandomResizedCrop', scale=SIZE,
        crop_ratio_range=(1.0, 1.0), aspect_ratio_range=(1.0, 1.0)
    ) + transform_opts(cfg, train, 'RandomFlip', prob=0.0) + transform_opts(
        cfg, train, 'RandAugment', magnitude_level=0, magnitude_std=0
    ) + transform_opts(cfg, train, 'RandomErasing', erase_prob=0.0)


def write_coco(root):
    write_coco_shapes(root, num_train=2, num_val=2, image_size=SIZE)
    return root


def write_ade(root):
    root = root / 'ADEChallengeData2016'
    write_ade_shapes(root, num_train=2, num_val=2, image_size=SIZE)
    return root


def write_imagenet(root):
    write_imagenet_shapes(root, num_train_per_class=2, num_val_per_class=1,
                          image_size=SIZE)
    return root


# name: config, data writer, options, schedule (unit, steps, steps after
# resume), metrics test.py must report with their range
TASKS = {
    'retinanet': ('poolformer/retinanet_poolformer_s12_coco.py', write_coco,
                  retinanet_opts, ('epoch', 4, 5), {'coco/bbox_mAP': 1}),
    'mask_rcnn': ('poolformer/mask_rcnn_poolformer_s12_coco.py', write_coco,
                  mask_rcnn_opts, ('epoch', 4, 5),
                  {'coco/bbox_mAP': 1, 'coco/segm_mAP': 1}),
    'fpn': ('poolformer/fpn_poolformer_s12_ade20k.py', write_ade, fpn_opts,
            ('iter', 4, 6), {'mIoU': 100}),
    'cls': ('poolformer/poolformer_s12_in1k.py', write_imagenet, cls_opts,
            ('epoch', 6, 7), {'accuracy/top1': 100}),
}


def schedule_opts(unit, steps):
    """Train ``steps`` epochs or iterations, checkpoint at the end, and
    validate never (test.py evaluates)."""
    key = 'max_epochs' if unit == 'epoch' else 'max_iters'
    return [f'train_cfg.{key}={steps}', 'train_cfg.val_begin=100000',
            f'default_hooks.checkpoint.interval={steps}']


def task_opts(name, data_root):
    config = ROOT / 'configs' / TASKS[name][0]
    return config, TASKS[name][2](Config.fromfile(str(config)), data_root)


def scalars(work_dir):
    """Training records of each run in ``work_dir``, oldest run first: one
    dict per logged iteration (LoggerHook's vis_data/scalars.json)."""
    runs = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    return [[json.loads(line) for line in run.read_text().splitlines()]
            for run in runs]


def load_meta(ckpt):
    from mmpoolformer.checkpoint import load_checkpoint_file
    return load_checkpoint_file(str(ckpt))['meta']


def read_test_metrics(work_dir):
    """The metrics test.py dumped to <work_dir>/<timestamp>/<timestamp>.json."""
    files = [p for p in Path(work_dir).glob('*/*.json')
             if p.stem == p.parent.name]
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


@pytest.mark.parametrize('name', list(TASKS))
def test_train_resume_test(name, tmp_path):
    _, write, _, (unit, steps, resumed_steps), metric_ranges = TASKS[name]
    data_root = write(tmp_path / 'data')
    config, opts = task_opts(name, data_root)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    notes = work_dir / 'notes.txt'  # the user's: must survive every run
    notes.write_text('my notes')

    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options',
             *opts, *schedule_opts(unit, steps))
    ckpt = work_dir / f'{unit}_{steps}.pth'
    assert ckpt.is_file()
    assert load_meta(ckpt)[unit] == steps
    (first_run, ) = scalars(work_dir)
    losses = [entry['loss'] for entry in first_run if 'loss' in entry]
    assert len(losses) == steps  # one fixed batch per step
    assert all(math.isfinite(loss) for loss in losses), losses
    assert losses[-1] < losses[0], f'{name}: loss did not fall: {losses}'
    print(f'\n{name} losses {[round(v, 4) for v in losses]}', end='')

    # an explicit checkpoint for one task, the work dir's latest for others
    resume = ['--resume', ckpt] if name == 'cls' else ['--resume']
    run_tool('train.py', config, '--work-dir', work_dir, *resume,
             '--cfg-options', *opts, *schedule_opts(unit, resumed_steps))
    resumed = [e for e in scalars(work_dir)[1] if 'loss' in e]
    # 1-based global iterations: it went on after the saved one
    assert [e['iter'] for e in resumed] == \
        list(range(steps + 1, resumed_steps + 1))
    if unit == 'epoch':
        assert {e['epoch'] for e in resumed} == \
            set(range(steps + 1, resumed_steps + 1))
    # from the trained weights, not from scratch
    assert resumed[0]['loss'] < losses[0]
    last = work_dir / f'{unit}_{resumed_steps}.pth'
    assert load_meta(last)[unit] == resumed_steps

    test_dir, show_dir = tmp_path / 'test', tmp_path / 'show'
    out = tmp_path / 'predictions.pkl'
    extra = []
    if name != 'mask_rcnn':  # drawing and dumping, once per library
        extra = ['--show-dir', show_dir if name != 'retinanet' else 'show',
                 '--out', out]
    run_tool('test.py', config, last, '--work-dir', test_dir, *extra,
             '--cfg-options', *opts)
    assert notes.read_text() == 'my notes'
    metrics = read_test_metrics(test_dir)
    print(f' metrics {metrics}', end='')
    for key, top in metric_ranges.items():
        assert isinstance(metrics[key], (int, float)), metrics
        assert 0.0 <= metrics[key] <= top, metrics
    if extra:
        val_images = list(data_root.glob({
            'retinanet': 'val2017/*.png', 'fpn': 'images/validation/*.jpg',
            'cls': 'val/*/*.png'}[name]))
        with open(out, 'rb') as f:
            assert len(pickle.load(f)) == len(val_images)
        drawn = {'retinanet': test_dir.glob('*/show/*.png'),
                 'fpn': show_dir.glob('vis_data/vis_image/*.png'),
                 'cls': show_dir.glob('*.png')}[name]
        # one drawing per validation image
        assert len(list(drawn)) == len(val_images)
