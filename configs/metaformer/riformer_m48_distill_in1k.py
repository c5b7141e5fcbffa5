# RIFormer-M48 trained with RIFormer's learning paradigm from the released
# PoolFormer-M48; everything as riformer_s12_distill_in1k.py but the size
# (drop path 0.4, as PoolFormer-M48's recipe) and the medium models'
# test crop_pct 0.95 (resize 236, as mmpretrain's RIFormer-M48).
# Paper: RIFormer-M48 73M params, 11.6G MACs, top-1 82.8 (82.75, 600 epochs).
_base_ = './riformer_s12_distill_in1k.py'
# the weights the paper released for this size (mmpretrain's conversion)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v1/riformer/riformer-m48_32xb128_in1k_20230406-2b9d1abf.pth'  # noqa
teacher_checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='m48', drop_path_rate=0.4),
    head=dict(in_channels=768),
    teacher=dict(
        backbone=dict(arch='m48'), head=dict(in_channels=768)),
    teacher_checkpoint=teacher_checkpoint)

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
