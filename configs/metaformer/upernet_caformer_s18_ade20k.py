# UperNet with CAFormer-S18 on ADE20K, 160k iterations:
# upernet_convformer_s18_ade20k.py (mmseg's Swin-T UperNet recipe, no
# official one; mIoU unknown) with the CAFormer backbone. Its stages 3 and 4
# run global self-attention over 32x32 and 16x16 tokens at 512x512.
_base_ = './upernet_convformer_s18_ade20k.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
