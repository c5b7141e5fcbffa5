# Semantic FPN with PoolFormer-S12 on ADE20K, 40k iterations: the recipe of
# sail-sg/poolformer segmentation/configs/sem_fpn (mmseg 0.19). mmseg 1.2.2's
# own port already has the data pipeline (512x512 crops from (2048, 512)
# resizes with ratio 0.5-2, ResizeToMultiple(32) at test), 4 images per GPU,
# the FPN neck (in [64, 128, 320, 512], 256 out, 4 outs), the FPNHead (128
# channels, SyncBN, dropout 0.1, 150 classes), AdamW lr 2e-4 wd 1e-4,
# PolyLR(power 0.9, eta_min 0) over 40k iters and evaluation every 4k; we
# swap its backbone and optimizer wrapper.
_base_ = 'mmseg::poolformer/fpn_poolformer_s12_8xb4-40k_ade20k-512x512.py'
# replaces the base's ['mmpretrain.models']: mmpretrain is no longer needed
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
# replaces the base's mmpretrain-hosted checkpoint_file
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar'  # noqa

model = dict(
    backbone=dict(
        # mmpretrain's PoolFormer, with frozen_stages=0, freezes the stem,
        # unlike the official run; ours trains everything.
        _delete_=True,
        type='mmpoolformer.PoolFormer',
        arch='s12',
        drop_path_rate=0.,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))

# The official run trained in fp32 (optimizer_config=dict()); mmseg's port
# uses AmpOptimWrapper, which also needs a GPU.
optim_wrapper = dict(type='OptimWrapper')

# 8 GPUs x 4 images; enable with --auto-scale-lr for another total batch
auto_scale_lr = dict(enable=False, base_batch_size=32)

# mmengine's CheckpointHook with crash-safe saving
# (mmpoolformer/engine/checkpoint_hook.py); the base's interval and other
# options stay
default_hooks = dict(
    checkpoint=dict(type='mmpoolformer.SafeCheckpointHook'),
    logger=dict(type='mmpoolformer.RankZeroLoggerHook'))
