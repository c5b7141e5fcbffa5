# PoolFormer-S12 ImageNet-1k training from scratch with the paper's recipe
# (sail-sg/poolformer train.py, a timm trainer). mmpretrain's poolformer
# config is inference-only (plain cross-entropy, no Mixup/CutMix, drop path
# 0.1 for every arch, 20 warm-up epochs); it brings the data pipeline
# (RandomResizedCrop 224, flip, RandAugment rand-m9-mstd0.5-inc1, random
# erasing 0.25, test resize 248 + centre crop 224 = crop_pct 0.9), AdamW
# wd 0.05 without decay on norms, biases and other 1-D parameters (as
# timm), lr 4e-3 for 32 GPUs x 128 images, grad clip 5 and 300 epochs.
# Deviations from the official run, kept from mmpretrain: grad clip 5 (the
# official script does not clip), bicubic instead of random interpolation,
# no apex AMP (add --amp to train in mixed precision), per-iteration
# instead of per-epoch LR updates, and no 10 cool-down epochs at min lr
# (timm's trainer runs 310 epochs for --epochs 300).
_base_ = 'mmpretrain::poolformer/poolformer-s12_32xb128_in1k.py'
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
# The released weights; a from-scratch recipe does not load them. To
# fine-tune from them instead, pass --cfg-options
# model.backbone.init_cfg.type=Pretrained
# model.backbone.init_cfg.checkpoint=<this URL>.
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        # mmpretrain's plain name 'PoolFormer' is its own class
        _delete_=True,
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.1,  # paper: 0.1/0.1/0.2/0.3/0.4 for S12/S24/S36/M36/M48
        out_indices=(3, ),  # the final GroupNorm before pooling is norm3
        frozen_stages=-1),  # default init_cfg: timm's trunc-normal init
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(
            _delete_=True,
            type='LabelSmoothLoss',
            label_smooth_val=0.1,
            mode='original'),
        init_cfg=dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)),
    # timm's Mixup(mixup 0.8, cutmix 1.0, switch prob 0.5): one of the two per
    # batch with equal chance
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
# 5 warm-up epochs from timm's warmup_lr 1e-6 (= 4e-3 x 2.5e-4), then cosine to
# min_lr 1e-5
param_scheduler = [
    dict(
        _scope_='mmpretrain',
        type='LinearLR',
        start_factor=2.5e-4,
        by_epoch=True,
        end=5,
        convert_to_iter_based=True),
    dict(
        _scope_='mmpretrain',
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=5),
]

# 32 GPUs x 128 images (lr = 1e-3 x batch / 1024); --auto-scale-lr rescales
auto_scale_lr = dict(base_batch_size=4096)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
