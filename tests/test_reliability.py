"""Nothing lost: crashes while saving, damaged checkpoints, overlapping
folders and broken data, done for real.

Training runs are real ``tools/train.py`` subprocesses of a tiny PoolFormer
classifier on synthetic ImageNet-layout shapes; the kill is a real SIGKILL
sent by this test while the child is blocked half-way through writing a
checkpoint (``crash_injection.BlockWhileSaving``). After every step the
user's own files (data, notes, weights in the work dir) must be
byte-identical.
"""
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from mmpoolformer import register_all_modules
from mmpoolformer.checkpoint.torch_load import runner_checkpoint_globals

from cli.synthetic_shapes import write_imagenet_shapes
from helpers import TINY, load_tool, tool_error

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
train = load_tool('train.py')

BASE_CONFIG = '''\
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmpoolformer', 'crash_injection'],
                      allow_failed_imports=False)
model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=3,
                           mean=[127.5] * 3, std=[127.5] * 3),
    backbone=dict(type='mmpoolformer.PoolFormer', arch={arch!r},
                  out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=3, in_channels=32))
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={root!r},
                 ann_file='meta/train.txt', data_prefix='train',
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=8, val_interval=10000)
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
default_hooks = dict(
    checkpoint=dict(type={hook!r}, interval=2,
                    by_epoch=False, max_keep_ckpts={keep}),
    logger=dict(type='LoggerHook', interval=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
'''


def write_configs(tmp_path, keep, hook='mmpoolformer.SafeCheckpointHook'):
    """Synthetic ImageNet-layout data and the base config ``tiny_cls.py``
    with ``hook`` as its checkpoint hook (:func:`crash_config` derives the
    crashing variants)."""
    root = tmp_path / 'data'
    write_imagenet_shapes(root, num_train_per_class=4, num_val_per_class=1,
                          image_size=32)
    folder = tmp_path / 'configs'
    folder.mkdir()
    base = folder / 'tiny_cls.py'
    base.write_text(BASE_CONFIG.format(arch=TINY, root=str(root), keep=keep,
                                       hook=hook))
    return root, base


def crash_config(base, at_iter, written):
    path = base.parent / f'crash_{at_iter}_{written}.py'
    path.write_text(f"_base_ = ['./{base.name}']\ncustom_hooks = [dict("
                    f"type='BlockWhileSaving', at_iter={at_iter}, "
                    f"written='{written}')]\n")
    return path


def env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(TESTS), os.environ.get('PYTHONPATH', '')]))


def train_cmd(config, work_dir, *extra):
    return [sys.executable, str(ROOT / 'tools' / 'train.py'), str(config),
            '--work-dir', str(work_dir), *map(str, extra)]


def run_train(config, work_dir, *extra):
    proc = subprocess.run(train_cmd(config, work_dir, *extra), env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def kill_while_saving(config, work_dir, *extra):
    """Start a run and SIGKILL it once it is blocked inside a save; return
    what it printed."""
    marker = work_dir / 'saving.marker'
    if marker.exists():
        marker.unlink()
    log = work_dir.parent / f'{config.stem}.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(train_cmd(config, work_dir, *extra),
                                env=env(), stdout=out,
                                stderr=subprocess.STDOUT)
        deadline = time.time() + 240
        while not marker.exists() and proc.poll() is None and \
                time.time() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert marker.exists(), f'never reached the save (exit {code}):\n' + \
        text[-3000:]
    assert code == -signal.SIGKILL, text[-3000:]
    marker.unlink()
    return text


def digest(*folders):
    """``{path: sha256}`` of every file under ``folders``."""
    out = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob('*')):
            if path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def load(path):
    with runner_checkpoint_globals():  # as our tools load checkpoints
        return CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def assert_resumable(work_dir, expected_iter):
    """last_checkpoint names a complete checkpoint of ``expected_iter``, and
    every visible checkpoint file loads."""
    named = Path((work_dir / 'last_checkpoint').read_text().strip())
    assert named.is_file(), f'last_checkpoint names missing {named}'
    assert load(named)['meta']['iter'] == expected_iter
    for ckpt in work_dir.glob('*.pth'):  # hidden partial files aside
        if not ckpt.name.startswith('.') and ckpt.name != 'pretrained.pth':
            load(ckpt)  # a partial checkpoint would raise here


def user_files(work_dir):
    work_dir.mkdir()
    (work_dir / 'notes.txt').write_text('my notes on this run\n')
    (work_dir / 'pretrained.pth').write_bytes(os.urandom(4096))


def trained_iters(log):
    """The 1-based iterations a run logged, e.g. ``Iter(train) [3/8]``."""
    return [int(i) for i in re.findall(r'Iter\(train\) \[\s*(\d+)/\d+\]',
                                       log)]


# ------------------------------------------------- crash-safe checkpoints
def test_sigkill_while_saving_then_resume_to_the_end(tmp_path):
    """With max_keep_ckpts=1 (as the demo), killed three times inside a
    save (half the bytes written, all bytes written but not yet committed,
    half again): the previous checkpoint stays and last_checkpoint names
    it; each --resume continues from there; the run ends with iter_8, the
    partial files of the killed runs are gone, the user's files unchanged.
    The config names mmengine's plain CheckpointHook: tools/train.py runs
    our crash-safe one with its options in its place."""
    root, base = write_configs(tmp_path, keep=1, hook='CheckpointHook')
    work = tmp_path / 'work'
    user_files(work)
    mine = digest(root, work)

    log = kill_while_saving(crash_config(base, 4, 'half'), work)
    assert trained_iters(log) == [1, 2, 3, 4]
    assert_resumable(work, 2)

    log = kill_while_saving(crash_config(base, 6, 'all'), work, '--resume')
    assert trained_iters(log) == [3, 4, 5, 6]  # resumed after iteration 2
    assert_resumable(work, 4)

    log = kill_while_saving(crash_config(base, 8, 'half'), work, '--resume')
    assert trained_iters(log) == [5, 6, 7, 8]
    assert_resumable(work, 6)
    assert [p.name for p in work.glob('iter_*.pth')] == ['iter_6.pth']

    log = run_train(base, work, '--resume')
    assert trained_iters(log) == [7, 8]
    assert_resumable(work, 8)
    assert [p.name for p in work.glob('iter_*.pth')] == ['iter_8.pth']
    assert not [p.name for p in work.iterdir() if 'partial' in p.name]
    assert all(digest(root, work)[p] == h for p, h in mine.items())


def test_truncated_latest_checkpoint_falls_back_to_the_previous(tmp_path):
    root, base = write_configs(tmp_path, keep=-1)
    work = tmp_path / 'work'
    user_files(work)
    mine = digest(root, work)
    run_train(base, work, '--cfg-options', 'train_cfg.max_iters=4')
    latest = work / 'iter_4.pth'
    latest.write_bytes(latest.read_bytes()[:latest.stat().st_size // 2])

    message = tool_error(train, base, '--work-dir', work, '--resume', latest,
                         prog='train.py')
    assert f'--resume {latest}: cannot resume from it' in message
    assert f'resume from {work}/iter_2.pth' in message

    log = run_train(base, work, '--resume', '--cfg-options',
                    'train_cfg.max_iters=6')
    assert f'Not resuming from {latest}: it is not a complete PyTorch ' \
        'checkpoint' in log
    assert f'Resuming from {work}/iter_2.pth, the newest loadable' in log
    assert trained_iters(log) == [3, 4, 5, 6]
    assert load(work / 'iter_6.pth')['meta']['iter'] == 6
    assert all(digest(root, work)[p] == h for p, h in mine.items())


def test_stale_partial_checkpoints_are_removed_and_live_ones_kept(tmp_path):
    from mmpoolformer.fileio import partial_name, remove_stale_partials
    dead = subprocess.run(  # a process that has ended
        [sys.executable, '-c', 'import os; print(os.getpid())'],
        capture_output=True, text=True).stdout.strip()
    mine = Path(partial_name(tmp_path / 'iter_8.pth'))
    stale = mine.with_name(mine.name.replace(f'.{os.getpid()}.', f'.{dead}.'))
    for path in (mine, stale):
        path.write_bytes(b'half a checkpoint')
    (tmp_path / 'iter_4.pth').write_bytes(b'user data')
    assert remove_stale_partials(tmp_path) == [str(stale)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [mine.name, 'iter_4.pth'])


def test_sigkill_during_an_atomic_write_leaves_the_target(tmp_path):
    """What the converter, exports and drawings write with: a process
    killed mid-write leaves the old file intact; the next writer cleans up."""
    target = tmp_path / 'dst.pth'
    target.write_bytes(b'the good old file')
    script = (
        'import sys, time\n'
        'from mmpoolformer.fileio import atomic_output\n'
        f'with atomic_output({str(target)!r}) as partial:\n'
        '    with open(partial, "wb") as f:\n'
        '        f.write(b"half of the new")\n'
        '        f.flush()\n'
        '    print(partial, flush=True)\n'
        '    time.sleep(600)\n')
    proc = subprocess.Popen([sys.executable, '-c', script], env=env(),
                            stdout=subprocess.PIPE, text=True)
    partial = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert partial.is_file() and target.read_bytes() == b'the good old file'
    # the next converter run removes it (then fails on the source's layout)
    convert = load_tool('model_converters/convert_checkpoint.py')
    torch.save({'x': torch.zeros(1)}, tmp_path / 'src.pth')
    assert 'Unrecognised checkpoint layout' in tool_error(
        convert, tmp_path / 'src.pth', target, '--force')
    assert not partial.exists()
    assert target.read_bytes() == b'the good old file'


def test_empty_history_buffer_loads_weights_only(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub('reliability-empty-buffer',
                     log_scalars={'val/never_logged': HistoryBuffer()},
                     resumed_keys={'val/never_logged': True})
    hub.update_scalar('train/loss', 0.5)  # resumed by default
    path = tmp_path / 'iter_1.pth'
    torch.save(dict(meta=dict(iter=1), state_dict={'w': torch.ones(2)},
                    message_hub=hub.state_dict()), path)
    loaded = load(path)
    buffers = loaded['message_hub']['log_scalars']
    assert buffers['val/never_logged'].data[0].size == 0
    assert buffers['train/loss'].current() == 0.5
    with pytest.raises(Exception, match='weights_only|bytes'):
        torch.load(path)  # a bare torch.load stays strict


def test_safe_hook_is_opt_in_and_builds_in_every_scope():
    """``mmpoolformer.SafeCheckpointHook`` builds from every scope with the
    options of mmengine's hook; ``CheckpointHook`` stays mmengine's."""
    import importlib

    from mmengine.hooks import CheckpointHook

    from mmpoolformer.engine import SafeCheckpointHook
    register_all_modules()
    for scope in ('mmdet', 'mmseg', 'mmpretrain', 'mmengine'):
        hooks = importlib.import_module(f'{scope}.registry').HOOKS
        hook = hooks.build(dict(type='mmpoolformer.SafeCheckpointHook',
                                interval=2, max_keep_ckpts=1))
        assert isinstance(hook, SafeCheckpointHook), scope
        assert hook.max_keep_ckpts == 1 and hook.interval == 2
        plain = hooks.build(dict(type='CheckpointHook', interval=2))
        assert type(plain) is CheckpointHook, scope


# ----------------------------------------------------- broken data, for real
def test_unreadable_training_images(tmp_path):
    """Found before the first iteration; with --skip-data-check the run
    goes on and each bad file is named once in the log."""
    root, base = write_configs(tmp_path, keep=-1)
    empty = root / 'train' / 'square' / 'square_00000.png'
    cut = root / 'train' / 'square' / 'square_00001.png'
    empty.write_bytes(b'')
    cut.write_bytes(cut.read_bytes()[:60])
    mine = digest(root)

    message = tool_error(train, base, '--work-dir', tmp_path / 'w1',
                         prog='train.py')
    assert f'1 image(s) of train_dataloader.dataset are empty (0 bytes):' \
        f'\n    {empty}' in message
    assert 'are cut short' in message and str(cut) in message
    assert '--skip-data-check' in message
    assert not (tmp_path / 'w1').exists()  # stopped before the Runner

    log = run_train(base, tmp_path / 'w2', '--skip-data-check',
                    '--cfg-options', 'train_cfg.max_iters=4')
    assert trained_iters(log) == [1, 2, 3, 4]
    for bad in (empty, cut):
        assert log.count(f'Skipped unreadable image {bad}') == 1, log[-3000:]
    assert 'skipped so far' in log
    assert digest(root) == mine


def test_full_data_check_decodes(tmp_path):
    """A PNG with intact header and end but damaged pixel data passes the
    fast check and is caught by --full-data-check."""
    from cli.sample_check import image_problem
    path = tmp_path / 'x.png'
    cv2.imwrite(str(path), np.random.default_rng(0).integers(
        0, 255, (32, 32, 3), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    data[60:200] = bytes(140)  # inside the IDAT chunk
    path.write_bytes(bytes(data))
    assert image_problem(str(path)) is None
    assert image_problem(str(path), decode=True) == 'undecodable'


def test_plot_curves_never_replaces_without_force(tmp_path):
    out = tmp_path / 'curves.png'
    out.write_bytes(b'my figure')
    plot = load_tool('analysis_tools/plot_curves.py')
    message = tool_error(plot, tmp_path / 'no_run', '--out', out,
                         prog='plot_curves.py')
    assert f'--out {out} exists; pass --force' in message
    assert out.read_bytes() == b'my figure'


def test_converter_names_a_file_that_is_no_checkpoint(tmp_path):
    """A text file (here starting with 'e', pickle opcode 101) once ended in
    a bare ``KeyError: 101``."""
    src = tmp_path / 'poolformer_s12.pth'
    src.write_text('epoch 12: loss 0.31, top-1 77.2\n')
    convert = load_tool('model_converters/convert_checkpoint.py')
    message = tool_error(convert, src, tmp_path / 'out.pth',
                         prog='convert_checkpoint.py')
    assert f'cannot read {src} as a checkpoint: it is not a PyTorch ' \
        "checkpoint (neither a zip archive nor a pickle; it starts with " \
        "b'epoch 12: lo')" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
