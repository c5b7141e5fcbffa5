"""Released MetaFormer-baselines classifiers classify: MetaFormerClsHead is
the official head (mean pool -> LayerNorm -> MlpHead, or -> Linear), and a
whole official or timm checkpoint, converted with its head (the default), gives
through ``mmpretrain.apis.init_model(config, converted)`` the logits of timm's
model with the same weights; ``tools/test.py`` evaluates it.

As in tests/test_convert_checkpoint.py, the official checkpoints are made
from random timm models (no download here) and vouched for by timm's own
``checkpoint_filter_fn``. timm's MlpHead normalises with eps 1e-6 where the
official one (``nn.LayerNorm``) has 1e-5, as our head: the reference is
timm's model with that one eps set to the official value (with timm's own
eps these random weights differ by 2e-4 relative).
"""
import pytest
import torch
from mmengine.config import Config
from test_configs import CONFIG_DIR, build
from test_convert_checkpoint import (
    assert_genuine_official,
    official_metaformer_layout,
    timm_reference,
)

import mmpoolformer

from helpers import load_tool, randomise_, rel_error
from test_training import cls_opts, read_test_metrics, run_tool, write_imagenet

converter = load_tool('model_converters/convert_checkpoint.py')
X = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(5))
REL_TOL = 1e-4  # the documented bound; measured about 1e-6 (printed)


def head(**kwargs):
    from mmpoolformer.models.heads import MetaFormerClsHead
    return MetaFormerClsHead(**kwargs).eval()


def test_mlp_head_is_the_official_formula():
    h = randomise_(head(num_classes=10, in_channels=16, dropout=0.5))
    x = torch.randn(3, 16, 5, 7)
    with torch.no_grad():
        pooled = torch.nn.functional.layer_norm(
            x.mean((2, 3)), (16, ), h.norm.weight, h.norm.bias, 1e-6)
        hidden = torch.relu(pooled @ h.fc.fc1.weight.t() + h.fc.fc1.bias)**2
        hidden = torch.nn.functional.layer_norm(
            hidden, (64, ), h.fc.norm.weight, h.fc.norm.bias, 1e-5)
        expected = hidden @ h.fc.fc2.weight.t() + h.fc.fc2.bias
        torch.testing.assert_close(h((x, )), expected)
        # a pooled (B, C) input (behind GlobalAveragePooling) is the same
        torch.testing.assert_close(h((x.mean((2, 3)), )), expected)
    assert h.fc.fc1.out_features == 64 and h.fc.drop.p == 0.5
    linear = head(num_classes=10, in_channels=16, mlp_ratio=None)
    assert isinstance(linear.fc, torch.nn.Linear)
    with pytest.raises(ValueError, match='in_channels=16'):
        h((torch.randn(3, 8, 5, 7), ))


def test_head_trains_in_a_classifier_config():
    mmpoolformer.register_all_modules()
    cfg = Config.fromfile(
        str(CONFIG_DIR / 'metaformer' / 'convformer_s18_in1k.py'))
    cfg.model.backbone.update(arch=dict(depths=[1, 1, 1, 1],
                                        embed_dims=[8, 16, 24, 32]))
    cfg.model.head.update(in_channels=32, num_classes=3)
    cfg.model.train_cfg = None
    model = build(cfg)
    from mmpretrain.structures import DataSample
    samples = [DataSample().set_gt_label(i) for i in range(3)]
    losses = model.loss(torch.randn(3, 3, 64, 64), samples)
    assert set(losses) == {'loss'} and losses['loss'] > 0
    losses['loss'].backward()
    assert model.head.fc.fc2.weight.grad.abs().sum() > 0


CLASSIFIERS = {  # timm model -> our config
    'convformer_s18': 'metaformer/convformer_s18_in1k.py',
    'caformer_s18': 'metaformer/caformer_s18_in1k.py',
    'poolformerv2_s12': 'metaformer/poolformerv2_s12_in1k.py',
}


@pytest.mark.parametrize('name, layout', [
    ('convformer_s18', 'official'), ('caformer_s18', 'official'),
    ('caformer_s18', 'timm'), ('poolformerv2_s12', 'official')])
def test_released_classifier_equals_timm(name, layout, tmp_path):
    from mmpretrain.apis import init_model
    ref = timm_reference(name)
    if hasattr(ref.head.fc, 'norm'):
        ref.head.fc.norm.eps = 1e-5  # the official MlpHead's
    state = ref.state_dict()
    if layout == 'official':
        state = official_metaformer_layout(state)
        assert_genuine_official(state, ref)
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(state, src)
    meta = converter.main([str(src), str(dst), '--with-head', '--arch',
                           name])
    assert meta['with_head'] and meta['source_format'] == (
        'official-metaformer' if layout == 'official' else 'timm')
    saved = torch.load(dst, weights_only=False)['state_dict']

    config = str(CONFIG_DIR / CLASSIFIERS[name])
    model = init_model(config, str(dst), device='cpu')
    # every weight of the classifier comes from the checkpoint
    own = {k for k in model.state_dict() if not k.startswith(
        'data_preprocessor.')}
    assert set(saved) == own
    with torch.no_grad():
        expected = ref(X)
        got = model(X, mode='tensor')
    err = rel_error(got, expected)
    print(f'\n{name} {layout} classifier vs timm: rel {err:.2e}, max abs '
          f'{(got - expected).abs().max():.2e}')
    assert got.shape == (2, 1000) and err <= REL_TOL


def test_converted_classifier_evaluates_with_test_py(tmp_path):
    """tools/test.py on the converted whole ConvFormer-S18 (1000 classes) and
    synthetic ImageNet-layout data of three classes: a real top-1."""
    ref = timm_reference('convformer_s18')
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official_metaformer_layout(ref.state_dict()), src)
    converter.main([str(src), str(dst), '--with-head'])
    data_root = write_imagenet(tmp_path / 'data')
    config = CONFIG_DIR / 'metaformer' / 'convformer_s18_in1k.py'
    opts = cls_opts(Config.fromfile(str(config)), data_root) + [
        'model.head.num_classes=1000', 'data_preprocessor.num_classes=1000']
    run_tool('test.py', config, dst, '--work-dir', tmp_path / 'test',
             '--cfg-options', *opts)
    metrics = read_test_metrics(tmp_path / 'test')
    print(f'\nconverted ConvFormer-S18 via tools/test.py: {metrics}')
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
