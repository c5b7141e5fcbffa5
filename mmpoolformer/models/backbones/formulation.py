"""Which formulation of the MetaFormer block runs: the ``formulation``
argument of every backbone.

All formulations compute one function (the plain one) with the same
Parameters, state dict and NCHW module boundaries; they differ in how:

``'plain'``
    The modules' own forward: the paper's ops, as mmpretrain and timm write
    them. Hooks on any submodule see the tensors they expect.
``'lean'``
    Standard torch ops with the block's algebra folded (:mod:`.lean`): fewer
    passes over the activations. What compilers, tracers, exporters and
    GPUs run best.
``'fused'``
    Eager CPU kernels on channels-last maps (:mod:`.fused`): oneDNN GEMMs
    with their epilogues fused and hand-written backward passes that keep
    about half the activations. Eager CPU only: anywhere else it raises.
``'packed'``
    Eager CPU inference (no autograd) with the fused kernels on weights
    prepared once (:mod:`.packed`): folded, in the GEMMs' dtype, in
    oneDNN's layout. Anywhere else, and with gradients enabled, it raises.
``'auto'`` (the default)
    ``'fused'`` where its kernels run, ``'lean'`` elsewhere
    (:func:`auto_formulation`).

Whatever the argument, a block runs ``'plain'`` while hooks watch its
submodules and under ``torch.fx`` symbolic tracing
(:func:`choose_formulation`).
"""
import torch
import torch.nn as nn

from . import torch_ops

FORMULATIONS = ('auto', 'plain', 'lean', 'fused', 'packed')
#: formulations without autograd: they refuse to run with gradients enabled
INFERENCE_ONLY = ('packed', )


def check_formulation(formulation: str) -> str:
    if formulation not in FORMULATIONS:
        raise ValueError(f'formulation must be one of {FORMULATIONS} (see '
                         f'docs/speed.md), got {formulation!r}.')
    return formulation


def is_compiling() -> bool:
    """``torch.compiler.is_compiling()`` (torch >= 2.3; dynamo's before)."""
    if hasattr(torch.compiler, 'is_compiling'):
        return torch.compiler.is_compiling()
    from torch import _dynamo
    return _dynamo.is_compiling()


def in_graph_capture(x) -> bool:
    """Whether ``x`` flows through a compiler (``torch.compile``,
    ``torch.export``) or a tracer (``torch.jit.trace``, ``torch.fx``)."""
    return is_compiling() or isinstance(x, torch.fx.Proxy) or \
        torch.jit.is_tracing()


def fused_kernels_run(x) -> bool:
    """Whether the fused kernels can compute on ``x``: a plain CPU tensor
    in eager mode, on a torch whose private operators pass their probes."""
    return (not in_graph_capture(x) and type(x) is torch.Tensor and
            x.device.type == 'cpu' and
            all(torch_ops.works(op) for op in torch_ops.FUSED_KERNEL_OPS))


def observed_by_hooks(block: nn.Module) -> bool:
    """Whether hooks (a submodule's own or the global module hooks) would
    watch the block's submodules, which only the plain formulation calls;
    also when the hook tables cannot be read on this torch."""
    if not torch_ops.works('hook_tables'):
        return True
    from torch.nn.modules import module as module_globals
    if any(getattr(module_globals, t) for t in torch_ops.GLOBAL_HOOK_TABLES):
        return True
    return any(getattr(child, t) for child in block.modules()
               if child is not block for t in torch_ops.HOOK_TABLES)


def auto_formulation(x) -> str:
    """``'auto'``: ``'fused'`` for a plain CPU tensor in eager mode,
    ``'lean'`` everywhere else (under compilers and tracers, on CUDA and
    other devices, for tensor subclasses)."""
    return 'fused' if fused_kernels_run(x) else 'lean'


def choose_formulation(formulation: str, block: nn.Module, x) -> str:
    """The formulation that computes ``block(x)``.

    ``'plain'`` while hooks watch the block's submodules and under
    ``torch.fx`` symbolic tracing, whatever the argument: only the plain
    formulation calls those modules, a hook must see the tensors it expects
    and an fx graph names the modules it calls (what feature extractors
    and quantizers look for). Otherwise the argument itself, with
    ``'auto'`` resolved by :func:`auto_formulation`. ``'fused'`` or
    ``'packed'`` where its kernels cannot run raises, naming the
    alternatives, and so does ``'packed'`` with gradients enabled.
    """
    if formulation == 'plain' or isinstance(x, torch.fx.Proxy) or \
            observed_by_hooks(block):
        return 'plain'
    if formulation == 'auto':
        return auto_formulation(x)
    if formulation in ('fused', 'packed') and not fused_kernels_run(x):
        where = ('inside a compiler or tracer' if in_graph_capture(x) else
                 f'on a {type(x).__name__} on {x.device}' if
                 x.device.type != 'cpu' or type(x) is not torch.Tensor else
                 'on this torch (its private operators failed their probes)')
        raise RuntimeError(
            f"formulation={formulation!r} runs eager CPU kernels only, but "
            f"the block was called {where}; use formulation='auto' (which "
            f"picks 'lean' there) or 'lean'.")
    if formulation in INFERENCE_ONLY and torch.is_grad_enabled():
        raise RuntimeError(
            "formulation='packed' is for inference: its weights are prepared "
            "once, without autograd. Call the model under torch.no_grad() or "
            "torch.inference_mode(), or train with formulation='auto'.")
    return formulation
