"""Small shared pieces of the test-suite."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# narrow and shallow, for tests that run forward/backward many times
TINY = dict(depths=[1, 1, 2, 1], embed_dims=[8, 16, 24, 32], mlp_ratios=2)


def randomise_(model, seed=0):
    """Give every parameter a non-trivial value (layer scales and norm
    affines included), so that a mistake in any branch changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'scale' in name or name.endswith(('norm1.weight', 'norm2.weight')):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def official_layout(mmpretrain_state):
    """sail-sg layout: mmpretrain names, a final ``norm`` and a ``head``."""
    out = {k: v for k, v in mmpretrain_state.items()
           if not re.match(r'norm[024]\.', k)}
    for suffix in ('weight', 'bias'):
        out[f'norm.{suffix}'] = out.pop(f'norm6.{suffix}')
    out['head.weight'], out['head.bias'] = torch.zeros(1000, 512), torch.zeros(1000)
    return out


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``|a - b| / |b|`` in the 2-norm: the rounding of a reordered fp32
    computation, independent of the tensor's scale."""
    return ((a.double() - b.double()).norm() /
            b.double().norm().clamp_min(1e-30)).item()


def assert_every_parameter_learns(model, context=''):
    """Every parameter gets a gradient, nonzero except where it is zero by
    construction: the bias of a one-group GroupNorm in front of a Pooling
    mixer cancels in ``pool(GN(x)) - GN(x)`` (the fast formulations return
    an exact zero for it, the plain formulation rounding noise)."""
    from mmpoolformer.models.backbones.blocks import MetaFormerBlock
    from mmpoolformer.models.backbones.layers import norm_kind
    from mmpoolformer.models.backbones.token_mixers import Pooling
    cancels = {f'{name}.norm1.bias': m.residual
               for name, m in model.named_modules()
               if isinstance(m, MetaFormerBlock)
               and isinstance(m.token_mixer, Pooling)
               and norm_kind(m.norm1) == 'group'}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, (context, name)
        if name not in cancels:
            assert p.grad.abs().sum() > 0, (context, name)
        elif model.formulation != 'plain' and cancels[name]:  # the identity
            assert not p.grad.any(), (context, name)


def load_tool(relpath):
    """A script under ``tools/`` as a module (the tools are scripts, not a
    package), e.g. ``load_tool('deployment/export_onnx.py')``."""
    name = 'mmpoolformer_tools_' + relpath.removesuffix('.py').replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / relpath)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tool_error(tool, *argv, prog=None):
    """The one message a tool stops with (SystemExit with a string: exit
    status 1), checked to carry the tool's name when ``prog`` is given."""
    with pytest.raises(SystemExit) as info:
        tool.main([str(a) for a in argv])
    assert isinstance(info.value.code, str), info.value.code
    if prog is not None:
        assert info.value.code.startswith(f'{prog}: error: '), info.value.code
    return info.value.code
