# PoolFormer paper ablation (Table 5, "normalization"): modified layer norm
# (GroupNorm with one group: mean/variance over channels and tokens) ->
# layer norm over the channels of each token only, as sail-sg/poolformer's
# LayerNormChannel (eps 1e-5), in the blocks and the final norm.
# Paper: 11.9M params, 1.8G MACs, top-1 76.5 (baseline 77.2).
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(backbone=dict(norm_cfg=dict(type='LayerNorm2d', eps=1e-5)))
