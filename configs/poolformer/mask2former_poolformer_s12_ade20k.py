# Mask2Former with PoolFormer-S12 on ADE20K, 160k iterations.
# published: none (no official result for PoolFormer under this head). The
# recipe is mmseg's Swin-T one, configs/mask2former/mask2former_swin-t_8xb2-160k_ade20k-512x512.py:
# its R50 base, which this config inherits, plus Swin-T's backbone settings
# (all four stages into the pixel decoder, all trained, drop path 0.3, lr x
# 0.1 on the backbone with no weight decay on its norms):
# - mmdet's MSDeformAttn pixel decoder (6 layers) on strides 8-32, mask
#   features at stride 4, 100 queries, 9 masked-attention decoder layers,
#   150 classes;
# - short side random in 256-1024 (long side <= 2048), 512x512 crops (cat
#   max ratio 0.75), flip, photometric distortion; test at (2048, 512);
# - AdamW lr 1e-4 wd 0.05 eps 1e-8, no decay on norms and query / level
#   embeddings, grad clip 0.01, poly (power 0.9) decay to 0 over 160k
#   iterations, 8 GPUs x 2 images, evaluation every 5k iterations.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
# mmseg's Mask2FormerHead builds mmdet's pixel decoder, assigner and losses:
# the base imports mmdet's models, and so do we
custom_imports = dict(imports=['mmpoolformer', 'mmdet.models'],
                      allow_failed_imports=False)
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
    decode_head=dict(in_channels=[64, 128, 320, 512]))

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
