# PoolFormer paper ablation (Table 5, "hybrid stages"): [Pool, Pool, Pool,
# Pool] -> [Pool, Pool, Pool, Attention], sail-sg/poolformer's
# metaformer_pppa_s12_224. Paper: 14.0M params, 1.9G MACs, top-1 78.3
# (baseline 77.2).
# As the official model:
# * multi-head self-attention on the NCHW maps of stage 4, heads of 32
#   channels, qkv without bias, output projection with bias;
# * layer norm over channels (LayerNormChannel, eps 1e-5) in every block and
#   the final norm: the official hybrid models do not pass GroupNorm (their
#   pppf/ppff/id siblings do), so all their stages use LayerNormChannel;
# * the official learnable position embedding, added after the downsampling
#   into stage 4 (stages.3.pos_embed, 1x512x7x7, 25K parameters, zeros at
#   first); at other inputs than 224x224 it is resampled bilinearly to the
#   token grid;
# * evaluated with crop_pct 0.95 (its timm default_cfg): resize 236.
_base_ = '../poolformer/poolformer_s12_in1k.py'
# Released weights (official v1 layout plus the position embedding
# network.6.pos_embed, which shifts the later network.* slots; the converter
# maps it to stages.3.pos_embed)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_pppa_s12_224.pth.tar'  # noqa

pool = dict(type='Pooling', pool_size=3)
attention = dict(type='Attention', head_dim=32, qkv_bias=False, proj_bias=True)
layer_norm = dict(type='LayerNorm2d', eps=1e-5)
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.MetaFormer',  # PoolFormer builds pooling only
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            token_mixers=[pool, pool, pool, attention],
            norm_cfg=layer_norm,
            out_norm_cfg=layer_norm,
            pos_embed=[False, False, False, True]),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
# helpers, not config keys (a `{{_base_.x}}` of a `mmpoolformer::` base would
# carry its _scope_ into the mixer's arguments)
del pool, attention, layer_norm

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
test_pipeline = [
    dict(_scope_='mmpretrain', type='LoadImageFromFile'),
    dict(
        _scope_='mmpretrain',
        type='ResizeEdge',
        scale=236,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(_scope_='mmpretrain', type='CenterCrop', crop_size=224),
    dict(_scope_='mmpretrain', type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
