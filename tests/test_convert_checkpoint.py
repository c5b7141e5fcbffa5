"""Official MetaFormer-baseline checkpoints, and every layout through
``tools/model_converters/convert_checkpoint.py``.

No released weights can be downloaded here, so the official sail-sg/metaformer
checkpoints are made from random timm models by renaming the keys back
(:func:`official_metaformer_layout`). timm's own ``checkpoint_filter_fn``,
which loads the released files, must map each one exactly back onto the timm
model: timm, not this file, vouches for the layout. Our backbone, loaded
through ``init_cfg=Pretrained`` and through the converter, must then give
timm's stage maps.
"""
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from mmpoolformer import models
from mmpoolformer.checkpoint import FAMILIES, CheckpointMismatchError, detect_format

from helpers import load_tool, official_layout, randomise_

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'model_converters' / 'convert_checkpoint.py'
TOL = 1e-5
GEN = torch.Generator().manual_seed(3)
X = torch.randn(1, 3, 65, 97, generator=GEN)  # odd, non-square
X224 = torch.randn(1, 3, 224, 224, generator=GEN)  # RandFormer's fixed grid


converter = load_tool('model_converters/convert_checkpoint.py')


def convert(*argv):
    return converter.main([str(a) for a in argv])


def fails(*argv):
    """The message the converter stops with (SystemExit with a string)."""
    with pytest.raises(SystemExit) as info:
        convert(*argv)
    assert isinstance(info.value.code, str), info.value.code
    return info.value.code


# ------------------------------------------------ the official layout
class OfficialRandomMixing(nn.Module):
    """sail-sg/metaformer's ``RandomMixing`` (timm has no RandFormer), on
    timm's NCHW maps: a fixed (N, N) row-softmax matrix over the tokens."""
    num_tokens = 196

    def __init__(self, num_tokens=None, **kwargs):
        super().__init__()
        n = num_tokens or self.num_tokens
        self.random_matrix = nn.Parameter(
            torch.softmax(torch.rand(n, n), dim=-1), requires_grad=False)

    def forward(self, x):
        B, C, H, W = x.shape
        x = torch.einsum('mn,bnc->bmc', self.random_matrix,
                         x.reshape(B, C, H * W).transpose(1, 2))
        return x.transpose(1, 2).reshape(B, C, H, W)


class OfficialRandomMixing49(OfficialRandomMixing):
    num_tokens = 49


def timm_reference(name):
    """A random timm MetaFormer; IdentityFormer and RandFormer are timm's
    PoolFormerV2 with the official mixers, as in sail-sg/metaformer."""
    import timm
    mixers = dict(
        identityformer_s12=nn.Identity,
        randformer_s12=[nn.Identity, nn.Identity, OfficialRandomMixing,
                        OfficialRandomMixing49])
    if name in mixers:
        model = timm.create_model('poolformerv2_s12', token_mixers=mixers[name])
    else:
        model = timm.create_model(name)
    return randomise_(model).eval()


OFFICIAL_KEY = re.compile(r'(downsample_layers\.\d\.(conv|pre_norm|post_norm)'
                          r'|stages\.\d\.\d+|norm|head)\.')


def official_metaformer_layout(timm_state):
    """timm -> sail-sg/metaformer names; the official model is channels-last,
    so its pointwise convs and MLPs are Linear weights (O, I)."""
    renames = [(r'^stem\.conv\.', 'downsample_layers.0.conv.'),
               (r'^stem\.norm\.', 'downsample_layers.0.post_norm.'),
               (r'^stages\.(\d)\.downsample\.norm\.', r'downsample_layers.\1.pre_norm.'),
               (r'^stages\.(\d)\.downsample\.conv\.', r'downsample_layers.\1.conv.'),
               (r'^stages\.(\d)\.blocks\.(\d+)\.', r'stages.\1.\2.'),
               (r'^head\.norm\.', 'norm.'), (r'^head\.fc\.', 'head.')]
    out = {}
    for key, value in timm_state.items():
        for pattern, repl in renames:
            key = re.sub(pattern, repl, key)
        if re.search(r'(pwconv\d|fc\d)\.weight$', key) and value.dim() == 4:
            value = value.flatten(1)
        out[key] = value.clone()
    return out


def assert_genuine_official(official, ref):
    """timm's loader of the released files maps it back exactly."""
    from timm.models.metaformer import checkpoint_filter_fn
    assert all(OFFICIAL_KEY.match(k) for k in official), \
        [k for k in official if not OFFICIAL_KEY.match(k)]
    linear = [v.dim() for k, v in official.items()
              if re.search(r'(pwconv\d|fc\d)\.weight$', k)]
    assert linear and set(linear) == {2}  # nn.Linear in the official code
    expected = ref.state_dict()
    back = checkpoint_filter_fn(dict(official), ref)
    assert list(back) == list(expected)
    for key, value in expected.items():
        assert back[key].shape == value.shape and torch.equal(back[key], value), key


def stage_maps(model, x):
    """The four raw stage outputs (timm's features, ours before norm{i})."""
    maps = []
    hooks = [s.register_forward_hook(lambda m, i, o: maps.append(o))
             for s in model.stages]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return maps


def build(name, checkpoint=None, **kwargs):
    family, preset = name.split('_')
    init_cfg = dict(type='Pretrained', checkpoint=str(checkpoint)) \
        if checkpoint else None
    model = getattr(models, FAMILIES[family])(preset, init_cfg=init_cfg,
                                               **kwargs)
    model.init_weights()
    # the plain formulation repeats the references' arithmetic, so a wrong
    # key mapping is the only way to miss 1e-5 (tests/test_models.py holds
    # the other formulations to the plain one)
    model.formulation = 'plain'
    return model.eval()


def assert_close(label, got, expected):
    assert len(got) == len(expected) == 4
    for i, (a, b) in enumerate(zip(got, expected)):
        diff = (a - b).abs().max().item()
        print(f'{label} stage {i}: max abs diff {diff:.2e}')
        assert a.shape == b.shape and diff <= TOL, (label, i, diff)


@pytest.mark.parametrize('name', [
    'poolformerv2_s12', 'identityformer_s12', 'randformer_s12',
    'convformer_s18', 'caformer_s18'])
def test_official_metaformer_checkpoint(name, tmp_path):
    ref = timm_reference(name)
    official = official_metaformer_layout(ref.state_dict())
    assert_genuine_official(official, ref)
    assert detect_format(official) == 'official-metaformer'
    src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}_mm.pth'
    torch.save(official, src)
    x = X224 if name.startswith('randformer') else X
    expected = stage_maps(ref, x)

    assert_close(f'{name} official via init_cfg',
                 stage_maps(build(name, src), x), expected)
    if name == 'convformer_s18':  # into another family: one clear error
        with pytest.raises(CheckpointMismatchError) as err:
            build('caformer_s18', src)
        for text in ('official-metaformer format', "CAFormer arch 's18'",
                     'missing keys', 'stages.2.blocks.0.token_mixer.qkv.weight',
                     'unexpected keys',
                     'stages.2.blocks.0.token_mixer.pwconv1.weight'):
            assert text in str(err.value), (text, str(err.value))

    if name.split('_')[0] in ('poolformerv2', 'identityformer'):
        # parameter-free mixers: the keys cannot tell these two apart
        message = fails(src, dst)
        assert 'poolformerv2_s12 and identityformer_s12' in message
        assert '--arch' in message and not dst.exists()
        meta = convert(src, dst, '--arch', name)
    else:
        meta = convert(src, dst)
    assert meta['arch'] == name
    assert meta['source_format'] == 'official-metaformer'
    assert meta['with_head'] and meta['num_classes'] == 1000
    saved = torch.load(dst)
    # the official ``norm`` acts on the pooled vector: no output norm of
    # ours but the head's norm; the head is kept (and ignored by init_cfg)
    assert all(k.startswith(('backbone.', 'head.')) and
               not k.startswith('backbone.norm') for k in saved['state_dict'])
    assert 'head.norm.weight' in saved['state_dict']
    assert saved['meta'] == meta
    assert_close(f'{name} official via CLI',
                 stage_maps(build(name, dst), x), expected)


# ------------------------------------------------ the other layouts
@pytest.fixture(scope='module')
def mmpretrain_s12():
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    model = randomise_(MMPretrainPoolFormer('s12', out_indices=(0, 2, 4, 6)))
    model.eval()  # mmpretrain's train() override returns None
    return model


def outputs(model, x=X):
    with torch.no_grad():
        return model(x)


def test_official_poolformer_and_mmpretrain_via_cli(tmp_path, mmpretrain_s12):
    official = tmp_path / 'poolformer_s12.pth.tar'
    torch.save(official_layout(mmpretrain_s12.state_dict()), official)
    meta = convert(official, tmp_path / 'a.pth')
    assert (meta['arch'], meta['source_format']) == ('poolformer_s12', 'official')
    # the official file carries only the last output norm (``norm``)
    got, expected = outputs(build('poolformer_s12', tmp_path / 'a.pth')), \
        outputs(mmpretrain_s12)
    diff = (got[3] - expected[3]).abs().max().item()
    print(f'poolformer_s12 official via CLI stage 3: max abs diff {diff:.2e}')
    assert diff <= TOL

    state = {f'backbone.{k}': v for k, v in mmpretrain_s12.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 512)
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'mmpretrain.pth')
    # a head that does not fit our PoolFormer classifier (no bias here) is
    # not kept silently: it stops, naming the flag that drops it
    message = fails(tmp_path / 'mmpretrain.pth', tmp_path / 'b.pth')
    assert "missing ['head.fc.bias']" in message and \
        '--backbone-only' in message and not (tmp_path / 'b.pth').exists()
    meta = convert(tmp_path / 'mmpretrain.pth', tmp_path / 'b.pth',
                   '--backbone-only')
    assert (meta['arch'], meta['source_format']) == ('poolformer_s12', 'mmpretrain')
    assert not meta['with_head']
    assert_close('poolformer_s12 mmpretrain via CLI',
                 outputs(build('poolformer_s12', tmp_path / 'b.pth')),
                 outputs(mmpretrain_s12))


@pytest.mark.parametrize('deploy', [False, True])
def test_mmpretrain_riformer_via_cli(tmp_path, deploy):
    from mmpretrain.models import RIFormer as MMPretrainRIFormer
    ref = randomise_(MMPretrainRIFormer('s12', out_indices=(0, 2, 4, 6)))
    ref.eval()
    if deploy:
        ref.switch_to_deploy()
    state = {f'backbone.{k}': v for k, v in ref.state_dict().items()}
    torch.save({'state_dict': state}, tmp_path / 'riformer.pth')
    meta = convert(tmp_path / 'riformer.pth', tmp_path / 'mm.pth')
    assert (meta['arch'], meta['deploy']) == ('riformer_s12', deploy)
    model = build('riformer_s12', tmp_path / 'mm.pth', deploy=deploy)
    assert_close(f'riformer_s12 mmpretrain deploy={deploy} via CLI',
                 outputs(model), outputs(ref))


def test_timm_poolformer_via_cli(tmp_path):
    import timm
    ref = randomise_(timm.create_model('poolformer_s12')).eval()
    torch.save(ref.state_dict(), tmp_path / 'timm.pth')
    meta = convert(tmp_path / 'timm.pth', tmp_path / 'mm.pth')
    assert (meta['arch'], meta['source_format']) == ('poolformer_s12', 'timm')
    assert_close('poolformer_s12 timm via CLI',
                 stage_maps(build('poolformer_s12', tmp_path / 'mm.pth'), X),
                 stage_maps(ref, X))


def test_own_checkpoint_via_cli(tmp_path):
    own = randomise_(models.PoolFormer('s12')).eval()
    state = {f'backbone.{k}': v for k, v in own.state_dict().items()}
    torch.save({'state_dict': state, 'meta': {}}, tmp_path / 'own.pth')
    # a deployed RIFormer has exactly PoolFormer's keys
    message = fails(tmp_path / 'own.pth', tmp_path / 'a.pth')
    assert 'poolformer_s12 and riformer_s12' in message
    meta = convert(tmp_path / 'own.pth', tmp_path / 'a.pth',
                   '--arch', 'poolformer_s12')
    assert meta['source_format'] == 'mmpoolformer'
    assert_close('poolformer_s12 own via CLI',
                 outputs(build('poolformer_s12', tmp_path / 'a.pth')),
                 outputs(own))
    # what the converter wrote names its arch: no --arch needed again
    assert convert(tmp_path / 'a.pth', tmp_path / 'b.pth')['arch'] == \
        'poolformer_s12'


def test_layouts_are_told_apart(mmpretrain_s12):
    import timm
    timm_state = timm.create_model('convformer_s18').state_dict()
    ours = models.ConvFormer('s18').state_dict()
    assert detect_format(timm_state) == 'timm'
    assert detect_format(ours) == 'mmpoolformer'
    assert detect_format({f'backbone.{k}': v for k, v in ours.items()}) == \
        'mmpoolformer'
    assert detect_format(official_metaformer_layout(timm_state)) == \
        'official-metaformer'
    assert detect_format(official_layout(mmpretrain_s12.state_dict())) == \
        'official'
    assert detect_format(mmpretrain_s12.state_dict()) == 'mmpretrain'


# ------------------------------------------------ classifier heads
class LogRecords(logging.Handler):
    """The records of mmengine's current logger while in the block."""

    def __enter__(self):
        from mmengine.logging import MMLogger
        self.records, self.logger = [], MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)

    def emit(self, record):
        self.records.append(record)

    def text(self, level=logging.WARNING):
        return '\n'.join(r.getMessage() for r in self.records
                         if r.levelno >= level)


def test_classifier_head_is_kept_by_default(tmp_path, capsys):
    """A timm ConvFormer-S18 classifier converted as a new user would (no
    flag) keeps its head: init_model on the classifier config gives timm's
    logits. --backbone-only drops it and says so, and loading that headless
    file into the classifier config warns, naming the flag; the head-ful
    file still loads into a RetinaNet backbone with no warning."""
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmpretrain.apis import init_model
    from test_configs import CONFIG_DIR
    from test_configs import build as build_config
    ref = timm_reference('convformer_s18')
    ref.head.fc.norm.eps = 1e-5  # the official MlpHead's (timm: 1e-6)
    src, whole, headless = (tmp_path / n for n in (
        'timm.pth', 'whole.pth', 'headless.pth'))
    torch.save(ref.state_dict(), src)

    meta = convert(src, whole)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (f'{src}: timm format -> convformer_s18 (ConvFormer); '
                    'kept the classifier head (1000 classes); '
                    f'--backbone-only drops it; writing {whole}'), line
    assert meta['with_head'] and meta['num_classes'] == 1000
    config = str(CONFIG_DIR / 'metaformer' / 'convformer_s18_in1k.py')
    with LogRecords() as log:
        model = init_model(config, str(whole), device='cpu')
    assert 'classifier head' not in log.text()
    x = torch.randn(1, 3, 224, 224, generator=GEN)
    with torch.no_grad():
        diff = (model(x, mode='tensor') - ref(x)).abs().max().item()
    with capsys.disabled():
        print(f'\nconvformer_s18 timm classifier, converted by default: max '
              f'abs logit diff {diff:.2e}')
    assert diff <= 1e-4

    meta = convert(src, headless, '--backbone-only')
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert 'dropped the classifier head (1000 classes) as --backbone-only ' \
        'asks' in line and not meta['with_head']
    assert all(k.startswith('backbone.')
               for k in torch.load(headless)['state_dict'])
    # what init_model, load_from and tools/test.py run: mmengine's loader
    with LogRecords() as log:
        load_checkpoint(model, str(headless), map_location='cpu')
    for text in ('no classifier head', 'MetaFormerClsHead keeps its random '
                 'initialisation', '--backbone-only', 'init_cfg'):
        assert text in log.text(), (text, log.text())
    # --with-head (the default, kept for compatibility) needs a head
    assert '--with-head' in fails(headless, tmp_path / 'x.pth', '--with-head')
    with pytest.raises(SystemExit) as info:  # argparse: one or the other
        convert(src, tmp_path / 'x.pth', '--with-head', '--backbone-only')
    assert info.value.code == 2 and not (tmp_path / 'x.pth').exists()

    # a backbone config reads the backbone keys of the whole classifier
    cfg = Config.fromfile(str(CONFIG_DIR / 'metaformer' /
                              'retinanet_convformer_s18_coco.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(whole)
    detector = build_config(cfg)
    with LogRecords() as log:
        detector.init_weights()
    assert log.text() == '', log.text()
    assert 'ignored the 8 tensors of the classifier head' in \
        log.text(logging.INFO)
    torch.testing.assert_close(
        detector.backbone.stages[2].blocks[4].token_mixer.pwconv2.weight,
        ref.stages[2].blocks[4].token_mixer.pwconv2.weight, rtol=0, atol=0)


def test_timm_poolformer_v1_head_fits_the_classifier_config(tmp_path):
    """timm moved PoolFormer v1's final GroupNorm (on the map) into its head
    (``head.norm``); the whole classifier gets it back as ``norm3`` and fits
    poolformer_s12_in1k.py (LinearClsHead) key for key."""
    import timm
    from mmpretrain.apis import init_model
    from test_configs import CONFIG_DIR
    ref = randomise_(timm.create_model('poolformer_s12')).eval()
    torch.save(ref.state_dict(), tmp_path / 'timm.pth')
    meta = convert(tmp_path / 'timm.pth', tmp_path / 'mm.pth')
    assert meta['with_head'] and meta['num_classes'] == 1000
    saved = torch.load(tmp_path / 'mm.pth')['state_dict']
    torch.testing.assert_close(saved['backbone.norm3.weight'],
                               ref.head.norm.weight)
    model = init_model(str(CONFIG_DIR / 'poolformer' / 'poolformer_s12_in1k.py'),
                       str(tmp_path / 'mm.pth'), device='cpu')
    assert set(saved) == {k for k in model.state_dict()
                          if not k.startswith('data_preprocessor.')}


# ------------------------------------------------ what the CLI refuses
def test_refuses_to_overwrite(tmp_path, mmpretrain_s12):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official_layout(mmpretrain_s12.state_dict()), src)
    before = src.read_bytes()
    assert 'refusing to overwrite the source' in fails(src, src)
    assert 'refusing' in fails(src, f'{tmp_path}/./src.pth', '--force')
    assert src.read_bytes() == before

    dst.write_bytes(b'precious')
    assert 'exists; pass --force' in fails(src, dst)
    assert dst.read_bytes() == b'precious'
    convert(src, dst, '--force')
    assert torch.load(dst)['meta']['arch'] == 'poolformer_s12'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['dst.pth', 'src.pth']


def test_mismatch_is_one_message_and_nonzero_exit(tmp_path, mmpretrain_s12):
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(official_layout(mmpretrain_s12.state_dict()), src)
    proc = subprocess.run(
        [sys.executable, str(TOOL), str(src), str(dst),
         '--arch', 'identityformer_s12'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for text in ('official format', 'identityformer_s12',
                 "IdentityFormer arch 's12'", 'missing keys',
                 'stem.norm.weight', 'unexpected keys',
                 'stages.0.blocks.0.layer_scale1.scale'):
        assert text in proc.stderr, (text, proc.stderr[-3000:])
    assert not dst.exists()

    message = fails(src, dst, '--arch', 'poolformer_s24')
    assert "PoolFormer arch 's24'" in message
    assert 'missing keys' in message and 'stages.0.blocks.2.norm1.weight' in message


def test_unrecognised_input_is_refused(tmp_path):
    torch.save({'conv1.weight': torch.zeros(1)}, tmp_path / 'resnet.pth')
    message = fails(tmp_path / 'resnet.pth', tmp_path / 'out.pth')
    assert 'Unrecognised checkpoint layout' in message and 'conv1.weight' in message
    (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
    assert 'cannot read' in fails(tmp_path / 'junk.pth', tmp_path / 'out.pth')
    assert 'is not a file' in fails(tmp_path / 'missing.pth', tmp_path / 'out.pth')
    assert 'unknown --arch' in fails(tmp_path / 'resnet.pth', tmp_path / 'out.pth',
                                     '--arch', 'resnet50')
    assert not (tmp_path / 'out.pth').exists()


# ------------------------------------- hybrid models with position embedding
def official_v1_layout(classifier_state):
    """Our PoolFormer-v1-style classifier -> sail-sg/poolformer names, slot
    by slot as its ``network`` list is built: each stage's optional position
    embedding, its blocks, then the downsampling into the next stage."""
    state = {k[len('backbone.'):]: v for k, v in classifier_state.items()
             if k.startswith('backbone.')}
    out, slot = {}, 0
    for i in range(4):
        if i > 0:
            for part in ('weight', 'bias'):
                out[f'network.{slot}.proj.{part}'] = \
                    state[f'stages.{i}.downsample.conv.{part}']
            slot += 1
        if f'stages.{i}.pos_embed' in state:
            out[f'network.{slot}.pos_embed'] = state[f'stages.{i}.pos_embed']
            slot += 1
        for key, value in state.items():
            m = re.match(rf'stages\.{i}\.blocks\.(\d+)\.(.*)$', key)
            if m:
                rest = re.sub(r'layer_scale(\d)\.scale$', r'layer_scale_\1',
                              m.group(2))
                out[f'network.{slot}.{m.group(1)}.{rest}'] = value
        slot += 1
    out['patch_embed.proj.weight'] = state['stem.conv.weight']
    out['patch_embed.proj.bias'] = state['stem.conv.bias']
    out['norm.weight'], out['norm.bias'] = state['norm3.weight'], \
        state['norm3.bias']
    out['head.weight'] = classifier_state['head.fc.weight']
    out['head.bias'] = classifier_state['head.fc.bias']
    return {k: v.clone() for k, v in out.items()}


@pytest.mark.parametrize('variant, stage, slot, shape', [
    ('pppa', 3, 6, (1, 512, 7, 7)), ('ppaa', 2, 4, (1, 320, 14, 14))])
def test_official_hybrid_checkpoint_round_trip(variant, stage, slot, shape,
                                               tmp_path):
    """metaformer_pppa/ppaa_s12_224: the position embedding at its official
    slot shifts every later one; it loads through init_cfg (backbone) and
    convert_classifier (whole classifier), and the model then computes what
    the weights' owner computed, at 224 and at another input size."""
    from mmengine.config import Config
    from test_configs import CONFIG_DIR
    from test_configs import build as build_config

    from mmpoolformer.checkpoint.convert import convert_classifier

    def classifier(init_cfg=None):
        cfg = Config.fromfile(str(CONFIG_DIR / 'ablations' /
                                  f'poolformer_s12_{variant}_in1k.py'))
        cfg.model.backbone.init_cfg = init_cfg
        model = build_config(cfg)
        model.init_weights()
        return model.eval()

    owner = randomise_(classifier())
    # a non-zero embedding, so that dropping or misplacing it shows
    assert owner.backbone.stages[stage].pos_embed.abs().min() > 0
    official = official_v1_layout(owner.state_dict())
    assert tuple(official[f'network.{slot}.pos_embed'].shape) == shape
    assert {int(k.split('.')[1]) for k in official
            if k.startswith('network.')} == set(range(8))
    assert 'network.7.0.token_mixer.qkv.weight' in official  # stage 4
    assert detect_format(official) == 'official'
    src = tmp_path / f'metaformer_{variant}_s12_224.pth.tar'
    torch.save(official, src)

    loaded = classifier(dict(type='Pretrained', checkpoint=str(src)))
    _, converted = convert_classifier(official)
    whole = classifier()
    whole.load_state_dict(converted, strict=True)
    for size in ((224, 224), (160, 192)):
        x = torch.randn(1, 3, *size, generator=GEN)
        with torch.no_grad():
            expected = owner.backbone(x)[0]
            diff = (loaded.backbone(x)[0] - expected).abs().max().item()
            logits = (whole(x, mode='tensor') -
                      owner(x, mode='tensor')).abs().max().item()
        print(f'{variant} official via init_cfg at {size}: max abs diff '
              f'{diff:.2e}; whole classifier logits {logits:.2e}')
        assert diff <= TOL and logits <= TOL

    # the converter CLI: presets have no position embedding, the config does
    config = CONFIG_DIR / 'ablations' / f'poolformer_s12_{variant}_in1k.py'
    dst = tmp_path / 'converted.pth'
    meta = converter.main([str(src), str(dst), '--config', str(config)])
    assert meta['source_format'] == 'official'
    via_cli = classifier(dict(type='Pretrained', checkpoint=str(dst)))
    x = torch.randn(1, 3, 224, 224, generator=GEN)
    with torch.no_grad():
        assert (via_cli.backbone(x)[0] - owner.backbone(x)[0]).abs().max() <= TOL
