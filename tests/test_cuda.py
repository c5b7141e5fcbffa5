"""The CUDA tier: what our users run on GPUs, checked on a GPU.

Skipped without CUDA and never needed by CI (``pytest -m cuda`` runs it on a
GPU machine; ``--tier-device cpu`` checks the tests themselves elsewhere):

* the default formulation ('auto': lean there) equals the plain one on the
  device, in fp32
  (TF32 off, so both sides round alike) and under autocast (bf16 and fp16:
  no further from fp32 than the plain formulation under the same autocast),
  for channels-last inputs and with ``with_cp``;
* mmcv's CUDA kernels that the detectors use (nms, RoIAlign,
  sigmoid_focal_loss) agree with their CPU / pure-PyTorch counterparts;
* RetinaNet, Mask R-CNN and Semantic FPN from the shipped configs compute
  losses, backpropagate and predict on the device;
* tools/train.py runs a few Runner iterations with ``--amp``;
* the ONNX export runs in onnxruntime's CUDA provider, when it is installed.
"""
import importlib
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from helpers import randomise_, rel_error

pytestmark = pytest.mark.cuda

ROOT = Path(__file__).resolve().parents[1]
# small but with every stage; CAFormer's attention needs multiples of its
# head dim (32) in stages 2 and 3
SMALL = dict(depths=[1, 1, 2, 1], embed_dims=[32, 64, 96, 128], mlp_ratios=2)
FAMILIES = {
    'PoolFormer': 's12', 'PoolFormerV2': 's12', 'ConvFormer': 's18',
    'CAFormer': 's18', 'RIFormer': 's12', 'RandFormer': 's12',
}


@pytest.fixture(autouse=True)
def no_tf32():
    """fp32 means fp32: cuDNN convolutions default to TF32 on Ampere+,
    which would round the plain formulation's 1x1 convs to 10 bits."""
    saved = (torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, \
        torch.backends.cuda.matmul.allow_tf32 = saved


def pair(family, device, **kwargs):
    """The default model and the plain formulation with the same weights."""
    from mmpoolformer import models
    cls = getattr(models, family)
    fast = randomise_(cls(FAMILIES[family], **SMALL, **kwargs)).to(device)
    plain = cls(FAMILIES[family], formulation='plain', **SMALL, **kwargs)
    plain.load_state_dict(fast.state_dict())
    return fast, plain.to(device)


def step(model, x, dtype=None):
    """Outputs, the input gradient and all parameter gradients of one
    forward/backward (under autocast to ``dtype`` if given)."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        outs = model(x)
        loss = sum((o.float() * torch.linspace(-1, 1, o.numel(), device=o.device
                                               ).view_as(o)).sum() for o in outs)
    loss.backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters()
                       if p.grad is not None])
    return [o.float() for o in outs], x.grad.float(), grads


def image(device, channels_last=False, size=(2, 3, 96, 128)):
    x = torch.randn(size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize('channels_last', [False, True],
                         ids=['nchw', 'channels_last'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_fast_equals_plain_fp32(family, channels_last, tier_device):
    fast, plain = pair(family, tier_device)
    x = image(tier_device, channels_last)
    (fo, fx, fg), (po, px, pg) = step(fast.train(), x), step(plain.train(), x)
    for i, (a, b) in enumerate(zip(fo, po)):
        assert rel_error(a, b) <= 1e-5, (family, 'stage', i, rel_error(a, b))
    assert rel_error(fx, px) <= 1e-5, (family, 'input grad')
    assert fg.shape == pg.shape and rel_error(fg, pg) <= 1e-5, family


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16],
                         ids=['bf16', 'fp16'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_fast_equals_plain_under_autocast(family, dtype, tier_device):
    """Both formulations under the same autocast, each compared with the
    fp32 plain result: the fast one may not lose more than rounding."""
    fast, plain = pair(family, tier_device)
    x = image(tier_device)
    ref_out, ref_x, ref_g = step(plain.eval(), x)
    for model in (fast, plain):
        model.eval()
    fast_out, fast_x, fast_g = step(fast, x, dtype)
    plain_out, plain_x, plain_g = step(plain, x, dtype)
    for a, b, r in zip(fast_out + [fast_x, fast_g], plain_out + [plain_x, plain_g],
                       ref_out + [ref_x, ref_g]):
        assert torch.isfinite(a).all()
        fast_err, plain_err = rel_error(a, r), rel_error(b, r)
        assert fast_err <= 2 * plain_err + 1e-3, (family, dtype, fast_err, plain_err)


@pytest.mark.parametrize('family', ['PoolFormer', 'ConvFormer', 'CAFormer'])
def test_with_cp_same_outputs_and_gradients(family, tier_device):
    from mmpoolformer import models
    cls = getattr(models, family)
    model = randomise_(cls(FAMILIES[family], **SMALL)).to(tier_device).train()
    checkpointed = cls(FAMILIES[family], with_cp=True, **SMALL).to(tier_device)
    checkpointed.load_state_dict(model.state_dict())
    x = image(tier_device, channels_last=True)
    (o1, x1, g1), (o2, x2, g2) = step(model, x), step(checkpointed.train(), x)
    for a, b in zip(o1 + [x1, g1], o2 + [x2, g2]):
        assert rel_error(a, b) <= 1e-6


def needs_cuda(device):
    if device.type != 'cuda':
        pytest.skip('compares mmcv CUDA kernels with their CPU counterparts')


def test_mmcv_cuda_kernels_agree_with_cpu(tier_device):
    needs_cuda(tier_device)
    from mmcv.ops import RoIAlign, nms, sigmoid_focal_loss
    from mmdet.models.losses.focal_loss import py_sigmoid_focal_loss
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=gen) * 100
    boxes = torch.cat([xy, xy + 5 + torch.rand(200, 2, generator=gen) * 30], 1)
    scores = torch.rand(200, generator=gen)
    _, keep_cpu = nms(boxes, scores, 0.5)
    _, keep_cuda = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep_cuda.is_cuda and torch.equal(keep_cuda.cpu(), keep_cpu)

    feats = torch.randn(2, 8, 32, 32, generator=gen)
    rois = torch.cat([torch.tensor([[0.], [1.], [1.]]),
                      torch.tensor([[1., 2., 20., 25.], [0., 0., 31., 31.],
                                    [5.5, 3.2, 17.8, 29.1]])], 1)
    align = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)
    results = []
    for device in ('cpu', 'cuda'):
        f = feats.to(device).requires_grad_(True)
        out = align(f, rois.to(device))
        out.pow(2).sum().backward()
        results.append((out.cpu(), f.grad.cpu()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-4)

    logits = torch.randn(64, 5, generator=gen, requires_grad=True)
    labels = torch.randint(0, 5, (64, ), generator=gen)
    one_hot = torch.nn.functional.one_hot(labels, 5).float()
    ref = py_sigmoid_focal_loss(logits, one_hot, gamma=2.0, alpha=0.25,
                                reduction='sum')
    got = sigmoid_focal_loss(logits.cuda(), labels.cuda(), 2.0, 0.25, None, 'sum')
    assert torch.allclose(got.cpu(), ref, rtol=1e-4)


def build(config, device, num_classes):
    from mmpoolformer import register_all_modules
    register_all_modules()
    cfg = Config.fromfile(str(ROOT / 'configs' / config))
    init_default_scope(cfg.default_scope)
    cfg.model.backbone.init_cfg = None  # no download
    head = cfg.model.get('bbox_head') or cfg.model.get('decode_head')
    if head is not None:
        head.num_classes = num_classes
    else:  # Mask R-CNN
        cfg.model.roi_head.bbox_head.num_classes = num_classes
        cfg.model.roi_head.mask_head.num_classes = num_classes
    if cfg.default_scope == 'mmseg':  # SyncBN needs a process group
        cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
        cfg.model.data_preprocessor.size = (128, 128)
    registry = importlib.import_module(f'{cfg.default_scope}.registry')
    return registry.MODELS.build(cfg.model).to(device)


def det_batch(with_mask):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(batch_size=2, image_shapes=[(3, 128, 128)] * 2,
                          num_items=[3, 4], num_classes=3, with_mask=with_mask)


def seg_batch():
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(2):
        inputs.append(torch.randint(0, 256, (3, 128, 128), generator=gen,
                                    dtype=torch.uint8))
        meta = dict(img_shape=(128, 128), ori_shape=(128, 128),
                    pad_shape=(128, 128))
        samples.append(SegDataSample(metainfo=meta, gt_sem_seg=PixelData(
            data=torch.randint(0, 3, (1, 128, 128), generator=gen))))
    return dict(inputs=inputs, data_samples=samples)


@pytest.mark.parametrize('config', [
    'poolformer/retinanet_poolformer_s12_coco.py', 'poolformer/mask_rcnn_poolformer_s12_coco.py',
    'poolformer/fpn_poolformer_s12_ade20k.py'])
def test_detectors_loss_backward_predict(config, tier_device):
    model = build(config, tier_device, num_classes=3)
    batch = seg_batch() if config.startswith('fpn') else \
        det_batch(with_mask=config.startswith('mask_rcnn'))
    model.train()
    data = model.data_preprocessor(batch, training=True)
    assert data['inputs'].device.type == tier_device.type
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)  # what the Runner backpropagates
    assert torch.isfinite(total), losses
    total.backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0

    model.eval()
    with torch.no_grad():
        results = model.test_step(batch)
    assert len(results) == 2
    if config.startswith('fpn'):
        seg = results[0].pred_sem_seg.data
        assert seg.shape[-2:] == (128, 128) and seg.device.type == tier_device.type
    else:  # post-processing ran mmcv's nms (and RoIAlign) on the device
        pred = results[0].pred_instances
        assert pred.bboxes.device.type == tier_device.type
        assert torch.isfinite(pred.bboxes).all()
        if config.startswith('mask_rcnn'):
            assert pred.masks.shape[-2:] == (128, 128)


def test_runner_iterations_with_amp(tmp_path, tier_device):
    needs_cuda(tier_device)  # tools/train.py refuses --amp without a GPU
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmpoolformer import register_all_modules

    from test_training import (
        read_test_metrics,
        run_tool,
        scalars,
        schedule_opts,
        task_opts,
        write_coco,
    )
    register_all_modules()
    config, opts = task_opts('retinanet', write_coco(tmp_path / 'data'))
    work_dir = tmp_path / 'work'
    run_tool('train.py', config, '--amp', '--work-dir', work_dir,
             '--cfg-options', *opts, *schedule_opts('epoch', 3))
    (run, ) = scalars(work_dir)
    losses = [e['loss'] for e in run if 'loss' in e]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    ckpt = CheckpointLoader.load_checkpoint(str(work_dir / 'epoch_3.pth'),
                                            map_location='cpu')
    assert 'loss_scaler' in ckpt['optimizer'], 'not an AmpOptimWrapper run'
    run_tool('test.py', config, work_dir / 'epoch_3.pth', '--work-dir',
             tmp_path / 'test', '--cfg-options', *opts)
    assert 0 <= read_test_metrics(tmp_path / 'test')['coco/bbox_mAP'] <= 1


def test_onnx_in_the_cuda_provider(tmp_path, tier_device):
    needs_cuda(tier_device)
    ort = pytest.importorskip('onnxruntime')
    if 'CUDAExecutionProvider' not in ort.get_available_providers():
        pytest.skip('onnxruntime without its CUDA provider (onnxruntime-gpu)')
    from mmpoolformer.deployment import export_onnx, ort_session, run_session
    from mmpoolformer.models import PoolFormer
    model = randomise_(PoolFormer('s12', **SMALL)).eval().cuda()
    path = str(tmp_path / 'model.onnx')
    export_onnx(model, path, input_shape=(2, 3, 96, 128))
    session = ort_session(path, providers=('CUDAExecutionProvider', ))
    assert session.get_providers()[0] == 'CUDAExecutionProvider'
    x = image('cpu', size=(3, 3, 64, 96))
    with torch.no_grad():
        expected = model(x.cuda())
    got = run_session(session, x)
    for a, b in zip(got, expected):
        assert rel_error(a, b.cpu()) <= 1e-4
