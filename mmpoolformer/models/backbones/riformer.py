"""RIFormer: "RIFormer: Keep Your Vision Backbone Effective But Removing
Token Mixer" (CVPR 2023).

PoolFormer v1's architecture with a per-channel affine token mixer
``a * x + b - x`` at training time. Because the mixer is affine and directly
follows an affine norm, ``switch_to_deploy()`` folds it into that norm:
``mixer(GN(x)) = GN'(x)`` with ``gamma' = gamma (a - 1)`` and
``beta' = beta (a - 1) + b``, so the deployed blocks have no token mixer;
it then folds the remaining affines like every MetaFormer.
"""
from typing import Union

import torch

from mmpoolformer.registry import MODELS

from .deploy import fold_affine_mixer
from .metaformer import MetaFormer
from .poolformer import PoolFormer


@MODELS.register_module()
class RIFormer(MetaFormer):
    """RIFormer backbone; see :class:`MetaFormer` for the arguments.

    Args:
        deploy (bool): Build the folded (token-mixer-free) structure, e.g. to
            load a deployed checkpoint. Defaults to False.
    """
    arch_zoo = {name: dict(arch, token_mixers=dict(type='Affine'))
                for name, arch in PoolFormer.arch_zoo.items()}
    default_arch = 's12'

    def __init__(self, arch: Union[str, dict] = 's12', deploy: bool = False,
                 **kwargs):
        super().__init__(arch, **kwargs)
        mixers = {m['type'] for m in self.arch_settings['token_mixers']}
        if mixers != {'Affine'}:
            raise ValueError(
                f'RIFormer mixes tokens by its affine mixer only (folded by '
                f'switch_to_deploy), got {sorted(mixers)}; use '
                f'type="mmpoolformer.MetaFormer" for other token mixers.')
        self.mixers_folded = False
        if deploy:
            self._fold_mixers()

    @torch.no_grad()
    def _fold_mixers(self) -> None:
        """Fold every block's affine mixer into its first norm (in place):
        the structure of mmpretrain's deployed RIFormer checkpoints, which
        ``deploy=True`` builds."""
        if self.mixers_folded:
            return
        for stage in self.stages:
            for block in stage.blocks:
                fold_affine_mixer(block)
        self.mixers_folded = True
        self._freeze_stages()  # the new parameters of frozen stages too
