# Mask2Former with PoolFormer-S24, ADE20K, 160k iterations: the S12 config
# (mmseg's Swin-T Mask2Former 160k recipe; published: none) with the S24
# backbone.
_base_ = './mask2former_poolformer_s12_ade20k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(checkpoint=checkpoint_file)))
