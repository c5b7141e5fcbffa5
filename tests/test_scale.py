"""At full scale: the pre-flight data check is bounded and done once per
job, every file has one writer, and a job spans nodes.

Real ``tools/dist_train.sh`` / ``dist_test.sh`` runs (torchrun, gloo on the
CPU) of the tiny classifier of ``test_reliability``. The runs that repeat
or span nodes are marked ``slow`` (``pytest -m 'not slow'`` leaves them out
of a quick local run; ``make test`` runs them).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mmengine.config import Config
from test_ddp import free_port
from test_reliability import env, run_train, write_configs

from cli import sample_check
from cli.sample_check import check_images, check_samples

ROOT = Path(__file__).resolve().parents[1]


def dist_env(**extra):
    path = f'{Path(sys.executable).parent}{os.pathsep}' \
        f'{os.environ.get("PATH", "")}'
    return dict(env(), PATH=path, **{k: str(v) for k, v in extra.items()})


def dist(script, *args, timeout=300, **env_vars):
    return subprocess.run(
        ['bash', str(ROOT / 'tools' / script), *map(str, args)], cwd=ROOT,
        env=dist_env(PORT=free_port(), **env_vars), capture_output=True,
        text=True, timeout=timeout)


def train_images(root):
    return sorted((root / 'train').rglob('*.png'))


# ------------------------------------------------------- pre-flight check
def test_a_long_training_list_is_sampled(tmp_path, monkeypatch):
    """Above the limit every listed file is looked up in its folder, a
    random sample of headers is read, and the loader skips the rest; the
    full check (decode) still finds everything."""
    root, _ = write_configs(tmp_path, keep=-1)
    images = [str(p) for p in train_images(root)]
    (Path(images[0])).unlink()  # missing: found by the folder listing
    Path(images[1]).write_bytes(b'')  # empty: found if sampled
    Path(images[2]).write_bytes(Path(images[2]).read_bytes()[:40])
    every = check_images(images)
    assert every == {'missing': [images[0]], 'empty': [images[1]],
                     'truncated': [images[2]]}
    assert check_images(images, decode=True) == {
        'missing': [images[0]], 'empty': [images[1]],
        'undecodable': [images[2]]}
    sampled = check_images(images, sample=3)
    assert sampled['missing'] == [images[0]]
    assert sum(map(len, sampled.values())) <= 1 + 3  # at most the sample
    assert check_images(images, sample=3) == sampled  # seeded by the list
    assert check_images(images, sample=len(images)) == every

    # through the tools' check: the sampled default, said in the log
    cfg = Config.fromfile(str(tmp_path / 'configs' / 'tiny_cls.py'))
    monkeypatch.setattr(sample_check, 'FULL_CHECK_UP_TO', 4)
    monkeypatch.setattr(sample_check, 'SAMPLE', 2)
    with pytest.raises(sample_check.DatasetError, match='do not exist'):
        check_samples(cfg, ['train_dataloader'])
    Path(images[0]).write_bytes(Path(images[3]).read_bytes())
    Path(images[1]).write_bytes(Path(images[3]).read_bytes())
    Path(images[2]).write_bytes(Path(images[3]).read_bytes())
    logged = []
    monkeypatch.setattr(sample_check, 'print_log',
                        lambda msg, **kw: logged.append(msg))
    check_samples(cfg, ['train_dataloader'])
    assert any('headers of 2 chosen at random' in m and
               f'all {len(images)} images' in m for m in logged), logged


def test_the_main_rank_checks_and_the_others_wait(tmp_path):
    """Two ranks, a truncated training image: the main rank reports it
    once, the other rank stops without reading the data itself."""
    root, base = write_configs(tmp_path, keep=-1)
    image = train_images(root)[5]
    image.write_bytes(image.read_bytes()[:40])
    proc = dist('dist_train.sh', base, 2, '--work-dir', tmp_path / 'work')
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count('are cut short') == 1, out[-3000:]
    assert str(image) in out
    assert 'stopped on rank 1: the main rank found a problem' in out
    assert 'train.py", line' not in out, out[-3000:]  # no traceback of ours
    assert not list((tmp_path / 'work').glob('*.pth'))


# ------------------------------------------------------ one writer per file
TEST_PART = '''
test_dataloader = dict(
    batch_size=2, num_workers=0,
    dataset=dict(type='CustomDataset', data_root={root!r},
                 ann_file='meta/val.txt', data_prefix='val',
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='PackInputs')]),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = dict(type='Accuracy', topk=(1, ))
test_cfg = dict()
'''


def test_configs_and_tools_use_one_writer_for_the_metrics_file():
    from cli.runner import one_writer_per_file
    cfg = Config.fromfile(
        str(ROOT / 'configs' / 'poolformer' / 'poolformer_s12_in1k.py'))
    assert cfg.default_hooks.logger.type == 'mmpoolformer.RankZeroLoggerHook'
    cfg = Config(dict(default_hooks=dict(
        logger=dict(type='LoggerHook', interval=5),
        checkpoint=dict(type='mmengine.CheckpointHook', interval=2,
                        max_keep_ckpts=1))))
    hooks = one_writer_per_file(cfg).default_hooks
    assert hooks.logger == dict(type='mmpoolformer.RankZeroLoggerHook',
                                interval=5)
    assert hooks.checkpoint == dict(type='mmpoolformer.SafeCheckpointHook',
                                    interval=2, max_keep_ckpts=1)
    mine = Config(dict(default_hooks=dict(checkpoint=dict(
        type='MyCheckpointHook'))))  # a user's own hook is theirs
    assert one_writer_per_file(mine).default_hooks.checkpoint.type == \
        'MyCheckpointHook'
    bare = one_writer_per_file(Config(dict())).default_hooks
    assert bare.checkpoint == dict(type='mmpoolformer.SafeCheckpointHook',
                                   interval=1)
    off = Config(dict(default_hooks=dict(checkpoint=None)))
    assert one_writer_per_file(off).default_hooks.checkpoint is None


@pytest.mark.slow
def test_two_rank_test_writes_a_whole_metrics_file_every_time(tmp_path):
    """``dist_test.sh`` with 2 ranks, 20 times: the metrics JSON parses
    every time, and it is the only JSON of the run."""
    root, base = write_configs(tmp_path, keep=-1)
    config = base.parent / 'tiny_test.py'
    config.write_text(base.read_text() + TEST_PART.format(root=str(root)))
    run_train(config, tmp_path / 'train', '--cfg-options',
              'train_cfg.max_iters=2')
    ckpt = tmp_path / 'train' / 'iter_2.pth'
    accuracies = set()
    for i in range(20):
        work = tmp_path / f'test{i}'
        proc = dist('dist_test.sh', config, ckpt, 2, '--work-dir', work)
        assert proc.returncode == 0, proc.stderr[-3000:]
        files = [p for p in work.glob('*/*.json') if p.stem == p.parent.name]
        assert len(files) == 1, files
        accuracies.add(json.loads(files[0].read_text())['accuracy/top1'])
    assert len(accuracies) == 1  # the same checkpoint, the same metric


# --------------------------------------------------------- several nodes
def losses(work):
    """``{iter: loss}`` logged by the runs in ``work``, each iteration's
    latest record (a resumed run repeats none)."""
    out = {}
    for run in sorted(work.glob('*/vis_data/scalars.json')):
        for line in run.read_text().splitlines():
            record = json.loads(line)
            if 'loss' in record:
                out[record['iter']] = record['loss']
    return out


def two_nodes(config, work, *extra, kill_after=None):
    """``dist_train.sh CONFIG 1`` on two 'nodes' (two torchrun launches on
    the loopback address, NODE_RANK 0 and 1); with ``kill_after`` both are
    SIGKILLed once the main node has saved that iteration's checkpoint."""
    port = free_port()
    procs = []
    for node in (0, 1):
        log = open(work.parent / f'{work.name}_node{node}.log', 'a')
        procs.append(subprocess.Popen(
            ['bash', str(ROOT / 'tools' / 'dist_train.sh'), str(config), '1',
             '--work-dir', str(work), *map(str, extra)], cwd=ROOT,
            env=dist_env(NNODES=2, NODE_RANK=node, MASTER_ADDR='127.0.0.1',
                         PORT=port), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))
    if kill_after is not None:
        saved = work / f'iter_{kill_after}.pth'
        deadline = time.time() + 300
        while not saved.exists() and time.time() < deadline and \
                all(p.poll() is None for p in procs):
            time.sleep(0.1)
        assert saved.exists(), 'the run ended before its checkpoint'
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
    codes = [p.wait(timeout=300) for p in procs]
    text = ''.join((work.parent / f'{work.name}_node{n}.log').read_text()
                   for n in (0, 1))
    if kill_after is None:
        assert codes == [0, 0], text[-4000:]
    return text


@pytest.mark.slow
def test_two_nodes_train_is_killed_and_resumes_to_the_same_losses(tmp_path):
    _, base = write_configs(tmp_path, keep=-1)
    config = base.parent / 'two_nodes.py'
    config.write_text(f"_base_ = ['./{base.name}']\n"
                      "train_cfg = dict(max_iters=10)\n")
    whole = tmp_path / 'whole'
    text = two_nodes(config, whole)
    assert 'GPU number: 2' in text  # mmengine's count of the job's ranks
    expected = losses(whole)
    assert sorted(expected) == list(range(1, 11))

    cut = tmp_path / 'cut'
    two_nodes(config, cut, kill_after=4)
    first = losses(cut)
    assert 4 <= max(first) < 10
    two_nodes(config, cut, '--resume')
    got = losses(cut)
    assert sorted(got) == list(range(1, 11))
    for it in range(1, 11):
        assert abs(got[it] - expected[it]) <= 1e-5 * abs(expected[it]), (
            it, got[it], expected[it])
