"""Our backbone builds from mmdet, mmseg and mmpretrain configs."""
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

import mmpoolformer
from mmpoolformer.models import PoolFormer
from mmpoolformer.stack import installed_stack

from helpers import TINY, randomise_

BACKBONE = dict(type='mmpoolformer.PoolFormer', arch=TINY)
CHANNELS = TINY['embed_dims']

DET_MODEL = dict(
    type='RetinaNet',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[0., 0., 0.],
                           std=[1., 1., 1.], pad_size_divisor=32),
    backbone=BACKBONE,
    neck=dict(type='FPN', in_channels=CHANNELS, out_channels=16,
              start_level=1, add_extra_convs='on_input', num_outs=5),
    bbox_head=dict(
        type='RetinaHead', num_classes=3, in_channels=16, feat_channels=16,
        stacked_convs=1,
        anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                              scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                              strides=[8, 16, 32, 64, 128]),
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0] * 4,
                        target_stds=[1.0] * 4),
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                      alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)))
SEG_MODEL = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', size=(64, 64)),
    backbone=BACKBONE,
    neck=dict(type='FPN', in_channels=CHANNELS, out_channels=16, num_outs=4),
    decode_head=dict(type='FPNHead', in_channels=[16] * 4, in_index=[0, 1, 2, 3],
                     feature_strides=[4, 8, 16, 32], channels=8, num_classes=5,
                     loss_decode=dict(type='CrossEntropyLoss')))
CLS_MODEL = dict(
    type='ImageClassifier',
    backbone=dict(BACKBONE, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=CHANNELS[-1]))


def build_in_scope(scope, model_cfg, tmp_path):
    """Write a config file as a user would, load it and build its model."""
    path = tmp_path / f'{scope}_cfg.py'
    path.write_text(f'default_scope = {scope!r}\nmodel = {model_cfg!r}\n')
    cfg = Config.fromfile(str(path))
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    return registry.build(cfg.model)


@pytest.mark.parametrize('scope, model_cfg', [
    ('mmdet', DET_MODEL), ('mmseg', SEG_MODEL), ('mmpretrain', CLS_MODEL)])
def test_prefixed_name_builds_in_each_scope(scope, model_cfg, tmp_path):
    model = build_in_scope(scope, model_cfg, tmp_path).eval()
    assert type(model.backbone) is PoolFormer
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64), mode='tensor')
    flat = out if isinstance(out, torch.Tensor) else out[0]
    flat = flat if isinstance(flat, torch.Tensor) else flat[0]
    assert torch.isfinite(flat).all()


def test_mmpretrain_poolformer_is_not_replaced():
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    init_default_scope('mmpretrain')
    assert MMPRETRAIN_MODELS.get('PoolFormer') is MMPretrainPoolFormer
    assert MMPRETRAIN_MODELS.get('mmpoolformer.PoolFormer') is PoolFormer
    assert mmpoolformer.MODELS.get('PoolFormer') is PoolFormer


def test_custom_imports_register_the_scoped_names(tmp_path):
    """In a fresh interpreter: the config's custom_imports alone register
    us; our names are scoped only, so a plain ``PoolFormer`` in an mmdet
    config is mmengine's unknown-type error, not a class of ours."""
    for scope, model_cfg in (('mmdet', DET_MODEL), ('mmseg', SEG_MODEL)):
        (tmp_path / f'{scope}.py').write_text(
            f'default_scope = {scope!r}\n'
            "custom_imports = dict(imports=['mmpoolformer'], "
            'allow_failed_imports=False)\n'
            f'model = {model_cfg!r}\n')
    script = textwrap.dedent(f'''
        import importlib, sys
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        assert 'mmpoolformer' not in sys.modules
        for scope in ('mmdet', 'mmseg'):
            cfg = Config.fromfile({str(tmp_path)!r} + f'/{{scope}}.py')
            init_default_scope(scope)
            registry = importlib.import_module(scope + '.registry').MODELS
            model = registry.build(cfg.model)
            print(scope, type(model.backbone).__module__)
            print(scope, registry.get('PoolFormer'))
    ''')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.strip().splitlines()
             if line.startswith(('mmdet ', 'mmseg '))]
    assert lines == ['mmdet mmpoolformer.models.backbones.poolformer',
                     'mmdet None',
                     'mmseg mmpoolformer.models.backbones.poolformer',
                     'mmseg None']


MY_MIXERS = '''
import torch.nn.functional as F
from mmpoolformer.models.backbones.token_mixers import Pooling, TokenMixer
from mmpoolformer.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register_module()
class MaxPoolMixer(TokenMixer):
    """A mixer mmpoolformer does not know: max pooling minus the input."""

    def __init__(self, dim, pool_size=3):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x):
        return F.max_pool2d(x, self.pool_size, 1, self.pool_size // 2) - x


@TOKEN_MIXERS.register_module()
class DoublePooling(Pooling):
    """A subclass of Pooling with another forward: computed as written,
    never as average pooling."""

    def forward(self, x):
        return 2 * super().forward(x)
'''


def test_a_users_token_mixer_by_custom_imports(tmp_path, monkeypatch):
    """A module of the user's, imported by ``custom_imports``, registers
    mixers that an arch dict then names; every formulation computes them as
    their ``forward`` says."""
    (tmp_path / 'my_mixers.py').write_text(MY_MIXERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    arch = dict(TINY, token_mixers=[dict(type='MaxPoolMixer'),
                                    dict(type='DoublePooling')] * 2)
    (tmp_path / 'cfg.py').write_text(
        "custom_imports = dict(imports=['mmpoolformer', 'my_mixers'], "
        'allow_failed_imports=False)\n'
        f"model = dict(type='mmpoolformer.MetaFormer', arch={arch!r})\n")
    cfg = Config.fromfile(str(tmp_path / 'cfg.py'))
    model = randomise_(mmpoolformer.MODELS.build(cfg.model)).eval()
    mixers = [type(s.blocks[0].token_mixer).__name__ for s in model.stages]
    assert mixers == ['MaxPoolMixer', 'DoublePooling'] * 2
    x = torch.randn(1, 3, 64, 64)
    outs = {}
    with torch.no_grad():
        for formulation in ('plain', 'lean', 'fused', 'auto'):
            model.formulation = formulation
            outs[formulation] = model(x)
    for formulation, out in outs.items():
        for a, b in zip(out, outs['plain']):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Pooling's own forms would have computed another function
    model.stages[1].blocks[0].token_mixer.__class__ = \
        mmpoolformer.TOKEN_MIXERS.get('Pooling')
    with torch.no_grad():
        assert not torch.allclose(model(x)[3], outs['plain'][3], atol=1e-3)


def test_an_unknown_token_mixer_names_the_registry():
    with pytest.raises(ValueError, match=r"Unknown token mixer 'MaxPool'.*"
                       r"TOKEN_MIXERS.*custom_imports"):
        mmpoolformer.MODELS.build(dict(
            type='mmpoolformer.MetaFormer',
            arch=dict(TINY, token_mixers=dict(type='MaxPool'))))


def run_fresh(script):
    """Run ``script`` in a fresh interpreter; return its stdout lines."""
    result = subprocess.run([sys.executable, '-c', textwrap.dedent(script)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def test_import_only_registers():
    """After ``import mmpoolformer`` (and every lazy registration of ours)
    each registered class of mmengine, mmdet, mmseg and mmpretrain is what
    it was, the root CheckpointHook included, mmengine's checkpoint loader
    is its own, no class of ours is in their registries, and outside our
    registries only mmengine's table of config scopes changes: our scope
    (for ``mmpoolformer::`` bases) and, on the onedl fork, mmseg's."""
    lines = run_fresh('''
        import importlib
        import mmengine.registry as root
        from mmengine.runner.checkpoint import CheckpointLoader
        def snapshot():
            found = {}
            for scope in ('mmengine', 'mmdet', 'mmseg', 'mmpretrain'):
                module = root if scope == 'mmengine' else \\
                    importlib.import_module(scope + '.registry')
                for registry in vars(module).values():
                    if isinstance(registry, root.Registry):
                        registry.import_from_location()
                        found.update({(id(registry), key): cls for key, cls
                                      in registry.module_dict.items()})
            return found
        from mmengine.config.utils import MODULE2PACKAGE
        scopes = dict(MODULE2PACKAGE)
        before = snapshot()
        loader = CheckpointLoader._get_checkpoint_loader('/a/b.pth')
        import mmpoolformer
        mmpoolformer.register_all_modules()
        after = snapshot()
        print('changed', [k for k in before if after.get(k) is not before[k]])
        print('ours', sorted(
            (registry == id(root.MODELS), key) for (registry, key), cls
            in after.items() if cls.__module__.startswith('mmpoolformer')))
        print('scopes', sorted(set(MODULE2PACKAGE.items()) - set(scopes.items())))
        print('hook', root.HOOKS.get('CheckpointHook').__module__)
        print('loader', CheckpointLoader._get_checkpoint_loader('/a/b.pth')
              is loader)
    ''')
    # (onedl-mmdet prints a notice of its own on import)
    lines = [line for line in lines
             if line.split(' ', 1)[0] in ('changed', 'ours', 'scopes', 'hook',
                                          'loader')]
    # the fork's mmseg distribution is onedl-mmsegmentation: mmseg:: bases
    # resolve by the module name there (mmpoolformer.stack)
    scopes = [('mmpoolformer', 'mmpoolformer')] + (
        [('mmseg', 'mmseg')] if installed_stack() == 'onedl' else [])
    assert lines == ['changed []', 'ours []', f'scopes {scopes}',
                     'hook mmengine.hooks.checkpoint_hook', 'loader True']


def test_import_and_backbone_build_import_no_downstream_library():
    """``import mmpoolformer`` and building a backbone by its scoped name
    import neither mmdet, mmseg nor mmpretrain; the classifier head imports
    mmpretrain when a lookup names it."""
    lines = run_fresh('''
        import sys
        import mmpoolformer
        from mmengine.registry import MODELS
        def loaded():
            return sorted(m for m in ('mmdet', 'mmseg', 'mmpretrain')
                          if m in sys.modules)
        print(loaded())
        MODELS.build(dict(type='mmpoolformer.PoolFormer', arch='s12'))
        print(loaded())
        head = MODELS.build(dict(type='mmpoolformer.MetaFormerClsHead',
                                 num_classes=3, in_channels=8))
        print(type(head).__name__, 'mmpretrain' in loaded())
    ''')
    assert lines == ['[]', '[]', 'MetaFormerClsHead True']
