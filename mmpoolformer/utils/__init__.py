"""Shared logic of ``tools/train.py`` and ``tools/test.py``: one pair of
scripts serves mmdet, mmseg and mmpretrain configs, chosen by the config's
``default_scope``."""
from .checkpoints import checkpoint_problem, newest_loadable_checkpoint
from .config_check import check_neck_channels, skip_unreadable_training_images
from .data_check import check_datasets, dataset_errors
from .errors import DatasetError, ToolError, exit_on_tool_error
from .runner import (
                     SCOPES,
                     add_common_args,
                     add_dump_metric,
                     apply_test_args,
                     apply_train_args,
                     build_and_run,
                     build_runner,
                     check_work_dir,
                     load_config,
                     parse_args,
                     prepare_distributed,
                     require_file,
)
from .sample_check import check_samples

__all__ = [
    'checkpoint_problem', 'check_neck_channels', 'check_samples',
    'newest_loadable_checkpoint', 'skip_unreadable_training_images',
    'SCOPES', 'DatasetError', 'ToolError', 'add_common_args',
    'add_dump_metric', 'apply_test_args', 'apply_train_args', 'build_runner',
    'check_datasets', 'check_work_dir', 'dataset_errors',
    'build_and_run',
    'exit_on_tool_error', 'load_config', 'parse_args', 'prepare_distributed',
    'require_file'
]
