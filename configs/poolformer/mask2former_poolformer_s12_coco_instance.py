# Mask2Former with PoolFormer-S12, COCO instance segmentation, 50 epochs
# (368,750 iterations) of large-scale jittering. published: none (no
# official result for PoolFormer under this head). The recipe is mmdet's
# Swin-T one, configs/mask2former/mask2former_swin-t-p4-w7-224_8xb2-lsj-50e_coco.py:
# its R50 base, which this config inherits, plus Swin-T's backbone settings
# (all four stages into the pixel decoder, all trained, drop path 0.3, lr x
# 0.1 on the backbone with no weight decay on its norms):
# - MSDeformAttn pixel decoder (6 layers) on strides 8-32, mask features at
#   stride 4, 100 queries, 9 masked-attention decoder layers, 80 classes;
# - LSJ: flip, resize by 0.1-2.0 of 1024x1024, crop / pad to 1024x1024;
#   test at (1333, 800);
# - AdamW lr 1e-4 wd 0.05 eps 1e-8, no decay on norms and query / level
#   embeddings, grad clip 0.01, lr x 0.1 at iterations 327,778 and
#   355,092, 8 GPUs x 2 images.
_base_ = 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py'
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # ResNet's arguments
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    panoptic_head=dict(in_channels=[64, 128, 320, 512]))

# Swin-T's multipliers under our module names, for every size: lr x 0.1 on
# the backbone and no weight decay on its norms (stem, blocks, downsampling,
# outputs) and on its residual / layer / StarReLU scales, gains of the same
# kind. mmengine tries the longest key first, so each of these (longer than
# 'backbone') wins over 'backbone'; none matches outside the backbone.
backbone_norm_multi = dict(lr_mult=0.1, decay_mult=0.0)
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'backbone': dict(lr_mult=0.1, decay_mult=1.0),
    'backbone.norm': backbone_norm_multi,
    'backbone.stem.norm': backbone_norm_multi,
    'downsample.norm': backbone_norm_multi,
    'norm1.weight': backbone_norm_multi,
    'norm1.bias': backbone_norm_multi,
    'norm2.weight': backbone_norm_multi,
    'norm2.bias': backbone_norm_multi,
    'layer_scale': backbone_norm_multi,
    'res_scale': backbone_norm_multi,
    'act.scale': backbone_norm_multi,
    'act1.scale': backbone_norm_multi,
}))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
