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

model = dict(
    backbone=dict(
        arch=dict(token_mixers=[
            {{_base_.pool}}, {{_base_.pool}},
            dict(type='SpatialFC', num_tokens=196),
            dict(type='SpatialFC', num_tokens=49)
        ])))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=236,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
