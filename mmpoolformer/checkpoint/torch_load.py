"""Let torch>=2.6 load checkpoints that mmengine's Runner saves.

torch 2.6 made ``torch.load(weights_only=True)`` the default and mmengine
0.10.7 does not pass ``weights_only``. Runner checkpoints hold, besides
tensors, the message hub's :class:`~mmengine.logging.HistoryBuffer` objects
(numpy arrays, and the buffer's statistics methods pickled as
``getattr(HistoryBuffer, 'mean')``), which the restricted unpickler refuses:
``--resume`` and ``test.py`` fail with an UnpicklingError. An *empty*
buffer holds empty numpy arrays, whose data ``torch.save``'s pickle protocol
2 writes as ``builtins.bytes()`` (non-empty data goes through
``_codecs.encode``, which torch allows), so ``bytes`` is allowed too.

We keep ``weights_only`` on and allow exactly these globals, and only inside
mmengine's loader for local files (re-registered through its public
``CheckpointLoader.register_scheme``). A plain ``torch.load`` elsewhere keeps
torch's default allowlist.

Where mmengine passes ``weights_only`` itself with an allowlist of its own
(the maintained onedl fork, onedl-mmengine 0.10.8+), nothing is wrapped.
"""
import functools
import inspect

import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader


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


def mmengine_handles_weights_only() -> bool:
    """Whether mmengine's checkpoint module passes ``weights_only`` to
    ``torch.load`` itself (the onedl fork does; mmengine 0.10.7 does not)."""
    from mmengine.runner import checkpoint
    try:
        return 'weights_only' in inspect.getsource(checkpoint)
    except (OSError, TypeError):  # no source installed: wrap to be safe
        return False


def register_mmengine_safe_globals() -> None:
    """Wrap mmengine's local-file loader in ``torch.serialization.safe_globals``
    where mmengine needs it (idempotent; a no-op on torch without weights-only
    allowlists and on an mmengine that handles them itself)."""
    safe_globals = getattr(torch.serialization, 'safe_globals', None)
    local_loader = CheckpointLoader._get_checkpoint_loader('/local/file.pth')
    if safe_globals is None or getattr(local_loader, 'mmpoolformer_wrapped', False) \
            or mmengine_handles_weights_only():
        return
    allowed = mmengine_safe_globals()

    @functools.wraps(local_loader)  # keeps the name mmengine logs
    def load_from_local(filename, map_location):
        with safe_globals(allowed):
            return local_loader(filename, map_location)

    load_from_local.mmpoolformer_wrapped = True
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
