"""Memory of a training step, measured the same way for every model.

CPU tensors have no allocator statistics, so :class:`PeakLiveBytes` counts
what the step itself allocates: every storage an ATen op creates inside the
mode is added when it appears and subtracted when its last tensor dies. The
peak is the high-water mark of activations, saved tensors, gradients and
temporaries of one step; parameters and optimizer state that already exist
are not counted (they are the same for models of the same size), and
neither are the scratch buffers of a kernel (oneDNN's, MKL's).
"""
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_key(t):
    if not isinstance(t, torch.Tensor) or t.is_mkldnn or t.is_sparse:
        return None
    try:
        storage = t.untyped_storage()
    except (NotImplementedError, RuntimeError):
        return None
    return (storage.data_ptr(), storage.nbytes()) if storage.data_ptr() \
        else None


class PeakLiveBytes(TorchDispatchMode):
    """``with PeakLiveBytes() as m: step()`` then ``m.peak`` (bytes)."""

    def __init__(self):
        super().__init__()
        self.live = {}  # storage pointer -> [bytes, tensors alive]
        self.current = self.peak = 0

    def _release(self, ptr):
        entry = self.live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self.live[ptr]
            self.current -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {k[0] for k in map(_storage_key, tree_flatten((args, kwargs))[0])
                  if k is not None}
        for t in tree_flatten(out)[0]:
            key = _storage_key(t)
            if key is None:
                continue
            ptr, nbytes = key
            entry = self.live.get(ptr)
            if entry is None:
                if ptr in inputs:
                    continue  # in place, or a view of a tensor made before
                self.live[ptr] = entry = [nbytes, 0]
                self.current += nbytes
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, ptr)
        return out


def saved_activation_bytes(run_forward, params) -> int:
    """Bytes of the distinct storages autograd saves for backward during
    ``run_forward()``, parameters (and autocast's copies of them) excluded."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in params}
    seen = {}

    def is_weight_cast(t):
        fn = t.grad_fn
        return (fn is not None and type(fn).__name__ == 'ToCopyBackward0'
                and all(type(n).__name__ == 'AccumulateGrad'
                        for n, _ in fn.next_functions if n is not None))

    def pack(t):
        key = _storage_key(t)
        if key is not None and key[0] not in param_ptrs and \
                not is_weight_cast(t):
            seen[key[0]] = key[1]
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_forward()
    return sum(seen.values())
