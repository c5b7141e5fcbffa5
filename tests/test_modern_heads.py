"""The configs of the newer heads (Cascade Mask R-CNN 3x, DINO-4scale,
Mask2Former on COCO instance, COCO panoptic and ADE20K), each shrunk to a
tiny model on tiny images, train one step with mmengine's Runner and the
config's own optimizer wrapper (the Cascade configs' layer-wise lr decay
constructor, Mask2Former's per-module multipliers), then predict.

The data are real files in the layouts the real datasets read: COCO
(``CocoDataset``) and ADE20K (``ADE20KDataset``) from the synthetic-shapes
writers of the demo, and COCO panoptic (``CocoPanopticDataset``: a panoptic
json and PNGs of segment ids, written here from the COCO instances, one
"background" stuff segment around the shapes). Everything else is the
config's: its model bar the sizes below, its train and test pipelines with
every image size scaled down (800 -> 64 pixels on COCO, 512 -> 64 on
ADE20K), its optimizer wrapper, schedulers and hooks.

What is shrunk: the backbone's depths and widths (TINY_ARCH) and the
channels the neck / pixel decoder take from it, the number of classes (the
three shapes; ADE20K keeps its 150), the queries (DINO 20, Mask2Former 10),
the transformer layers (DINO 2 + 2, Mask2Former 2 + 3), the proposals and
RoIs of the Cascade heads, Mask2Former's sampled points, and the schedule
(one iteration, no validation). The heads keep their widths; the Cascade
its three stages.

mmdet's ``LoadPanopticAnnotations`` takes one function from panopticapi,
``rgb2id`` (COCO's panoptic PNG encoding, id = R + 256 G + 256² B); where
panopticapi is not installed (it is not on PyPI) the panoptic test puts a
stand-in of that function in its place. Only the prediction is checked, not
the panoptic metric (CocoPanopticMetric needs all of panopticapi).
"""
import copy
import inspect
import json
import re
import sys
import types
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

# maps mmseg:: bases to the installed mmseg (onedl's fork has another
# distribution name), which a config's own custom_imports come too late for
import mmpoolformer  # noqa: F401

from cli.synthetic_shapes import (
    SHAPE_CLASSES,
    write_ade_shapes,
    write_coco_shapes,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / 'configs'
SIZE = 64  # pixels of the synthetic images
TINY_ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 64, 96])
STUFF = ('background', )  # the panoptic data's one stuff class

HEADS = ('cascade_mask_rcnn', 'dino_4scale', 'mask2former')
CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix()
                 for p in CONFIG_DIR.glob('*/*.py')
                 if p.stem.startswith(HEADS))


def task_of(name):
    """cascade_mask_rcnn, dino_4scale or mask2former_<data set>."""
    stem = Path(name).stem
    m = re.fullmatch(r'mask2former_[a-z]+_s\d+_(\w+)', stem)
    if m:
        return f'mask2former_{m.group(1)}'
    return re.match(r'(cascade_mask_rcnn|dino_4scale)_', stem).group(1)


# ------------------------------------------------------------------- data
def write_coco_panoptic(root):
    """COCO panoptic layout next to the COCO instances of the same images:
    ``annotations/panoptic_{train,val}2017.json`` and PNGs of segment ids
    in ``annotations/panoptic_{train,val}2017/``; each shape a thing
    segment, the rest of the image one "background" stuff segment."""
    stuff_id = len(SHAPE_CLASSES) + 1
    for split in ('train', 'val'):
        instances = json.loads(
            (root / f'annotations/instances_{split}2017.json').read_text())
        seg_dir = root / f'annotations/panoptic_{split}2017'
        seg_dir.mkdir(parents=True, exist_ok=True)
        annotations = []
        for image in instances['images']:
            ids = np.zeros((image['height'], image['width']), np.int64)
            segments = []
            for ann in instances['annotations']:
                if ann['image_id'] != image['id']:
                    continue
                poly = np.array(ann['segmentation'][0]).reshape(-1, 2)
                mask = np.zeros(ids.shape, np.uint8)
                cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
                ids[mask > 0] = ann['id']
                segments.append(dict(
                    id=ann['id'], category_id=ann['category_id'],
                    area=int(mask.sum()), bbox=ann['bbox'], iscrowd=0))
            background = 1000 + image['id']
            ids[ids == 0] = background
            ys, xs = np.nonzero(ids == background)
            segments.append(dict(
                id=background, category_id=stuff_id,
                area=int(len(xs)), iscrowd=0,
                bbox=[int(xs.min()), int(ys.min()),
                      int(xs.max() - xs.min() + 1),
                      int(ys.max() - ys.min() + 1)]))
            # id = R + 256 G + 256^2 B; cv2 writes BGR
            rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536],
                           -1).astype(np.uint8)
            cv2.imwrite(str(seg_dir / image['file_name']), rgb[..., ::-1])
            annotations.append(dict(image_id=image['id'],
                                    file_name=image['file_name'],
                                    segments_info=segments))
        categories = [dict(c, isthing=1) for c in instances['categories']]
        categories.append(dict(id=stuff_id, name=STUFF[0], isthing=0,
                               supercategory='stuff'))
        (root / f'annotations/panoptic_{split}2017.json').write_text(
            json.dumps(dict(images=instances['images'],
                            annotations=annotations,
                            categories=categories)))


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """{'coco': root, 'ade20k': root} of synthetic data sets: 2 training
    images (one batch) and 1 validation image each."""
    root = tmp_path_factory.mktemp('modern_heads_data')
    write_coco_shapes(root / 'coco', num_train=2, num_val=1,
                      image_size=SIZE)
    write_coco_panoptic(root / 'coco')
    ade = root / 'ade' / 'ADEChallengeData2016'
    write_ade_shapes(ade, num_train=2, num_val=1, image_size=SIZE)
    return dict(coco=root / 'coco', ade20k=ade)


def rgb2id(color):
    """COCO panoptic's segment id of an RGB PNG: R + 256 G + 256^2 B."""
    color = np.asarray(color)
    if color.ndim == 3:
        color = color.astype(np.int64)
        return color[..., 0] + 256 * color[..., 1] + 65536 * color[..., 2]
    return int(color[0]) + 256 * int(color[1]) + 65536 * int(color[2])


@pytest.fixture
def panopticapi(monkeypatch):
    """panopticapi when installed, else a module with its ``rgb2id`` only
    (what mmdet's LoadPanopticAnnotations takes from it)."""
    try:
        import panopticapi.utils  # noqa: F401
        return
    except ImportError:
        pass
    package = types.ModuleType('panopticapi')
    utils = types.ModuleType('panopticapi.utils')
    utils.rgb2id = rgb2id
    package.utils = utils
    monkeypatch.setitem(sys.modules, 'panopticapi', package)
    monkeypatch.setitem(sys.modules, 'panopticapi.utils', utils)


def test_panoptic_pngs_hold_the_segments(data):
    """The writer's PNGs decode (as mmdet reads them: RGB) to exactly the
    segments its json lists, with their areas."""
    root = data['coco']
    ann = json.loads(
        (root / 'annotations/panoptic_train2017.json').read_text())
    for image in ann['annotations']:
        png = cv2.imread(str(root / 'annotations/panoptic_train2017' /
                             image['file_name']))[..., ::-1]
        ids, counts = np.unique(rgb2id(png), return_counts=True)
        assert dict(zip(ids.tolist(), counts.tolist())) == {
            s['id']: s['area'] for s in image['segments_info']}


# ----------------------------------------------------------------- config
def scale_sizes(obj, factor):
    """``obj`` (a pipeline, a transform, a data preprocessor) with every
    image size in it (``scale``, ``scales``, ``crop_size``, ``size``,
    ``max_size``) times ``factor``."""
    def times(value):
        if isinstance(value, (list, tuple)):
            return type(value)(times(v) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return max(1, round(value * factor))
        return value
    if isinstance(obj, (list, tuple)):
        return type(obj)(scale_sizes(v, factor) for v in obj)
    if isinstance(obj, dict):
        return {k: times(v) if k in ('scale', 'scales', 'crop_size', 'size',
                                      'max_size') else scale_sizes(v, factor)
                for k, v in obj.items()}
    return obj


def class_weight(num_classes):
    return [1.0] * num_classes + [0.1]  # the "no object" class: 0.1


def tiny_mask2former(head, dims):
    """10 queries, 2 deformable encoder layers (6) in the pixel decoder, 3
    masked-attention decoder layers (9: one round over its 3 levels)."""
    head.update(in_channels=dims, num_queries=10)
    head.pixel_decoder.encoder.num_layers = 2
    head.transformer_decoder.num_layers = 3
    if 'train_cfg' in head:  # mmseg's: the head's own
        head.train_cfg.num_points = 28 * 28  # of 112 x 112
    return head


def tiny_model(model, task):
    """The config's model with a tiny backbone (and the channels taken from
    it), few queries / proposals, and the classes of the data."""
    model.backbone.update(arch=TINY_ARCH, init_cfg=None)
    dims = [TINY_ARCH['embed_dims'][i] for i in model.backbone.out_indices]
    things = len(SHAPE_CLASSES)
    if task == 'cascade_mask_rcnn':
        model.neck.in_channels = dims
        for head in model.roi_head.bbox_head:
            head.num_classes = things
        model.roi_head.mask_head.num_classes = things
        # a few proposals and RoIs: the 4-conv box and mask heads of three
        # stages on 512 RoIs per image would take minutes here
        model.train_cfg.rpn_proposal.max_per_img = 64
        for stage in model.train_cfg.rcnn:
            stage.sampler.num = 8
        model.test_cfg.rpn.max_per_img = 20
    elif task == 'dino_4scale':
        model.neck.in_channels = dims
        model.bbox_head.num_classes = things
        model.encoder.num_layers = model.decoder.num_layers = 2  # 6
        model.num_queries = 20  # 900; a 64x64 image has 85 tokens
        model.dn_cfg.group_cfg.num_dn_queries = 10
        model.test_cfg.max_per_img = 20  # of 20 queries x 3 classes
    elif task == 'mask2former_ade20k':
        head = tiny_mask2former(model.decode_head, dims)  # its 150 classes
        model.data_preprocessor.size = (SIZE, SIZE)  # was the 512 crop
    else:
        stuff = len(STUFF) if task == 'mask2former_coco_panoptic' else 0
        head = tiny_mask2former(model.panoptic_head, dims)
        head.update(num_things_classes=things, num_stuff_classes=stuff)
        head.loss_cls.class_weight = class_weight(things + stuff)
        model.panoptic_fusion_head.update(num_things_classes=things,
                                          num_stuff_classes=stuff)
        model.train_cfg.num_points = 28 * 28  # of 112 x 112
        model.test_cfg.max_per_image = 10  # of 10 queries x 3 classes
        # LSJ pads every batch to its crop size
        model.data_preprocessor = scale_sizes(model.data_preprocessor,
                                              SIZE / 800)


def dataset_cfgs(cfg, task, data):
    """Train and test data sets of the config on the synthetic files: the
    config's pipelines with every image size scaled by 64/800 (COCO) or
    64/512 (ADE20K)."""
    train = copy.deepcopy(cfg.train_dataloader.dataset)
    test = copy.deepcopy(cfg.test_dataloader.dataset)
    if task == 'mask2former_ade20k':
        factor, root, metainfo = SIZE / 512, data['ade20k'], None
    else:
        factor, root = SIZE / 800, data['coco']
        metainfo = dict(classes=SHAPE_CLASSES)
        if task == 'mask2former_coco_panoptic':
            metainfo = dict(classes=SHAPE_CLASSES + STUFF,
                            thing_classes=SHAPE_CLASSES, stuff_classes=STUFF)
    for ds in (train, test):
        ds.pipeline = scale_sizes(ds.pipeline, factor)
        ds.data_root = f'{root}/'
        if metainfo:
            ds.metainfo = metainfo
    return train, test


def loader(dataset, batch_size):
    return dict(batch_size=batch_size, num_workers=0, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dataset)


def tiny_config(name, data, work_dir):
    """The config, shrunk (see the module docstring) to one iteration."""
    task = task_of(name)
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    tiny_model(cfg.model, task)
    train, test = dataset_cfgs(cfg, task, data)
    cfg.train_dataloader.update(num_workers=0, persistent_workers=False,
                                dataset=train)
    cfg.train_dataloader.sampler.shuffle = False
    # one iteration: both training images are one batch (2 per GPU)
    assert cfg.train_dataloader.batch_size == 2
    if 'max_epochs' in cfg.train_cfg:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                             val_interval=1)
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1,
                             val_interval=1000)
    for key in ('val', 'test'):  # predictions below; metrics need more data
        cfg[f'{key}_cfg'] = cfg[f'{key}_dataloader'] = \
            cfg[f'{key}_evaluator'] = None
    cfg.default_hooks.logger.interval = 1
    # no checkpoint: 150 MB of a tiny model's heads and Adam state per test
    # (SafeCheckpointHook: tests/test_runner_checkpoint.py)
    cfg.default_hooks.checkpoint = None
    cfg.log_level = 'WARNING'  # not every parameter's lr and decay
    cfg.work_dir = str(work_dir)
    # mmengine's loggers and visualizers are per experiment name; a Runner
    # per test in one process needs its own
    cfg.experiment_name = f'{Path(name).stem}_{uuid.uuid4().hex[:8]}'
    cfg.randomness = dict(seed=0)
    return cfg, loader(test, 1)


def build_runner(cfg):
    """``Runner.from_cfg(cfg)``, but without handing the Runner the config
    itself, which it would pretty-print (yapf: about a second for these
    configs) into its log and work_dir; every part is the config's."""
    names = inspect.signature(Runner.__init__).parameters
    return Runner(**{k: cfg[k] for k in names if k != 'cfg' and k in cfg})


class Snapshot(Hook):
    """The trainable parameters as training starts (after the weights'
    initialisation)."""

    def before_train(self, runner):
        self.before = {n: p.detach().clone()
                       for n, p in runner.model.named_parameters()
                       if p.requires_grad}


# ------------------------------------------------------------ the checks
def assert_layer_decay(model, wrapper):
    """Cascade: every backbone parameter's lr is the base lr x 0.7^k, k its
    distance from the top (neck and heads: k = 0), decreasing from the last
    block down to the stem; 1-D parameters without weight decay."""
    groups = {id(p): g for g in wrapper.optimizer.param_groups
              for p in g['params']}
    base = wrapper.optimizer.defaults['lr']
    assert base == 2e-4
    named = dict(model.named_parameters())
    lr = {n: groups[id(p)]['initial_lr'] for n, p in named.items()}
    top = sum(TINY_ARCH['depths']) + 1  # stem 0, blocks 1..L, top L + 1
    assert lr['neck.lateral_convs.0.conv.weight'] == base
    assert lr['roi_head.bbox_head.2.fc_cls.weight'] == base
    assert lr['backbone.stem.conv.weight'] == pytest.approx(base * 0.7**top)
    assert lr['backbone.stages.3.blocks.0.mlp.fc1.weight'] == \
        pytest.approx(base * 0.7)
    stages = [lr[f'backbone.stages.{i}.blocks.0.mlp.fc1.weight']
              for i in range(4)]
    assert stages == sorted(stages) and len(set(stages)) == 4
    for n, p in named.items():
        if n.startswith('backbone.'):  # its output norms: the top
            assert base * 0.7**top * 0.99 < lr[n] <= base, n
        wd = groups[id(p)]['weight_decay']
        assert wd == (0. if p.ndim == 1 else 0.05), n


def assert_backbone_multipliers(model, wrapper, task):
    """Mask2Former (Swin-T's recipe) and DINO: the backbone at 0.1 x lr;
    Mask2Former also without weight decay on the backbone's norms and
    gains (layer / residual / StarReLU scales); its other parameters, biases
    included, decay."""
    groups = {id(p): g for g in wrapper.optimizer.param_groups
              for p in g['params']}
    base = wrapper.optimizer.defaults['lr']
    decay = wrapper.optimizer.defaults['weight_decay']
    exempt = 0
    for n, p in model.named_parameters():
        group = groups[id(p)]
        in_backbone = n.startswith('backbone.')
        assert group['initial_lr'] == pytest.approx(
            base * (0.1 if in_backbone else 1.)), n
        if not in_backbone or task == 'dino_4scale':
            continue
        module, name = n.rsplit('.', 2)[-2:]
        if module.startswith('norm') or name == 'scale':
            exempt += 1
            assert group['weight_decay'] == 0., n
        else:
            assert group['weight_decay'] == pytest.approx(decay), n
    if task != 'dino_4scale':
        assert exempt >= 2 * sum(TINY_ARCH['depths'])  # 2 norms per block


def assert_prediction(sample, task):
    """The prediction of a 64x64 image, at its size."""
    if task == 'mask2former_ade20k':
        assert sample.seg_logits.data.shape == (150, SIZE, SIZE)
        assert torch.isfinite(sample.seg_logits.data).all()
        label = sample.pred_sem_seg.data
        assert label.shape == (1, SIZE, SIZE)
        assert 0 <= int(label.min()) and int(label.max()) < 150
        return
    inst = sample.pred_instances
    n = len(inst)
    assert 0 < n and inst.bboxes.shape == (n, 4)
    assert torch.isfinite(inst.bboxes).all() and torch.isfinite(
        inst.scores).all()
    assert set(inst.labels.tolist()) <= set(range(len(SHAPE_CLASSES)))
    if task == 'dino_4scale':
        assert n == 20 and 'masks' not in inst
    else:
        assert inst.masks.shape == (n, SIZE, SIZE)
        assert inst.masks.dtype == torch.bool
    if task == 'mask2former_coco_panoptic':
        # ids: label + instance index x 1000 (mmdet's INSTANCE_OFFSET), or
        # 4 (= thing + stuff classes) where no segment survives
        pan = sample.pred_panoptic_seg.sem_seg
        assert pan.shape == (1, SIZE, SIZE)
        labels = set((pan % 1000).unique().tolist())
        assert labels <= set(range(len(SHAPE_CLASSES) + len(STUFF) + 1))
    else:
        assert 'pred_panoptic_seg' not in sample


@pytest.mark.parametrize('name', CONFIGS)
def test_trains_a_step_and_predicts(name, data, tmp_path, panopticapi):
    task = task_of(name)
    cfg, test_loader = tiny_config(name, data, tmp_path / 'work')
    runner = build_runner(cfg)
    snapshot = Snapshot()
    runner.register_hook(snapshot, priority='LOWEST')
    model = runner.train()

    # one step of the config's optimizer: a finite loss that moved the
    # backbone and the heads
    assert runner.iter == 1
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert np.isfinite(loss) and loss > 0
    moved = {n.split('.')[0] for n, p in model.named_parameters()
             if p.requires_grad and not torch.equal(p, snapshot.before[n])}
    assert {'backbone', 'decode_head' if task == 'mask2former_ade20k' else
            'panoptic_head' if task.startswith('mask2former') else
            'bbox_head' if task == 'dino_4scale' else 'roi_head'} <= moved
    if task == 'cascade_mask_rcnn':
        assert_layer_decay(model, runner.optim_wrapper)
    else:
        assert_backbone_multipliers(model, runner.optim_wrapper, task)

    # the config's test pipeline on the validation image
    batch = next(iter(Runner.build_dataloader(test_loader)))
    model.eval()
    with torch.no_grad():
        sample, = model.test_step(batch)
    assert_prediction(sample, task)
