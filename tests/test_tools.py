"""What tools/train.py and tools/test.py tell a user whose data is missing
or broken, and what they refuse to overwrite.

Most cases call the tools' ``main(argv)`` in this process (they stop before
or while building datasets); one case per kind runs the real command line to
check the exit status and that stderr holds the message, not a traceback.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmpoolformer.datasets import write_coco_shapes, write_imagenet_shapes

from helpers import load_tool, tool_error

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    'det': ROOT / 'configs' / 'retinanet_poolformer_s12_coco.py',
    'seg': ROOT / 'configs' / 'fpn_poolformer_s12_ade20k.py',
    'cls': ROOT / 'configs' / 'poolformer_s12_in1k.py',
}


train, test = load_tool('train.py'), load_tool('test.py')
fails = tool_error


def cli(tool, *argv, cwd):
    return subprocess.run(
        [sys.executable, str(ROOT / 'tools' / f'{tool}.py'), *map(str, argv)],
        cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_clean_failure(proc, *expected):
    """Exit status 1 and one message on stderr, no traceback."""
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    for text in expected:
        assert text in proc.stderr, proc.stderr[-3000:]


# what the message must show for each task: a missing path and the layout
MISSING = {
    'det': ['data/coco/', 'annotations/instances_train2017.json',
            'train2017/'],
    'seg': ['data/ade/ADEChallengeData2016/',
            'train_dataloader.dataset.dataset.data_root',  # in RepeatDataset
            'images/training/', 'annotations/training/'],
    'cls': ['data/imagenet/', 'train/<class>/', 'meta/train.txt'],
}


@pytest.mark.parametrize('task', list(MISSING))
def test_missing_dataset_names_paths_layout_and_demo(task, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' relative data/ is not here
    message = fails(train, CONFIGS[task], '--work-dir', tmp_path / 'work')
    assert message.startswith('train.py: error: ')
    assert 'missing' in message and '`make demo`' in message
    for text in MISSING[task]:
        assert text in message, message
    assert not (tmp_path / 'work').exists()  # stopped before the Runner

    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'not loaded: the check comes first')
    message = fails(test, CONFIGS[task], ckpt, '--work-dir', tmp_path / 't')
    assert message.startswith('test.py: error: ')
    assert MISSING[task][0] in message and '`make demo`' in message


def test_missing_dataset_on_the_command_line(tmp_path):
    assert_clean_failure(
        cli('train', CONFIGS['det'], cwd=tmp_path),
        'train.py: error: the COCO 2017 data this run needs is missing',
        'data/coco/', '`make demo`')


def test_partly_missing_dataset_names_exactly_what_is_missing(tmp_path):
    root = tmp_path / 'coco'
    write_coco_shapes(root, num_train=1, num_val=1, image_size=32)
    shutil.rmtree(root / 'train2017')
    (root / 'annotations' / 'instances_val2017.json').unlink()
    message = fails(
        train, CONFIGS['det'], '--work-dir', tmp_path / 'work',
        '--cfg-options', f'train_dataloader.dataset.data_root={root}/',
        f'val_dataloader.dataset.data_root={root}/',
        f'val_evaluator.ann_file={root}/annotations/instances_val2017.json')
    lines = [line.split()[0] for line in message.splitlines()
             if line.startswith('  ') and '(' in line]
    assert lines == [f'{root}/train2017/',
                     f'{root}/annotations/instances_val2017.json']


def test_missing_checkpoint(tmp_path):
    message = fails(test, CONFIGS['cls'], tmp_path / 'nope.pth')
    assert f'checkpoint {tmp_path}/nope.pth does not exist' in message


def coco_args(root, work_dir):
    return [CONFIGS['det'], '--work-dir', work_dir, '--cfg-options',
            'model.backbone.init_cfg=None',
            f'train_dataloader.dataset.data_root={root}/',
            f'val_dataloader.dataset.data_root={root}/',
            f'val_evaluator.ann_file={root}/annotations/instances_val2017.json',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False']


@pytest.fixture
def coco(tmp_path):
    root = tmp_path / 'coco'
    write_coco_shapes(root, num_train=2, num_val=1, image_size=32)
    return root


def test_invalid_json_on_the_command_line(coco, tmp_path):
    ann = coco / 'annotations' / 'instances_train2017.json'
    ann.write_text(ann.read_text()[:100])  # truncated
    proc = cli('train', *coco_args(coco, tmp_path / 'work'), cwd=tmp_path)
    assert_clean_failure(proc, f'CocoDataset could not read {ann}',
                         'JSONDecodeError', '"images", "annotations"')


@pytest.mark.parametrize('drop', ['images', 'annotations', 'categories'])
def test_coco_json_without_a_section(drop, coco, tmp_path):
    ann = coco / 'annotations' / 'instances_train2017.json'
    content = json.loads(ann.read_text())
    del content[drop]
    ann.write_text(json.dumps(content))
    message = fails(train, *coco_args(coco, tmp_path / 'work'))
    assert str(ann) in message
    if drop == 'categories':  # mmdet looks the class names up: KeyError
        assert "KeyError: 'categories'" in message
    else:  # no image, or no image with objects (filter_empty_gt): empty
        assert f'CocoDataset found no usable samples in {ann}' in message
    assert 'Traceback' not in message


def test_broken_imagenet_list(tmp_path):
    root = tmp_path / 'imagenet'
    write_imagenet_shapes(root, num_train_per_class=1, num_val_per_class=1,
                          image_size=32)
    (root / 'meta' / 'train.txt').write_text('square/00000.png\n')  # no label
    message = fails(train, CONFIGS['cls'], '--work-dir', tmp_path / 'work',
                    '--cfg-options', *[f'{loader}.dataset.data_root={root}'
                                       for loader in ('train_dataloader',
                                                      'val_dataloader')])
    assert f'ImageNet could not read {root}/meta/train.txt: ValueError' \
        in message


def test_other_errors_keep_their_traceback(coco, tmp_path):
    """Only errors raised while a dataset reads its annotations are turned
    into a message; a wrong transform name in the pipeline is not one."""
    args = coco_args(coco, tmp_path / 'work') + [
        'train_dataloader.dataset.pipeline.0.type=NoSuchTransform']
    with pytest.raises(KeyError, match='NoSuchTransform'):
        train.main([str(a) for a in args])


def test_refuses_to_overwrite_an_earlier_run(coco, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    owned = {'epoch_1.pth': b'weights of an earlier run',
             'last_checkpoint': str(work / 'epoch_1.pth').encode(),
             'notes.txt': b'mine', 'pretrained.pth': b'mine too'}
    for name, data in owned.items():
        (work / name).write_bytes(data)
    message = fails(train, *coco_args(coco, work))
    assert 'already holds checkpoints of an earlier run (epoch_1.pth, ' \
        'last_checkpoint)' in message and '--resume' in message
    assert {p.name: p.read_bytes() for p in work.iterdir()} == owned


def test_refuses_a_work_dir_holding_the_config(coco, tmp_path):
    config = tmp_path / 'my_configs' / CONFIGS['det'].name
    config.parent.mkdir()
    shutil.copy(CONFIGS['det'], config)
    before = config.read_bytes()
    args = coco_args(coco, config.parent)
    args[0] = config
    message = fails(train, *args)
    assert 'holds the config' in message and 'another --work-dir' in message
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    assert 'holds the config' in fails(test, config, ckpt, '--work-dir',
                                       config.parent)
    assert config.read_bytes() == before
    assert sorted(p.name for p in config.parent.iterdir()) == [config.name]


def test_amp_needs_an_accelerator(coco, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: --amp is valid here')
    message = fails(train, *coco_args(coco, tmp_path / 'work'), '--amp')
    assert '--amp needs a GPU' in message


def test_cluster_launchers_need_gpus(coco, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('a GPU is present')
    message = fails(train, *coco_args(coco, tmp_path / 'work'),
                    '--launcher', 'slurm')
    assert '--launcher slurm needs CUDA GPUs' in message


def test_non_openmmlab_scope(tmp_path):
    config = tmp_path / 'plain.py'
    config.write_text("default_scope = 'mmengine'\n")
    assert "default_scope='mmengine'" in fails(train, config)
