# PoolFormer paper ablation (Table 5, "token mixers"): pooling -> identity
# mapping, everything else PoolFormer-S12 with its ImageNet recipe.
# Paper: 11.9M params, 1.8G MACs, top-1 74.3 (baseline 77.2).
# This is sail-sg/poolformer's metaformer_id_s12 (GroupNorm, crop_pct 0.9);
# not the MetaFormer-baselines IdentityFormer-S12 (74.6, other recipe), for
# which see configs/metaformer/identityformer_s12_in1k.py.
_base_ = '../poolformer/poolformer_s12_in1k.py'
# The released weights of this ablation (official v1 layout)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_id_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        # mmpoolformer.PoolFormer always builds pooling mixers; the generic
        # MetaFormer takes any mixer and defaults to PoolFormer v1 otherwise
        # (GroupNorm1, GELU MLP with bias, layer scale 1e-5, no stem norm).
        _delete_=True,
        type='mmpoolformer.MetaFormer',
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            token_mixers=dict(type='Identity')),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
