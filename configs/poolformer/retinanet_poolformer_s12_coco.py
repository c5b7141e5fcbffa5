# RetinaNet with PoolFormer-S12, COCO 1x: the recipe of sail-sg/poolformer
# detection/configs/retinanet_poolformer_s12_fpn_1x_coco.py (mmdet 2.19),
# ported to mmdet 3. mmdet's RetinaNet 1x config already has the official
# schedule (12 epochs, LinearLR warm-up 500 iters from 0.001, MultiStepLR
# [8, 11]), (1333, 800) resize with flip, pad 32 and 2 images per GPU; only
# the backbone, the neck inputs and the optimizer differ.
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.,  # the official *_feat backbones use none
        # The official config feeds all four stages to FPN(start_level=1) and
        # sets FORK_LAST3=1 to skip the stage-0 output norm, which would
        # otherwise get no gradient. Returning stages 1-3 and starting FPN at
        # level 0 is the same network: FPN builds convs only from start_level
        # on, so lateral_convs.0-2 and fpn_convs.0-4 (with the 'on_input'
        # extra convs on the 512-channel map) keep their shapes and names,
        # and every parameter gets a gradient (no find_unused_parameters).
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(
        in_channels=[128, 320, 512],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_input',
        num_outs=5))

# `_scope_`: what replaces a base's entry wholesale names mmdet's registries
# itself; as a `mmpoolformer::` base it would otherwise get ours
optim_wrapper = dict(
    _delete_=True,  # drop SGD's momentum
    _scope_='mmdet',
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
