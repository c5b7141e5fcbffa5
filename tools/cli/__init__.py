"""What ``tools/train.py``, ``tools/test.py`` and ``tools/demo.py`` share
(not part of the installed library): one pair of scripts serves mmdet,
mmseg and mmpretrain configs, chosen by the config's ``default_scope``;
checks that stop a bad run before the Runner starts; the errors they report
as one line; the synthetic datasets of the demo."""
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
                     checked_by_main_rank,
                     load_config,
                     parse_args,
                     prepare_distributed,
                     require_file,
)
from .sample_check import check_samples

__all__ = [
    'check_neck_channels', 'check_samples', 'skip_unreadable_training_images',
    'SCOPES', 'DatasetError', 'ToolError', 'add_common_args',
    'add_dump_metric', 'apply_test_args', 'apply_train_args', 'build_runner',
    'check_datasets', 'check_work_dir', 'dataset_errors',
    'build_and_run', 'checked_by_main_rank',
    'exit_on_tool_error', 'load_config', 'parse_args', 'prepare_distributed',
    'require_file'
]
