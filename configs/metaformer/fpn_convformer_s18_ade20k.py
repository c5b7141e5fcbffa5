# Semantic FPN with ConvFormer-S18 on ADE20K, 40k iterations. No official
# MetaFormer-baselines segmentation recipe or result: mIoU unknown. We use
# PoolFormer's Semantic FPN recipe, which this config inherits (AdamW lr 2e-4
# wd 1e-4, poly 0.9 over 40k iterations, 8 GPUs x 4 512x512 crops, FPN in
# [64, 128, 320, 512], drop path 0); the stage widths are the same.
_base_ = '../poolformer/fpn_poolformer_s12_ade20k.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
