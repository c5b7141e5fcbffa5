# PoolFormerV2-S12 ("MetaFormer Baselines for Vision", TPAMI 2024) on
# ImageNet-1k from scratch. Paper: 11.9M params, 1.8G MACs, top-1 78.0.
# Recipe: sail-sg/metaformer scripts/poolformerv2/train_poolformerv2_s12.sh
# with its train.py defaults. Most of it equals PoolFormer v1's recipe, which
# this config inherits: AdamW lr 4e-3 at batch 4096 (the official 8 GPUs x 128
# x 4 gradient-accumulation steps; here 32 GPUs x 128, or set
# optim_wrapper.accumulative_counts=4 on 8 GPUs), wd 0.05 without decay on
# 1-D parameters, 300 epochs, 5 warm-up epochs from 1e-6, cosine to 1e-5,
# RandAugment m9-mstd0.5, Mixup 0.8 / CutMix 1.0, label smoothing 0.1,
# random erasing 0.25 and drop path 0.1 for S12 (0.1/0.1/0.2/0.3/0.4 for
# S12/S24/S36/M36/M48).
# What differs from PoolFormer v1: the architecture (the PoolFormerV2
# preset: StarReLU MLPs without bias, GroupNorm without bias, LayerNorm in
# the stem and downsampling, residual scales in stages 3-4 instead of layer
# scales) and evaluation at crop_pct 1.0 (resize 224, centre crop 224;
# v1 used 0.9).
# Kept from the inherited recipe, deviating from the official run: grad clip
# 5 (the official script does not clip), bicubic instead of random train
# interpolation, per-iteration LR updates, no 10 cool-down epochs.
# The official classifier: global mean pool, LayerNorm (eps 1e-6) on the
# pooled vector, Linear (MetaFormerClsHead with mlp_ratio=None); the backbone
# has no output norm of its own (out_norm_cfg=None), so the released
# classifiers load whole (convert_checkpoint.py keeps the head by default).
_base_ = '../poolformer/poolformer_s12_in1k.py'
# The released weights (sail-sg/metaformer README); a from-scratch recipe does
# not load them, see ../poolformer_s12_in1k.py for fine-tuning from them.
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/poolformerv2/poolformerv2_s12.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.PoolFormerV2', arch='s12', out_norm_cfg=None),
    head=dict(type='mmpoolformer.MetaFormerClsHead', mlp_ratio=None))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
# crop_pct 1.0 (sail-sg/metaformer's default_cfg for every baseline at 224)
test_pipeline = [
    dict(_scope_='mmpretrain', type='LoadImageFromFile'),
    dict(
        _scope_='mmpretrain',
        type='ResizeEdge',
        scale=224,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(_scope_='mmpretrain', type='CenterCrop', crop_size=224),
    dict(_scope_='mmpretrain', type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
