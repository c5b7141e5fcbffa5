"""The configs in configs/ (recursively): they load through mmdet::/mmseg::/
mmpretrain:: inheritance, build and run in their scope, wire channels right
and carry the official hyperparameters; the PoolFormer-paper ablations change
only their component; plus tools/analysis_tools/get_flops.py.

Layout: configs/poolformer/ are PoolFormer v1 (ImageNet, RetinaNet, Mask
R-CNN, Semantic FPN, and mmdet's / mmseg's Cascade Mask R-CNN, DINO and
Mask2Former recipes); configs/ablations/ the PoolFormer paper's ablation rows
(and a hybrid RetinaNet); configs/metaformer/ the MetaFormer family
(PoolFormerV2, IdentityFormer, RandFormer, ConvFormer, CAFormer, RIFormer).
configs/*.py are aliases of folder configs for old command lines (tested
here, left out of CONFIGS). tests/test_packaging.py loads every config as a
``mmpoolformer::`` base of an installed wheel."""
import ast
import importlib
import re
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config
from mmengine.registry import init_default_scope

# maps mmseg:: bases to the installed mmseg (onedl's fork has another
# distribution name), which a config's own custom_imports come too late for
import mmpoolformer  # noqa: F401

from helpers import load_tool, randomise_

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / 'configs'
# the configs in folders; configs/*.py are aliases of some of them
CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix()
                 for p in CONFIG_DIR.rglob('*.py') if p.parent != CONFIG_DIR
                 and p.parent.name != 'deploy')  # mmdeploy's, tests/test_mmdeploy.py
ALIASES = sorted(p.name for p in CONFIG_DIR.glob('*.py'))
RELEASE = ('https://github.com/sail-sg/poolformer/releases/download/v1.0/'
           'poolformer_{}.pth.tar')
ABLATION_RELEASE = ('https://github.com/sail-sg/poolformer/releases/download/'
                    'v1.0/metaformer_{}.pth.tar')
# sail-sg/metaformer README: https://huggingface.co/sail/dl/resolve/main/...
BASELINE_RELEASE = ('https://huggingface.co/sail/dl/resolve/main/'
                    '{0}/{0}_{1}.pth')
RIFORMER_RELEASE = ('https://download.openmmlab.com/mmclassification/v1/'
                    'riformer/riformer-s12_32xb128_in1k_20230406-6741ce71.pth')

# task: (scope, optimizer type, lr, weight decay, total batch, loop length)
TASKS = {
    'retinanet': ('mmdet', 'AdamW', 1e-4, 1e-4, 16, dict(max_epochs=12)),
    'mask_rcnn': ('mmdet', 'AdamW', 2e-4, 1e-4, 16, dict(max_epochs=12)),
    'fpn': ('mmseg', 'AdamW', 2e-4, 1e-4, 32, dict(max_iters=40000)),
    # mmseg's Swin-T UperNet ADE20K 160k recipe (no official MetaFormer one)
    'upernet': ('mmseg', 'AdamW', 6e-5, 0.01, 16, dict(max_iters=160000)),
    'in1k': ('mmpretrain', None, None, 0.05, 4096, dict(max_epochs=300)),
    # mmdet's / mmseg's recipes for a backbone of the same size (no official
    # ones for these heads): ConvNeXt-T's Cascade 3x, DINO-4scale R50 12e,
    # Swin-T's Mask2Former (MODERN_RECIPES below)
    'cascade_mask_rcnn': ('mmdet', 'AdamW', 2e-4, 0.05, 16,
                          dict(max_epochs=36)),
    'dino_4scale': ('mmdet', 'AdamW', 1e-4, 1e-4, 16, dict(max_epochs=12)),
    'mask2former_coco_instance': ('mmdet', 'AdamW', 1e-4, 0.05, 16,
                                  dict(max_iters=368750)),
    'mask2former_coco_panoptic': ('mmdet', 'AdamW', 1e-4, 0.05, 16,
                                  dict(max_iters=368750)),
    'mask2former_ade20k': ('mmseg', 'AdamW', 1e-4, 0.05, 16,
                           dict(max_iters=160000)),
}
# drop path of the backbone under a head: the official *_feat backbones
# use none; the recipes of mmdet / mmseg that of their backbone
DROP_PATH = dict(upernet=0.3, cascade_mask_rcnn=0.4, dino_4scale=0.2,
                 mask2former_coco_instance=0.3, mask2former_coco_panoptic=0.3,
                 mask2former_ade20k=0.3)
# the mmdet / mmseg config each S12 config of these heads follows, and what
# may differ from it (key paths of the merged configs: the backbone, its
# outputs' channels, the optimizer's per-parameter rules that name backbone
# modules, the imports, the checkpoint hook, and the source's own top-level
# helper variables); the other variants change only the backbone
SWIN_VARS = ('pretrained', 'depths', 'backbone_embed_multi', 'custom_keys')
COMMON_DIFFS = ('model.backbone', 'custom_imports', 'checkpoint_file',
                'default_hooks.checkpoint.type', 'default_hooks.logger.type')
MODERN_RECIPES = {
    'cascade_mask_rcnn': (
        'mmdet', 'convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-'
        'giou_amp-ms-crop-3x_coco.py', ('model.neck.in_channels',
                                         'optim_wrapper')),
    # (DINO's auto_scale_lr has no `enable`: off by default, ours says so)
    'dino_4scale': ('mmdet', 'dino/dino-4scale_r50_8xb2-12e_coco.py',
                    ('model.neck.in_channels', 'auto_scale_lr.enable')),
    'mask2former_coco_instance': (
        'mmdet', 'mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_'
        'coco.py', ('model.panoptic_head.in_channels',
                    'optim_wrapper.paramwise_cfg.custom_keys') + SWIN_VARS),
    'mask2former_coco_panoptic': (
        'mmdet', 'mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_'
        'coco-panoptic.py', ('model.panoptic_head.in_channels',
                             'optim_wrapper.paramwise_cfg.custom_keys') +
        SWIN_VARS),
    'mask2former_ade20k': (
        'mmseg', 'mask2former/mask2former_swin-t_8xb2-160k_ade20k-'
        '512x512.py', ('model.decode_head.in_channels',
                       'optim_wrapper.paramwise_cfg.custom_keys') +
        SWIN_VARS),
}
MODERN_TASKS = tuple(MODERN_RECIPES)
# the paper's stochastic depth on ImageNet
IN1K_DROP_PATH = dict(s12=0.1, s24=0.1, s36=0.2, m36=0.3, m48=0.4)
EMBED_DIMS = dict(s12=[64, 128, 320, 512], s24=[64, 128, 320, 512],
                  s36=[64, 128, 320, 512], m36=[96, 192, 384, 768],
                  m48=[96, 192, 384, 768], s18=[64, 128, 320, 512])
DEPTHS = dict(s12=[2, 2, 6, 2], s24=[4, 4, 12, 4], s36=[6, 6, 18, 6],
              m36=[6, 6, 18, 6], m48=[8, 8, 24, 8], s18=[3, 3, 9, 3])
CLASSES = dict(poolformer='PoolFormer', poolformerv2='PoolFormerV2',
               identityformer='IdentityFormer', randformer='RandFormer',
               convformer='ConvFormer', caformer='CAFormer',
               riformer='RIFormer')

# PoolFormer paper, Table 5 (PoolFormer-S12 base: 11.9M, 1.8G, 77.2):
# variant: (params M, MACs G, top-1, released-checkpoint name or None)
ABLATIONS = {
    'identity': (11.9, 1.8, 74.3, 'id_s12'),
    'globalrandom': (11.9, 3.3, 75.8, None),  # + 21M frozen parameters
    'dwconv': (11.9, 1.8, 78.1, None),
    'pool5': (11.9, 1.8, 77.2, None),
    'pool7': (11.9, 1.8, 77.1, None),
    'pool9': (11.9, 1.8, 76.8, None),
    'layernorm': (11.9, 1.8, 76.5, None),
    'batchnorm': (11.9, 1.8, 76.4, None),
    'nonorm': (11.9, 1.8, 46.1, None),
    'relu': (11.9, 1.8, 76.4, None),
    'silu': (11.9, 1.8, 77.2, None),
    'pppa': (14.0, 1.9, 78.3, 'pppa_s12_224'),
    'ppaa': (16.5, 2.5, 81.0, 'ppaa_s12_224'),
    'pppf': (11.9, 1.8, 77.5, 'pppf_s12_224'),
    'ppff': (12.2, 1.9, 77.9, 'ppff_s12_224'),
    'noresidual': (11.9, 1.8, 0.1, None),
    'nomlp': (2.5, 0.2, 5.7, None),
}
# PoolFormer paper, Table 7: PoolFormer-S12 top-1 by training epochs (300:
# 77.2, the base config)
EPOCHS = {400: 77.5, 500: 77.9, 1000: 78.4, 1500: 78.6, 2000: 78.8,
          2500: 78.8, 3000: 78.8}
# one-letter mixer names keep the per-stage tables below readable
P, A, I, F = 'Pooling', 'Attention', 'IdentityMixer', 'SpatialFC'  # noqa: E741
GN, LN = ('GroupNorm1', 1e-5), ('LayerNorm2d', 1e-5)
# variant: (mixer per stage, (block norm, eps), MLP activation, pool size)
ABLATION_STRUCTURE = {
    'identity': ([I] * 4, GN, 'GELU', None),
    'globalrandom': (['RandomMixing'] * 4, GN, 'GELU', None),
    'dwconv': (['DepthwiseConv'] * 4, GN, 'GELU', None),
    'pool5': ([P] * 4, GN, 'GELU', 5),
    'pool7': ([P] * 4, GN, 'GELU', 7),
    'pool9': ([P] * 4, GN, 'GELU', 9),
    'layernorm': ([P] * 4, LN, 'GELU', 3),
    'batchnorm': ([P] * 4, ('BatchNorm2d', 1e-5), 'GELU', 3),
    'nonorm': ([P] * 4, ('Identity', None), 'GELU', 3),
    'relu': ([P] * 4, GN, 'ReLU', 3),
    'silu': ([P] * 4, GN, 'SiLU', 3),
    # the official hybrid attention models use LayerNormChannel throughout
    'pppa': ([P, P, P, A], LN, 'GELU', 3),
    'ppaa': ([P, P, A, A], LN, 'GELU', 3),
    'pppf': ([P, P, P, F], GN, 'GELU', 3),
    'ppff': ([P, P, F, F], GN, 'GELU', 3),
    'noresidual': ([P] * 4, GN, 'GELU', 3),
    'nomlp': ([P] * 4, GN, None, 3),  # no channel MLP at all
}
# MetaFormer-family ImageNet configs (sail-sg/metaformer scripts/, train.py
# defaults; RIFormer: PoolFormer's recipe as mmpretrain's):
# (optimizer, lr, warm-up epochs, grad clip, drop path, test resize, top-1)
FAMILY_IN1K = {
    'poolformerv2_s12': ('AdamW', 4e-3, 5, dict(max_norm=5.0), 0.1, 224, 78.0),
    'identityformer_s12': ('AdamW', 4e-3, 5, dict(max_norm=5.0), 0.1, 224,
                           74.6),
    'randformer_s12': ('AdamW', 4e-3, 5, dict(max_norm=5.0), 0.1, 224, 76.6),
    'convformer_s18': ('AdamW', 4e-3, 20, dict(max_norm=5.0), 0.2, 224, 83.0),
    # timm's / mmpretrain's Lamb clips the global grad norm to 1 itself
    'caformer_s18': ('Lamb', 8e-3, 20, None, 0.15, 224, 83.6),
    'riformer_s12': ('AdamW', 4e-3, 5, dict(max_norm=5.0), 0.1, 248, 76.9),
}
# the released ConvFormer / CAFormer-S18 variants (sail-sg/metaformer
# README): config suffix -> (release suffix, top-1 ConvFormer, CAFormer)
BASELINE_VARIANTS = {
    'in1k_384': ('_384', 84.4, 85.0),
    'in21k_ft_in1k': ('_in21ft1k', 83.7, 84.1),
    'in21k_ft_in1k_384': ('_384_in21ft1k', 85.0, 85.4),
    'in21k': ('_in21k', None, None),
}
# RIFormer with its distillation paradigm, 600 epochs (paper): size ->
# (top-1, drop path as PoolFormer's, mmpretrain's release hash)
RIFORMER_DISTILL = dict(
    s12=(76.9, 0.1, '6741ce71'), s24=(80.3, 0.1, 'fdab072a'),
    s36=(81.3, 0.2, 'fdfcd3b0'), m36=(82.6, 0.3, '2fcb9d9b'),
    m48=(82.8, 0.4, '2b9d1abf'))


def in1k_recipe(desc):
    """What an ImageNet config must hold: optimizer, lr, warm-up epochs (None:
    constant lr), grad clip, drop path, test resize and crop, top-1, epochs,
    total batch, Mixup/CutMix, classes."""
    family, arch, variant = desc['family'], desc['arch'], desc['variant']
    key = f'{family}_{arch}'
    if key in FAMILY_IN1K:
        opt, lr, warmup, clip, drop_path, resize, top1 = FAMILY_IN1K[key]
    else:  # PoolFormer v1 and its ablations
        opt, lr, warmup, clip = 'AdamW', 4e-3, 5, dict(max_norm=5.0)
        drop_path, top1 = IN1K_DROP_PATH[arch], None
        # crop_pct 0.9 for S, 0.95 for M models and the hybrid models whose
        # timm default_cfg says so (timm's defaults)
        resize = 236 if arch[0] == 'm' or variant in ('pppa', 'ppaa',
                                                      'ppff') else 248
    recipe = dict(opt=opt, lr=lr, warmup=warmup, clip=clip,
                  drop_path=drop_path, resize=resize, crop=224, top1=top1,
                  epochs=desc.get('epochs', 300), batch=4096, mixup=True,
                  classes=1000, head_dropout=0.)
    if variant == 'distill':
        top1, drop_path, _ = RIFORMER_DISTILL[arch]
        # mmpretrain's RIFormer configs: crop_pct 0.9 (S), 0.95 (M)
        recipe.update(top1=top1, drop_path=drop_path, epochs=600,
                      resize=236 if arch[0] == 'm' else 248)
    elif variant in BASELINE_VARIANTS:
        top1 = BASELINE_VARIANTS[variant][1 if family == 'convformer' else 2]
        recipe.update(top1=top1)
        if variant.endswith('384'):
            # finetune_<family>_s18_384.sh: 30 epochs at 384, batch 1024,
            # constant lr, no Mixup / CutMix, drop path 0.3, head dropout 0.4
            recipe.update(lr=5e-5 if opt == 'AdamW' else 1e-4, warmup=None,
                          drop_path=0.3, resize=384, crop=384, epochs=30,
                          batch=1024, mixup=False, head_dropout=0.4)
        if variant == 'in21k':
            recipe.update(classes=21841)
    return recipe


def describe(name):
    """What a config must hold, from its path: task, backbone class and
    arch, checkpoint URL and, for ablations and variants, the variant."""
    path = Path(name)
    stem = path.stem
    m = re.match(r'(retinanet|mask_rcnn|fpn|upernet|cascade_mask_rcnn|'
                 r'dino_4scale)_', stem)
    task = m.group(1) if m else 'in1k'
    m = re.fullmatch(r'mask2former_\w+_s\d+_(\w+)', stem)
    if m:  # the data set names the task: instance, panoptic or semantic
        task = f'mask2former_{m.group(1)}'
    folder = path.parent.name or 'poolformer'
    family, arch = re.search(
        r'(poolformerv2|identityformer|randformer|convformer|caformer|'
        r'riformer|poolformer)_(s12|s18|s24|s36|m36|m48)', stem).groups()
    desc = dict(task=task, folder=folder, family=family, arch=arch,
                variant=None)
    if folder == 'ablations':
        variant = re.search(r'_s12_([a-z0-9]+)_(in1k|coco)$', stem).group(1)
        desc['variant'] = variant
        epochs = re.fullmatch(r'(\d+)e', variant)
        if epochs:  # the epochs table: the base model, no release
            desc.update(epochs=int(epochs.group(1)), checkpoint=None,
                        type='PoolFormer')
            return desc
        ckpt = ABLATIONS[variant][3]
        desc['checkpoint'] = ckpt and ABLATION_RELEASE.format(ckpt)
        uses_pooling_class = variant.startswith(
            ('pool', 'layernorm', 'batchnorm', 'relu', 'silu', 'noresidual',
             'nomlp'))
        desc['type'] = 'PoolFormer' if uses_pooling_class else 'MetaFormer'
    elif family == 'poolformer':
        desc.update(type='PoolFormer', checkpoint=RELEASE.format(arch))
    elif family == 'riformer':
        desc.update(type='RIFormer', checkpoint=RIFORMER_RELEASE.replace(
            's12', arch).replace('6741ce71', RIFORMER_DISTILL[arch][2]))
        if stem.endswith('_distill_in1k'):
            desc['variant'] = 'distill'
    else:
        desc.update(type=CLASSES[family],
                    checkpoint=BASELINE_RELEASE.format(family, arch))
        m = re.search(r'_s18_(in1k_384|in21k_ft_in1k_384|in21k_ft_in1k|'
                      r'in21k)$', stem)
        if m:
            desc['variant'] = m.group(1)
            desc['checkpoint'] = desc['checkpoint'].replace(
                '.pth', BASELINE_VARIANTS[m.group(1)][0] + '.pth')
    return desc


def load(name, **backbone):
    cfg = Config.fromfile(str(CONFIG_DIR / name))
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


def import_get_flops():
    return load_tool('analysis_tools/get_flops.py')


def metafile_configs():
    """The configs the folders' metafiles list (OpenMMLab's model index)."""
    return sorted(model['Config'].removeprefix('configs/')
                  for metafile in sorted(CONFIG_DIR.glob('*/metafile.yml'))
                  for model in yaml.safe_load(metafile.read_text())['Models'])


def test_the_metafiles_list_the_configs_and_every_family_has_one():
    """The metafiles say which configs exist (tests/test_model_index.py
    holds each entry to its config): every folder config is listed, and
    every registered family has an ImageNet config among them."""
    from mmpoolformer.models import MetaFormer
    listed = metafile_configs()
    assert listed == CONFIGS
    families = [name for name, cls in mmpoolformer.MODELS.module_dict.items()
                if issubclass(cls, MetaFormer) and cls.arch_zoo]
    for family in families:
        assert any(Path(c).name.startswith(f'{family.lower()}_') and
                   c.endswith('_in1k.py') for c in listed), family


def alias_target(name):
    """The folder config an alias names: its only statement is
    ``_base_ = './<folder>/<name>.py'`` (comments aside)."""
    tree = ast.parse((CONFIG_DIR / name).read_text())
    assert len(tree.body) == 1, f'{name}: only a _base_ line, please'
    stmt = tree.body[0]
    assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
    assert isinstance(stmt.targets[0], ast.Name)
    assert stmt.targets[0].id == '_base_'
    assert isinstance(stmt.value, ast.Constant)
    base = stmt.value.value
    assert re.fullmatch(r'\./\w+/\w+\.py', base), base
    return base[2:]


@pytest.mark.parametrize('name', ALIASES)
def test_top_level_alias_loads_its_folder_config(name):
    """An alias holds only a ``_base_`` to a folder config and loads to
    the same config."""
    target = alias_target(name)
    assert target in CONFIGS
    alias = Config.fromfile(str(CONFIG_DIR / name))
    config = Config.fromfile(str(CONFIG_DIR / target))
    assert alias.filename != config.filename
    assert alias.to_dict() == config.to_dict()


def test_the_retinanet_s24_alias_is_kept():
    # `python tools/train.py configs/retinanet_poolformer_s24_coco.py` from
    # before the folders
    assert alias_target('retinanet_poolformer_s24_coco.py') == \
        'poolformer/retinanet_poolformer_s24_coco.py'


@pytest.mark.parametrize('name', CONFIGS)
def test_config_hyperparameters(name):
    desc = describe(name)
    task, arch = desc['task'], desc['arch']
    scope, opt, lr, wd, batch, loop = TASKS[task]
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert cfg.default_scope == scope
    # mmseg's Mask2Former head builds mmdet's modules (its base imports them)
    imports = ['mmpoolformer'] + ['mmdet.models'] * (
        task == 'mask2former_ade20k')
    assert cfg.custom_imports == dict(imports=imports,
                                      allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == f'mmpoolformer.{desc["type"]}'
    if isinstance(backbone.arch, str):
        assert backbone.arch == arch
    else:  # an explicit S12 arch dict (ablations of the token mixer / norm)
        assert (backbone.arch.depths, backbone.arch.embed_dims) == \
            (DEPTHS[arch], EMBED_DIMS[arch])
    assert backbone.frozen_stages == -1
    assert cfg.checkpoint_file == desc['checkpoint']
    if task == 'in1k':
        # trained from scratch with the backbone's own (timm) init
        assert 'init_cfg' not in backbone
        assert backbone.out_indices == (3, )
        recipe = in1k_recipe(desc)
        opt, lr, batch = recipe['opt'], recipe['lr'], recipe['batch']
        loop = dict(max_epochs=recipe['epochs'])
        assert backbone.drop_path_rate == recipe['drop_path']
        assert cfg.model.head.num_classes == \
            cfg.data_preprocessor.num_classes == recipe['classes']
        assert cfg.model.head.get('dropout', 0.) == recipe['head_dropout']
    else:
        assert backbone.init_cfg == dict(type='Pretrained',
                                         checkpoint=desc['checkpoint'])
        assert backbone.drop_path_rate == DROP_PATH.get(task, 0.)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (opt, lr, wd)
    assert set(optimizer) <= {'type', 'lr', 'weight_decay', 'eps', 'betas',
                              '_scope_'}  # no SGD momentum left over
    if opt == 'Lamb':
        assert (optimizer.betas, optimizer.eps) == ((0.9, 0.999), 1e-6)
    # fp32 as the official runs; AmpOptimWrapper would also fail on CPU
    assert cfg.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert cfg.auto_scale_lr.base_batch_size == batch
    assert cfg.train_dataloader.batch_size * (32 if scope == 'mmpretrain'
                                              else 8) == batch
    for key, value in loop.items():
        assert cfg.train_cfg[key] == value
    schedulers = cfg.param_scheduler
    if isinstance(schedulers, dict):  # mmdet's Mask2Former: one, no list
        schedulers = [schedulers]
    schedulers = {s['type']: s for s in schedulers}
    if task in MODERN_TASKS:
        modern_recipe(task, cfg, schedulers)
    elif task in ('retinanet', 'mask_rcnn'):
        assert schedulers['LinearLR']['end'] == 500
        assert schedulers['LinearLR']['start_factor'] == 0.001
        assert schedulers['MultiStepLR']['milestones'] == [8, 11]
        resize = [t for t in cfg.train_pipeline if t['type'] == 'Resize'][0]
        assert resize['scale'] == (1333, 800)
    elif task in ('fpn', 'upernet'):
        assert cfg.crop_size == (512, 512)
        assert cfg.model.decode_head.num_classes == 150
        poly = schedulers['PolyLR']
        if task == 'fpn':
            assert {'type': 'ResizeToMultiple', 'size_divisor': 32} in \
                cfg.test_dataloader.dataset.pipeline
            assert (poly['power'], poly['eta_min'], poly['end']) == \
                (0.9, 0., 40000)
        else:
            # Swin's: 1500 linear warm-up iterations from 1e-6 x lr, then
            # linear (power 1) decay to 0
            warmup = schedulers['LinearLR']
            assert (warmup['start_factor'], warmup['end']) == (1e-6, 1500)
            assert (poly['power'], poly['eta_min'], poly['begin'],
                    poly['end']) == (1.0, 0., 1500, 160000)
            assert optimizer.betas == (0.9, 0.999)
            assert cfg.train_cfg.val_interval == 16000
            keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
            assert keys['norm'] == keys['scale'] == dict(decay_mult=0.)
    else:
        if recipe['warmup'] is None:  # a fine-tuning: constant lr
            assert list(schedulers) == ['ConstantLR']
            assert schedulers['ConstantLR']['factor'] == 1.0
        else:
            # warm-up from timm's warmup_lr 1e-6, cosine to min_lr 1e-5 at
            # the end of training (no explicit end: mmengine's max_epochs)
            linear = schedulers['LinearLR']
            cosine = schedulers['CosineAnnealingLR']
            assert linear['start_factor'] * lr == pytest.approx(1e-6)
            assert linear['end'] == cosine['begin'] == recipe['warmup']
            assert cosine['eta_min'] == 1e-5
            assert 'end' not in cosine and 'T_max' not in cosine
        assert cfg.optim_wrapper.get('clip_grad') == recipe['clip']
        # no decay on norms, biases and other 1-D parameters (timm)
        paramwise = cfg.optim_wrapper.paramwise_cfg
        assert paramwise.norm_decay_mult == paramwise.bias_decay_mult == \
            paramwise.flat_decay_mult == 0.
        assert cfg.model.head.loss.label_smooth_val == 0.1
        if recipe['mixup']:
            assert [(a.type, a.alpha) for a in
                    cfg.model.train_cfg.augments] == \
                [('Mixup', 0.8), ('CutMix', 1.0)]
        else:
            assert cfg.model.train_cfg is None
        train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
        assert train['RandomResizedCrop']['scale'] == recipe['crop']
        assert train['RandAugment']['magnitude_level'] == 9
        assert train['RandomErasing']['erase_prob'] == 0.25
        for loader in (cfg.val_dataloader, cfg.test_dataloader):
            test = {t['type']: t for t in loader.dataset.pipeline}
            assert test['ResizeEdge']['scale'] == recipe['resize']
            assert test['CenterCrop']['crop_size'] == recipe['crop']


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_and_runs(name):
    desc = describe(name)
    task, arch = desc['task'], desc['arch']
    cfg = load(name)
    if task == 'cascade_mask_rcnn':
        # 20 proposals instead of 1000: three stages of 4-conv box heads and
        # the 4-conv mask heads cost half a minute per 300 proposals here
        cfg.model.test_cfg.rpn.max_per_img = 20
    model = build(cfg).eval()
    if task in MODERN_TASKS:
        # as a Runner does: DINO creates its level embeddings empty (the
        # memory's garbage, at times not finite) and fills them here
        model.init_weights()
    backbone = model.backbone
    assert type(backbone).__module__.startswith('mmpoolformer')
    assert type(backbone).__name__ == desc['type']
    assert backbone.depths == DEPTHS[arch]
    assert backbone.embed_dims == EMBED_DIMS[arch]
    dims = [backbone.embed_dims[i] for i in backbone.out_indices]

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        if task == 'in1k':
            assert backbone.out_indices == (3, )
            assert model.head.in_channels == dims[-1]
            out = model(x, mode='tensor')
            assert out.shape == (1, in1k_recipe(desc)['classes'])
            outs = [out]
        elif task in MODERN_TASKS:
            assert modern_head_in_channels(model, task) == dims
            outs = run_modern_head(model, task)
        else:
            if task == 'upernet':
                assert model.decode_head.in_channels == dims
                assert model.decode_head.in_index == [0, 1, 2, 3]
                aux = model.auxiliary_head
                assert aux.in_channels == dims[aux.in_index] == dims[2]
            else:
                assert model.neck.in_channels == dims
            if task == 'mask_rcnn':
                (cls, box, mask), = model(x, det_samples((64, 64)),
                                          mode='tensor')
                n = cls.shape[0]
                assert n > 0 and cls.shape == (n, 81) and box.shape == (n, 320)
                assert mask.shape == (min(n, 100), 80, 28, 28)
                outs = [cls, box, mask]
            elif task == 'retinanet':
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


def modern_head_in_channels(model, task):
    """The backbone channels a DINO / Cascade neck or a Mask2Former pixel
    decoder takes, from the layers it built."""
    if task == 'dino_4scale':  # ChannelMapper, whose extra level (the
        # 4th, by a stride-2 conv) takes the last input too
        neck = model.neck
        assert neck.extra_convs[0].conv.in_channels == \
            neck.convs[-1].conv.in_channels
        return [c.conv.in_channels for c in neck.convs]
    if not task.startswith('mask2former'):
        return list(model.neck.in_channels)
    head = model.decode_head if task == 'mask2former_ade20k' else \
        model.panoptic_head
    decoder = head.pixel_decoder
    # FPN-like lateral convs below the encoder's levels, then the encoder's
    # input convs; both listed from the coarsest level down
    return [c.conv.in_channels for c in decoder.lateral_convs][::-1] + \
        [c.conv.in_channels for c in decoder.input_convs][::-1]


def run_modern_head(model, task):
    """The network on one random image: raw outputs (tensor mode) where the
    mode exists for the head, else the prediction; their shapes."""
    x = torch.randn(1, 3, 64, 64)
    if task == 'cascade_mask_rcnn':
        # last stage's class scores and boxes (per class), and mask logits
        ((cls, ), (box, ), (mask, )), = model(x, det_samples((64, 64)),
                                              mode='tensor')
        n = cls.shape[0]
        assert 0 < n <= 20 and cls.shape == (n, 81) and box.shape == (n, 320)
        assert mask.shape == (n, 80, 28, 28)
        return [cls, box, mask]
    if task == 'dino_4scale':
        # the two-stage query selection picks 900 of the encoder's tokens:
        # 224x224 has 28² + 14² + 7² + 4² = 1045 (64x64: 85)
        x = torch.randn(1, 3, 224, 224)
        cls, box = model(x, det_samples((224, 224)), mode='tensor')
        # per decoder layer: 900 queries x 80 classes / 4 coordinates
        assert cls.shape == (6, 1, 900, 80) and box.shape == (6, 1, 900, 4)
        return [cls, box]
    if task == 'mask2former_ade20k':
        # mmseg's tensor mode calls the head without the data samples that
        # Mask2Former needs: the prediction, logits of 150 classes
        from mmseg.structures import SegDataSample
        meta = dict(img_shape=(64, 64), ori_shape=(64, 64),
                    pad_shape=(64, 64), batch_input_shape=(64, 64))
        sample, = model(x, [SegDataSample(metainfo=meta)], mode='predict')
        assert sample.seg_logits.data.shape == (150, 64, 64)
        assert sample.pred_sem_seg.data.shape == (1, 64, 64)
        return [sample.seg_logits.data]
    cls, masks = model(x, det_samples((64, 64)), mode='tensor')
    # the queries' first prediction and one per decoder layer (9): 100
    # queries x (classes + "no object"), masks at stride 4
    classes = 81 if task == 'mask2former_coco_instance' else 134
    assert [tuple(c.shape) for c in cls] == [(1, 100, classes)] * 10
    assert [tuple(m.shape) for m in masks] == [(1, 100, 16, 16)] * 10
    return [*cls, *masks]


def modern_recipe(task, cfg, schedulers):
    """The numbers of mmdet's / mmseg's recipe that a reader looks for
    (test_modern_head_config_is_its_recipe compares everything)."""
    optim = cfg.optim_wrapper
    train = cfg.train_dataloader.dataset.pipeline
    if task == 'cascade_mask_rcnn':
        warmup, steps = schedulers['LinearLR'], schedulers['MultiStepLR']
        assert (warmup['start_factor'], warmup['end']) == (0.001, 1000)
        assert steps['milestones'] == [27, 33]
        assert optim.constructor == \
            'mmpoolformer.LayerDecayOptimWrapperConstructor'
        assert optim.paramwise_cfg == dict(decay_rate=0.7,
                                           decay_type='layer_wise')
        assert optim.optimizer.betas == (0.9, 0.999)
        heads = cfg.model.roi_head.bbox_head
        assert [(h.num_shared_convs, h.loss_bbox.type, h.loss_bbox.loss_weight)
                for h in heads] == [(4, 'GIoULoss', 10.0)] * 3
        choice, = [t for t in train if t['type'] == 'RandomChoice']
        short, crop = choice.transforms
        assert short[0]['scales'] == [(s, 1333) for s in range(480, 801, 32)]
        assert crop[1]['crop_size'] == (384, 600)
    elif task == 'dino_4scale':
        assert schedulers['MultiStepLR']['milestones'] == [11]
        assert optim.clip_grad.max_norm == 0.1
        assert optim.paramwise_cfg.custom_keys == dict(
            backbone=dict(lr_mult=0.1))
        assert cfg.model.num_queries == 900 and cfg.model.as_two_stage
        assert cfg.model.neck.num_outs == 4
        assert any(t['type'] == 'RandomChoice' for t in train)
    else:
        assert (optim.optimizer.eps, optim.clip_grad.max_norm) == (1e-8, 0.01)
        assert optim.paramwise_cfg.norm_decay_mult == 0.
        assert optim.paramwise_cfg.custom_keys.backbone == dict(
            lr_mult=0.1, decay_mult=1.0)
        if task == 'mask2former_ade20k':
            head = cfg.model.decode_head
            assert (head.num_classes, head.num_queries) == (150, 100)
            assert cfg.crop_size == (512, 512)
            poly = schedulers['PolyLR']
            assert (poly['power'], poly['eta_min'], poly['end']) == \
                (0.9, 0, 160000)
            assert cfg.train_cfg.val_interval == 5000
        else:
            head = cfg.model.panoptic_head
            stuff = 53 if task == 'mask2former_coco_panoptic' else 0
            assert (head.num_things_classes, head.num_stuff_classes,
                    head.num_queries) == (80, stuff, 100)
            steps = schedulers['MultiStepLR']
            assert (steps['milestones'], steps['by_epoch']) == \
                ([327778, 355092], False)
            # large-scale jittering at 1024x1024
            types = {t['type']: t for t in train}
            assert types['RandomResize']['scale'] == (1024, 1024)
            assert types['RandomResize']['ratio_range'] == (0.1, 2.0)
            assert types['RandomCrop']['crop_size'] == (1024, 1024)
            pad, = cfg.model.data_preprocessor.batch_augments
            assert pad['size'] == (1024, 1024)


def _plain(obj):
    """A config value without the `_scope_` keys that loading adds."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != '_scope_'}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _leaves(obj, prefix=''):
    """{key path: value} of the nested dicts of a config (lists are
    values)."""
    if not isinstance(obj, dict) or not obj:
        return {prefix[:-1]: obj}
    out = {}
    for key, value in obj.items():
        out.update(_leaves(value, f'{prefix}{key}.'))
    return out


def _differences(a, b):
    a, b = _leaves(_plain(a.to_dict())), _leaves(_plain(b.to_dict()))
    return sorted(k for k in set(a) | set(b)
                  if k not in a or k not in b or a[k] != b[k])


def _explained(paths, allowed):
    """The allowed key paths (or prefixes of them) that explain ``paths``,
    and the paths nothing explains."""
    used, unexplained = set(), []
    for path in paths:
        hits = [p for p in allowed if path == p or path.startswith(p + '.')]
        used.update(hits)
        if not hits:
            unexplained.append(path)
    return used, unexplained


MODERN_S12 = sorted(n for n in CONFIGS if describe(n)['task'] in MODERN_TASKS
                    and describe(n)['family'] == 'poolformer'
                    and describe(n)['arch'] == 's12')


@pytest.mark.parametrize('name', MODERN_S12)
def test_modern_head_config_is_its_recipe(name, tmp_path):
    """Each S12 config of the newer heads is mmdet's / mmseg's config for a
    backbone of the same size, merged key by key, except for the backbone,
    its channels into the neck / pixel decoder, the optimizer's rules that
    name backbone modules (and the layer decay), the imports and the
    checkpoint hook; its header names that config and says that no result
    is published."""
    task = describe(name)['task']
    scope, recipe, allowed = MODERN_RECIPES[task]
    text = (CONFIG_DIR / name).read_text()
    assert recipe.split('/')[-1] in text.replace('\n# ', '')
    assert 'published: none' in text
    source = tmp_path / 'recipe.py'
    source.write_text(f"_base_ = '{scope}::{recipe}'\n")
    diffs = _differences(Config.fromfile(str(CONFIG_DIR / name)),
                         Config.fromfile(str(source)))
    allowed = COMMON_DIFFS + allowed
    used, unexplained = _explained(diffs, allowed)
    assert unexplained == []
    assert used == set(allowed)  # each allowed difference is one


MODERN_VARIANTS = sorted(n for n in CONFIGS
                         if describe(n)['task'] in MODERN_TASKS
                         and n not in MODERN_S12)


@pytest.mark.parametrize('name', MODERN_VARIANTS)
def test_modern_head_variant_changes_only_the_backbone(name):
    """S24, ConvFormer-S18 and CAFormer-S18 under the newer heads: the S12
    config with another backbone (same stage widths: nothing else changes)
    and the released weights it starts from; published: none."""
    desc = describe(name)
    s12 = next(n for n in MODERN_S12 if describe(n)['task'] == desc['task'])
    assert 'published: none' in (CONFIG_DIR / name).read_text()
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    diffs = _differences(cfg, Config.fromfile(str(CONFIG_DIR / s12)))
    assert {d.split('.')[0] for d in diffs} <= {'model', 'checkpoint_file'}
    assert {d.rsplit('.', 1)[0] for d in diffs if d.startswith('model.')} \
        <= {'model.backbone', 'model.backbone.init_cfg'}
    assert cfg.model.backbone.init_cfg.checkpoint == desc['checkpoint']


# ------------------------------------------------ PoolFormer-paper ablations
def _strip(cfg_dict):
    """A config without what an ablation may change: the backbone, the
    released-weights URL, config-level helper variables and the eval crop."""
    cfg_dict = dict(cfg_dict)
    cfg_dict['model'] = {k: v for k, v in cfg_dict['model'].items()
                         if k != 'backbone'}
    for key in ('checkpoint_file', 'pool', 'attention', 'layer_norm',
                'test_pipeline'):
        cfg_dict.pop(key, None)
    for key in ('val_dataloader', 'test_dataloader'):
        loader = dict(cfg_dict[key])
        loader['dataset'] = {k: v for k, v in loader['dataset'].items()
                             if k != 'pipeline'}
        cfg_dict[key] = loader
    return cfg_dict


ABLATION_IN1K = [f'ablations/poolformer_s12_{v}_in1k.py' for v in ABLATIONS]


@pytest.mark.parametrize('name', ABLATION_IN1K)
def test_ablation_changes_only_its_component(name):
    """Each ablation is PoolFormer-S12 with its recipe, bar one component:
    same recipe, same parameters outside the mixers and norms, the mixers,
    norms and activations of the paper's row, and its parameter count."""
    variant = describe(name)['variant']
    base = Config.fromfile(str(CONFIG_DIR / 'poolformer/poolformer_s12_in1k.py'))
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert _strip(cfg.to_dict()) == _strip(base.to_dict())
    text = (CONFIG_DIR / name).read_text()
    params_m, macs_g, top1, _ = ABLATIONS[variant]
    assert f'top-1 {top1}' in text and f'{macs_g}G MACs' in text

    model, reference = build(load(name)), build(base)
    mixers, (norm, eps), act, pool_size = ABLATION_STRUCTURE[variant]
    # the hybrid attention models' official position embedding
    pos_embed = {'pppa': 3, 'ppaa': 2}.get(variant)
    for i, stage in enumerate(model.backbone.stages):
        assert not stage.tokens_last  # NCHW maps, also for attention
        if i == pos_embed:
            grid = 224 // 2**(i + 2)
            assert stage.pos_embed.shape == (1, EMBED_DIMS['s12'][i], grid,
                                             grid)
        else:
            assert stage.pos_embed is None
        for block in stage.blocks:
            assert type(block.token_mixer).__name__ == mixers[i]
            assert block.residual == (variant != 'noresidual')
            assert block.has_mlp == (act is not None)
            if pool_size:
                if mixers[i] == 'Pooling':
                    assert block.token_mixer.pool.kernel_size == pool_size
            norms = [block.norm1, model.backbone.norm3] + (
                [block.norm2] if block.has_mlp else [])
            for n in norms:
                assert type(n).__name__ == norm
                assert getattr(n, 'eps', None) == eps
            if act is not None:
                assert type(block.mlp.act).__name__ == act
            if mixers[i] == 'Attention':
                # heads of 32 channels, qkv without and proj with bias
                dim = block.norm1.normalized_shape[0]
                assert block.token_mixer.num_heads == dim // 32
                assert block.token_mixer.qkv.bias is None
                assert block.token_mixer.proj.bias is not None

    def rest(m):
        # parameters outside the token mixers, the norms, the position
        # embeddings and (for the channel-MLP ablation) the MLP sub-block
        dropped = ('.token_mixer.', 'norm', 'pos_embed') + (
            ('.mlp.', 'layer_scale2') if variant == 'nomlp' else ())
        return {k: tuple(v.shape) for k, v in m.state_dict().items()
                if not any(d in k for d in dropped)}
    assert rest(model) == rest(reference)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1e6, 1) == params_m

    # one training step: a finite loss that reaches every trainable weight
    from mmpretrain.structures import DataSample
    model.train()
    samples = [DataSample().set_gt_label(label) for label in (1, 7)]
    loss = model.loss(torch.randn(2, 3, 64, 64), samples)['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters()
               if p.requires_grad)


@pytest.mark.parametrize('epochs', sorted(EPOCHS))
def test_epochs_table_configs(epochs):
    """PoolFormer-S12 and its recipe, only trained longer: the cosine
    schedule follows max_epochs to the end."""
    name = f'ablations/poolformer_s12_{epochs}e_in1k.py'
    base = Config.fromfile(str(CONFIG_DIR / 'poolformer/poolformer_s12_in1k.py'))
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    assert f'top-1 {EPOCHS[epochs]}' in (CONFIG_DIR / name).read_text()
    assert cfg.train_cfg.max_epochs == epochs
    for c in (cfg, base):
        c.train_cfg.pop('max_epochs')
        c.pop('checkpoint_file')
    assert cfg.to_dict() == base.to_dict()


def test_global_random_matrix_ablation_at_224():
    """The paper's 21M frozen parameters and 3.3G MACs: one frozen matrix
    per block over all tokens of its 224x224 grid."""
    name = 'ablations/poolformer_s12_globalrandom_in1k.py'
    model = build(load(name)).eval()
    frozen = {n: p for n, p in model.named_parameters() if not p.requires_grad}
    grids = [56, 28, 14, 7]
    assert sum(p.numel() for p in frozen.values()) == sum(
        (g * g)**2 * d for g, d in zip(grids, DEPTHS['s12'])) == 21_133_602
    assert all(n.endswith('token_mixer.random_matrix') for n in frozen)
    # 85 MB of fp32: the stage-1 matrices (3136^2) dominate
    assert sum(p.numel() * p.element_size() for p in frozen.values()) < 90e6
    for stage, g in zip(model.backbone.stages, grids):
        matrix = stage.blocks[0].token_mixer.random_matrix
        assert matrix.shape == (g * g, g * g)
        torch.testing.assert_close(matrix.sum(-1), torch.ones(g * g))

    rows = import_get_flops().get_flops(load(name), (224, 224))
    assert round(rows['whole model']['flops'] / 1e9, 1) == 3.3
    assert round(rows['backbone']['flops'] / 1e9, 1) == 3.3


# ------------------------------------------------------- MetaFormer family
FAMILY_CONFIGS = sorted(n for n in CONFIGS if n.startswith('metaformer/')
                        and describe(n)['task'] == 'in1k')


@pytest.mark.parametrize('name', [
    n for n in FAMILY_CONFIGS if not re.search(r'_(s24|s36|m36|m48)_', n)])
def test_family_in1k_configs(name):
    """Paper top-1 named in the comment, the family's optimizer built in
    mmpretrain's scope with no decay on 1-D parameters, the MetaFormer-
    baselines block design, and its official classifier head."""
    from mmengine.optim import build_optim_wrapper
    desc = describe(name)
    recipe = in1k_recipe(desc)
    if recipe['top1'] is not None:
        assert f'top-1 {recipe["top1"]}' in (CONFIG_DIR / name).read_text()
    cfg = load(name)
    if desc['variant'] == 'distill':  # the S12 student and teacher suffice
        cfg.model.teacher_checkpoint = None
    model = build(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(wrapper.optimizer).__name__ == recipe['opt']
    decay = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert decay[id(p)] == (0. if p.ndim == 1 else 0.05), n
    backbone = model.backbone
    block = backbone.stages[-1].blocks[0]
    if desc['family'] == 'riformer':
        assert type(block.token_mixer).__name__ == 'Affine'
        assert type(block.layer_scale1).__name__ == 'Scale'
        return
    # StarReLU MLPs without bias, residual scales in stages 3-4 only,
    # LayerNorm without bias in the stem and before each downsampling
    assert type(block.mlp.act).__name__ == 'StarReLU'
    assert block.mlp.fc1.bias is None
    assert [type(s.blocks[0].res_scale1).__name__
            for s in backbone.stages] == ['Identity'] * 2 + ['Scale'] * 2
    assert backbone.stem.norm.bias is None
    assert all(s.downsample.norm.bias is None for s in backbone.stages[1:])
    # the official head: no output norm on the map, LayerNorm (1e-6) on the
    # pooled vector, then an MLP head (ConvFormer, CAFormer) or a Linear
    assert isinstance(backbone.norm3, torch.nn.Identity)
    head = model.head
    assert type(head).__name__ == 'MetaFormerClsHead'
    assert head.norm.eps == 1e-6
    if desc['family'] in ('convformer', 'caformer'):
        assert (head.fc.fc1.out_features, head.fc.norm.eps,
                head.fc.drop.p) == (2048, 1e-5, recipe['head_dropout'])
    else:
        assert isinstance(head.fc, torch.nn.Linear)


def test_riformer_config_deploys_to_the_same_classifier():
    model = build(load('metaformer/riformer_s12_in1k.py')).eval()
    randomise_(model.backbone)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        before = model(x, mode='tensor')
        model.backbone.switch_to_deploy()
        after = model(x, mode='tensor')
    assert all(type(b.token_mixer).__name__ == 'IdentityMixer'
               for s in model.backbone.stages for b in s.blocks)
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-4)


def test_upernet_exempts_norms_and_scales_from_weight_decay():
    from mmengine.optim import build_optim_wrapper
    cfg = load('metaformer/upernet_convformer_s18_ade20k.py')
    model = build(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    named = dict(model.named_parameters())
    for n in ('backbone.stages.2.blocks.0.res_scale1.scale',
              'backbone.stages.0.blocks.0.token_mixer.act1.scale',
              'backbone.stages.0.blocks.0.norm1.weight',
              'backbone.norm2.bias'):
        assert decay[id(named[n])] == 0., n
    for n in ('backbone.stages.0.blocks.0.mlp.fc1.weight',
              'decode_head.conv_seg.weight'):
        assert decay[id(named[n])] == 0.01, n


# --------------------------------------------------------------- detection
def test_retinanet_trains_every_backbone_and_neck_parameter():
    """Stages 1-3 + FPN(start_level=0) equals the official all-stage +
    FPN(start_level=1) network, and leaves no parameter without a gradient,
    where the official layout leaves the stage-0 norm unused."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    ours = build(load('poolformer/retinanet_poolformer_s12_coco.py'))
    official = load('poolformer/retinanet_poolformer_s12_coco.py',
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
    # the GroupNorm bias in front of pooling cancels: exactly zero (fast
    # path), but it is in the graph, so DDP sees it used
    cancels = {n for n in ours_grads if n.endswith('norm1.bias')}
    missing = [n for n, g in ours_grads.items()
               if g is None or not torch.isfinite(g).all()
               or (not g.any() and n not in cancels)]
    assert missing == []
    unused = [n for n, g in grads(official).items() if g is None]
    assert unused == ['backbone.norm0.weight', 'backbone.norm0.bias']


def test_hybrid_retinanet_runs_attention_at_a_detection_size():
    """The hybrid RetinaNet on a non-square input whose stage-3 grid
    (8x12 tokens) differs from ImageNet's: attention is global over
    whatever grid comes; stage 2 (pooling) is unchanged."""
    name = 'ablations/retinanet_poolformer_s12_ppaa_coco.py'
    model = build(load(name)).eval()
    mixers = [type(s.blocks[0].token_mixer).__name__
              for s in model.backbone.stages]
    assert mixers == ['Pooling', 'Pooling', 'Attention', 'Attention']
    assert model.backbone.out_indices == (1, 2, 3)
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        feats = model.backbone(x)
        assert [tuple(f.shape) for f in feats] == [
            (1, 128, 16, 24), (1, 320, 8, 12), (1, 512, 4, 6)]
        assert all(torch.isfinite(f).all() for f in feats)
        # a change of one stage-3 input token reaches every stage-3 token
        # (6 pooling blocks would reach 6 tokens away, not the far corner)
        stage = model.backbone.stages[2]
        t = torch.randn(1, 128, 16, 24)
        u = t.clone()
        u[..., :2, :2] += 1.  # the top-left token after downsampling
        changed = (stage(u) - stage(t)).abs().sum(1)[0] > 0
    assert changed.shape == (8, 12) and changed.all()


# ------------------------------------------------------------------ FLOPs
def test_get_flops_counts_poolformer_s12(capsys):
    get_flops = import_get_flops()
    rows = get_flops.main([str(CONFIG_DIR / 'poolformer/poolformer_s12_in1k.py'),
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


def test_get_flops_counts_mask2former_segmentor():
    """mmseg's Mask2Former has no neck, and its tensor mode does not pass
    the head the data samples it needs: the whole model is counted through
    the head on the backbone's features, pixel decoder and transformer
    decoder included (a tiny one here)."""
    dims = [16, 32, 64, 96]
    cfg = load('poolformer/mask2former_poolformer_s12_ade20k.py',
               arch=dict(depths=[1, 1, 1, 1], embed_dims=dims))
    head = cfg.model.decode_head
    head.in_channels = dims
    head.pixel_decoder.encoder.num_layers = 1
    head.transformer_decoder.num_layers = 3
    rows = import_get_flops().get_flops(cfg, (64, 64))
    assert list(rows) == ['backbone', 'whole model']
    backbone, whole = rows['backbone'], rows['whole model']
    assert 0 < backbone['flops'] < whole['flops'] / 10
    assert 0 < backbone['params'] < whole['params']
