"""Both OpenMMLab 2.x stacks: the original releases and the onedl fork.

The suite runs on each (``make test`` / ``make test STACK=onedl``); these
tests pin down what differs between them and the install switch itself."""
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.config import utils as config_utils

from mmpoolformer.stack import distribution_of, installed_stack

ROOT = Path(__file__).resolve().parents[1]
OPENMMLAB = ('mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'mmpretrain')


def test_stack_is_recognised():
    stack = installed_stack()
    assert stack in ('openmmlab', 'onedl')
    for module in ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'mmpretrain'):
        dist = distribution_of(module)
        assert dist is not None, module
        assert dist.startswith('onedl-') == (stack == 'onedl'), (module, dist)


def test_requirements_never_replace_a_fork():
    """pip must not pull the original distributions over the fork: they are
    extras only (as OpenMMLab keeps mmcv behind its `mim` extra)."""
    requires = metadata.requires('mmpoolformer') or []
    unconditional = [r for r in requires if 'extra ==' not in r]
    names = {r.split(';')[0].split('[')[0].split('<')[0].split('>')[0]
             .split('=')[0].strip().lower() for r in unconditional}
    assert not names & set(OPENMMLAB) and not any(
        n.startswith('onedl-') for n in names), unconditional
    assert any(r.startswith('torch') for r in unconditional)


@pytest.mark.parametrize('config', ['poolformer/fpn_poolformer_s12_ade20k.py',
                                    'poolformer/retinanet_poolformer_s12_coco.py',
                                    'poolformer/poolformer_s12_in1k.py'])
def test_base_configs_of_every_package_resolve(config):
    """mmseg:: / mmdet:: / mmpretrain:: bases on either stack (the fork's
    distribution is onedl-mmsegmentation, which mmengine cannot map)."""
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    assert cfg.model.backbone.type == 'mmpoolformer.PoolFormer'
    mapped = config_utils.MODULE2PACKAGE['mmseg']
    assert mapped == ('mmsegmentation' if installed_stack() == 'openmmlab'
                      else 'mmseg')


def run_install(*args):
    return subprocess.run(['bash', str(ROOT / 'tools' / 'install_env.sh'), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize('args, message', [
    (['--stack', 'mmlab'], "unknown stack 'mmlab'; choose openmmlab"),
    (['--cuda', 'maybe'], '--cuda takes auto, yes or no'),
    (['--frobnicate'], "unknown option '--frobnicate'"),
])
def test_install_switch_refuses_bad_options(args, message):
    proc = run_install(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (ROOT / '.venv-mmlab').exists()


def test_install_help_names_the_switches():
    proc = run_install('--help')
    assert proc.returncode == 0
    for switch in ('--stack', '--cuda', '--cuda-arch', '--cuda-home', '--venv'):
        assert switch in proc.stdout


def test_weights_only_allowlist_only_where_mmengine_needs_it():
    """mmengine 0.10.7 calls torch.load without weights_only (torch>=2.6
    then refuses Runner checkpoints): our loaders and tools allow its
    globals for the time they load. The fork passes weights_only with its
    own allowlist: nothing to do. mmengine's own loader is never wrapped."""
    import contextlib

    from mmengine.runner.checkpoint import CheckpointLoader

    import mmpoolformer  # noqa: F401
    from mmpoolformer.checkpoint.torch_load import (
        mmengine_handles_weights_only,
        runner_checkpoint_globals,
    )
    loader = CheckpointLoader._get_checkpoint_loader('/local/file.pth')
    assert loader.__module__ == 'mmengine.runner.checkpoint'
    assert mmengine_handles_weights_only() == (installed_stack() == 'onedl')
    plain = isinstance(runner_checkpoint_globals(), contextlib.nullcontext)
    assert plain == mmengine_handles_weights_only()


def test_the_torch_floor_is_required_and_named():
    """setup.py's torch requirement is the floor import checks; below it,
    one ImportError names the floor and the found version."""
    from mmpoolformer.stack import TORCH_FLOOR, check_torch
    floor = '.'.join(map(str, TORCH_FLOOR))
    requires = metadata.requires('mmpoolformer') or []
    assert f'torch>={floor}' in requires
    check_torch(f'{floor}.0+cpu')
    check_torch('2.14.1')
    with pytest.raises(ImportError, match=rf'needs torch >= {floor}, found 2\.0\.1'):
        check_torch('2.0.1')
