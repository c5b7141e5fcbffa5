# Cascade Mask R-CNN with ConvFormer-S18, COCO 3x: PoolFormer-S12's config
# (mmdet's ConvNeXt-T Cascade 3x recipe, with ConvNeXt-T's drop path 0.4 and
# layer-wise lr decay 0.7; published: none) with the ConvFormer backbone,
# whose stage widths (64, 128, 320, 512) are the same.
_base_ = '../poolformer/cascade_mask_rcnn_poolformer_s12_coco_3x.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
