"""Train a detection (mmdet), segmentation (mmseg) or classification
(mmpretrain) config; its ``default_scope`` decides. Flags as mmdet's
tools/train.py.

Before the Runner starts it checks what would otherwise fail later: the
data (paths, class names, boxes, every image; ``--skip-data-check`` skips
the sample check), the neck against the backbone, a damaged ``--resume``
checkpoint, a work dir holding files the run would overwrite."""
import argparse
import os.path as osp

from mmpoolformer import register_all_modules

from cli import (
    add_common_args,
    apply_train_args,
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
    skip_unreadable_training_images,
)


def build_parser():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision (AmpOptimWrapper)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the total batch size against '
                        'auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a value from the '
        'newest loadable checkpoint in the work dir')
    return add_common_args(parser)


def main(argv=None):
    args = parse_args(build_parser(), argv)
    register_all_modules()
    with exit_on_tool_error(osp.basename(__file__)):
        cfg = apply_train_args(load_config(args), args)
        check_work_dir(cfg, args.config, train=True)
        validates = cfg.get('val_cfg') is not None and \
            cfg.get('val_dataloader') is not None
        loaders = ['train_dataloader'] + ['val_dataloader'] * validates
        check_neck_channels(cfg)

        def check_data():
            check_datasets(cfg, loaders, ['val_evaluator'] * validates)
            if not args.skip_data_check:
                check_samples(cfg, loaders, decode=args.full_data_check)

        cfg = checked_by_main_rank(cfg, check_data)
        skip_unreadable_training_images(cfg)
        with dataset_errors():
            build_and_run(cfg, lambda runner: runner.train())


if __name__ == '__main__':
    main()
