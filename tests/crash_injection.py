"""A test-only hook that stops a training process in the middle of saving a
checkpoint, so that the test can kill it with SIGKILL at that moment.

Imported by the child process through the config's ``custom_imports``
(the test puts this folder on its PYTHONPATH). At the chosen iteration the
hook lets mmengine's file backend write the checkpoint bytes (``half``: the
first half only, ``all``: all of them), flushes them to the disk, writes
``<work_dir>/saving.marker`` naming the file, and blocks; the test waits for
the marker and kills the process. Nothing else of the run is changed.
"""
import os
import time

from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

MARKER = 'saving.marker'


@HOOKS.register_module()
class BlockWhileSaving(Hook):
    priority = 'LOWEST'

    def __init__(self, at_iter, written='half'):
        assert written in ('half', 'all')
        self.at_iter, self.written = at_iter, written

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint['meta'].get('iter') != self.at_iter:
            return
        written, marker = self.written, os.path.join(runner.work_dir, MARKER)

        def put_and_block(backend, obj, filepath):
            data = obj if written == 'all' else obj[:len(obj) // 2]
            with open(filepath, 'wb') as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            with open(marker, 'w') as f:
                f.write(str(filepath))
            while True:  # until SIGKILL
                time.sleep(1)

        LocalBackend.put = put_and_block
