# Mask R-CNN with ConvFormer-S18, COCO 1x. No official MetaFormer-baselines
# detection recipe or result (sail-sg/metaformer#1): box/mask AP unknown. We
# use PoolFormer-S12's Mask R-CNN recipe, which this config inherits (AdamW
# lr 2e-4 wd 1e-4, 12 epochs, (1333, 800), 8 GPUs x 2 images, drop path 0,
# all four stages into FPN); the stage widths are the same.
_base_ = '../poolformer/mask_rcnn_poolformer_s12_coco.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
