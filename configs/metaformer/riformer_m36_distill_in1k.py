# RIFormer-M36 trained with RIFormer's learning paradigm from the released
# PoolFormer-M36; everything as riformer_s12_distill_in1k.py but the size
# (drop path 0.3, as PoolFormer-M36's recipe) and the medium models'
# test crop_pct 0.95 (resize 236, as mmpretrain's RIFormer-M36).
# Paper: RIFormer-M36 56M params, 8.8G MACs, top-1 82.6 (82.57, 600 epochs).
_base_ = './riformer_s12_distill_in1k.py'
# the weights the paper released for this size (mmpretrain's conversion)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v1/riformer/riformer-m36_32xb128_in1k_20230406-2fcb9d9b.pth'  # noqa
teacher_checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m36.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='m36', drop_path_rate=0.3),
    head=dict(in_channels=768),
    teacher=dict(
        backbone=dict(arch='m36'), head=dict(in_channels=768)),
    teacher_checkpoint=teacher_checkpoint)

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
