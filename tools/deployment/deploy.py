"""A trained classifier, detector or segmentor to an onnxruntime model
through mmdeploy, checked against PyTorch on images and, with --metric, by
the config's own metric both ways.

    python tools/deployment/deploy.py DEPLOY_CFG MODEL_CFG CHECKPOINT \
        [--work-dir work_dirs/deploy/<config>] [--images IMG ...] \
        [--metric] [--json report.json] [--force]

DEPLOY_CFG is an mmdeploy deploy config: ours in ``configs/deploy/`` (they
import what mmdeploy needs for our models on the supported torch) or one of
your own with ``_base_ = ['mmpoolformer::deploy/...']``. The export is
mmdeploy's ``torch2onnx`` (the same graph its ``tools/deploy.py`` writes,
NMS / argmax included), made from the model mmdeploy builds from MODEL_CFG
and CHECKPOINT (a Runner checkpoint or a weights file) after its backbone's
``switch_to_deploy()`` (folded norm affines and layer scales, RIFormer's
affine mixer folded into its norm; ``--no-switch-to-deploy`` exports the
structure as trained). The PyTorch model it is checked against is the one as
trained.

Checked before anything is written: on ``--images`` (default: the first
``--num-images`` of the config's test split), PyTorch's own predictions
(mmdet / mmseg / mmpretrain post-processing) and the onnxruntime model's
agree within :data:`mmpoolformer.deployment.agreement.TOLERANCES` (box IoU,
scores, masks, label-map pixels, class scores); with ``--metric`` the test
split's metric is computed with both. A disagreement is an error, and
``WORK_DIR/end2end.onnx`` is replaced only with ``--force``.
"""
import argparse
import copy
import importlib.util
import json
import os
import os.path as osp
import tempfile
import time

import torch
from export_onnx import ToolError
from mmengine.config import DictAction
from mmengine.evaluator import Evaluator

from mmpoolformer.checkpoint import runner_checkpoint_globals
from mmpoolformer.deployment import switched_to_deploy
from mmpoolformer.deployment.agreement import (
    MAIN_METRIC,
    check,
    evaluate_model,
    prediction_agreement,
    worst,
)
from mmpoolformer.fileio import check_output_path

MMDEPLOY_HINT = ('this tool needs mmdeploy: `make install` installs it, or '
                 'pip install --no-deps mmdeploy==1.3.1 && pip install aenum '
                 'multiprocess prettytable terminaltables (--no-deps keeps '
                 'your torch, numpy and protobuf)')


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('deploy_cfg', help='an mmdeploy deploy config')
    parser.add_argument('model_cfg')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', help='where end2end.onnx goes '
                        '(default: work_dirs/deploy/<model config>)')
    parser.add_argument('--images', nargs='+', help='images to compare the '
                        'two runtimes on (default: the test split\'s first)')
    parser.add_argument('--num-images', type=int, default=4)
    parser.add_argument('--score-floor', type=float, default=0.3,
                        help='detections compared: those scoring at least '
                        'this in PyTorch (default 0.3)')
    parser.add_argument('--metric', action='store_true', help="the test "
                        "split's metric in PyTorch and in onnxruntime")
    parser.add_argument('--json', help='write the figures here')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing WORK_DIR/end2end.onnx')
    parser.add_argument('--no-switch-to-deploy', dest='switch_to_deploy',
                        action='store_false', help="export the backbone "
                        "as trained, without its switch_to_deploy() folding")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the model config')
    return parser


def load_configs(args):
    """(deploy config, model config), loaded by mmdeploy (which imports
    their ``custom_imports``), the model config with ``--cfg-options``."""
    from mmdeploy.utils import load_config
    deploy_cfg, model_cfg = load_config(args.deploy_cfg, args.model_cfg)
    if args.cfg_options:
        model_cfg.merge_from_dict(args.cfg_options)
    if 'codebase_config' not in deploy_cfg or 'onnx_config' not in deploy_cfg:
        raise ToolError(f'{args.deploy_cfg} is not an mmdeploy deploy config '
                        '(no codebase_config / onnx_config); use one of '
                        'configs/deploy/')
    return deploy_cfg, model_cfg


def test_images(task_processor, model_cfg, count):
    """The image paths of the test split's first ``count`` samples."""
    dataset = task_processor.build_dataset(
        copy.deepcopy(model_cfg.test_dataloader.dataset))
    return [dataset.get_data_info(i)['img_path']
            for i in range(min(count, len(dataset)))]


def test_loader(task_processor, model_cfg):
    loader = copy.deepcopy(model_cfg.test_dataloader)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)
    loader['dataset'] = task_processor.build_dataset(loader['dataset'])
    return task_processor.build_dataloader(loader)


def export_onnx(task_processor, model, image, deploy_cfg, out_dir,
                save_file):
    """mmdeploy's ONNX export of ``model`` (the call its ``torch2onnx``
    makes after building the model itself): its rewriters, its
    post-processing, the deploy config's ONNX settings."""
    from mmdeploy.apis.core.pipeline_manager import no_mp
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import (
        get_backend,
        get_dynamic_axes,
        get_input_shape,
        get_onnx_config,
    )
    data, inputs = task_processor.create_input(
        image, get_input_shape(deploy_cfg),
        data_preprocessor=getattr(model, 'data_preprocessor', None))
    if isinstance(inputs, list) and len(inputs) == 1:
        inputs = inputs[0]
    onnx_cfg = get_onnx_config(deploy_cfg)
    names = onnx_cfg['input_names'] + onnx_cfg['output_names']
    with no_mp():
        export(model, inputs,
               output_path_prefix=osp.join(out_dir,
                                           osp.splitext(save_file)[0]),
               backend=get_backend(deploy_cfg).value,
               input_metas=dict(data_samples=data['data_samples'],
                                mode='predict'),
               context_info=dict(deploy_cfg=deploy_cfg),
               input_names=onnx_cfg['input_names'],
               output_names=onnx_cfg['output_names'],
               opset_version=onnx_cfg.get('opset_version', 11),
               dynamic_axes=get_dynamic_axes(deploy_cfg, names),
               verbose=not onnx_cfg.get('strip_doc_string', True)
               or onnx_cfg.get('verbose', False),
               keep_initializers_as_inputs=onnx_cfg.get(
                   'keep_initializers_as_inputs', True),
               optimize=onnx_cfg.get('optimize', False))


def compare_on_images(task_processor, torch_model, backend_model, images,
                      input_shape, score_floor):
    """Per image, the agreement figures of the two runtimes."""
    figures = {}
    for image in images:
        data, _ = task_processor.create_input(image, input_shape)
        with torch.no_grad():
            reference = torch_model.test_step(copy.deepcopy(data))[0]
            deployed = backend_model.test_step(data)[0]
        figures[image] = prediction_agreement(reference, deployed,
                                              score_floor)
    return figures


def main(argv=None):
    args = build_parser().parse_args(argv)
    prog = osp.basename(__file__)
    try:
        if importlib.util.find_spec('mmdeploy') is None:
            raise ToolError(MMDEPLOY_HINT)
        for path in (args.deploy_cfg, args.model_cfg, args.checkpoint):
            if not osp.isfile(path):
                raise ToolError(f'{path} does not exist')
        try:
            from mmdeploy.apis import build_task_processor
            from mmdeploy.utils import get_codebase, get_input_shape, get_onnx_config
        except ImportError as exc:
            raise ToolError(f'mmdeploy does not import ({exc}); '
                            f'{MMDEPLOY_HINT}') from None
        deploy_cfg, model_cfg = load_configs(args)
        name = osp.splitext(osp.basename(args.model_cfg))[0]
        work_dir = args.work_dir or osp.join('work_dirs', 'deploy', name)
        save_file = get_onnx_config(deploy_cfg)['save_file']
        out = osp.join(work_dir, save_file)
        check_output_path(out, args.force, flag='WORK_DIR/' + save_file)
        os.makedirs(work_dir, exist_ok=True)
        task_processor = build_task_processor(model_cfg, deploy_cfg, 'cpu')
        images = args.images or test_images(task_processor, model_cfg,
                                            args.num_images)
        if not images:
            raise ToolError('no images to export and compare with: the test '
                            'split is empty; pass --images')
        report = dict(deploy_cfg=args.deploy_cfg, model_cfg=args.model_cfg,
                      out=out)
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
            start = time.perf_counter()
            with runner_checkpoint_globals():
                torch_model = task_processor.build_pytorch_model(
                    args.checkpoint)
            # a copy either way: mmdeploy's export leaves the model it is
            # given with its export-time forward
            exported, report['switched_to_deploy'] = switched_to_deploy(
                torch_model) if args.switch_to_deploy else (
                    copy.deepcopy(torch_model), False)
            export_onnx(task_processor, exported, images[0], deploy_cfg,
                        tmp, save_file)
            del exported
            report['export_seconds'] = time.perf_counter() - start
            print(f'exported through mmdeploy in '
                  f'{report["export_seconds"]:.1f} s'
                  + (', backbone after switch_to_deploy()'
                     if report['switched_to_deploy'] else ''))
            backend_model = task_processor.build_backend_model(
                [osp.join(tmp, save_file)],
                data_preprocessor_updater=task_processor.
                update_data_preprocessor)
            per_image = compare_on_images(
                task_processor, torch_model, backend_model, images,
                get_input_shape(deploy_cfg), args.score_floor)
            figures = worst(per_image.values())
            report.update(agreement=figures, per_image=per_image)
            print('PyTorch vs onnxruntime on', len(images), 'images:',
                  ', '.join(f'{k} {v:.4g}' for k, v in figures.items()))
            problems = check(figures)
            if args.metric:
                report['metrics'] = {}
                main_metric = MAIN_METRIC.get(get_codebase(deploy_cfg).value)
                for runtime, model in (('pytorch', torch_model),
                                       ('onnxruntime', backend_model)):
                    metrics = evaluate_model(
                        model.test_step, test_loader(task_processor,
                                                     model_cfg),
                        Evaluator(copy.deepcopy(model_cfg.test_evaluator)))
                    report['metrics'][runtime] = metrics
                    print(f'{runtime}: {main_metric} '
                          f'{metrics.get(main_metric, float("nan")):.4f}')
                both = report['metrics']
                report['metric_difference'] = (
                    both['onnxruntime'][main_metric] -
                    both['pytorch'][main_metric])
            if args.json:
                with open(args.json, 'w') as f:
                    json.dump(report, f, indent=2, default=float)
            if problems:
                raise ToolError('onnxruntime disagrees with PyTorch: '
                                + '; '.join(problems) + f' (nothing written '
                                f'to {out})')
            os.replace(osp.join(tmp, save_file), out)
        print(f'{out}: onnxruntime model ({deploy_cfg.codebase_config.task})')
        return report
    except (ToolError, OSError, ValueError, ImportError) as exc:
        raise SystemExit(f'{prog}: error: {exc}') from None


if __name__ == '__main__':
    main()
