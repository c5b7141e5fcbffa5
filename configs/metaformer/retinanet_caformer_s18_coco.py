# RetinaNet with CAFormer-S18, COCO 1x: retinanet_convformer_s18_coco.py
# (PoolFormer-S12's recipe; no official MetaFormer-baselines detection
# recipe or result, box AP unknown) with the CAFormer backbone. Its stages 3
# and 4 run global self-attention: at 1333x800, 4200 tokens in stage 3.
_base_ = './retinanet_convformer_s18_coco.py'
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/caformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.CAFormer',
        init_cfg=dict(checkpoint=checkpoint_file)))
