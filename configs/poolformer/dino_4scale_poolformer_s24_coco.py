# DINO (4 scales) with PoolFormer-S24, COCO 12 epochs: the S12 config
# (mmdet's DINO-4scale R50 12e recipe; published: none) with the S24
# backbone.
_base_ = './dino_4scale_poolformer_s12_coco.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(checkpoint=checkpoint_file)))
