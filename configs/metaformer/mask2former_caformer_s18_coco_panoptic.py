# Mask2Former with CAFormer-S18, COCO panoptic segmentation, 50 epochs:
# mask2former_convformer_s18_coco_panoptic.py (mmdet's Swin-T Mask2Former LSJ
# 50e recipe; published: none) with the CAFormer backbone.
_base_ = './mask2former_convformer_s18_coco_panoptic.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
