"""The configs in configs/: they load through mmdet::/mmseg::/mmpretrain::
inheritance, build and run in their scope, wire channels right and carry the
official hyperparameters; plus tools/analysis_tools/get_flops.py."""
import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import randomise_

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(p.name for p in (ROOT / 'configs').glob('*.py'))
RELEASE = ('https://github.com/sail-sg/poolformer/releases/download/v1.0/'
           'poolformer_{}.pth.tar')

# family: (scope, optimizer type, lr, weight decay, total batch, loop length)
FAMILIES = {
    'retinanet': ('mmdet', 'AdamW', 1e-4, 1e-4, 16, dict(max_epochs=12)),
    'mask_rcnn': ('mmdet', 'AdamW', 2e-4, 1e-4, 16, dict(max_epochs=12)),
    'fpn': ('mmseg', 'AdamW', 2e-4, 1e-4, 32, dict(max_iters=40000)),
    'poolformer': ('mmpretrain', 'AdamW', 4e-3, 0.05, 4096,
                   dict(max_epochs=300)),
}
# the paper's stochastic depth on ImageNet
IN1K_DROP_PATH = dict(s12=0.1, s24=0.1, s36=0.2, m36=0.3, m48=0.4)
EMBED_DIMS = dict(s12=[64, 128, 320, 512], s24=[64, 128, 320, 512],
                  s36=[64, 128, 320, 512], m36=[96, 192, 384, 768],
                  m48=[96, 192, 384, 768])
DEPTHS = dict(s12=[2, 2, 6, 2], s24=[4, 4, 12, 4], s36=[6, 6, 18, 6],
              m36=[6, 6, 18, 6], m48=[8, 8, 24, 8])


def parse_name(name):
    m = re.match(r'(retinanet|mask_rcnn|fpn|poolformer)_poolformer_'
                 r'|(poolformer)_', name)
    family = m.group(1) or m.group(2)
    arch = re.search(r'_(s12|s24|s36|m36|m48)_', name).group(1)
    return family, arch


def load(name, **backbone):
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    cfg.model.backbone.init_cfg = None  # no download
    cfg.model.backbone.update(backbone)
    return cfg


def build(cfg):
    init_default_scope(cfg.default_scope)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    return registry.MODELS.build(cfg.model)


def det_samples(shape, n=1):
    from mmdet.structures import DetDataSample
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                batch_input_shape=shape, scale_factor=(1., 1.))
    return [DetDataSample(metainfo=meta) for _ in range(n)]


def test_every_family_and_arch_has_a_config():
    expected = {f'{f}_poolformer_{a}_coco.py' for f in ('retinanet', 'mask_rcnn')
                for a in ('s12', 's24', 's36')}
    expected |= {f'fpn_poolformer_{a}_ade20k.py' for a in EMBED_DIMS}
    expected |= {f'poolformer_{a}_in1k.py' for a in EMBED_DIMS}
    assert set(CONFIGS) == expected


@pytest.mark.parametrize('name', CONFIGS)
def test_config_hyperparameters(name):
    family, arch = parse_name(name)
    scope, opt, lr, wd, batch, loop = FAMILIES[family]
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    assert cfg.default_scope == scope
    assert cfg.custom_imports == dict(imports=['mmpoolformer'],
                                      allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmpoolformer.PoolFormer'
    assert backbone.arch == arch and backbone.frozen_stages == -1
    assert cfg.checkpoint_file == RELEASE.format(arch)
    if family == 'poolformer':
        # trained from scratch with the backbone's own (timm) init
        assert 'init_cfg' not in backbone
        assert backbone.drop_path_rate == IN1K_DROP_PATH[arch]
    else:
        assert backbone.init_cfg == dict(type='Pretrained',
                                         checkpoint=RELEASE.format(arch))
        assert backbone.drop_path_rate == 0.
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (opt, lr, wd)
    assert set(optimizer) <= {'type', 'lr', 'weight_decay', 'eps', 'betas',
                              '_scope_'}  # no SGD momentum left over
    # fp32 as the official runs; AmpOptimWrapper would also fail on CPU
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.train_dataloader.batch_size * (32 if scope == 'mmpretrain'
                                              else 8) == batch
    for key, value in loop.items():
        assert cfg.train_cfg[key] == value
    schedulers = {s['type']: s for s in cfg.param_scheduler}
    if family in ('retinanet', 'mask_rcnn'):
        assert schedulers['LinearLR']['end'] == 500
        assert schedulers['LinearLR']['start_factor'] == 0.001
        assert schedulers['MultiStepLR']['milestones'] == [8, 11]
        resize = [t for t in cfg.train_pipeline if t['type'] == 'Resize'][0]
        assert resize['scale'] == (1333, 800)
    elif family == 'fpn':
        poly = schedulers['PolyLR']
        assert (poly['power'], poly['eta_min'], poly['end']) == (0.9, 0., 40000)
        assert cfg.crop_size == (512, 512)
        assert cfg.model.decode_head.num_classes == 150
        assert {'type': 'ResizeToMultiple', 'size_divisor': 32} in \
            cfg.test_dataloader.dataset.pipeline
    else:
        assert schedulers['LinearLR']['end'] == 5
        assert schedulers['CosineAnnealingLR']['begin'] == 5
        assert cfg.optim_wrapper.clip_grad == dict(max_norm=5.0)
        assert cfg.model.head.loss.label_smooth_val == 0.1
        assert [(a.type, a.alpha) for a in cfg.model.train_cfg.augments] == \
            [('Mixup', 0.8), ('CutMix', 1.0)]
        train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
        assert train['RandAugment']['magnitude_level'] == 9
        assert train['RandomErasing']['erase_prob'] == 0.25
        # crop_pct 0.9 for S, 0.95 for M models (timm's defaults)
        test = {t['type']: t for t in cfg.test_dataloader.dataset.pipeline}
        assert test['ResizeEdge']['scale'] == (248 if arch[0] == 's' else 236)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs(name):
    family, arch = parse_name(name)
    model = build(load(name)).eval()
    backbone = model.backbone
    assert type(backbone).__module__.startswith('mmpoolformer')
    assert backbone.depths == DEPTHS[arch]
    dims = [backbone.embed_dims[i] for i in backbone.out_indices]
    assert backbone.embed_dims == EMBED_DIMS[arch]

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        if family == 'poolformer':
            assert backbone.out_indices == (3, )
            assert model.head.fc.in_features == dims[-1]
            out = model(x, mode='tensor')
            assert out.shape == (1, 1000)
            outs = [out]
        else:
            assert model.neck.in_channels == dims
            if family == 'mask_rcnn':
                (cls, box, mask), = model(x, det_samples((64, 64)),
                                          mode='tensor')
                n = cls.shape[0]
                assert n > 0 and cls.shape == (n, 81) and box.shape == (n, 320)
                assert mask.shape == (min(n, 100), 80, 28, 28)
                outs = [cls, box, mask]
            elif family == 'retinanet':
                cls, box = model(x, mode='tensor')
                # strides 8-128; 9 anchors x 80 classes / x 4 coordinates
                assert [tuple(c.shape) for c in cls] == [
                    (1, 720, s, s) for s in (8, 4, 2, 1, 1)]
                assert [b.shape[1] for b in box] == [36] * 5
                outs = [*cls, *box]
            else:
                out = model(x, mode='tensor')
                assert out.shape == (1, 150, 16, 16)  # stride 4
                outs = [out]
    assert all(torch.isfinite(o).all() for o in outs)


def test_retinanet_trains_every_backbone_and_neck_parameter():
    """Stages 1-3 + FPN(start_level=0) equals the official all-stage +
    FPN(start_level=1) network, and leaves no parameter without a gradient,
    where the official layout leaves the stage-0 norm unused."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    ours = build(load('retinanet_poolformer_s12_coco.py'))
    official = load('retinanet_poolformer_s12_coco.py',
                    out_indices=(0, 1, 2, 3))
    official.model.neck.update(in_channels=[64, 128, 320, 512], start_level=1)
    official = build(official)

    # same forward: ours loads the official weights minus norm0
    randomise_(official)
    state = official.state_dict()
    assert set(state) - set(ours.state_dict()) == {'backbone.norm0.weight',
                                                   'backbone.norm0.bias'}
    ours.load_state_dict({k: v for k, v in state.items()
                          if not k.startswith('backbone.norm0.')})
    ours.eval()
    official.eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(ours.extract_feat(x), official.extract_feat(x)):
            torch.testing.assert_close(a, b)

    # one backward step on a fake batch of two images with boxes
    def batch():
        samples = []
        for h, w in ((96, 128), (128, 96)):
            s = DetDataSample(metainfo=dict(img_shape=(h, w),
                                            ori_shape=(h, w),
                                            scale_factor=(1., 1.)))
            s.gt_instances = InstanceData(
                bboxes=torch.tensor([[8., 12., 60., 70.], [30., 5., 90., 50.]]),
                labels=torch.tensor([3, 17]))
            samples.append(s)
        gen = torch.Generator().manual_seed(0)
        return dict(inputs=[torch.randint(0, 256, (3, h, w), generator=gen,
                                          dtype=torch.uint8)
                            for h, w in ((96, 128), (128, 96))],
                    data_samples=samples)

    def grads(model):
        model.train()
        data = model.data_preprocessor(batch(), training=True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        model.zero_grad()
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters()
                if n.startswith(('backbone.', 'neck.'))}

    ours_grads = grads(ours)
    assert len(ours_grads) > 100
    missing = [n for n, g in ours_grads.items()
               if g is None or not torch.isfinite(g).all() or not g.any()]
    assert missing == []
    unused = [n for n, g in grads(official).items() if g is None]
    assert unused == ['backbone.norm0.weight', 'backbone.norm0.bias']


def test_get_flops_counts_poolformer_s12(capsys):
    sys.path.insert(0, str(ROOT / 'tools' / 'analysis_tools'))
    try:
        get_flops = importlib.import_module('get_flops')
    finally:
        sys.path.pop(0)
    rows = get_flops.main([str(ROOT / 'configs' / 'poolformer_s12_in1k.py'),
                           '--shape', '224', '224'])
    printed = capsys.readouterr().out
    backbone = re.search(r'^backbone\s+([\d.]+)\s+([\d.]+)$', printed, re.M)
    whole = re.search(r'^whole model\s+([\d.]+)\s+([\d.]+)$', printed, re.M)
    # exact counts: timm's poolformer_s12 has 11,915,176; the backbone lacks
    # its classifier (512 x 1000 + 1000)
    assert rows['backbone']['params'] == 11_402_176
    assert rows['whole model']['params'] == 11_402_176 + 513_000
    assert backbone.group(1) == '11.40' and whole.group(1) == '11.92'
    # the paper's 1.8G MACs at 224x224 (fvcore, as sail-sg counted)
    assert 1.78e9 < rows['backbone']['flops'] < 1.86e9
    assert float(whole.group(2)) == pytest.approx(
        rows['whole model']['flops'] / 1e9, abs=0.01)
