# Cascade Mask R-CNN with CAFormer-S18, COCO 3x:
# cascade_mask_rcnn_convformer_s18_coco_3x.py (mmdet's ConvNeXt-T Cascade 3x
# recipe; published: none) with the CAFormer backbone. Its stages 3 and 4 run
# global self-attention, over 50x84 and 25x42 tokens at 800x1333.
_base_ = './cascade_mask_rcnn_convformer_s18_coco_3x.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
