"""Shared logic of ``tools/train.py`` and ``tools/test.py``: one pair of
scripts serves mmdet, mmseg and mmpretrain configs, chosen by the config's
``default_scope``."""
from .data_check import check_datasets, dataset_errors
from .errors import DatasetError, ToolError, exit_on_tool_error
from .runner import (SCOPES, add_common_args, add_dump_metric,
                     apply_test_args, apply_train_args, build_runner,
                     check_work_dir, distributed_teardown, load_config,
                     parse_args, prepare_distributed, require_file)

__all__ = [
    'SCOPES', 'DatasetError', 'ToolError', 'add_common_args',
    'add_dump_metric', 'apply_test_args', 'apply_train_args', 'build_runner',
    'check_datasets', 'check_work_dir', 'dataset_errors',
    'distributed_teardown',
    'exit_on_tool_error', 'load_config', 'parse_args', 'prepare_distributed',
    'require_file'
]
