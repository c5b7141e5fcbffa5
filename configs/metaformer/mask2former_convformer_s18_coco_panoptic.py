# Mask2Former with ConvFormer-S18, COCO panoptic segmentation, 50 epochs:
# PoolFormer-S12's config (mmdet's Swin-T Mask2Former LSJ 50e recipe, drop path
# 0.3; published: none) with the ConvFormer backbone, whose stage widths (64,
# 128, 320, 512) are the same.
_base_ = '../poolformer/mask2former_poolformer_s12_coco_panoptic.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
