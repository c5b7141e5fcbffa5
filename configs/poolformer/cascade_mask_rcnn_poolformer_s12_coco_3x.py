# Cascade Mask R-CNN with PoolFormer-S12, COCO 3x, multi-scale training.
# published: none (no official result for PoolFormer under this head). The
# recipe is mmdet's ConvNeXt-T one (a backbone of the same size; Swin-T has
# no Cascade config in mmdet 3), which this config inherits:
# configs/convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py
# - three cascade stages of 4conv1fc box heads (SyncBN) with GIoU loss
#   (weight 10), FPN (256 channels) on all four stages;
# - DETR-style multi-scale training: flip, then either a random short side
#   of 480-800 (long side <= 1333) or a 400/500/600 resize, a random
#   384-600 crop and the 480-800 resize; test at (1333, 800);
# - AdamW lr 2e-4 betas (0.9, 0.999) wd 0.05, layer-wise lr decay 0.7 over
#   the backbone's layers (our LayerDecayOptimWrapperConstructor, as
#   mmdet's LearningRateDecayOptimizerConstructor for ConvNeXt), linear
#   warm-up over 1000 iterations from 0.001 x lr, steps (x0.1) at epochs 27
#   and 33 of 36, 8 GPUs x 2 images, ConvNeXt-T's drop path 0.4.
# fp32: mmdet trains it with AmpOptimWrapper; add --amp to tools/train.py for
# mixed precision on a GPU.
_base_ = 'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'  # noqa
# replaces the base's ['mmpretrain.models']: mmpretrain is not needed
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # ConvNeXt's arguments
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[64, 128, 320, 512]))

# `_scope_`: what replaces a base's entry wholesale names mmdet's registries
# itself; as a `mmpoolformer::` base it would otherwise get ours. The
# constructor (mmpoolformer/engine/optimizers.py) multiplies the lr of each
# backbone block by 0.7 per block between it and the top (the neck and
# heads keep the base lr, the stem gets the least) and exempts 1-D
# parameters (norms, biases, scales) from weight decay, as mmdet's
# constructor does for ConvNeXt.
optim_wrapper = dict(
    _delete_=True,  # drops the AmpOptimWrapper and mmdet's constructor
    _scope_='mmdet',
    type='OptimWrapper',
    constructor='mmpoolformer.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise'),
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
