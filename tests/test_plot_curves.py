"""tools/analysis_tools/plot_curves.py on logs that a real mmengine Runner
writes (a toy regression model trains for a few iterations): the PNG
decodes, has the documented size and is drawn; runs overlay with their
labels; points land on the right iteration / epoch; bad input stops with one
message."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.runner import Runner
from PIL import Image
from torch.utils.data import DataLoader

from helpers import load_tool, tool_error

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'analysis_tools' / 'plot_curves.py'
ITERS_PER_EPOCH = 5  # 20 samples, batch 4
PANEL = (500, 350)  # pixels of one panel at the default dpi


tool = load_tool('analysis_tools/plot_curves.py')


class ToyRegressor(BaseModel):
    """Two loss terms, so that the default keys find several."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.fc(inputs).squeeze(1)
        if mode == 'loss':
            return dict(loss_mse=((out - labels)**2).mean(),
                        loss_l1=0.1 * (out - labels).abs().mean())
        return list(zip(out, labels))


class SignAccuracy(BaseMetric):
    """Logged as accuracy/top1, the classification headline metric."""
    default_prefix = 'accuracy'

    def process(self, data_batch, data_samples):
        self.results.extend(float((o > 0) == (t > 0)) for o, t in data_samples)

    def compute_metrics(self, results):
        return dict(top1=100 * sum(results) / len(results))


def collate(batch):
    return dict(inputs=torch.stack([b[0] for b in batch]),
                labels=torch.stack([b[1] for b in batch]))


def train_toy(work_dir, lr, by_epoch=True):
    """A real Runner: 2 epochs of 5 iterations (or 5 iterations), logging
    every 2 iterations, validating every epoch (every 2 iterations)."""
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(2, generator=gen), torch.randn((), generator=gen))
            for _ in range(20)]
    loop = dict(by_epoch=True, max_epochs=2, val_interval=1) if by_epoch \
        else dict(by_epoch=False, max_iters=5, val_interval=2)
    runner = Runner(
        model=ToyRegressor(), work_dir=str(work_dir),
        experiment_name=f'toy_{work_dir.name}',  # distinct visualizers
        train_dataloader=DataLoader(data, batch_size=4, collate_fn=collate),
        val_dataloader=DataLoader(data, batch_size=10, collate_fn=collate),
        val_evaluator=[SignAccuracy()], val_cfg=dict(), train_cfg=loop,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=lr)),
        param_scheduler=dict(type='LinearLR', start_factor=0.5,
                             by_epoch=False, begin=0, end=4),
        default_hooks=dict(logger=dict(type='LoggerHook', interval=2),
                           checkpoint=None),
        log_processor=dict(by_epoch=by_epoch), log_level='WARNING')
    runner.train()
    return work_dir


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('logs')
    return dict(a=train_toy(root / 'run_a', 0.1),
                b=train_toy(root / 'run_b', 0.02),
                it=train_toy(root / 'run_it', 0.1, by_epoch=False))


def fails(*argv):
    return tool_error(tool, *argv, prog='plot_curves.py')


def decoded(png):
    image = Image.open(png)
    image.load()  # decodes the whole file
    return np.asarray(image.convert('RGB'))


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_default_keys_draw_a_png_of_the_documented_size(runs, tmp_path):
    out = tmp_path / 'curves.png'
    fig = tool.main([str(runs['a']), '--out', str(out)])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    # the total loss first, the terms, lr, the headline metric
    assert titles == ['loss', 'loss_l1', 'loss_mse', 'lr', 'accuracy/top1']
    pixels = decoded(out)
    assert pixels.shape == (2 * PANEL[1], 3 * PANEL[0], 3)  # 2 rows of 3
    # not blank: mostly white background, but lines, text and axes drawn
    not_white = (pixels < 250).any(-1).mean()
    assert 0.01 < not_white < 0.5, not_white
    c0 = np.array([0x1f, 0x77, 0xb4])  # matplotlib's first line colour
    assert (np.abs(pixels.astype(int) - c0).sum(-1) < 30).sum() > 200


def test_two_runs_overlaid_by_epoch_and_iteration(runs, tmp_path):
    out = tmp_path / 'overlay.png'
    fig = tool.main([str(runs['a']), str(runs['b']), '--x', 'epoch',
                     '--keys', 'loss', 'lr', 'accuracy/top1', '--legend',
                     'lr 0.1', 'lr 0.02', '--out', str(out)])
    assert decoded(out).shape == (PANEL[1], 3 * PANEL[0], 3)
    loss_ax, lr_ax, acc_ax = fig.axes
    for ax in fig.axes:
        assert set(lines_by_label(ax)) == {'lr 0.1', 'lr 0.02'}
        assert ax.get_xlabel() == 'epoch'
        assert ax.get_legend() is not None
    # logged every 2nd iteration of each epoch (global iterations 2, 4, 7,
    # 9), as fractions of 5-iteration epochs
    a = lines_by_label(loss_ax)['lr 0.1']
    assert list(a.get_xdata()) == pytest.approx([0.4, 0.8, 1.4, 1.8])
    # the lr line of each run follows its own schedule
    assert max(lines_by_label(lr_ax)['lr 0.1'].get_ydata()) == \
        pytest.approx(0.1)
    assert max(lines_by_label(lr_ax)['lr 0.02'].get_ydata()) == \
        pytest.approx(0.02)
    assert list(lines_by_label(acc_ax)['lr 0.1'].get_xdata()) == [1, 2]

    fig = tool.main([str(runs['a']), str(runs['b']), '--keys',
                     'accuracy/top1', '--out', str(out), '--force'])
    ax, = [ax for ax in fig.axes if ax.get_visible()]
    # validation after epoch e is at iteration e * 5; default labels
    line = lines_by_label(ax)['run_a']
    assert list(line.get_xdata()) == [5, 10]
    assert set(lines_by_label(ax)) == {'run_a', 'run_b'}


def test_iteration_based_run(runs, tmp_path):
    fig = tool.main([str(runs['it']), '--keys', 'loss', 'accuracy/top1',
                     '--out', str(tmp_path / 'it.png')])
    loss, acc = (lines_by_label(ax)['run_it'] for ax in fig.axes[:2])
    assert list(loss.get_xdata()) == [2, 4]
    # mmengine logs these validations (after iterations 2, 4 and the last,
    # 5) at step 0; they go to the last training iteration logged before
    # them (5 is not logged: interval 2)
    assert list(acc.get_xdata()) == [2, 4, 4]
    message = fails(runs['it'], '--x', 'epoch')
    assert 'trained by iteration' in message and 'use --x iter' in message


def test_work_dir_uses_its_latest_training_run(runs, tmp_path):
    work_dir = tmp_path / 'run_a'
    shutil.copytree(runs['a'], work_dir)
    first, = [p for p in work_dir.iterdir() if p.is_dir()]
    scalars = (first / 'vis_data' / 'scalars.json').read_text().splitlines()
    later = work_dir / '29990101_000000'
    shutil.copytree(first, later)
    # a later run with 10x the losses, then a test run (no training lines)
    lines = [json.loads(s) for s in scalars]
    (later / 'vis_data' / 'scalars.json').write_text(''.join(
        json.dumps({k: v * 10 if k.startswith('loss') else v
                    for k, v in line.items()}) + '\n' for line in lines))
    test_run = work_dir / '29991231_000000' / 'vis_data'
    test_run.mkdir(parents=True)
    (test_run / 'scalars.json').write_text(
        json.dumps({'accuracy/top1': 1.0, 'step': 0}) + '\n')
    fig = tool.main([str(work_dir), '--keys', 'loss', '--out',
                     str(tmp_path / 'w.png')])
    got = lines_by_label(fig.axes[0])['run_a'].get_ydata()
    assert list(got) == pytest.approx(
        [10 * ln['loss'] for ln in lines if 'loss' in ln])
    # the log folder itself works too
    assert tool.main([str(first), '--keys', 'loss', '--out',
                      str(tmp_path / 'f.png')])


def test_errors(runs, tmp_path):
    assert 'does not exist' in fails(tmp_path / 'nowhere')
    empty = tmp_path / 'empty_work_dir'
    (empty / '20250101_000000').mkdir(parents=True)
    message = fails(empty)
    assert f'{empty} holds no vis_data/scalars.json' in message
    message = fails(runs['a'], '--keys', 'loss', 'mAP')
    assert 'no run logged mAP' in message
    assert 'available: accuracy/top1, data_time, loss, loss_l1, loss_mse, ' \
        'lr, time' in message
    assert '--legend has 1 labels for 2 runs' in fails(
        runs['a'], runs['b'], '--legend', 'x')
    assert not list(tmp_path.glob('*.png'))


def test_error_is_one_line_on_stderr(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.startswith(f'plot_curves.py: error: {tmp_path} holds '
                                  'no vis_data/scalars.json')
