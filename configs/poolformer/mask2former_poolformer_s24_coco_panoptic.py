# Mask2Former with PoolFormer-S24, COCO panoptic segmentation, 50 epochs: the
# S12 config (mmdet's Swin-T Mask2Former LSJ 50e recipe; published: none) with
# the S24 backbone.
_base_ = './mask2former_poolformer_s12_coco_panoptic.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(checkpoint=checkpoint_file)))
