"""Post-training int8 quantization of whole models through onnxruntime,
and their evaluation with the configs' own metrics.

Why onnxruntime: PyTorch's PT2E flow (``prepare_pt2e`` with the x86
inductor quantizer) left torch itself for the separate torchao package,
which neither supported stack installs; onnxruntime's static quantization
is part of the ONNX runtime the export already uses, runs its int8 GEMMs
with VNNI / AMX where the CPU has them, and quantizes a whole detector's
graph as readily as a backbone's.

A model is split where ONNX can hold it (:class:`TensorPart`): the image
batch to the heads' raw tensors (a classifier's logits, a single-stage
detector's per-level scores and boxes, a segmentor's logits), exported,
quantized and run by onnxruntime; the task's own post-processing (the
head's ``predict_by_feat``: box decoding and NMS, resizing the logits, the
top class) stays in PyTorch, identical for every precision, and feeds the
config's evaluator (CocoMetric, IoUMetric, Accuracy).

Quantized: the convolutions and matrix products (weights per channel,
symmetric int8; activations per tensor, asymmetric uint8, MinMax calibrated
on images through the test pipeline); norms, pooling, activations and
residual sums stay in float, as the accuracy of the whole needs.
"""
import os
import os.path as osp
import tempfile
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn

#: the ops whose inputs are quantized: the GEMMs and convolutions
QUANTIZED_OPS = ('Conv', 'MatMul', 'Gemm')


class TensorPart(nn.Module):
    """``images -> tuple of tensors``: the part of a classifier, detector
    or segmentor that ONNX holds, and :meth:`predictions`, the rest.

    Built from an mmpretrain ``ImageClassifier``, an mmdet single-stage
    detector (RetinaNet, FCOS, ...: ``extract_feat`` and a ``bbox_head``)
    or an mmseg ``EncoderDecoder`` in whole-image test mode; anything else
    raises ``TypeError`` naming what is supported.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.kind = self._kind(model)
        self.levels = None

    @staticmethod
    def _kind(model) -> str:
        package = type(model).__module__.split('.')[0]
        if package == 'mmpretrain':
            from mmpretrain.models import ImageClassifier
            if isinstance(model, ImageClassifier):
                return 'classifier'
        elif package == 'mmdet':
            from mmdet.models.detectors import SingleStageDetector
            if isinstance(model, SingleStageDetector):
                return 'detector'
        elif package == 'mmseg':
            from mmseg.models.decode_heads.decode_head import BaseDecodeHead
            from mmseg.models.segmentors import EncoderDecoder
            head = getattr(model, 'decode_head', None)
            if isinstance(model, EncoderDecoder) and \
                    type(head).predict is BaseDecodeHead.predict:
                mode = (getattr(model, 'test_cfg', None) or {}).get(
                    'mode', 'whole')
                if mode != 'whole':
                    raise TypeError(
                        'only whole-image segmentor inference is quantized '
                        f"(test_cfg.mode='whole'), got {mode!r}")
                return 'segmentor'
        raise TypeError(
            f'{type(model).__name__} is none of what is quantized whole: an '
            'mmpretrain ImageClassifier, an mmdet single-stage detector '
            '(RetinaNet, FCOS, ...), an mmseg EncoderDecoder with a '
            'per-pixel head (Semantic FPN, UPerNet); quantize the backbone '
            'of other models alone')

    def forward(self, x):
        model = self.model
        if self.kind == 'classifier':
            return (model.head(model.extract_feat(x)), )
        feats = model.extract_feat(x)
        if self.kind == 'segmentor':
            return (model.decode_head(feats), )
        outs = model.bbox_head(feats)
        self.levels = [len(o) for o in outs]
        return tuple(t for level_outputs in outs for t in level_outputs)

    @torch.no_grad()
    def predictions(self, outputs: Sequence[torch.Tensor], data_samples):
        """The data samples with their predictions, from :meth:`forward`'s
        outputs (of any runtime, as float tensors)."""
        model = self.model
        outputs = [torch.as_tensor(o).float() for o in outputs]
        metas = [s.metainfo for s in data_samples]
        if self.kind == 'classifier':
            return model.head._get_predictions(outputs[0], data_samples)
        if self.kind == 'segmentor':
            logits = model.decode_head.predict_by_feat(outputs[0], metas)
            return model.postprocess_result(logits, data_samples)
        if self.levels is None:  # the split of the flat outputs
            raise RuntimeError('call the TensorPart once before predictions')
        groups, start = [], 0
        for n in self.levels:
            groups.append(outputs[start:start + n])
            start += n
        results = model.bbox_head.predict_by_feat(
            *groups, batch_img_metas=metas, rescale=True)
        return model.add_pred_to_datasample(data_samples, results)


def calibration_reader(batches: Iterable, input_name: str):
    """onnxruntime's ``CalibrationDataReader`` over image batches (tensors
    or arrays, N x 3 x H x W)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):

        def __init__(self):
            self.batches = iter(batches)

        def get_next(self):
            batch = next(self.batches, None)
            if batch is None:
                return None
            if isinstance(batch, torch.Tensor):
                batch = batch.detach().float().cpu().numpy()
            return {input_name: batch}

    return Reader()


def quantize_onnx(float_path: str, out_path: str, batches: Iterable,
                  per_channel: bool = True) -> str:
    """Static int8 quantization of the ONNX graph ``float_path`` into
    ``out_path`` (QDQ format: what onnxruntime fuses into its int8
    kernels), calibrated on ``batches`` (MinMax); return ``out_path``."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    input_name = onnx.load(float_path, load_external_data=False) \
        .graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        prepared = osp.join(tmp, 'prepared.onnx')
        quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
        folder = osp.dirname(osp.abspath(out_path))
        os.makedirs(folder, exist_ok=True)
        quantize_static(
            prepared, out_path, calibration_reader(batches, input_name),
            quant_format=QuantFormat.QDQ, per_channel=per_channel,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            calibrate_method=CalibrationMethod.MinMax)
    return out_path


@torch.no_grad()
def evaluate(part: TensorPart, dataloader, evaluator,
             run: Callable[[torch.Tensor], Sequence]) -> dict:
    """The evaluator's metrics of ``part``'s model over ``dataloader``, its
    tensor part computed by ``run(images)`` (PyTorch, onnxruntime, ...)."""
    model = part.model
    model.eval()  # not chained: some train() overrides return None
    evaluator.dataset_meta = dataloader.dataset.metainfo
    for data in dataloader:
        data = model.data_preprocessor(data, False)
        outputs = run(data['inputs'])
        if part.kind == 'detector' and part.levels is None:
            part(data['inputs'][:1])  # the outputs' split, once
        samples = part.predictions(outputs, data['data_samples'])
        evaluator.process(data_samples=samples, data_batch=data)
    return evaluator.evaluate(len(dataloader.dataset))
