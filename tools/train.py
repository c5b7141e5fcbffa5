"""Train a detection (mmdet), segmentation (mmseg) or classification
(mmpretrain) config; its ``default_scope`` decides. Flags as mmdet's
tools/train.py."""
import argparse
import os.path as osp

from mmpoolformer.utils import (add_common_args, apply_train_args,
                                build_runner, check_datasets, check_work_dir,
                                dataset_errors, distributed_teardown,
                                exit_on_tool_error, load_config, parse_args,
                                prepare_distributed)


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
        'latest checkpoint in the work dir')
    return add_common_args(parser)


def main(argv=None):
    args = parse_args(build_parser(), argv)
    with exit_on_tool_error(osp.basename(__file__)):
        cfg = apply_train_args(load_config(args), args)
        check_work_dir(cfg, args.config, train=True)
        validates = cfg.get('val_cfg') is not None and \
            cfg.get('val_dataloader') is not None
        check_datasets(
            cfg, ['train_dataloader'] + ['val_dataloader'] * validates,
            ['val_evaluator'] * validates)
        runner = build_runner(prepare_distributed(cfg))
        with distributed_teardown(), dataset_errors():
            runner.train()


if __name__ == '__main__':
    main()
