# ConvFormer-S18 (MetaFormer baselines: inverted separable convolution
# mixers, 7x7 depthwise) on ImageNet-1k from scratch.
# Paper: 27M params, 3.9G MACs, top-1 83.0.
# Recipe: scripts/convformer/train_convformer_s18.sh. As PoolFormerV2-S12's
# (poolformerv2_s12_in1k.py: AdamW lr 4e-3, batch 4096, wd 0.05, crop_pct
# 1.0, same augmentation and deviations) except: 20 warm-up epochs instead
# of 5, and drop path 0.2 (S36 0.3, M36 0.4, B36 0.6; head dropout 0 for
# every ConvFormer).
# The official classifier head, as sail-sg/metaformer's: mean pool,
# LayerNorm (eps 1e-6), MlpHead (Linear 512->2048, SquaredReLU, LayerNorm,
# dropout, Linear 2048->1000; 3.1M parameters for S18).
_base_ = './poolformerv2_s12_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth'  # noqa

model = dict(
    backbone=dict(
        type='mmpoolformer.ConvFormer', arch='s18', drop_path_rate=0.2),
    head=dict(mlp_ratio=4, dropout=0., in_channels=512))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
# 20 warm-up epochs from timm's warmup_lr 1e-6 (= 4e-3 x 2.5e-4), then cosine
# to min_lr 1e-5
param_scheduler = [
    dict(
        _scope_='mmpretrain',
        type='LinearLR',
        start_factor=2.5e-4,
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
