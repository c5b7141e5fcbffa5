# DINO (4 scales) with ConvFormer-S18, COCO 12 epochs: PoolFormer-S12's
# config (mmdet's DINO-4scale R50 12e recipe with its Swin variant's drop
# path 0.2; published: none) with the ConvFormer backbone, whose stage
# widths (64, 128, 320, 512) are the same.
_base_ = '../poolformer/dino_4scale_poolformer_s12_coco.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
