"""Quantize a trained classifier, detector or segmentor to int8 and measure
what it costs in accuracy: the config's own metric in fp32, bf16 and int8.

    python tools/deployment/quantize.py CONFIG CHECKPOINT \
        [--out work_dirs/int8/<config>_int8.onnx] [--calib-images 200] \
        [--precisions fp32,bf16,onnx,int8] [--json results.json] [--force]

int8: onnxruntime's post-training static quantization of the model's tensor
part (image -> heads' raw outputs; see :mod:`mmpoolformer.deployment.
quantize`), calibrated on ``--calib-images`` images of the training split
through the test pipeline, written to ``--out``. bf16: PyTorch under CPU
autocast, the backbone in ``--formulation`` (default ``'packed'``). onnx
(on request): the float graph in onnxruntime, the deployment check. Every
precision runs the same post-processing (box decoding and NMS, resizing)
in PyTorch and the config's evaluator on its validation split; the tool
prints each metric and its drop from fp32.

``--out`` is written only once its metric has been measured, and an
existing file is replaced only with ``--force``.
"""
import argparse
import copy
import json
import os.path as osp
import tempfile
import time

import torch
from export_onnx import ToolError, build_from_config, load_whole_model
from mmengine.config import Config, DictAction
from mmengine.evaluator import Evaluator
from mmengine.runner import Runner

import mmpoolformer
from mmpoolformer.deployment import (
    TensorPart,
    evaluate,
    export_onnx,
    ort_session,
    quantize_onnx,
    run_session,
)
from mmpoolformer.deployment.agreement import MAIN_METRIC
from mmpoolformer.fileio import atomic_output, check_output_path
from mmpoolformer.models import MetaFormer
from mmpoolformer.models.backbones import FORMULATIONS

PRECISIONS = ('fp32', 'bf16', 'onnx', 'int8')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', help='the int8 ONNX file (default: '
                        'work_dirs/int8/<config>_int8.onnx)')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file')
    parser.add_argument('--calib-images', type=int, default=200,
                        help='training images to calibrate on (default 200)')
    parser.add_argument('--precisions', default='fp32,bf16,int8',
                        help='what to evaluate, of fp32,bf16,onnx,int8 '
                        '(onnx: the float graph in onnxruntime)')
    parser.add_argument('--formulation', default='packed',
                        choices=FORMULATIONS,
                        help="the backbone's formulation for bf16")
    parser.add_argument('--json', help='write the metrics here')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs')
    return parser


def calibration_loader(cfg, images: int):
    """The first ``images`` of the training split's leaf dataset, through
    the validation pipeline, batch 1."""
    dataset = copy.deepcopy(cfg.train_dataloader.dataset)
    while 'dataset' in dataset:  # RepeatDataset and other wrappers
        dataset = dataset['dataset']
    dataset.pipeline = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    dataset.indices = images
    dataset.pop('filter_cfg', None)
    return Runner.build_dataloader(dict(
        batch_size=1, num_workers=0, dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=False)))


def val_loader(cfg):
    return Runner.build_dataloader(dict(
        copy.deepcopy(cfg.val_dataloader), num_workers=0,
        persistent_workers=False))


def quantize_and_measure(args, cfg, model, float_path, out, measure):
    """The int8 graph of ``float_path`` at ``out`` (written only once its
    metric has been measured) and its metric."""
    with atomic_output(out) as partial:
        print(f'calibrating on {args.calib_images} training images')
        calib = (model.data_preprocessor(d, False)['inputs']
                 for d in calibration_loader(cfg, args.calib_images))
        quantize_onnx(float_path, partial, calib)
        session = ort_session(partial)
        measure('int8', lambda x: run_session(session, x))
    print(f'{out}: int8 (onnxruntime static quantization, QDQ)')


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = osp.basename(__file__)
    try:
        mmpoolformer.register_all_modules()
        precisions = [p for p in args.precisions.split(',') if p]
        if not precisions or set(precisions) - set(PRECISIONS):
            raise ToolError(f'--precisions takes {",".join(PRECISIONS)}, got '
                            f'{args.precisions!r}')
        if args.calib_images < 1:
            raise ToolError('--calib-images must be >= 1')
        for path in (args.config, args.checkpoint):
            if not osp.isfile(path):
                raise ToolError(f'{path} does not exist')
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        name = osp.splitext(osp.basename(args.config))[0]
        out = args.out or osp.join('work_dirs', 'int8', f'{name}_int8.onnx')
        if 'int8' in precisions:
            check_output_path(out, args.force)
        model, scope = build_from_config(args)  # the same overrides
        load_whole_model(model, args.checkpoint, args.config)
        try:
            part = TensorPart(model).eval()
        except TypeError as exc:
            raise ToolError(str(exc)) from None
        loader = val_loader(cfg)
        results = {}

        def measure(precision, run):
            start = time.perf_counter()
            metrics = evaluate(part, loader, Evaluator(
                copy.deepcopy(cfg.val_evaluator)), run)
            seconds = time.perf_counter() - start
            results[precision] = dict(metrics=metrics, seconds=seconds)
            print(f'{precision}: {MAIN_METRIC[scope]} '
                  f'{metrics[MAIN_METRIC[scope]]:.4f} ({seconds:.1f} s)')

        if 'fp32' in precisions:
            measure('fp32', lambda x: part(x))
        if 'bf16' in precisions:
            backbone = model.backbone
            formulation = getattr(backbone, 'formulation', None)
            if isinstance(backbone, MetaFormer):
                backbone.formulation = args.formulation

            def bf16(x):
                with torch.autocast('cpu', dtype=torch.bfloat16):
                    return part(x)
            measure('bf16', bf16)
            if formulation is not None:
                backbone.formulation = formulation
        if {'onnx', 'int8'} & set(precisions):
            with tempfile.TemporaryDirectory() as tmp:
                float_path = osp.join(tmp, 'float.onnx')
                sample = next(iter(loader))
                x = model.data_preprocessor(sample, False)['inputs']
                part(x[:1])
                print(f'exporting the float graph, input {tuple(x.shape)}')
                export_onnx(part, float_path, tuple(x.shape))
                if 'onnx' in precisions:
                    session = ort_session(float_path)
                    measure('onnx', lambda x: run_session(session, x))
                if 'int8' in precisions:
                    quantize_and_measure(args, cfg, model, float_path, out,
                                         measure)
        if 'fp32' in results:
            ref = results['fp32']['metrics'][MAIN_METRIC[scope]]
            for p, r in results.items():
                r['drop'] = ref - r['metrics'][MAIN_METRIC[scope]]
                print(f'{MAIN_METRIC[scope]} drop from fp32, {p}: '
                      f'{r["drop"]:+.4f}')
        if args.json:
            with open(args.json, 'w') as f:
                json.dump(dict(metric=MAIN_METRIC[scope], out=out,
                               results=results), f, indent=2,
                          default=float)  # numpy scalars of some metrics
        return results
    except (ToolError, OSError, ValueError, ImportError) as exc:
        raise SystemExit(f'{prog}: error: {exc}') from None


if __name__ == '__main__':
    main()
