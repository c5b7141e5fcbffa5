# PoolFormer paper ablation (Table 5, "hybrid stages"): [Pool, Pool, Pool,
# Pool] -> [Pool, Pool, SpatialFC, SpatialFC], sail-sg/poolformer's
# metaformer_ppff_s12_224: learnable token-mixing FC layers over the 196
# (14x14) and 49 (7x7) tokens of stages 3 and 4, GroupNorm kept.
# Paper: 12.2M params, 1.9G MACs, top-1 77.9 (baseline 77.2).
# The official model is evaluated with crop_pct 0.95 (its timm default_cfg,
# unlike pppf's 0.9): resize 236. SpatialFC deviations as in
# poolformer_s12_pppf_in1k.py.
_base_ = './poolformer_s12_pppf_in1k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_ppff_s12_224.pth.tar'  # noqa

pool = dict(type='Pooling', pool_size=3)
model = dict(
    backbone=dict(
        arch=dict(token_mixers=[
            pool, pool,
            dict(type='SpatialFC', num_tokens=196),
            dict(type='SpatialFC', num_tokens=49)
        ])))
del pool  # a helper, not a config key

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
test_pipeline = [
    dict(_scope_='mmpretrain', type='LoadImageFromFile'),
    dict(
        _scope_='mmpretrain',
        type='ResizeEdge',
        scale=236,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(_scope_='mmpretrain', type='CenterCrop', crop_size=224),
    dict(_scope_='mmpretrain', type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
