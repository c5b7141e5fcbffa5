# DINO (4 scales) with CAFormer-S18, COCO 12 epochs:
# dino_4scale_convformer_s18_coco.py (mmdet's DINO-4scale R50 12e recipe;
# published: none) with the CAFormer backbone.
_base_ = './dino_4scale_convformer_s18_coco.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
