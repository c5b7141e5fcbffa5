# RetinaNet with the hybrid PoolFormer-S12 [Pool, Pool, Attention, Attention]
# (poolformer_s12_ppaa_in1k.py: global self-attention with 32-channel heads
# on the NCHW maps of stages 3 and 4, LayerNormChannel everywhere), COCO 1x
# with PoolFormer-S12's RetinaNet recipe (retinanet_poolformer_s12_coco.py:
# AdamW lr 1e-4 wd 1e-4, 12 epochs, (1333, 800), FPN from stages 2-4).
# The paper reports no detection result for this model: box AP unknown.
# Cost: attention is quadratic in the tokens; at 1333x800 stage 3 has
# 84x50 = 4200 tokens, a 4200x4200 map per head and image (70 MB in fp32
# for 10 heads, per block, unless the GPU runs a fused attention kernel).
_base_ = '../poolformer/retinanet_poolformer_s12_coco.py'
# The released ImageNet weights of metaformer_ppaa_s12_224 (official v1
# layout plus the 14x14 position embedding before stage 3, network.4.pos_embed,
# which the converter maps to stages.2.pos_embed; at detection sizes it is
# resampled bilinearly to the token grid)
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/metaformer_ppaa_s12_224.pth.tar'  # noqa

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
            token_mixers=[pool, pool, attention, attention],
            norm_cfg=layer_norm,
            out_norm_cfg=layer_norm,
            pos_embed=[False, False, True, False]),
        drop_path_rate=0.,
        # stages 2-4 into FPN(start_level=0), as retinanet_poolformer_s12_coco
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
# helpers, not config keys (a `{{_base_.x}}` of a `mmpoolformer::` base would
# carry its _scope_ into the mixer's arguments)
del pool, attention, layer_norm
