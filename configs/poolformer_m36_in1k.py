_base_ = './poolformer_s12_in1k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m36.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='m36', drop_path_rate=0.3),
    head=dict(in_channels=768))

# M models are evaluated with crop_pct 0.95: resize 236, centre crop 224
# (mmpretrain's imagenet_bs128_poolformer_medium_224.py)
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
