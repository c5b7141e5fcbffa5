"""A checkpoint saved by mmengine's Runner resumes and tests on torch>=2.6
where our code loads it; the crash-safe checkpoint hook is opt-in."""
import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.runner.checkpoint import CheckpointLoader
from PIL import Image

from helpers import TINY

CLASSES = ('red', 'green')


def write_image_folder(root, per_class=4, size=40):
    """An ImageNet-style folder: one sub-folder of PNGs per class."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            img[..., c] += 180
            Image.fromarray(img).save(root / name / f'{i}.png')


def classifier_cfg(data_root, work_dir, max_iters):
    dataloader = dict(
        batch_size=4, num_workers=0,
        dataset=dict(type='CustomDataset', data_root=str(data_root),
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='PackInputs')]),
        sampler=dict(type='DefaultSampler', shuffle=False))
    return dict(
        default_scope='mmpretrain',
        work_dir=str(work_dir),
        model=dict(
            type='ImageClassifier',
            data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=2,
                                   mean=[127.5] * 3, std=[127.5] * 3),
            backbone=dict(type='mmpoolformer.PoolFormer', arch=TINY,
                          out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=32)),
        train_dataloader=dataloader,
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters,
                       val_interval=10_000),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        test_dataloader=copy.deepcopy(dataloader),
        test_cfg=dict(),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
    )


class CountIters(Hook):
    def __init__(self):
        self.iters = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.iters.append(runner.iter)


def test_runner_checkpoint_resumes_and_tests(tmp_path):
    write_image_folder(tmp_path / 'data')
    work_dir = tmp_path / 'work'
    Runner.from_cfg(classifier_cfg(tmp_path / 'data', work_dir, 2)).train()
    ckpt = work_dir / 'iter_2.pth'
    assert ckpt.is_file()

    # The plain torch>=2.6 default refuses what mmengine stores ...
    probe = ('import torch, sys\n'
             f'torch.load({str(ckpt)!r})\n')
    plain = subprocess.run([sys.executable, '-c', probe], capture_output=True,
                           text=True, timeout=120)
    assert plain.returncode != 0 and 'weights_only' in plain.stderr
    # ... and so does mmengine 0.10.7's loader: importing mmpoolformer does
    # not change it (the fork's mmengine passes its own allowlist) ...
    import mmpoolformer  # noqa: F401
    from mmpoolformer.checkpoint.torch_load import (
        mmengine_handles_weights_only,
        runner_checkpoint_globals,
    )
    if not mmengine_handles_weights_only():
        with pytest.raises(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    # ... while under our allowlist (what our tools and loaders use) it
    # loads, still weights_only; afterwards torch.load is as strict again.
    with runner_checkpoint_globals():
        loaded = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
        assert loaded['meta']['iter'] == 2
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(ckpt))

    with runner_checkpoint_globals():  # resume and test, as tools/*.py do
        runner = Runner.from_cfg(dict(
            classifier_cfg(tmp_path / 'data', work_dir, 4), resume=True))
        counter = CountIters()
        runner.register_hook(counter)
        runner.train()
        # 0-based indices of the iterations run: continued after iteration 2
        assert counter.iters == [2, 3]
        resumed = CheckpointLoader.load_checkpoint(str(work_dir / 'iter_4.pth'))
        assert resumed['meta']['iter'] == 4

        tester = Runner.from_cfg(dict(
            classifier_cfg(tmp_path / 'data', work_dir, 4),
            load_from=str(work_dir / 'iter_4.pth')))
        metrics = tester.test()
        assert 0.0 <= metrics['accuracy/top1'] <= 100.0


def test_a_users_runner_opts_into_the_crash_safe_checkpoint_hook(tmp_path):
    """A config of the user's, run by mmengine's Runner directly: with
    ``custom_imports`` alone it keeps mmengine's ``CheckpointHook``; the one
    line ``type='mmpoolformer.SafeCheckpointHook'`` gives the crash-safe
    hook with the same options."""
    from mmengine.hooks import CheckpointHook

    from mmpoolformer.engine import SafeCheckpointHook

    def checkpoint_hooks(runner):
        return [h for h in runner.hooks
                if type(h).__name__.endswith('CheckpointHook')]

    write_image_folder(tmp_path / 'data')
    work_dir = tmp_path / 'work'
    cfg = classifier_cfg(tmp_path / 'data', work_dir, 4)
    cfg['custom_imports'] = dict(imports=['mmpoolformer'])
    cfg['default_hooks']['checkpoint']['max_keep_ckpts'] = 1
    plain = checkpoint_hooks(Runner.from_cfg(copy.deepcopy(cfg)))
    assert len(plain) == 1 and type(plain[0]) is CheckpointHook
    cfg['default_hooks']['checkpoint']['type'] = 'mmpoolformer.SafeCheckpointHook'
    cfg['experiment_name'] = 'safe'
    runner = Runner.from_cfg(cfg)
    hooks = checkpoint_hooks(runner)
    assert len(hooks) == 1 and isinstance(hooks[0], SafeCheckpointHook)
    runner.train()
    assert sorted(p.name for p in work_dir.glob('*.pth')) == ['iter_4.pth']
    assert (work_dir / 'last_checkpoint').read_text() == \
        str(work_dir / 'iter_4.pth')
    assert not [p for p in work_dir.iterdir() if 'partial' in p.name]
