# RetinaNet with ConvFormer-S18, COCO 1x. sail-sg/metaformer publishes no
# detection recipe or result (sail-sg/metaformer#1): box AP unknown. We use
# PoolFormer-S12's RetinaNet recipe, which this config inherits (AdamW lr
# 1e-4 wd 1e-4, 12 epochs with steps at 8 and 11, (1333, 800), 8 GPUs x 2
# images, drop path 0, stages 2-4 into FPN(start_level=0)); ConvFormer-S18
# has the same stage widths (64, 128, 320, 512), so the neck is unchanged.
_base_ = '../poolformer/retinanet_poolformer_s12_coco.py'
# The official ImageNet-1k release (sail-sg/metaformer README, metaformer
# layout: downsample_layers.*, stages.i.j.*). timm hosts the same weights in
# its own layout (which our module names follow) at
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
# Neither can be downloaded on the machine these configs were written on.
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer',
        arch='s18',
        init_cfg=dict(checkpoint=checkpoint_file)))
