# UperNet with ConvFormer-S18 on ADE20K, 160k iterations. Neither the
# PoolFormer nor the MetaFormer-baselines papers publish an UperNet recipe or
# result: mIoU unknown. We follow mmseg's UperNet ADE20K 160k recipe for
# Swin-T (a backbone of the same size, 28M), which this config inherits:
# UPerHead (512 channels, pool scales 1/2/3/6) on all four stages plus an
# auxiliary FCNHead on stage 3 (loss weight 0.4), SyncBN in the heads,
# AdamW lr 6e-5 betas (0.9, 0.999) wd 0.01 without decay on norms, linear
# warm-up over 1500 iterations from 1e-6 x lr, poly (power 1.0) decay to 0
# at 160k, 8 GPUs x 2 512x512 crops, evaluation every 16k iterations, and
# Swin-T's drop path 0.3.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
# Official release (sail-sg/metaformer layout); timm's copy:
# https://huggingface.co/timm/convformer_s18.sail_in1k/resolve/main/pytorch_model.bin  # noqa
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        _delete_=True,  # Swin's arguments
        type='mmpoolformer.ConvFormer',
        arch='s18',
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)),
    decode_head=dict(in_channels=[64, 128, 320, 512]),
    auxiliary_head=dict(in_channels=320))

# Swin's recipe exempts norms from weight decay by name; the residual
# scales, layer scales and StarReLU scales are gains of the same kind (the
# ImageNet recipe exempts every 1-D parameter), so exempt them too.
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={
    'scale': dict(decay_mult=0.),
}))

# 8 GPUs x 2 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
