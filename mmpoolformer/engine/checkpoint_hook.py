"""mmengine's CheckpointHook, made safe against a crash at any moment.

mmengine 0.10 writes ``iter_N.pth`` in place, removes the oldest checkpoint
(``max_keep_ckpts``) *before* the new one is written, and then rewrites
``last_checkpoint`` in place. A process killed while saving can leave a
partial ``iter_N.pth``, no complete checkpoint at all, and a
``last_checkpoint`` naming a deleted or partial file, so that ``--resume``
fails and days of training are lost.

:class:`SafeCheckpointHook` keeps every option and the message-hub
bookkeeping of mmengine's hook, and changes the order of the file system
steps for local work dirs:

1. the Runner writes the checkpoint to a hidden temporary name beside it;
2. it is fsynced and renamed to ``iter_N.pth`` (so a checkpoint file exists
   only complete);
3. ``last_checkpoint`` is replaced atomically to name it;
4. only then are checkpoints beyond ``max_keep_ckpts`` removed.

Before the run it removes temporary files of killed runs and, when the
Runner auto-resumes (``resume=True`` without ``load_from``, i.e.
``tools/train.py --resume``), resumes from the newest *loadable* checkpoint
of the work dir if the one ``last_checkpoint`` names is missing or damaged,
saying which one it skipped and why.
Other storage backends (``out_dir='s3://...'``) keep mmengine's behaviour.

Opt-in: a config names it in place of mmengine's hook (our configs do), and
it keeps every option of mmengine's::

    default_hooks = dict(checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'))
"""
import logging
import os.path as osp

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmpoolformer.checkpoint.files import newest_loadable_checkpoint, read_last_checkpoint
from mmpoolformer.fileio import (
    commit_partial,
    partial_name,
    remove_stale_partials,
    write_bytes_atomic,
)
from mmpoolformer.registry import HOOKS


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` whose files survive a crash at
    any moment (see the module docstring); same arguments."""

    def _is_local(self):
        return '://' not in str(self.out_dir)

    def before_train(self, runner):
        super().before_train(runner)  # resolves out_dir, file backend
        if is_main_process() and self._is_local():
            for path in remove_stale_partials(self.out_dir):
                print_log(f'Removed {path}, a partial checkpoint of a run '
                          'killed while saving.', logger='current')

    def before_run(self, runner):
        """Point an auto-resume at the newest loadable checkpoint (this runs
        before the Runner's ``load_or_resume``)."""
        super().before_run(runner)
        # mmengine has no public way to choose the checkpoint of an
        # auto-resume; setting ``_load_from`` on every rank makes each one
        # resume from the same file (rewriting last_checkpoint on rank 0
        # would race with the other ranks reading it)
        if not (getattr(runner, '_resume', False)
                and getattr(runner, '_load_from', None) is None):
            return
        work_dir = runner.work_dir
        if is_main_process():
            for path in remove_stale_partials(work_dir):
                print_log(f'Removed {path}, a partial checkpoint of a run '
                          'killed while saving.', logger='current')
        named = read_last_checkpoint(work_dir)
        if named is not None and '://' in named:
            return  # a remote out_dir: mmengine's own resume
        good, rejected = newest_loadable_checkpoint(work_dir, named)
        for path, reason in rejected:
            print_log(f'Not resuming from {path}: {reason}.',
                      logger='current', level=logging.WARNING)
        if good is None:
            if rejected:
                print_log(f'No loadable checkpoint in {work_dir}: training '
                          'starts from the beginning.', logger='current',
                          level=logging.WARNING)
            return
        if good != named:
            print_log(f'Resuming from {good}, the newest loadable checkpoint'
                      f' (last_checkpoint named {named or "nothing"}).',
                      logger='current', level=logging.WARNING)
            runner._load_from = good

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # the same bookkeeping as mmengine (the checkpoint carries the ids
        # it keeps), but a checkpoint leaves the disk only after the new one
        # is complete and named by last_checkpoint
        expired = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        partial = partial_name(self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, osp.basename(partial), self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args,
            **getattr(self, 'args', {}))
        if not is_main_process():
            return
        commit_partial(partial, self.last_ckpt)
        write_bytes_atomic(osp.join(runner.work_dir, 'last_checkpoint'),
                           self.last_ckpt.encode())
        if expired is not None and expired != step:
            old = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(expired))
            if self.file_backend.isfile(old):
                self.file_backend.remove(old)
            elif self.file_backend.isdir(old):
                self.file_backend.rmtree(old)

