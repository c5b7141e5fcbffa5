"""What mmdeploy needs to export our models with the torch of the supported
stacks, as rewriters in mmdeploy's own registry: they act only inside
mmdeploy's export (its ``RewriterContext``) and change nothing elsewhere.

Imported by the deploy configs' ``custom_imports`` (``configs/deploy/``),
so mmdeploy's own ``tools/deploy.py`` loads it as ours does; importing
``mmpoolformer`` alone never imports mmdeploy.

* **the TorchScript exporter.** mmdeploy 1.3 calls ``torch.onnx.export``
  without ``dynamo``; since torch 2.9 that means the ``torch.export``-based
  exporter, which ignores mmdeploy's symbolic rewrites (its NMS, RoIAlign
  and ``multiclass_nms`` ops are ``autograd.Function.symbolic`` methods)
  and refuses its default opset 11. mmdeploy's graph is TorchScript's:
  inside its export we ask for that exporter explicitly.
* **an exact adaptive average pool** (UPerNet's pyramid pooling, bins 1, 2,
  3, 6). mmdeploy's default rewrite is ``avg_pool2d`` with the kernel
  ``int(size / bins)`` of the example image, exact only where the map is a
  multiple of every bin and only at that size. Ours averages each bin
  PyTorch's way (rows ``floor(i H / n)`` to ``ceil((i + 1) H / n)``, then
  columns alike), with the bounds computed from the input's shape in the
  graph: exact at every size.
* **RoIAlign** (Mask R-CNN and the other two-stage heads). mmdeploy's
  symbolic for onnxruntime casts the boxes' batch indices with
  ``torch.onnx.symbolic_opset9._cast_Long``, which torch 2.14 no longer
  has; ours writes the same ONNX ``RoiAlign`` with an ONNX ``Cast``.
* **the RPN's NMS per level** (Mask R-CNN's proposals). mmdeploy's RPN
  rewrite concatenates the FPN levels and runs one NMS over all of them,
  with its default score threshold (0.05); mmdet's RPN runs one NMS per
  level (``batched_nms`` with the level as the class) and keeps every
  score. Ours takes mmdeploy's decoded candidates and makes the level the
  class of its multi-class NMS, with no threshold.
* **per-class boxes in the second stage** (Mask R-CNN's box head).
  mmdeploy's rewrite keeps, for every RoI, only the box regressed for its
  best class and scores every class with it; mmdet keeps each class's own
  box. Ours gives the multi-class NMS one row per (RoI, class).
"""
import inspect

import torch
from mmdeploy.core import FUNCTION_REWRITER, SYMBOLIC_REWRITER
from mmdeploy.utils import get_ir_config
from torch.nn.modules.utils import _pair


def _takes_dynamo() -> bool:
    try:
        return 'dynamo' in inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


if _takes_dynamo():

    @FUNCTION_REWRITER.register_rewriter(func_name='torch.onnx.export')
    def torch_onnx_export__torchscript(*args, **kwargs):
        """``torch.onnx.export`` with the TorchScript exporter unless the
        caller chose one."""
        ctx = FUNCTION_REWRITER.get_context()
        kwargs.setdefault('dynamo', False)
        return ctx.origin_func(*args, **kwargs)


def _bin_means(x: torch.Tensor, dim: int, bins: int) -> torch.Tensor:
    """The means of ``x`` over ``bins`` adaptive-pooling bins along
    ``dim``: ``[floor(i L / n), ceil((i + 1) L / n))``, written with
    non-negative integer division only (ONNX's rounds toward zero)."""
    dim = dim % x.dim()
    length = x.shape[dim]
    means = []
    for i in range(bins):
        index = [slice(None)] * dim + [slice(
            i * length // bins, ((i + 1) * length + bins - 1) // bins)]
        means.append(x[tuple(index)].mean(dim, keepdim=True))
    return torch.cat(means, dim) if bins > 1 else means[0]


def adaptive_avg_pool2d_by_bins(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` as per-bin means: the
    average over a rectangle is the mean of its rows' means."""
    out_h, out_w = _pair(output_size)
    out_h = x.shape[-2] if out_h is None else out_h
    out_w = x.shape[-1] if out_w is None else out_w
    return _bin_means(_bin_means(x, -2, int(out_h)), -1, int(out_w))


@FUNCTION_REWRITER.register_rewriter(
    func_name='torch.nn.functional.adaptive_avg_pool2d',
    backend='onnxruntime')
def adaptive_avg_pool2d__onnxruntime(input, output_size):
    """Global pooling as it is (ONNX's GlobalAveragePool), any other size
    by :func:`adaptive_avg_pool2d_by_bins`."""
    ctx = FUNCTION_REWRITER.get_context()
    if _pair(output_size) == (1, 1):
        return ctx.origin_func(input, output_size)
    return adaptive_avg_pool2d_by_bins(input, output_size)


@SYMBOLIC_REWRITER.register_symbolic('mmcv.ops.roi_align.__self__',
                                     backend='onnxruntime')
def roi_align__onnxruntime(g, input, rois, output_size, spatial_scale,
                           sampling_ratio, pool_mode, aligned):
    """mmcv's RoIAlign as ONNX ``RoiAlign``: ``rois`` are (index, x1, y1,
    x2, y2) rows; below opset 16 ``aligned`` is the half-pixel shift of the
    boxes, from 16 on ONNX's coordinate transformation mode."""
    from torch.onnx.symbolic_opset11 import add, select
    ctx = SYMBOLIC_REWRITER.get_context()
    opset = get_ir_config(ctx.cfg).get('opset_version', 11)

    def constant(values, dtype=torch.long):
        return g.op('Constant', value_t=torch.tensor(values, dtype=dtype))

    index = select(g, rois, 1, constant([0]))
    index = g.op('Squeeze', index, axes_i=[1]) if opset < 13 else \
        g.op('Squeeze', index, constant([1]))
    batch_indices = g.op('Cast', index, to_i=7)  # TensorProto.INT64
    boxes = select(g, rois, 1, constant([1, 2, 3, 4]))
    attributes = dict(output_height_i=output_size[0],
                      output_width_i=output_size[1],
                      spatial_scale_f=spatial_scale,
                      sampling_ratio_i=sampling_ratio, mode_s=pool_mode)
    if opset >= 16:
        attributes['coordinate_transformation_mode_s'] = \
            'half_pixel' if aligned else 'output_half_pixel'
    elif aligned:
        boxes = add(g, boxes, constant([-0.5 / spatial_scale], torch.float))
    return g.op('RoiAlign', input, boxes, batch_indices, **attributes)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
    backend='onnxruntime')
def rpn_head__predict_by_feat__onnxruntime(self, cls_scores, bbox_preds,
                                           score_factors=None,
                                           batch_img_metas=None, cfg=None,
                                           rescale=False, with_nms=True,
                                           **kwargs):
    """Proposals as mmdet's RPN makes them: each level's ``nms_pre`` best
    anchors, decoded, those not larger than ``min_bbox_size`` dropped (their
    score set to 0), an NMS per level (the level is the class of mmdeploy's
    multi-class NMS, which keeps scores above 0), the ``max_per_img`` best
    over all levels: ``(dets (B, K, 5), labels)``."""
    from mmdeploy.codebase.mmdet.deploy import pad_with_value_if_necessary
    from mmdeploy.mmcv.ops import multiclass_nms
    cfg = self.test_cfg if cfg is None else cfg
    batch = cls_scores[0].shape[0]
    anchors = self.prior_generator.grid_priors(
        [s.shape[-2:] for s in cls_scores], device=cls_scores[0].device)
    pre = cfg.get('nms_pre', -1)
    boxes, scores, levels = [], [], []
    for level, (score, delta, prior) in enumerate(
            zip(cls_scores, bbox_preds, anchors)):
        score = score.permute(0, 2, 3, 1).reshape(batch, -1)
        score = score.sigmoid() if self.use_sigmoid_cls else \
            score.reshape(batch, -1, 2).softmax(-1)[..., 0]
        delta = delta.permute(0, 2, 3, 1).reshape(
            batch, -1, self.bbox_coder.encode_size)
        prior = prior.unsqueeze(0).expand(batch, -1, -1)
        if pre > 0:  # a level with fewer anchors: padded, score 0 (in the
            # graph, so that any input size takes the nms_pre best)
            score = pad_with_value_if_necessary(score, 1, pre, 0.)
            delta = pad_with_value_if_necessary(delta, 1, pre)
            prior = pad_with_value_if_necessary(prior, 1, pre)
            score, index = score.topk(pre, dim=1)
            delta = delta.gather(1, index[..., None].expand(-1, -1,
                                                            delta.shape[-1]))
            prior = prior.gather(1, index[..., None].expand(-1, -1, 4))
        boxes.append(self.bbox_coder.decode(
            prior, delta, max_shape=batch_img_metas[0]['img_shape']))
        scores.append(score)
        levels.append(torch.full_like(score, level, dtype=torch.long))
    boxes, scores = torch.cat(boxes, 1), torch.cat(scores, 1)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:  # mmdet drops the boxes not wider and taller
        wh = boxes[..., 2:] - boxes[..., :2]
        scores = scores * (wh > min_size).all(-1).to(scores)
    if not with_nms:
        return boxes, scores[..., None]
    per_level = torch.nn.functional.one_hot(
        torch.cat(levels, 1), len(cls_scores)).to(scores) * scores[..., None]
    keep = cfg.get('max_per_img', 1000)
    return multiclass_nms(boxes, per_level, keep,
                          iou_threshold=cfg.nms.get('iou_threshold', 0.7),
                          score_threshold=0.0, keep_top_k=keep)


@FUNCTION_REWRITER.register_rewriter(
    func_name='mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.'
    'predict_by_feat', backend='onnxruntime')
def bbox_head__predict_by_feat__onnxruntime(self, rois, cls_scores,
                                            bbox_preds, batch_img_metas,
                                            rcnn_test_cfg=None,
                                            rescale=False):
    """Detections as mmdet's box head makes them: each class scored with
    the box regressed for that class (a class-agnostic head: the one box),
    then mmdeploy's multi-class NMS: ``(dets (B, K, 5), labels)``."""
    from mmdeploy.codebase.mmdet.deploy import get_post_processing_params
    from mmdeploy.mmcv.ops import multiclass_nms
    from mmdet.structures.bbox import get_box_tensor
    ctx = FUNCTION_REWRITER.get_context()
    scores = self.loss_cls.get_activation(cls_scores) \
        if self.custom_cls_channels else cls_scores.softmax(-1)
    scores = scores[..., :self.num_classes]
    boxes = get_box_tensor(self.bbox_coder.decode(
        rois[..., 1:], bbox_preds,
        max_shape=batch_img_metas[0]['img_shape']))
    batch, num_rois, classes = scores.shape
    if not self.reg_class_agnostic:  # row (RoI, class): its box, its score
        boxes = boxes.reshape(batch, num_rois * classes, -1)
        scores = scores.reshape(batch, -1, 1) * torch.eye(
            classes, dtype=scores.dtype,
            device=scores.device).repeat(num_rois, 1)
    post = get_post_processing_params(ctx.cfg)
    return multiclass_nms(
        boxes, scores, post.max_output_boxes_per_class,
        nms_type=rcnn_test_cfg.nms.get('type'),
        iou_threshold=rcnn_test_cfg.nms.get('iou_threshold',
                                            post.iou_threshold),
        score_threshold=rcnn_test_cfg.get('score_thr', post.score_threshold),
        pre_top_k=post.pre_top_k,
        keep_top_k=rcnn_test_cfg.get('max_per_img', post.keep_top_k))
