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

from cli.synthetic_shapes import write_coco_shapes, write_imagenet_shapes
from helpers import load_tool, tool_error

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    'det': ROOT / 'configs' / 'poolformer' / 'retinanet_poolformer_s12_coco.py',
    'seg': ROOT / 'configs' / 'poolformer' / 'fpn_poolformer_s12_ade20k.py',
    'cls': ROOT / 'configs' / 'poolformer' / 'poolformer_s12_in1k.py',
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
            'train_dataloader.persistent_workers=False',
            'train_cfg.max_epochs=1',  # a check that fails would train
            *[f'{loader}.dataset.metainfo.classes=(square,circle,triangle)'
              for loader in ('train_dataloader', 'val_dataloader')]]


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


# ------------------------------------------------------- nothing overwritten
def test_keeps_a_user_file_named_like_the_config(coco, tmp_path):
    """No checkpoints, no run logs: the work dir's <config name>.py is the
    user's, not a dump of an earlier run."""
    work = tmp_path / 'work'
    work.mkdir()
    mine = work / CONFIGS['det'].name
    mine.write_text('# my own edited copy\n')
    message = fails(train, *coco_args(coco, work))
    assert f'holds a file {mine.name} that no earlier run wrote' in message
    assert 'Move the file, or choose another --work-dir' in message
    assert mine.read_text() == '# my own edited copy\n'
    assert [p.name for p in work.iterdir()] == [mine.name]


def test_test_out_is_never_replaced_without_force(tmp_path):
    out = tmp_path / 'preds.pkl'
    out.write_bytes(b'my earlier predictions')
    ckpt = tmp_path / 'model.pth'
    ckpt.write_bytes(b'')
    message = fails(test, CONFIGS['cls'], ckpt, '--out', out)
    assert f'--out {out} exists; pass --force' in message
    assert out.read_bytes() == b'my earlier predictions'


# --------------------------------------------- data checked before a run
def edit_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def test_class_names_must_equal_the_categories(coco, tmp_path):
    ann = coco / 'annotations' / 'instances_train2017.json'

    def capitalise(content):
        content['categories'][0]['name'] = 'Square'
    edit_json(ann, capitalise)
    message = fails(train, *coco_args(coco, tmp_path / 'work'),
                    prog='train.py')
    assert f'1 class name(s) of train_dataloader.dataset.metainfo.classes ' \
        f'are no category of {ann}' in message
    assert "'square' (the file has 'Square')" in message
    assert "Its categories are 'Square', 'circle', 'triangle'" in message
    assert not (tmp_path / 'work').exists()


def test_missing_and_empty_images_are_named(coco, tmp_path):
    (coco / 'train2017' / '000001.png').unlink()
    (coco / 'train2017' / '000002.png').write_bytes(b'')
    message = fails(train, *coco_args(coco, tmp_path / 'work'))
    assert 'image(s) of train_dataloader.dataset are listed by the ' \
        f'annotations but do not exist:\n    {coco}/train2017/000001.png' \
        in message
    assert f'are empty (0 bytes):\n    {coco}/train2017/000002.png' in message
    assert '--skip-data-check' in message
    assert not (tmp_path / 'work').exists()


def test_dropped_annotations_are_counted(coco):
    """Boxes with w or h <= 0 and unknown category ids: counted, named and
    logged; the run may go on."""
    from mmengine.config import Config

    from cli import check_samples
    ann = coco / 'annotations' / 'instances_train2017.json'

    def damage(content):
        content['annotations'][0]['bbox'][2] = 0
        content['annotations'][1]['category_id'] = 99
    edit_json(ann, damage)
    cfg = Config.fromfile(str(CONFIGS['det']))
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': f'{coco}/',
                         'train_dataloader.dataset.metainfo.classes':
                         ('square', 'circle', 'triangle')})
    warnings = '\n'.join(check_samples(cfg, ['train_dataloader']))
    assert f'1 annotation(s) in {ann} name a category_id its "categories" ' \
        'do not define' in warnings
    assert f'1 box(es) in {ann} have a width or height <= 0' in warnings
    assert f'{coco}/train2017/00000' in warnings


def test_a_dataset_without_usable_samples_is_refused(coco, tmp_path):
    ann = coco / 'annotations' / 'instances_train2017.json'

    def flatten(content):
        for a in content['annotations']:
            a['bbox'][3] = 0
    edit_json(ann, flatten)
    message = fails(train, *coco_args(coco, tmp_path / 'work'))
    assert f'CocoDataset found no usable samples in {ann} (no image with a ' \
        'usable box' in message


# --------------------------------------------- config caught at build time
def test_neck_channels_must_match_the_backbone(coco, tmp_path):
    message = fails(train, *coco_args(coco, tmp_path / 'work'),
                    'model.neck.in_channels=[64,128,320]', prog='train.py')
    assert 'model.neck.in_channels [64, 128, 320] do not match the ' \
        'channels [128, 320, 512] of the maps the backbone returns ' \
        '(out_indices (1, 2, 3))' in message
    assert 'set model.neck.in_channels=[128, 320, 512]' in message
    assert not (tmp_path / 'work').exists()


def test_unknown_cfg_options_name_the_nearest_key():
    from mmengine.config import Config

    from cli.runner import warn_unknown_options
    cfg = Config.fromfile(str(CONFIGS['det']))
    warnings = warn_unknown_options(
        cfg, {'train_dataloder.batch_size': 4, 'optim_wrapper.type': 'X',
              'resume': True})
    assert warnings == [
        "--cfg-options train_dataloder.batch_size: the config has no key "
        "'train_dataloder' and the Runner does not read one, so this option "
        "has no effect; did you mean 'train_dataloader'?"]
