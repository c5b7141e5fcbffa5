# Mask R-CNN with PoolFormer-S12, COCO 1x: the recipe of sail-sg/poolformer
# detection/configs/mask_rcnn_poolformer_s12_fpn_1x_coco.py (mmdet 2.19),
# ported to mmdet 3. mmdet's Mask R-CNN 1x config already has the official
# schedule (12 epochs, LinearLR warm-up 500 iters from 0.001, MultiStepLR
# [8, 11]), (1333, 800) resize with flip, pad 32 and 2 images per GPU; only
# the backbone, the neck inputs and the optimizer differ.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.,  # the official *_feat backbones use none
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    # start_level 0 and 5 outputs (the 5th by max pooling) as in mmdet's base
    neck=dict(in_channels=[64, 128, 320, 512], out_channels=256))

# `_scope_`: what replaces a base's entry wholesale names mmdet's registries
# itself; as a `mmpoolformer::` base it would otherwise get ours
optim_wrapper = dict(
    _delete_=True,  # drop SGD's momentum
    _scope_='mmdet',
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
