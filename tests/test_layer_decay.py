"""Layer-wise learning-rate decay: the depths every backbone family reports
(``get_layer_depth`` / ``get_stage_depth``) and the parameter groups that
``mmpoolformer.LayerDecayOptimWrapperConstructor`` builds from them, checked
against the documented formula, and one real training step of an mmdet, an
mmseg and an mmpretrain model built with it."""
import contextlib
import logging
import re

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

import mmpoolformer
from mmpoolformer.models import MetaFormer

from helpers import ROOT

FAMILIES = sorted(name for name, cls in mmpoolformer.MODELS.module_dict.items()
                  if issubclass(cls, MetaFormer) and cls.arch_zoo)
ARCH = dict(depths=[1, 1, 2, 1], embed_dims=[16, 32, 48, 64])
LR, WD, RATE = 1e-3, 0.05, 0.7
CONSTRUCTOR = 'mmpoolformer.LayerDecayOptimWrapperConstructor'


def optim_cfg(**paramwise):
    return dict(constructor=CONSTRUCTOR,
                paramwise_cfg=dict(dict(decay_rate=RATE), **paramwise),
                optimizer=dict(type='AdamW', lr=LR, weight_decay=WD))


class Classifier(nn.Module):
    """A backbone with a head, named as mmdet / mmseg / mmpretrain do."""

    def __init__(self, family, **kwargs):
        super().__init__()
        self.backbone = mmpoolformer.MODELS.build(
            dict(type=f'mmpoolformer.{family}', arch=ARCH, **kwargs))
        self.head = nn.Linear(ARCH['embed_dims'][-1], 3)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))


def documented_depth(name, decay_type, depths=ARCH['depths']):
    """``(depth, top)`` of a parameter as the docs state it, from its name:
    layer-wise the stem 0, the blocks 1.. in order, a downsampling that of
    its stage's first block; stage-wise the stem 0, stage i i + 1; the top
    (output norms, neck, heads) one above the last."""
    if decay_type == 'layer_wise':
        order = ['stem'] + [f'stages.{i}.blocks.{j}' for i, depth in
                            enumerate(depths) for j in range(depth)]
        table = {module: k for k, module in enumerate(order)}
        for i in range(1, 4):
            table[f'stages.{i}.downsample'] = table[f'stages.{i}.blocks.0']
    else:
        table = {'stem': 0, **{f'stages.{i}': i + 1 for i in range(4)}}
    top = max(table.values()) + 1
    for module, depth in table.items():
        if name.startswith(f'backbone.{module}.'):
            return depth, top
    return top, top


def groups_by_name(model, wrapper):
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group for group in wrapper.optimizer.param_groups
            for p in group['params']}


@contextlib.contextmanager
def captured_log():
    """The messages of mmengine's current logger (print_log 'current')."""
    messages = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('family', FAMILIES)
def test_depths_and_groups_follow_the_formula(family, decay_type):
    model = Classifier(family)
    depth_of = getattr(model.backbone, 'get_layer_depth' if decay_type ==
                       'layer_wise' else 'get_stage_depth')
    for name, _ in model.named_parameters():
        depth, top = documented_depth(name, decay_type)
        assert depth_of(name, 'backbone.') == (depth, top + 1), name
        if name.startswith('backbone.'):  # the same without a model around it
            assert depth_of(name[9:]) == (depth, top + 1), name
    if decay_type == 'stage_wise':  # one depth per stage
        for i in range(4):
            assert {depth_of(n, 'backbone.')[0] for n, _ in model.named_parameters()
                    if n.startswith(f'backbone.stages.{i}.')} == {i + 1}

    wrapper = build_optim_wrapper(model, optim_cfg(decay_type=decay_type))
    groups = groups_by_name(model, wrapper)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(groups) == sorted(trainable)  # each once
    for name, group in groups.items():
        depth, top = documented_depth(name, decay_type)
        assert group['lr'] == pytest.approx(LR * RATE**(top - depth)), name
        assert group['weight_decay'] == (0. if trainable[name].ndim <= 1 else WD), name
    # the head's group first: mmengine logs its lr as the run's
    assert wrapper.optimizer.param_groups[0]['lr'] == LR
    assert min(g['lr'] for g in groups.values()) == pytest.approx(
        groups['backbone.stem.conv.weight']['lr'])


def test_custom_keys_and_decay_multipliers():
    model = Classifier('PoolFormer')
    wrapper = build_optim_wrapper(model, optim_cfg(
        custom_keys={'backbone.stem': dict(lr_mult=10.), 'head': dict(decay_mult=0.),
                     'head.bias': dict(decay_mult=2.)},
        bias_decay_mult=0.5))
    groups = groups_by_name(model, wrapper)
    top = sum(ARCH['depths']) + 1
    stem_lr = LR * RATE**top * 10
    assert groups['backbone.stem.conv.weight']['lr'] == pytest.approx(stem_lr)
    assert groups['backbone.stem.conv.bias']['lr'] == pytest.approx(stem_lr)
    assert groups['backbone.stem.conv.weight']['weight_decay'] == WD
    assert groups['backbone.stem.conv.bias']['weight_decay'] == WD * 0.5
    assert groups['backbone.stages.0.blocks.0.norm1.bias']['weight_decay'] == WD * 0.5
    assert groups['backbone.stages.0.blocks.0.norm1.weight']['weight_decay'] == 0.
    assert groups['head.weight']['weight_decay'] == 0.  # the longest key wins
    assert groups['head.bias']['weight_decay'] == WD * 2


def test_frozen_stages_are_left_out_and_training_runs():
    model = Classifier('PoolFormer', frozen_stages=2).train()
    with captured_log() as messages:
        wrapper = build_optim_wrapper(model, optim_cfg())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(tuple(
        f'backbone.{m}.' for m in ('stem', 'stages.0', 'stages.1', 'norm0', 'norm1')))
        for n in frozen)
    groups = groups_by_name(model, wrapper)
    assert not set(frozen) & set(groups)
    assert len(groups) == len(list(model.parameters())) - len(frozen)
    assert f'{len(frozen)} frozen parameters left out' in messages[-1]

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    wrapper.update_params(model(torch.randn(2, 3, 64, 64)).square().mean())
    for name, p in model.named_parameters():
        if name in frozen:
            assert torch.equal(p, before[name]), name
    for name in ('head.weight', 'backbone.stages.2.downsample.conv.weight',
                 'backbone.stages.3.blocks.0.mlp.fc1.weight'):
        assert not torch.equal(dict(model.named_parameters())[name], before[name])


def test_group_summary_is_one_line_per_group():
    model = Classifier('CAFormer')
    with captured_log() as messages:
        wrapper = build_optim_wrapper(model, optim_cfg(decay_type='stage_wise'))
    header, *lines = messages[-1].splitlines()
    assert "stage_wise, decay_rate=0.7" in header and 'CAFormer' in header
    groups = wrapper.optimizer.param_groups
    assert len(lines) == len(groups)
    for line, group in zip(lines, groups):
        fields = re.fullmatch(r'  depth +(\d+) +lr_scale=(\S+) +weight_decay=(\S+) +'
                              r'(\d+) params: (.+)', line)
        assert fields, line
        depth, scale, wd, count, modules = fields.groups()
        assert int(depth) == group['layer_id']
        assert float(scale) == pytest.approx(group['lr'] / LR, rel=1e-3)
        assert float(wd) == group['weight_decay']
        assert int(count) == len(group['params'])
        assert len(line) < 120, line
    assert any('backbone.stages.2.downsample, backbone.stages.2.blocks.0-1' in line
               for line in lines), lines


@pytest.mark.parametrize('paramwise_cfg, message', [
    (dict(decay_rate=RATE, decay_type='block_wise'),
     r"decay_type.*\['layer_wise', 'stage_wise'\], got 'block_wise'"),
    (dict(decay_type='layer_wise'), r'decay_rate.*\(0, 1\].*None'),
    (dict(decay_rate=1.5), r'decay_rate.*1\.5'),
    (dict(decay_rate=RATE, num_layers=12), r"unknown keys \['num_layers'\]"),
    (dict(decay_rate=RATE, custom_keys={'head': dict(momentum=0.)}),
     r"custom_keys.*'head'.*\['momentum'\]"),
])
def test_bad_paramwise_cfg_is_named(paramwise_cfg, message):
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(Classifier('PoolFormer'), dict(
            constructor=CONSTRUCTOR, paramwise_cfg=paramwise_cfg,
            optimizer=dict(type='AdamW', lr=LR)))


def test_model_without_a_depth_reporting_backbone_is_named():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    with pytest.raises(ValueError, match=r'get_layer_depth.*Conv2d has not'):
        build_optim_wrapper(Net(), optim_cfg())
    with pytest.raises(ValueError, match=r'get_stage_depth.*Sequential has not'):
        build_optim_wrapper(nn.Sequential(nn.Linear(2, 2)),
                            optim_cfg(decay_type='stage_wise'))


# ------------------------------------------------- real models, one step each
USER_CONFIG = '''
_base_ = {base!r}
model = dict(
    data_preprocessor=dict({preprocessor}),
    backbone=dict(arch=dict(_delete_=True, **{arch!r}), init_cfg=None),
    {heads})
optim_wrapper = dict(
    constructor='mmpoolformer.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'),
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05))
'''
DIMS = ARCH['embed_dims']


def train_one_step(tmp_path, config, heads, preprocessor, batch_of, head_param):
    """Build the model and the optimizer wrapper of a user config on top
    of one of ours, train one step; the stem learns slower than the head."""
    path = tmp_path / 'user_config.py'
    path.write_text(USER_CONFIG.format(base=str(ROOT / 'configs' / config),
                                       preprocessor=preprocessor, arch=ARCH,
                                       heads=heads))
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry', fromlist=['MODELS'])
    model = registry.MODELS.build(cfg.model).train()
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = model.train_step(batch_of(), wrapper)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert {'backbone.stem.conv.weight', head_param} <= changed
    assert len(changed) > 0.8 * len(before)
    groups = groups_by_name(model, wrapper)
    assert groups[head_param]['lr'] == 1e-4
    assert groups['backbone.stem.conv.weight']['lr'] == pytest.approx(
        1e-4 * 0.7**(sum(ARCH['depths']) + 1))


def test_mmdet_retinanet_trains_a_step(tmp_path):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    def batch():
        sample = DetDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64),
                                             scale_factor=(1., 1.)))
        sample.gt_instances = InstanceData(bboxes=torch.tensor([[4., 6., 40., 50.]]),
                                           labels=torch.tensor([1]))
        return dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
                    data_samples=[sample])

    train_one_step(
        tmp_path, 'poolformer/retinanet_poolformer_s12_coco.py',
        heads=f'neck=dict(in_channels={DIMS[1:]}, out_channels=16), '
              'bbox_head=dict(num_classes=3, in_channels=16, feat_channels=16, '
              'stacked_convs=1)',
        preprocessor='', batch_of=batch, head_param='bbox_head.retina_cls.weight')


def test_mmseg_semantic_fpn_trains_a_step(tmp_path):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    def batch():
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64), ori_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 5, (1, 64, 64)))
        return dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
                    data_samples=[sample])

    train_one_step(
        tmp_path, 'poolformer/fpn_poolformer_s12_ade20k.py',
        heads=f'neck=dict(in_channels={DIMS}, out_channels=16), '
              'decode_head=dict(in_channels=[16] * 4, channels=8, num_classes=5, '
              "norm_cfg=dict(type='BN', requires_grad=True))",  # SyncBN: CPU, 1 process
        preprocessor='size=(64, 64)', batch_of=batch,
        head_param='decode_head.conv_seg.weight')


def test_mmpretrain_classifier_matches_mmpretrain_constructor():
    """In mmpretrain's scope: mmpretrain's own constructor reads the same
    depths through its classifier and, with ``flat_decay_mult=0``, sets the
    same lr and weight decay on every parameter; a step trains."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='mmpoolformer.PoolFormer', arch=ARCH, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=DIMS[-1]))).train()
    ours = build_optim_wrapper(model, optim_cfg())
    theirs = build_optim_wrapper(model, dict(
        constructor='LearningRateDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=RATE, flat_decay_mult=0.),
        optimizer=dict(type='AdamW', lr=LR, weight_decay=WD)))
    ours, theirs = groups_by_name(model, ours), groups_by_name(model, theirs)
    assert sorted(ours) == sorted(theirs)
    for name, group in ours.items():
        assert group['lr'] == pytest.approx(theirs[name]['lr']), name
        assert group['weight_decay'] == theirs[name]['weight_decay'], name

    wrapper = build_optim_wrapper(model, optim_cfg())
    before = model.backbone.stem.conv.weight.detach().clone()
    batch = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)] * 2,
                 data_samples=[DataSample().set_gt_label(i) for i in (0, 2)])
    losses = model.train_step(batch, wrapper)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(model.backbone.stem.conv.weight, before)
