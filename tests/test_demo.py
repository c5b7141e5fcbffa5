"""The README's demo runs end to end (shortened) and writes its picture."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('task, metric', [('det', 'bbox mAP'), ('seg', 'mIoU')])
def test_demo_runs_and_reports_both_figures(task, metric, tmp_path):
    result = subprocess.run(
        [sys.executable, 'tools/demo.py', '--task', task, '--iters', '6',
         '--num-train', '8', '--num-val', '4', '--image-size', '64',
         '--work-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert 'overrides for a short from-scratch CPU run' in out
    figures = re.findall(rf'{metric} (?:untrained|after 6 iterations): ([\d.]+)', out)
    assert len(figures) == 2 and all(float(f) >= 0 for f in figures)
    assert 'Iter(train) [6/6]' in result.stdout + result.stderr  # Runner logging
    png = cv2.imread(str(tmp_path / task / 'predictions.png'))
    assert png is not None and png.shape[0] >= 64 and png.std() > 1
    assert (tmp_path / task / 'iter_6.pth').is_file()


@pytest.mark.parametrize('iters', ['0', '-3', 'ten'])
def test_demo_refuses_a_bad_iteration_count(iters, capsys):
    from helpers import load_tool
    demo = load_tool('demo.py')
    with pytest.raises(SystemExit) as info:
        demo.parse_args(['--iters', iters])
    assert info.value.code == 2  # argparse: usage error
    assert f"argument --iters: {iters!r} is not a whole number >= 1" in \
        capsys.readouterr().err


@pytest.mark.parametrize('iters', [1, 2, 4, 5, 300])
def test_demo_schedule_is_valid_for_any_length(iters, tmp_path):
    """--iters 1..4 once gave a LinearLR with end=0 (ValueError); every
    length must build schedulers that cover exactly ``iters`` steps."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    from helpers import load_tool
    demo = load_tool('demo.py')
    cfg = demo.common_overrides(str(tmp_path), iters)
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, {
        k: v for k, v in cfg['optim_wrapper'].items() if k != '_delete_'})
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in cfg['param_scheduler']]
    assert schedulers[0].begin == 0 and schedulers[-1].end == iters
    assert all(s.begin < s.end for s in schedulers)


@pytest.mark.parametrize('config', [
    'poolformer/retinanet_poolformer_s12_coco.py',
    'poolformer/mask_rcnn_poolformer_s12_coco.py',
    'poolformer/cascade_mask_rcnn_poolformer_s12_coco_3x.py'])
def test_demo_sets_the_classes_of_every_head(config):
    """--config of another detector: every head that classifies gets the
    synthetic data's classes (Mask R-CNN's box and mask heads, a cascade's
    three stages), and the model builds."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmpoolformer import register_all_modules

    from helpers import ROOT, load_tool
    demo = load_tool('demo.py')
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    heads = demo.set_num_classes(cfg.model, 3)
    expected = {'retinanet': ['model.bbox_head'],
                'mask_rcnn': ['model.roi_head.bbox_head',
                              'model.roi_head.mask_head'],
                'cascade_mask_rcnn': [
                    'model.roi_head.bbox_head.0', 'model.roi_head.bbox_head.1',
                    'model.roi_head.bbox_head.2', 'model.roi_head.mask_head']}
    assert heads == expected[config.split('/')[1].split('_poolformer')[0]]
    register_all_modules()
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    built = {n: m.num_classes for n, m in model.named_modules()
             if isinstance(getattr(m, 'num_classes', None), int)
             and n != 'rpn_head'}  # proposals: one class, by design
    assert set(built.values()) == {3}
    assert all(any(n.startswith(h[len('model.'):]) for n in built)
               for h in heads)
