# PoolFormer paper ablation (Table 5, "token mixers"): pooling -> depthwise
# convolution. Paper: 11.9M params, 1.8G MACs, top-1 78.1 (baseline 77.2).
# The paper gives no kernel size and sail-sg/poolformer has no code for this
# row; we assume 3x3, the window of the pooling it replaces (with bias; the
# extra 0.01M parameters do not show at the paper's precision).
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.MetaFormer',  # PoolFormer builds pooling only
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            token_mixers=dict(type='DepthwiseConv', kernel_size=3)),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
