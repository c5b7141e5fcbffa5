"""int8 and bf16 inference of whole models, measured with the configs' own
metrics (tools/deployment/quantize.py, mmpoolformer.deployment.quantize):
the demo's Semantic FPN and RetinaNet, trained briefly on the synthetic
shapes, evaluated by the real IoUMetric / CocoMetric in fp32, bf16 and
int8 (onnxruntime static quantization)."""
import json

import onnx
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

import mmpoolformer
from mmpoolformer.deployment import TensorPart, export_onnx, ort_session, quantize_onnx, run_session

from helpers import ROOT, load_tool, randomise_, tool_error

quantize = load_tool('deployment/quantize.py')

# (task, iterations, the config the demo writes, the metric, a floor that
# says the model learned, allowed drops bf16 / int8 in the metric's unit:
# mIoU in %, mAP as a fraction)
TASKS = {
    'seg': (60, 'fpn_poolformer_s12_ade20k.py', 'mIoU', 20.0, 1.0, 2.0),
    'det': (80, 'retinanet_poolformer_s12_coco.py', 'coco/bbox_mAP', 0.02,
            0.01, 0.02),
}


@pytest.fixture(scope='module', params=sorted(TASKS))
def trained(request, demo_model):
    """(task, work dir, iterations): the demo trained for a few dozen
    iterations (shared with the deployment tests)."""
    work, iters = demo_model(request.param)
    assert iters == TASKS[request.param][0]
    return request.param, work, iters


def test_int8_and_bf16_keep_the_metric(trained, tmp_path):
    task, work, iters = trained
    _, config, metric, learned, bf16_drop, int8_drop = TASKS[task]
    out = tmp_path / 'model_int8.onnx'
    report = tmp_path / 'metrics.json'
    results = quantize.main([str(work / config), str(work / f'iter_{iters}.pth'),
                             '--out', str(out), '--calib-images', '16',
                             '--precisions', 'fp32,bf16,onnx,int8',
                             '--json', str(report)])
    fp32 = results['fp32']['metrics'][metric]
    assert fp32 >= learned, f'the demo model did not learn: {metric} {fp32}'
    # the float graph in onnxruntime: the metric of PyTorch's fp32
    assert abs(results['onnx']['drop']) <= bf16_drop / 10, results['onnx']
    assert abs(results['bf16']['drop']) <= bf16_drop, results['bf16']
    assert results['int8']['drop'] <= int8_drop, results['int8']
    assert json.loads(report.read_text())['results']['int8']['drop'] == \
        results['int8']['drop']
    graph = onnx.load(str(out)).graph
    ops = {n.op_type for n in graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    int8 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8) >= 20  # the convolutions' weights


def test_quantize_refuses_what_it_cannot_do(trained, tmp_path):
    task, work, iters = trained
    config, checkpoint = work / TASKS[task][1], work / f'iter_{iters}.pth'
    taken = tmp_path / 'taken.onnx'
    taken.write_bytes(b'user data')
    message = tool_error(quantize, config, checkpoint, '--out', taken,
                         prog='quantize.py')
    assert '--force' in message and taken.read_bytes() == b'user data'
    assert '--precisions takes fp32,bf16,onnx,int8' in tool_error(
        quantize, config, checkpoint, '--precisions', 'fp16')
    assert 'does not exist' in tool_error(quantize, config,
                                          tmp_path / 'missing.pth')


def build(config):
    """A config's model, random weights (no download)."""
    mmpoolformer.register_all_modules()
    cfg = Config.fromfile(str(ROOT / 'configs' / 'poolformer' / config))
    init_default_scope(cfg.default_scope)
    registry = __import__(f'{cfg.default_scope}.registry',
                          fromlist=['MODELS']).MODELS
    cfg.model.backbone.init_cfg = None
    return registry.build(cfg.model)


def test_a_classifier_quantizes_and_keeps_its_predictions(tmp_path):
    """The classifier's tensor part is its logits; int8 keeps them close
    and the predictions come from the head's own post-processing."""
    part = TensorPart(randomise_(build('poolformer_s12_in1k.py'))).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits, = part(x)
    samples = part.predictions([logits], [DataSample() for _ in range(2)])
    assert [int(s.pred_label) for s in samples] == logits.argmax(1).tolist()
    export_onnx(part, str(tmp_path / 'f.onnx'), (2, 3, 64, 64))
    quantize_onnx(str(tmp_path / 'f.onnx'), str(tmp_path / 'q.onnx'),
                  [torch.randn(2, 3, 64, 64) for _ in range(3)])
    got, = run_session(ort_session(str(tmp_path / 'q.onnx')), x)
    assert got.shape == logits.shape
    assert (got - logits).norm() / logits.norm() < 0.3


def test_models_it_cannot_split_are_refused_by_name():
    with pytest.raises(TypeError, match='MaskRCNN is none of what is '
                       r'quantized whole.*quantize the backbone'):
        TensorPart(build('mask_rcnn_poolformer_s12_coco.py'))
