"""Load the checkpoints mmengine's Runner saves under torch>=2.6.

torch 2.6 made ``torch.load(weights_only=True)`` the default and mmengine
0.10.7 does not pass ``weights_only``. Runner checkpoints hold, besides
tensors, the message hub's :class:`~mmengine.logging.HistoryBuffer` objects
(numpy arrays, and the buffer's statistics methods pickled as
``getattr(HistoryBuffer, 'mean')``), which the restricted unpickler refuses:
resuming and testing fail with an UnpicklingError. An *empty* buffer holds
empty numpy arrays, whose data ``torch.save``'s pickle protocol 2 writes as
``builtins.bytes()`` (non-empty data goes through ``_codecs.encode``, which
torch allows), so ``bytes`` is allowed too.

:func:`runner_checkpoint_globals` keeps ``weights_only`` on and allows
exactly these globals for the duration of a ``with`` block: our checkpoint
loading and our tools use it; nothing changes for other code of the
process. Where mmengine passes ``weights_only`` itself with an allowlist of
its own (the maintained onedl fork, onedl-mmengine 0.10.8+), or torch has no
allowlists, it does nothing.
"""
import contextlib
import functools
import inspect

import numpy as np
import torch


def mmengine_safe_globals() -> list:
    """The non-tensor globals found in mmengine Runner checkpoints."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if np.lib.NumpyVersion(np.__version__) >= '2.0.0':
        from numpy._core import multiarray
    else:
        from numpy.core import multiarray
    numpy_dtypes = [type(np.dtype(t)) for t in (
        np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
        np.int8, np.uint8, np.bool_)]
    return [HistoryBuffer, getattr, bytes, np.ndarray, np.dtype,
            multiarray._reconstruct, multiarray.scalar, *numpy_dtypes]


@functools.lru_cache(maxsize=None)
def mmengine_handles_weights_only() -> bool:
    """Whether mmengine's checkpoint module passes ``weights_only`` to
    ``torch.load`` itself (the onedl fork does; mmengine 0.10.7 does not)."""
    from mmengine.runner import checkpoint
    try:
        return 'weights_only' in inspect.getsource(checkpoint)
    except (OSError, TypeError):  # no source installed: allow to be safe
        return False


def runner_checkpoint_globals():
    """A context manager under which mmengine's checkpoint loaders read
    Runner checkpoints on torch>=2.6 (a no-op where nothing is needed)."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    if safe_globals is None or mmengine_handles_weights_only():
        return contextlib.nullcontext()
    return safe_globals(mmengine_safe_globals())


def load_checkpoint_file(filename, map_location='cpu'):
    """mmengine's ``_load_checkpoint`` (any path or URL it reads) under
    :func:`runner_checkpoint_globals`."""
    from mmengine.runner.checkpoint import _load_checkpoint
    with runner_checkpoint_globals():
        return _load_checkpoint(filename, map_location=map_location)
