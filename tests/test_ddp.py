"""Two-process data-parallel training through tools/dist_train.sh (torchrun,
``--launcher pytorch``) on the CPU, over gloo.

The shipped classifier config trains with ``--cfg-options`` as in
test_training.py, plus a test-only hook (this module, loaded by the config's
``custom_imports`` with ``PYTHONPATH=tests``) that saves each rank's weights
before and after training and the images it trained on. Both ranks must end
with identical weights that moved from the start, having seen disjoint halves
of the data. Then tools/dist_test.sh evaluates the checkpoint with two
processes and must agree with a single-process tools/test.py.
"""
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

ROOT = Path(__file__).resolve().parents[1]


@HOOKS.register_module(force=True)
class SaveRankWeights(Hook):
    """Saves ``rank<r>.pth``: the model's weights at ``before_train`` (after
    DDP wrapping) and ``after_run``, and the image paths of its batches."""

    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.record = dict(images=[])

    def _weights(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def before_train(self, runner):
        self.record.update(before=self._weights(runner),
                           wrapper=type(runner.model).__name__,
                           world_size=runner.world_size)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.record['images'] += [s.img_path for s in data_batch['data_samples']]

    def after_run(self, runner):
        self.record['after'] = self._weights(runner)
        torch.save(self.record, os.path.join(self.out_dir,
                                             f'rank{runner.rank}.pth'))


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_ddp_keeps_ranks_in_sync(tmp_path):
    from test_training import (
        failure_report,
        read_test_metrics,
        run_tool,
        schedule_opts,
        task_opts,
        write_imagenet,
    )
    data_root = write_imagenet(tmp_path / 'data')  # 2 images per class
    config, opts = task_opts('cls', data_root)
    derived = tmp_path / 'ddp_cfg.py'
    derived.write_text(
        f'_base_ = [{str(config)!r}]\n'
        "custom_imports = dict(imports=['mmpoolformer', 'test_ddp'], "
        'allow_failed_imports=False)\n'
        f"custom_hooks = [dict(type='SaveRankWeights', "
        f'out_dir={str(tmp_path)!r})]\n')
    env = dict(os.environ, PORT=str(free_port()),
               PATH=f'{Path(sys.executable).parent}{os.pathsep}'
               f'{os.environ.get("PATH", "")}',
               PYTHONPATH=str(ROOT / 'tests'))
    work_dir = tmp_path / 'work'

    def dist(script, *args):
        proc = subprocess.run(['bash', str(ROOT / 'tools' / script), *args],
                              cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=400)
        assert proc.returncode == 0, failure_report(script, proc)

    dist('dist_train.sh', str(derived), '2', '--work-dir', str(work_dir),
         '--cfg-options', *opts,
         # 3 images per rank and step: 3 steps of the whole set
         'train_dataloader.batch_size=3', *schedule_opts('epoch', 3))
    assert (work_dir / 'epoch_3.pth').is_file()

    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=False)
             for r in (0, 1)]
    assert [r['world_size'] for r in ranks] == [2, 2]
    assert {r['wrapper'] for r in ranks} == {'MMDistributedDataParallel'}
    # each rank trained on its own half of the 6 images, every epoch
    halves = [set(r['images']) for r in ranks]
    assert [len(r['images']) for r in ranks] == [9, 9]
    assert not halves[0] & halves[1]
    assert len(halves[0] | halves[1]) == 6
    after = [r['after'] for r in ranks]
    assert after[0].keys() == after[1].keys()
    for key in after[0]:
        assert torch.equal(after[0][key], after[1][key]), key
        assert torch.equal(ranks[0]['before'][key], ranks[1]['before'][key])
    moved = [k for k in after[0]
             if not torch.equal(after[0][k], ranks[0]['before'][k])]
    assert len(moved) > 0.9 * len(after[0]), 'training did not update weights'

    # evaluation split over two processes, gathered: as one process
    ckpt = work_dir / 'epoch_3.pth'
    dist('dist_test.sh', str(config), str(ckpt), '2', '--work-dir',
         str(tmp_path / 'test2'), '--out', str(tmp_path / 'preds.pkl'),
         '--cfg-options', *opts)
    run_tool('test.py', config, ckpt, '--work-dir', tmp_path / 'test1',
             '--cfg-options', *opts)
    two, one = (read_test_metrics(tmp_path / d) for d in ('test2', 'test1'))
    assert two['accuracy/top1'] == one['accuracy/top1']
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert sorted(p['img_path'] for p in preds) == sorted(
        str(p) for p in data_root.glob('val/*/*.png'))


def _train_partial_backbone(rank, port, out_dir):
    """One rank: torch DDP (``find_unused_parameters=False``) around
    backbones that return stages 0-2 only, 3 SGD steps on its own data."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mmpoolformer.models import ConvFormer, PoolFormer

    from helpers import TINY, randomise_
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    try:
        result = {}
        for cls in (PoolFormer, ConvFormer):
            torch.manual_seed(0)
            model = randomise_(cls(dict(TINY), out_indices=(0, 1, 2)))
            before = {k: v.clone() for k, v in model.state_dict().items()}
            ddp = DistributedDataParallel(model, find_unused_parameters=False)
            optim = torch.optim.SGD(ddp.parameters(), lr=0.1)
            gen = torch.Generator().manual_seed(rank)
            for _ in range(3):
                optim.zero_grad()
                outs = ddp(torch.randn(2, 3, 64, 64, generator=gen))
                sum(o.square().mean() for o in outs).backward()
                optim.step()
            result[cls.__name__] = dict(
                before=before, after=model.state_dict(),
                grads={n for n, p in model.named_parameters()
                       if p.grad is not None})
        torch.save(result, os.path.join(out_dir, f'rank{rank}.pth'))
    finally:
        dist.destroy_process_group()


def test_ddp_without_unused_parameters_when_later_stages_are_not_returned(
        tmp_path):
    """``out_indices=(0, 1, 2)``: the backbone builds no stage 3, so every
    Parameter gets a gradient and DDP needs no ``find_unused_parameters``;
    both ranks end equal, having moved."""
    torch.multiprocessing.spawn(_train_partial_backbone,
                                args=(free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f'rank{r}.pth', weights_only=False)
             for r in (0, 1)]
    for name, first in ranks[0].items():
        second = ranks[1][name]
        params = {k for k in first['after'] if 'running_' not in k}
        assert first['grads'] == params, (name, params ^ first['grads'])
        for key, value in first['after'].items():
            assert torch.equal(value, second['after'][key]), (name, key)
        still = [k for k in first['after']
                 if torch.equal(first['after'][k], first['before'][k])]
        # only the GroupNorm biases before pooling, whose gradient is zero
        assert all(k.endswith('norm1.bias') for k in still), (name, still)
        assert not any(k.startswith('stages.3.') for k in first['after'])
