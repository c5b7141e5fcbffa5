# PoolFormer paper ablation (Table 5, "normalization"): modified layer norm
# -> none, in the blocks and the final norm.
# Paper: 11.9M params, 1.8G MACs, top-1 46.1 (baseline 77.2).
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(
    backbone=dict(
        # PoolFormer's norm_cfg=None means "the default GroupNorm", so the
        # generic MetaFormer is built with an arch whose norms are None
        _delete_=True,
        type='mmpoolformer.MetaFormer',
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            norm_cfg=None,
            out_norm_cfg=None),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
