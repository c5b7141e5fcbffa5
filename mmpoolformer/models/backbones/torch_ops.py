"""The private torch operators and attributes the fast formulations use,
each probed once by a call on a tiny input.

A probe runs inside a try and compares the private operator with public
ones; a renamed operator, a changed signature or a different result makes it
fail, and the formulation that needs it steps aside instead of raising (the
fused kernels for the lean formulation; the GEMM-epilogue ReLU for a plain
ReLU; unreadable hook tables for the plain formulation, whose modules every
hook sees). :func:`works` keeps each answer for the process.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import module as module_globals


def _close(a, b) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def _tiny(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _onednn_linear() -> bool:
    """oneDNN's matmul with a bias and a GELU / ReLU / sum post-op."""
    x, w, b, r = _tiny(3, 4), _tiny(5, 4), _tiny(5), _tiny(3, 5)
    op = torch.ops.mkldnn._linear_pointwise
    ref = F.linear(x, w, b)
    return (torch.backends.mkldnn.is_available() and
            _close(op(x, w, b, 'relu', [], ''), F.relu(ref)) and
            _close(op(x, w, b, 'gelu', [], 'none'), F.gelu(ref)) and
            _close(op(x, w, b, 'none', [], ''), ref) and
            _close(op.binary(x, r, w, b, 'add'), ref + r))


def _layer_norm() -> bool:
    """``native_layer_norm`` and its backward, against autograd."""
    x = _tiny(3, 6).double().requires_grad_()
    g = _tiny(3, 6).double()
    out, mean, rstd = torch.ops.aten.native_layer_norm(x, [6], None, None,
                                                       1e-5)
    ref = F.layer_norm(x, [6], eps=1e-5)
    grad = torch.autograd.grad(ref, x, g)[0]
    got = torch.ops.aten.native_layer_norm_backward(
        g, x, [6], mean, rstd, None, None, [True, False, False])[0]
    return _close(out, ref) and _close(got, grad)


def _convolution_backward() -> bool:
    """``convolution_backward`` of a depthwise 'same' convolution with a
    bias, against autograd."""
    x = _tiny(1, 2, 5, 5).double().requires_grad_()
    w = _tiny(2, 1, 3, 3).double().requires_grad_()
    b = _tiny(2).double().requires_grad_()
    out = F.conv2d(x, w, b, padding=1, groups=2)
    g = torch.ones_like(out)
    ref = torch.autograd.grad(out, (x, w, b), g)
    got = torch.ops.aten.convolution_backward(
        g, x.detach(), w.detach(), [2], [1, 1], [1, 1], [1, 1], False,
        [0, 0], 2, [True, True, True])
    return all(_close(a, r) for a, r in zip(got, ref))


def _gelu_backward() -> bool:
    """``gelu_backward.grad_input`` (written into its gradient)."""
    h = _tiny(7).double().requires_grad_()
    g = _tiny(7).double()
    ref = torch.autograd.grad(F.gelu(h), h, g)[0]
    got = torch.ops.aten.gelu_backward.grad_input(g.clone(), h.detach(),
                                                  grad_input=torch.empty(7,
                                                  dtype=torch.double))
    return _close(got, ref)


def _addmm_activation() -> bool:
    """``relu(b + x w^T)`` with the ReLU in the GEMM's epilogue."""
    x, w, b = _tiny(3, 4), _tiny(5, 4), _tiny(5)
    return _close(torch._addmm_activation(b, x, w.t()),
                  F.relu(F.linear(x, w, b)))


def _onednn_packed_linear() -> bool:
    """oneDNN's matmul on a weight reordered once into its own layout
    (``_reorder_linear_weight``), with a bias and the post-ops."""
    x, w, b, r = _tiny(3, 4), _tiny(5, 4), _tiny(5), _tiny(3, 5)
    op = torch.ops.mkldnn._linear_pointwise
    with torch.inference_mode():
        packed = torch.ops.mkldnn._reorder_linear_weight(w)
        return (torch.backends.mkldnn.is_available() and packed.is_mkldnn and
                _close(op(x, packed, b, 'gelu', [], 'none'),
                       F.gelu(F.linear(x, w, b))) and
                _close(op.binary(x, r, packed, b, 'add'), F.linear(x, w, b) + r))


#: the per-module and global hook tables ``nn.Module.__call__`` consults
HOOK_TABLES = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks',
               '_backward_pre_hooks')
GLOBAL_HOOK_TABLES = tuple(f'_global{name}' for name in HOOK_TABLES)


def _hook_tables() -> bool:
    """The hook tables fill and empty as the public registration API says."""
    def fill(register, table, owner):
        handle = register(lambda *args: None)
        filled = bool(getattr(owner, table))
        handle.remove()
        return filled and not getattr(owner, table)

    m = nn.Identity()
    own = (m.register_forward_hook, m.register_forward_pre_hook,
           m.register_full_backward_hook, m.register_full_backward_pre_hook)
    shared = (module_globals.register_module_forward_hook,
              module_globals.register_module_forward_pre_hook,
              module_globals.register_module_full_backward_hook,
              module_globals.register_module_full_backward_pre_hook)
    return all(fill(r, t, m) for r, t in zip(own, HOOK_TABLES)) and all(
        fill(r, t, module_globals) for r, t in zip(shared, GLOBAL_HOOK_TABLES))


PROBES = {
    'onednn_linear': _onednn_linear,
    'onednn_packed_linear': _onednn_packed_linear,
    'layer_norm': _layer_norm,
    'convolution_backward': _convolution_backward,
    'gelu_backward': _gelu_backward,
    'addmm_activation': _addmm_activation,
    'hook_tables': _hook_tables,
}
#: what the fused CPU kernels call
FUSED_KERNEL_OPS = ('onednn_linear', 'layer_norm', 'convolution_backward',
                    'gelu_backward')


_RESULTS = {}  # probe name -> passed (a dict: compilers read it as a constant)


def works(name: str) -> bool:
    """Whether the probe ``name`` of :data:`PROBES` passes; run once per
    process (:func:`forget` runs them again)."""
    if name not in _RESULTS:
        try:
            with torch.inference_mode(False), torch.enable_grad(), \
                    torch.autocast('cpu', enabled=False):
                _RESULTS[name] = bool(PROBES[name]())
        except Exception:  # any failure means: do not use it
            _RESULTS[name] = False
    return _RESULTS[name]


def probe_all() -> dict:
    """Run every probe now (models do at construction, so that no probe runs
    inside a compiler's trace); ``{name: passed}``."""
    return {name: works(name) for name in PROBES}


def forget() -> None:
    """Drop the cached answers (tests that make a probe fail)."""
    _RESULTS.clear()
