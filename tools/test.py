"""Test (and evaluate) a checkpoint of a detection (mmdet), segmentation
(mmseg) or classification (mmpretrain) config; its ``default_scope``
decides. Flags as mmdet's tools/test.py.

The data (paths, class names, every image) and the neck are checked before
the Runner starts; ``--out`` never replaces an existing file without
``--force`` and appears only complete."""
import argparse
import os.path as osp

from mmengine.dist import is_main_process

from mmpoolformer import register_all_modules
from mmpoolformer.fileio import check_output_path, commit_partial, partial_name

from cli import (
    add_common_args,
    add_dump_metric,
    apply_test_args,
    build_and_run,
    check_datasets,
    check_neck_channels,
    check_samples,
    check_work_dir,
    checked_by_main_rank,
    dataset_errors,
    exit_on_tool_error,
    load_config,
    parse_args,
)


def build_parser():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to this pickle '
                        'file (*.pkl) for offline evaluation')
    parser.add_argument('--force', action='store_true',
                        help='replace an existing --out file')
    parser.add_argument(
        '--show-dir', help='draw the predictions: mmdet into '
        '<work_dir>/<timestamp>/<show_dir>, mmseg into '
        '<show_dir>/vis_data/vis_image, '
        'mmpretrain into <show_dir>')
    return add_common_args(parser)


def main(argv=None):
    """Returns the metrics (a dict)."""
    args = parse_args(build_parser(), argv)
    register_all_modules()
    with exit_on_tool_error(osp.basename(__file__)):
        cfg = apply_test_args(load_config(args), args)
        if args.out is not None:
            check_output_path(args.out, args.force)
        check_work_dir(cfg, args.config, train=False)
        check_neck_channels(cfg)

        def check_data():
            check_datasets(cfg, ['test_dataloader'], ['test_evaluator'])
            if not args.skip_data_check:
                check_samples(cfg, ['test_dataloader'],
                              decode=args.full_data_check)

        cfg = checked_by_main_rank(cfg, check_data)
        with dataset_errors():
            return build_and_run(cfg, lambda runner: test(runner, args.out))


def test(runner, out):
    """``runner.test()``, its predictions dumped to ``out`` if given."""
    if out is None:
        return runner.test()
    partial = partial_name(out)  # rank 0 dumps to it
    add_dump_metric(runner, partial)  # builds the test loop
    metrics = runner.test()
    if is_main_process():
        commit_partial(partial, out)
    return metrics


if __name__ == '__main__':
    main()
