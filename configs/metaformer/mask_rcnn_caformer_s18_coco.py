# Mask R-CNN with CAFormer-S18, COCO 1x: mask_rcnn_convformer_s18_coco.py
# (PoolFormer-S12's recipe; box/mask AP unknown) with the CAFormer backbone.
_base_ = './mask_rcnn_convformer_s18_coco.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
