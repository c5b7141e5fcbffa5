"""Grad-CAM and prediction drawings run on CPU on tiny models and write
real, non-blank PNGs; bad inputs give one clear error."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmpoolformer.visualization import load_model

from helpers import load_tool

ROOT = Path(__file__).parents[1]
TINY = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64])


def tool(path):
    return load_tool(path.removeprefix('tools/'))


def tiny_config(tmp_path, name, **backbone):
    cfg = Config.fromfile(str(ROOT / 'configs' / name))
    cfg.model.backbone.arch = dict(TINY)
    cfg.model.backbone.update(backbone)
    if cfg.default_scope == 'mmpretrain':
        cfg.model.head.in_channels = 64
    elif cfg.default_scope == 'mmdet':
        cfg.model.neck.in_channels = [32, 48, 64]
    else:
        cfg.model.neck.in_channels = TINY['embed_dims']
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    path = tmp_path / f'tiny_{Path(name).name}'
    cfg.dump(str(path))
    return str(path)


def checkpoint_of(config, tmp_path, seed=0):
    torch.manual_seed(seed)
    model, _ = load_model(config)
    path = tmp_path / f'{Path(config).stem}.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return str(path)


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    gen = np.random.default_rng(0)
    img = np.full((96, 128, 3), 40, np.uint8)
    cv2.rectangle(img, (20, 20), (70, 80), (30, 200, 240), -1)
    cv2.circle(img, (100, 40), 18, (240, 60, 60), -1)
    img = np.clip(img + gen.integers(0, 20, img.shape), 0, 255).astype(
        np.uint8)
    path = tmp_path_factory.mktemp('img') / 'shapes.png'
    cv2.imwrite(str(path), img)
    return str(path)


def read_png(path):
    png = cv2.imread(str(path))
    assert png is not None, path
    return png


def test_grad_cam_of_a_classifier_and_compare(tmp_path, image):
    cfg = tiny_config(tmp_path, 'poolformer/poolformer_s12_in1k.py')
    ckpt = checkpoint_of(cfg, tmp_path)
    vis = tool('tools/visualization/vis_cam.py')
    single = vis.main([image, cfg, ckpt, '--size', '64',
                       '--out', str(tmp_path / 'cam.png')])
    png = read_png(single)
    assert png.shape[1] == 2 * 64 and png.std() > 10
    left, right = png[28:, :64], png[28:, 64:]
    assert np.abs(left.astype(int) - right).mean() > 5  # the overlay shows
    det = tiny_config(tmp_path, 'poolformer/retinanet_poolformer_s12_coco.py')
    both = vis.main([image, '--compare', cfg, ckpt, det, 'none',
                     '--size', '64', '--out', str(tmp_path / 'cmp.png')])
    assert read_png(both).shape[1] == 3 * 64


@pytest.mark.parametrize('name', ['poolformer/poolformer_s12_in1k.py',
                                  'poolformer/retinanet_poolformer_s12_coco.py',
                                  'poolformer/fpn_poolformer_s12_ade20k.py'])
def test_image_demo_draws_each_task(tmp_path, image, name):
    cfg = tiny_config(tmp_path, name)
    ckpt = checkpoint_of(cfg, tmp_path)
    demo = tool('tools/demo/image_demo.py')
    written = demo.main([image, cfg, ckpt, '--out-dir', str(tmp_path / 'o'),
                         '--score-thr', '0.0'])
    png = read_png(written[0])
    assert png.shape[:2] == (96, 128) and png.std() > 10
    assert np.abs(png.astype(int) - read_png(image)).mean() > 0.5


def test_clear_errors(tmp_path, image):
    cls = tiny_config(tmp_path, 'poolformer/poolformer_s12_in1k.py')
    det = tiny_config(tmp_path, 'poolformer/retinanet_poolformer_s12_coco.py')
    det_ckpt = checkpoint_of(det, tmp_path)
    demo = tool('tools/demo/image_demo.py')
    with pytest.raises(SystemExit, match='does not fit'):
        demo.main([image, cls, det_ckpt])
    with pytest.raises(SystemExit, match='neither an image nor a folder'):
        demo.main([str(tmp_path / 'nope.png'), cls, det_ckpt])
    with pytest.raises(SystemExit, match='does not exist'):
        tool('tools/visualization/vis_cam.py').main(
            [image, str(tmp_path / 'missing.py'), 'none'])


# --------------------------------------------------- the user's files stay
def digest(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()}


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cls')
    cfg = tiny_config(tmp, 'poolformer/poolformer_s12_in1k.py')
    return cfg, checkpoint_of(cfg, tmp)


def test_image_demo_refuses_to_write_among_its_inputs(tmp_path, image,
                                                      classifier):
    photos = tmp_path / 'photos'
    photos.mkdir()
    img = cv2.imread(image)
    cv2.imwrite(str(photos / 'x.png'), img)
    before = digest(photos)
    demo = tool('tools/demo/image_demo.py')
    with pytest.raises(SystemExit, match='holds the input images'):
        demo.main([str(photos), *classifier, '--out-dir', str(photos)])
    with pytest.raises(SystemExit, match='holds the input images'):
        demo.main([str(photos / 'x.png'), *classifier, '--out-dir',
                   f'{photos}/.'])
    assert digest(photos) == before

    out = tmp_path / 'out'
    out.mkdir()
    (out / 'x.png').write_bytes(b'my own drawing')
    with pytest.raises(SystemExit, match=r'1 drawing\(s\) exist in --out-dir'):
        demo.main([str(photos), *classifier, '--out-dir', str(out)])
    assert (out / 'x.png').read_bytes() == b'my own drawing'
    demo.main([str(photos), *classifier, '--out-dir', str(out), '--force'])
    assert read_png(out / 'x.png').shape[:2] == (96, 128)


def test_image_demo_unique_names_and_unreadable_images(tmp_path, image,
                                                       classifier):
    photos = tmp_path / 'photos'
    photos.mkdir()
    img = cv2.imread(image)
    cv2.imwrite(str(photos / 'x.png'), img)
    cv2.imwrite(str(photos / 'x.jpg'), img[:64])  # another picture, same stem
    (photos / 'empty.png').write_bytes(b'')
    (photos / 'notes.jpg').write_text('not an image')
    before = digest(photos)
    demo = tool('tools/demo/image_demo.py')
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as info:
        demo.main([str(photos), *classifier, '--out-dir', str(out)])
    message = info.value.code
    assert message.startswith('image_demo.py: error: 2 of 4 images could not '
                              'be read and were skipped')
    assert str(photos / 'empty.png') in message
    assert str(photos / 'notes.jpg') in message
    assert sorted(p.name for p in out.iterdir()) == ['x_jpg.png', 'x_png.png']
    assert read_png(out / 'x_jpg.png').shape[:2] == (64, 128)
    assert read_png(out / 'x_png.png').shape[:2] == (96, 128)
    assert digest(photos) == before


def test_vis_cam_never_replaces_without_force(tmp_path, image, classifier):
    out = tmp_path / 'cam.png'
    out.write_bytes(b'my figure')
    vis = tool('tools/visualization/vis_cam.py')
    with pytest.raises(SystemExit, match='exists; pass --force'):
        vis.main([image, *classifier, '--size', '64', '--out', str(out)])
    assert out.read_bytes() == b'my figure'
    vis.main([image, *classifier, '--size', '64', '--out', str(out),
              '--force'])
    assert read_png(out).shape[1] == 2 * 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cam.png']
