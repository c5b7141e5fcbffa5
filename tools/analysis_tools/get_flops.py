"""Parameters and FLOPs of a config's model, its backbone and backbone+neck.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H W] \
        [--cfg-options key=value ...]

Counted on one random 1x3xHxW image with mmengine's FlopAnalyzer (fvcore's
rules): "FLOPs" are multiply-accumulates, as in the PoolFormer paper's
"MACs" (sail-sg/poolformer misc/mac_count_with_fvcore.py), and ops without a
rule (the pooling mixer, GELU, additions) count zero. Rows:

* backbone: ``model.backbone(x)``;
* backbone+neck: ``model.extract_feat(x)`` (FPN for detectors and
  segmentors, global pooling for classifiers);
* whole model: ``model(x, mode='tensor')``, the network without
  post-processing: raw head outputs of RetinaNet, logits at 1/4 resolution of
  a segmentor, class scores of a classifier, class and mask logits of every
  Mask2Former decoder layer. For two-stage detectors it runs the RPN and the
  RoI heads on the RPN's proposals, so it depends on how many proposals
  survive (random weights here).

The backbone's ``init_cfg`` is set to None: nothing is downloaded and the
weights are left as built, which does not change the counts.
"""
import argparse
import importlib
import inspect
import math
import os.path as osp
import sys

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope


class _Call(nn.Module):
    """Expose ``fn(x)`` as a module's forward, for tracing."""

    def __init__(self, model: nn.Module, fn):
        super().__init__()
        self.model = model
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params and FLOPs (MACs) of a model, its backbone and '
        'backbone+neck')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape', type=int, nargs='+', default=None,
        help='input H W (or one size for both); default 224 224 for '
        'classifiers, 512 512 otherwise')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs')
    return parser.parse_args(argv)


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the registry of the config's default scope."""
    scope = cfg.get('default_scope', 'mmengine')
    init_default_scope(scope)
    backbone = cfg.model.get('backbone')
    if backbone is not None:
        backbone.init_cfg = None  # no download
        if str(backbone.get('type', '')).startswith('mmpoolformer.'):
            # the paper's ops, named rather than left to the counter (its
            # module hooks happen to make the blocks run plain)
            backbone.formulation = 'plain'
    models = importlib.import_module(f'{scope}.registry').MODELS
    model = revert_sync_batchnorm(models.build(cfg.model))
    return model.eval()


def data_samples_for(model: nn.Module, shape):
    """Image meta-data that a detector's tensor mode reads (RPN proposals,
    Mask2Former's masks) or a segmentor's Mask2Former head reads."""
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape,
                batch_input_shape=shape, scale_factor=(1., 1.))
    library = type(model).__module__.split('.')[0]
    if library == 'mmdet':
        from mmdet.structures import DetDataSample
        return [DetDataSample(metainfo=meta)]
    if library == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    return None


def whole_model(model: nn.Module, samples):
    """``x -> model(x, samples, mode='tensor')``; for a segmentor whose
    decode head needs the data samples (mmseg's Mask2Former), which its
    tensor mode does not pass, the head on the backbone's features."""
    head = getattr(model, 'decode_head', None)
    if head is not None and 'batch_data_samples' in inspect.signature(
            head.forward).parameters:
        return lambda t: head(model.extract_feat(t), samples)
    return lambda t: model(t, samples, mode='tensor')


def sdpa_flop_jit(inputs, outputs):
    """MACs of scaled_dot_product_attention (no fvcore rule exists): the
    q @ k^T and attn @ v products, B*H*N*N*D each."""
    q_shape, k_shape = (get_shape(v) for v in inputs[:2])
    *batch, n, d = q_shape
    return 2 * math.prod(batch) * n * k_shape[-2] * d


def count(module: nn.Module, params_of, fn, x) -> dict:
    analyzer = FlopAnalyzer(_Call(module, fn), (x, ))
    analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return dict(params=sum(parameter_count(m)[''] for m in params_of),
                flops=analyzer.total())


def get_flops(cfg: Config, shape) -> dict:
    """{row name: dict(params=..., flops=...)} for ``cfg``'s model."""
    model = build_model(cfg)
    x = torch.rand(1, 3, *shape)
    samples = data_samples_for(model, tuple(shape))
    rows = {'backbone': count(model, [model.backbone], model.backbone, x)}
    if getattr(model, 'neck', None) is not None:
        rows['backbone+neck'] = count(model, [model.backbone, model.neck],
                                      model.extract_feat, x)
    rows['whole model'] = count(model, [model], whole_model(model, samples),
                                x)
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shape = args.shape or ([224] if cfg.get('default_scope') == 'mmpretrain'
                           else [512])
    if len(shape) == 1:
        shape = shape * 2
    if len(shape) != 2:
        sys.exit(f'--shape takes H W or one size, got {shape}')
    with torch.no_grad():
        rows = get_flops(cfg, shape)
    print(f'{osp.basename(args.config)}: input 1x3x{shape[0]}x{shape[1]}, '
          'FLOPs = multiply-accumulates (fvcore)')
    print(f'{"part":<16}{"params (M)":>12}{"FLOPs (G)":>12}')
    for name, row in rows.items():
        print(f'{name:<16}{row["params"] / 1e6:>12.2f}'
              f'{row["flops"] / 1e9:>12.2f}')
    return rows


if __name__ == '__main__':
    main()
