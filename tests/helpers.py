"""Small shared pieces of the test-suite."""
import re

import torch

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
