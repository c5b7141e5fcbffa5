_base_ = './fpn_poolformer_s12_ade20k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(checkpoint=checkpoint_file)),
    neck=dict(in_channels=[96, 192, 384, 768]))
