"""The wheel: it carries configs/ (without the top-level aliases), tools/
and model-index.yml in ``mmpoolformer/.mim`` (setup.py, MANIFEST.in), and
an installed wheel alone (no checkout on the path) lets a user config
inherit ``_base_ = 'mmpoolformer::<folder>/<name>.py'``, build the model in
the config's scope and run it.

The wheel is built once per session (``pip wheel --no-deps
--no-build-isolation``) from a copy of the checkout's files, so that the
build leaves no ``build/`` or ``.mim`` copies in the checkout (an editable
install keeps its ``.mim`` symlinks), and installed with ``pip install
--target``. Every check that imports it runs in a subprocess whose only
mmpoolformer is the installed one.

Loading through ``mmpoolformer::`` gives every typed top-level dict of our
configs that has no ``_scope_`` the scope ``'mmpoolformer'``, where only our
classes are registered: what a config replaces wholesale (optimizer
wrappers with ``_delete_``, scheduler lists, pipelines, custom hooks) must
carry the scope of the library whose types it names.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / 'configs'
# the configs in folders (configs/*.py are aliases for a checkout's command
# lines: mmengine's `pkg::` needs a folder)
FOLDER_CONFIGS = sorted(p.relative_to(CONFIG_DIR).as_posix()
                        for p in CONFIG_DIR.rglob('*.py')
                        if p.parent != CONFIG_DIR
                        and p.parent.name != 'deploy')  # mmdeploy's configs
# build outputs and environments that a copy of the checkout leaves out
# when git cannot list the files
SKIP = shutil.ignore_patterns('.git', '.venv*', 'build', 'dist', '*.egg-info',
                              '__pycache__', '*.py[cod]', '.mim', 'work_dirs',
                              'data', '.pytest_cache', 'demo_output')


def _copy_sources(dst: Path) -> None:
    """The files of the checkout (tracked and untracked, not ignored)."""
    try:
        listed = subprocess.run(
            ['git', 'ls-files', '-z', '--cached', '--others',
             '--exclude-standard'], cwd=ROOT, capture_output=True,
            check=True).stdout.decode().split('\0')
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dst, ignore=SKIP)
        return
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():  # a deleted file may still be listed
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _pip(*args, cwd=None):
    proc = subprocess.run([sys.executable, '-m', 'pip',
                           '--disable-pip-version-check', *args], cwd=cwd,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """(wheel file, its --target install) built once for this module."""
    pytest.importorskip('setuptools')
    tmp = tmp_path_factory.mktemp('packaging')
    src, dist, site = tmp / 'src', tmp / 'dist', tmp / 'site'
    src.mkdir()
    _copy_sources(src)
    _pip('wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(dist),
         '.', cwd=src)
    (whl, ) = dist.glob('mmpoolformer-*.whl')
    _pip('install', '--no-deps', '-q', '--target', str(site), str(whl))
    return whl, site


def run_installed(site: Path, tmp: Path, script: str) -> dict:
    """Run ``script`` with only the installed wheel's mmpoolformer
    importable (cwd a temporary directory, PYTHONPATH the install); it
    writes its result as JSON to ``result.json``."""
    tmp.mkdir(parents=True, exist_ok=True)
    prelude = textwrap.dedent(f"""\
        import json, os, sys
        import mmpoolformer
        SITE = {str(site)!r}
        assert os.path.realpath(mmpoolformer.__file__).startswith(
            os.path.realpath(SITE) + os.sep), mmpoolformer.__file__
        from mmengine.config import utils as config_utils
        from mmengine.utils import get_installed_path
        assert config_utils.MODULE2PACKAGE.get('mmpoolformer') == \\
            'mmpoolformer', 'import mmpoolformer maps the mmpoolformer:: scope'
        assert os.path.realpath(get_installed_path('mmpoolformer')) == \\
            os.path.realpath(os.path.dirname(mmpoolformer.__file__))
        """)
    (tmp / 'script.py').write_text(prelude + textwrap.dedent(script))
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONNOUSERSITE='1',
               CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, 'script.py'], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    result = json.loads((tmp / 'result.json').read_text())
    result['output'] = output
    return result


def test_wheel_carries_configs_tools_and_model_index(wheel):
    whl, site = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    mim = 'mmpoolformer/.mim/'
    configs = {f'{mim}configs/{p.relative_to(CONFIG_DIR).as_posix()}'
               for ext in ('*.py', '*.yml') for p in CONFIG_DIR.rglob(ext)
               if p.parent != CONFIG_DIR}
    assert len(FOLDER_CONFIGS) > 60
    assert configs <= names, sorted(configs - names)
    # exactly the checkout's configs and metafiles, nothing stale; not the
    # top-level aliases (mim finds configs by file name: an alias would be
    # a second match, see MANIFEST.in)
    assert {n for n in names if n.startswith(f'{mim}configs/')} == configs
    for path in ('model-index.yml', 'tools/train.py', 'tools/test.py',
                 'tools/dist_train.sh', 'tools/dist_test.sh',
                 'tools/cli/__init__.py'):
        assert mim + path in names, path
    tools = {n for n in names if n.startswith(f'{mim}tools/')}
    assert tools == {f'{mim}tools/{p.relative_to(ROOT / "tools").as_posix()}'
                     for ext in ('*.py', '*.sh')
                     for p in (ROOT / 'tools').rglob(ext)
                     if '__pycache__' not in p.parts}
    assert not [n for n in names if '__pycache__' in n or n.endswith('.pyc')]
    # the package and its .mim only (no top-level configs/ or tools/)
    assert {n.split('/')[0] for n in names} == {
        'mmpoolformer', f'mmpoolformer-{whl.name.split("-")[1]}.dist-info'}
    # what mmengine's `mmpoolformer::` lookup reads is installed
    assert (site / 'mmpoolformer/.mim/model-index.yml').is_file()
    assert (site / 'mmpoolformer/.mim/configs/poolformer/metafile.yml').is_file()


SCOPES = """
import functools

from mmengine.config import Config
from mmengine.config import utils as config_utils
from mmpoolformer import registry

# speed only: mmengine re-reads every metafile of mmdet / mmseg / mmpretrain
# for each `pkg::` base; they do not change while this runs
config_utils.load = functools.lru_cache(maxsize=None)(config_utils.load)

names = {names!r}


def ours(type_):
    if not isinstance(type_, str):
        return False
    if type_.startswith('mmpoolformer.'):
        return True
    for reg in (registry.MODELS, registry.HOOKS, registry.TRANSFORMS):
        cls = reg.get(type_)
        if cls is not None and cls.__module__.startswith('mmpoolformer'):
            return True
    return False


def walk(obj, path, out):
    if isinstance(obj, dict):
        if obj.get('_scope_') == 'mmpoolformer' and not ours(obj.get('type')):
            out.append(f'{{path}} (type {{obj.get("type")!r}})')
        for key, value in obj.items():
            walk(value, f'{{path}}.{{key}}', out)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            walk(value, f'{{path}}[{{i}}]', out)


result = {{}}
for name in names:
    with open('user.py', 'w') as f:
        f.write(f"_base_ = 'mmpoolformer::{{name}}'\\n")
    cfg = Config.fromfile('user.py')
    bad = []
    walk(cfg.to_dict(), 'cfg', bad)
    result[name] = dict(bad=bad, default_scope=cfg.get('default_scope'),
                        checkpoint=cfg.default_hooks.checkpoint.type)
with open('result.json', 'w') as f:
    json.dump(result, f)
"""


def test_every_config_loads_as_a_base_without_our_scope(wheel, tmp_path):
    """Each folder config inherited as ``mmpoolformer::<folder>/<name>.py``
    from the installed wheel: no dict resolves in our scope unless its type
    is one of ours, and the crash-safe checkpoint hook is on."""
    _, site = wheel
    result = run_installed(site, tmp_path,
                           SCOPES.format(names=FOLDER_CONFIGS))
    result.pop('output')
    assert sorted(result) == FOLDER_CONFIGS
    bad = {name: r['bad'] for name, r in result.items() if r['bad']}
    assert bad == {}
    assert {r['default_scope'] for r in result.values()} == {
        'mmdet', 'mmseg', 'mmpretrain'}
    assert {r['checkpoint'] for r in result.values()} == {
        'mmpoolformer.SafeCheckpointHook'}


BUILD = """
import importlib
import math

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

USER = '''\\
_base_ = 'mmpoolformer::{{}}'
# the released weights cannot be downloaded here
model = dict(backbone=dict(init_cfg=None))
'''


def load(name):
    path = name.replace('/', '_')
    with open(path, 'w') as f:
        f.write(USER.format(name))
    cfg = Config.fromfile(path)
    init_default_scope(cfg.default_scope)
    return cfg, importlib.import_module(f'{{cfg.default_scope}}.registry')


def finite(tensors):
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def build_rest(cfg, reg, model):
    # what the config replaces wholesale builds in the config's scope
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    schedulers = [reg.PARAM_SCHEDULERS.build(
        s, default_args=dict(optimizer=wrapper, epoch_length=10))
        for s in cfg.param_scheduler]
    hook = reg.HOOKS.build(cfg.default_hooks.checkpoint)
    pipeline = [reg.TRANSFORMS.build(t)
                for t in cfg.test_dataloader.dataset.pipeline]
    return dict(optimizer=type(wrapper.optimizer).__name__,
                schedulers=[type(s).__name__ for s in schedulers],
                hook=type(hook).__name__,
                pipeline=[type(t).__name__ for t in pipeline])


torch.manual_seed(0)
result = {{}}
x = torch.randn(1, 3, 64, 64)

cfg, reg = load('poolformer/retinanet_poolformer_s12_coco.py')
model = reg.MODELS.build(cfg.model).eval()
with torch.no_grad():
    cls_scores, bbox_preds = model(x, mode='tensor')
result['retinanet'] = dict(
    model=type(model).__name__, backbone=type(model.backbone).__name__,
    cls=[list(t.shape) for t in cls_scores],
    box=[list(t.shape) for t in bbox_preds],
    finite=finite(cls_scores) and finite(bbox_preds),
    **build_rest(cfg, reg, model))

cfg, reg = load('poolformer/fpn_poolformer_s12_ade20k.py')
model = reg.MODELS.build(cfg.model).eval()
with torch.no_grad():
    out = model(x, mode='tensor')
result['fpn'] = dict(
    model=type(model).__name__, backbone=type(model.backbone).__name__,
    shape=list(out.shape), finite=finite([out]),
    **build_rest(cfg, reg, model))

cfg, reg = load('poolformer/poolformer_s12_in1k.py')
model = reg.MODELS.build(cfg.model).eval()
with torch.no_grad():
    logits = model(x, mode='tensor')
    (sample, ) = model(x, mode='predict')
score = sample.pred_score
result['classifier'] = dict(
    model=type(model).__name__, backbone=type(model.backbone).__name__,
    shape=list(logits.shape), finite=finite([logits]),
    sample=type(sample).__name__, label=int(sample.pred_label),
    score_sum=float(score.sum()), **build_rest(cfg, reg, model))
assert math.isfinite(result['classifier']['score_sum'])

with open('result.json', 'w') as f:
    json.dump(result, f)
"""


def test_user_configs_inherit_build_and_run(wheel, tmp_path):
    """A RetinaNet, a Semantic FPN and a classifier from user configs whose
    only content is a ``mmpoolformer::`` base (and no download): models,
    optimizers, schedulers, the checkpoint hook and the test pipeline build
    in the config's scope, and the models run."""
    _, site = wheel
    result = run_installed(site, tmp_path, BUILD.format())
    output = result.pop('output')
    # mmengine's fallback when a dict names a scope without that registry
    assert [line for line in output.splitlines()
            if 'Failed to search registry' in line] == []

    det = result['retinanet']
    assert (det['model'], det['backbone']) == ('RetinaNet', 'PoolFormer')
    # 5 FPN levels of a 64x64 input (strides 8-128), 9 anchors x 80 classes
    sizes = [8, 4, 2, 1, 1]
    assert det['cls'] == [[1, 720, s, s] for s in sizes]
    assert det['box'] == [[1, 36, s, s] for s in sizes]
    assert det['finite']
    assert det['optimizer'] == 'AdamW'
    assert det['schedulers'] == ['LinearLR', 'MultiStepLR']
    assert det['pipeline'][-1] == 'PackDetInputs'

    seg = result['fpn']
    assert (seg['model'], seg['backbone']) == ('EncoderDecoder', 'PoolFormer')
    assert seg['shape'] == [1, 150, 16, 16] and seg['finite']
    assert seg['optimizer'] == 'AdamW' and seg['schedulers'] == ['PolyLR']
    assert seg['pipeline'][-1] == 'PackSegInputs'

    cls = result['classifier']
    assert (cls['model'], cls['backbone']) == ('ImageClassifier', 'PoolFormer')
    assert cls['shape'] == [1, 1000] and cls['finite']
    assert cls['sample'] == 'DataSample' and 0 <= cls['label'] < 1000
    assert cls['score_sum'] == pytest.approx(1., abs=1e-4)
    assert cls['optimizer'] == 'AdamW'
    assert cls['schedulers'] == ['LinearLR', 'CosineAnnealingLR']
    assert cls['pipeline'] == ['LoadImageFromFile', 'ResizeEdge',
                               'CenterCrop', 'PackInputs']

    for r in (det, seg, cls):
        assert r['hook'] == 'SafeCheckpointHook'
