# PoolFormer paper ablation (Table 5, "hybrid stages"): [Pool, Pool, Pool,
# Pool] -> [Pool, Pool, Pool, SpatialFC], sail-sg/poolformer's
# metaformer_pppf_s12_224: a learnable fully connected layer across the 49
# tokens of stage 4 (7x7 at 224x224), GroupNorm kept.
# Paper: 11.9M params, 1.8G MACs, top-1 77.5 (baseline 77.2).
# Deviations from the official SpatialFc (nn.Linear(N, N, bias=False),
# trunc-normal init): ours has a per-token bias (49 more parameters per
# block) and starts near the identity; at other input sizes its weight is
# resampled to the actual grid (the official one needs 224x224).
_base_ = '../poolformer/poolformer_s12_in1k.py'
# Released weights (official v1 layout; SpatialFc's "fc.weight" is not
# mapped to our "weight" by the converter yet)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_pppf_s12_224.pth.tar'  # noqa

pool = dict(type='Pooling', pool_size=3)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.MetaFormer',  # PoolFormer builds pooling only
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            token_mixers=[pool, pool, pool,
                          dict(type='SpatialFC', num_tokens=49)]),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
# helpers, not config keys (a `{{_base_.x}}` of a `mmpoolformer::` base would
# carry its _scope_ into the mixer's arguments)
del pool
