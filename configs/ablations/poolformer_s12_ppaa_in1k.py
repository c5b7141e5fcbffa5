# PoolFormer paper ablation (Table 5, "hybrid stages"): [Pool, Pool, Pool,
# Pool] -> [Pool, Pool, Attention, Attention], sail-sg/poolformer's
# metaformer_ppaa_s12_224. Paper: 16.5M params, 2.5G MACs, top-1 81.0
# (baseline 77.2). Same design as poolformer_s12_pppa_in1k.py (attention on
# NCHW maps with 32-channel heads, LayerNormChannel everywhere, crop_pct
# 0.95), attention now in stages 3 and 4, and the official position
# embedding after the downsampling into stage 3 (stages.2.pos_embed,
# 1x320x14x14, 63K parameters; official key network.4.pos_embed).
_base_ = './poolformer_s12_pppa_in1k.py'
# Released weights (official v1 layout plus the position embedding)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_ppaa_s12_224.pth.tar'  # noqa

pool = dict(type='Pooling', pool_size=3)
attention = dict(type='Attention', head_dim=32, qkv_bias=False, proj_bias=True)
model = dict(
    backbone=dict(
        arch=dict(
            token_mixers=[pool, pool, attention, attention],
            pos_embed=[False, False, True, False])))
del pool, attention  # helpers, not config keys
