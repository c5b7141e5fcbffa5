"""mmengine's ``LoggerHook`` with one writer for the test metrics file.

mmengine 0.10's ``LoggerHook.after_test_epoch`` dumps the test metrics from
every rank to the same ``<work_dir>/<timestamp>/<timestamp>.json``; two
ranks writing at once can leave a corrupt file (``{...}7}``). The metrics
are the same on every rank (the evaluator gathers them), so the main rank
alone logs and writes them here; everything else is mmengine's hook.
"""
from mmengine.dist import is_main_process
from mmengine.hooks import LoggerHook

from ..registry import HOOKS


@HOOKS.register_module()
class RankZeroLoggerHook(LoggerHook):
    """``LoggerHook`` whose test metrics file is written by the main rank
    only. Use it as ``default_hooks.logger`` (``tools/test.py`` and
    ``tools/train.py`` put it in place of mmengine's)."""

    def after_test_epoch(self, runner, metrics=None) -> None:
        if is_main_process():
            super().after_test_epoch(runner, metrics)
