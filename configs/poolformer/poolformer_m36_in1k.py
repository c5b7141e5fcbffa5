_base_ = './poolformer_s12_in1k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m36.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='m36', drop_path_rate=0.3),
    head=dict(in_channels=768))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
# M models are evaluated with crop_pct 0.95: resize 236, centre crop 224
# (mmpretrain's imagenet_bs128_poolformer_medium_224.py)
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
