# DINO (4 scales) with PoolFormer-S12, COCO 12 epochs. published: none (no
# official result for PoolFormer under this head). The recipe is mmdet's
# configs/dino/dino-4scale_r50_8xb2-12e_coco.py, which this config inherits,
# with the backbone-specific settings of its Swin variant
# (dino-5scale_swin-l_8xb2-12e_coco.py: all stages trained, drop path 0.2):
# - stages 2-4 (strides 8-32) into a ChannelMapper (GN, 256 channels) that
#   adds a 4th level by a stride-2 conv; 6 deformable encoder and 6 decoder
#   layers, 900 queries, two-stage with box refinement, contrastive
#   denoising queries;
# - DETR-style multi-scale training: flip, then either a random short side
#   of 480-800 (long side <= 1333) or a 400/500/600 resize, a random
#   384-600 crop and the 480-800 resize; test at (1333, 800);
# - AdamW lr 1e-4 wd 1e-4, backbone lr x 0.1, grad clip 0.1, lr x 0.1 at
#   epoch 11 of 12, 8 GPUs x 2 images.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # ResNet's arguments
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.2,
        # stages 2-4, what the neck takes (as DINO's R50): no output norm
        # is built for stage 1, which would get no gradient
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    neck=dict(in_channels=[128, 320, 512]))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
