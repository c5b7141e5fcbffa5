# Cascade Mask R-CNN with PoolFormer-S24, COCO 3x: the S12 config
# (mmdet's ConvNeXt-T Cascade 3x recipe; published: none) with the S24
# backbone.
_base_ = './cascade_mask_rcnn_poolformer_s12_coco_3x.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(checkpoint=checkpoint_file)))
