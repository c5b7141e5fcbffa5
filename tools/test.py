"""Test (and evaluate) a checkpoint of a detection (mmdet), segmentation
(mmseg) or classification (mmpretrain) config; its ``default_scope``
decides. Flags as mmdet's tools/test.py."""
import argparse
import os.path as osp

from mmpoolformer.utils import (add_common_args, add_dump_metric,
                                apply_test_args, build_runner, check_datasets,
                                check_work_dir, dataset_errors,
                                distributed_teardown, exit_on_tool_error, load_config, parse_args,
                                prepare_distributed)


def build_parser():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to this pickle '
                        'file (*.pkl) for offline evaluation')
    parser.add_argument(
        '--show-dir', help='draw the predictions: mmdet into '
        '<work_dir>/<timestamp>/<show_dir>, mmseg into '
        '<show_dir>/vis_data/vis_image, '
        'mmpretrain into <show_dir>')
    return add_common_args(parser)


def main(argv=None):
    """Returns the metrics (a dict)."""
    args = parse_args(build_parser(), argv)
    with exit_on_tool_error(osp.basename(__file__)):
        cfg = apply_test_args(load_config(args), args)
        check_work_dir(cfg, args.config, train=False)
        check_datasets(cfg, ['test_dataloader'], ['test_evaluator'])
        runner = build_runner(prepare_distributed(cfg))
        with distributed_teardown(), dataset_errors():
            if args.out is not None:
                add_dump_metric(runner, args.out)  # builds the test loop
            return runner.test()


if __name__ == '__main__':
    main()
