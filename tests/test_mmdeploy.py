"""Whole models to onnxruntime through mmdeploy (tools/deployment/deploy.py
with configs/deploy/): the demo's trained RetinaNet and Semantic FPN give
the predictions and the metric (real CocoMetric / IoUMetric) of PyTorch,
the exported graph holds the task's post-processing, and the backbone in it
is folded by switch_to_deploy() with the outputs of the model as trained."""
import copy
import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from helpers import ROOT, load_tool, randomise_, tool_error

pytest.importorskip('mmdeploy.apis', reason='mmdeploy is installed by '
                    '`make install`')
deploy = load_tool('deployment/deploy.py')

DEPLOY = ROOT / 'configs' / 'deploy'
# task: (deploy config, the config the demo writes, metric, the largest
# metric difference allowed (mAP as a fraction, mIoU in %), an op of the
# task's post-processing in the graph)
TASKS = {
    'det': ('detection_onnxruntime_dynamic.py',
            'retinanet_poolformer_s12_coco.py', 'coco/bbox_mAP', 1e-3,
            'NonMaxSuppression'),
    'seg': ('segmentation_onnxruntime_dynamic.py',
            'fpn_poolformer_s12_ade20k.py', 'mIoU', 0.1, 'ArgMax'),
}


@pytest.mark.parametrize('task', sorted(TASKS))
def test_onnxruntime_model_keeps_predictions_and_metric(task, demo_model,
                                                        tmp_path):
    work, iters = demo_model(task)
    deploy_cfg, config, metric, tol, op = TASKS[task]
    report_file = tmp_path / 'report.json'
    report = deploy.main([str(DEPLOY / deploy_cfg), str(work / config),
                          str(work / f'iter_{iters}.pth'), '--work-dir',
                          str(tmp_path / 'out'), '--metric', '--json',
                          str(report_file)])
    figures = report['agreement']
    assert report['switched_to_deploy']
    print(task, figures, {k: v[metric] for k, v in report['metrics'].items()})
    if task == 'det':
        assert figures['matched'] >= 4 and figures['unmatched'] == 0
        assert figures['box_iou'] >= 0.99 and figures['score'] <= 1e-3
    else:
        assert figures['pixels'] >= 0.999
    pytorch = report['metrics']['pytorch'][metric]
    assert pytorch > 0, f'the demo model did not learn: {metric} {pytorch}'
    assert abs(report['metric_difference']) <= tol, report['metrics']
    assert json.loads(report_file.read_text())['agreement'] == figures
    graph = onnx.load(str(tmp_path / 'out' / 'end2end.onnx')).graph
    assert op in {n.op_type for n in graph.node}


def test_deploy_refuses_what_it_cannot_do(demo_model, tmp_path):
    work, iters = demo_model('det')
    deploy_cfg, config = DEPLOY / TASKS['det'][0], work / TASKS['det'][1]
    checkpoint = work / f'iter_{iters}.pth'
    out = tmp_path / 'end2end.onnx'
    out.write_bytes(b'user data')
    message = tool_error(deploy, deploy_cfg, config, checkpoint,
                         '--work-dir', tmp_path, prog='deploy.py')
    assert '--force' in message and out.read_bytes() == b'user data'
    assert 'does not exist' in tool_error(deploy, deploy_cfg, config,
                                          tmp_path / 'missing.pth')
    assert 'not an mmdeploy deploy config' in tool_error(
        deploy, config, config, checkpoint, '--work-dir', tmp_path / 'x')


def test_riformer_classifier_is_exported_folded_and_equal(tmp_path):
    """The exported graph holds the model after switch_to_deploy() (RIFormer's
    affine mixer folded into its norm, norm affines and layer scales into
    the 1x1 layers: no more weights than the folded model has), its class
    scores those of the model as trained; --no-switch-to-deploy too."""
    from mmengine.config import Config
    from mmpretrain.registry import MODELS

    config = ROOT / 'configs' / 'metaformer' / 'riformer_s12_in1k.py'
    cfg = Config.fromfile(str(config))
    cfg.model.backbone.init_cfg = None
    model = randomise_(MODELS.build(cfg.model))
    with torch.no_grad():  # peaked scores: a wrong fold moves them far
        model.head.fc.weight.mul_(30)
    checkpoint = tmp_path / 'riformer.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    folded = copy.deepcopy(model.backbone)
    folded.switch_to_deploy()
    folded_weights = sum(p.numel() for p in folded.parameters()) + sum(
        p.numel() for p in model.head.parameters())
    assert folded_weights < sum(p.numel() for p in model.parameters())
    image = tmp_path / 'image.png'
    Image.fromarray(np.random.default_rng(0).integers(
        0, 256, (120, 160, 3), dtype=np.uint8)).save(image)
    for name, extra in (('folded', []), ('trained', ['--no-switch-to-deploy'])):
        out = tmp_path / name
        report = deploy.main([
            str(DEPLOY / 'classification_onnxruntime_dynamic.py'),
            str(config), str(checkpoint), '--images', str(image),
            '--work-dir', str(out), *extra])
        graph = onnx.load(str(out / 'end2end.onnx')).graph
        weights = sum(int(np.prod(t.dims)) for t in graph.initializer)
        print(name, report['agreement'], weights, folded_weights)
        assert report['switched_to_deploy'] == (name == 'folded')
        assert report['agreement']['class_score'] <= 1e-4
        assert report['agreement']['same_label'] == 1.0
        assert weights <= folded_weights


def test_adaptive_pool_rewrite_is_exact_at_any_size():
    from mmpoolformer.deployment.mmdeploy_rewriters import adaptive_avg_pool2d_by_bins
    gen = torch.Generator().manual_seed(0)
    for size in ((5, 7), (16, 22), (13, 13), (6, 12)):
        x = torch.randn(2, 3, *size, generator=gen, dtype=torch.float64)
        for bins in (1, 2, 3, 6, (2, 3)):
            torch.testing.assert_close(
                adaptive_avg_pool2d_by_bins(x, bins),
                torch.nn.functional.adaptive_avg_pool2d(x, bins))


def test_upernet_pyramid_pooling_is_exported_exactly(tmp_path):
    """UPerNet's pyramid pooling (bins 1, 2, 3, 6) on a 5x7 last map, a
    multiple of no bin but 1: the label map of PyTorch (a pixel or two of
    a random model's near-tied classes may flip: 1 of 35,840 on one stack).
    mmdeploy's own rewrite fails on this map (a 0 kernel)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    config = ROOT / 'configs' / 'metaformer' / 'upernet_convformer_s18_ade20k.py'
    options = {'model.decode_head.norm_cfg.type': 'BN',
               'model.auxiliary_head.norm_cfg.type': 'BN',
               'model.backbone.init_cfg': None,
               'test_pipeline.1.scale': (224, 160)}
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(options)
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model)
    randomise_(model.backbone)
    checkpoint = tmp_path / 'upernet.pth'
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    image = tmp_path / 'image.png'
    Image.fromarray(np.random.default_rng(0).integers(
        0, 256, (160, 224, 3), dtype=np.uint8)).save(image)
    report = deploy.main([
        str(DEPLOY / 'segmentation_onnxruntime_dynamic.py'), str(config),
        str(checkpoint), '--images', str(image), '--work-dir',
        str(tmp_path / 'out'), '--cfg-options',
        *(f'{k}={v}'.replace(' ', '') for k, v in options.items())])
    print(report['agreement'])
    assert report['agreement']['pixels'] >= 0.9999
