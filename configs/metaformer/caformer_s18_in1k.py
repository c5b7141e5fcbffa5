# CAFormer-S18 (MetaFormer baselines: separable convolutions in stages 1-2,
# self-attention in stages 3-4) on ImageNet-1k from scratch.
# Paper: 26M params, 4.1G MACs, top-1 83.6.
# Recipe: scripts/caformer/train_caformer_s18.sh. As ConvFormer-S18's
# (convformer_s18_in1k.py: batch 4096, wd 0.05, 20 warm-up epochs, crop_pct
# 1.0, the official MLP head) except: the LAMB
# optimizer with lr 8e-3 (timm's Lamb: betas (0.9, 0.999), eps 1e-6, global
# grad-norm clipping to 1.0 inside the optimizer, as mmpretrain's copy), no
# extra grad clipping (the official run adds none), and drop path 0.15
# (S36 0.3, M36 0.4, B36 0.6; head dropout 0 for S18, 0.4/0.4/0.5 for
# S36/M36/B36). metaformer#20 reports NaN losses with LAMB under AMP; train
# in fp32 or watch for them with --amp.
_base_ = './convformer_s18_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth'  # noqa

model = dict(
    backbone=dict(type='mmpoolformer.CAFormer', drop_path_rate=0.15))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,  # AdamW's keys do not all apply
        _scope_='mmpretrain',
        type='Lamb',
        lr=8e-3,
        weight_decay=0.05,
        betas=(0.9, 0.999),
        eps=1e-6),
    clip_grad=None)

# 20 warm-up epochs from 1e-6 (= 8e-3 x 1.25e-4), then cosine to 1e-5
param_scheduler = [
    dict(
        _scope_='mmpretrain',
        type='LinearLR',
        start_factor=1.25e-4,
        by_epoch=True,
        end=20,
        convert_to_iter_based=True),
    dict(
        _scope_='mmpretrain',
        type='CosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=20),
]
