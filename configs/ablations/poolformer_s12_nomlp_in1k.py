# PoolFormer paper ablation (Table 5, "other components"): channel MLP ->
# none, everything else PoolFormer-S12 with its ImageNet recipe.
# Paper: 2.5M params, 0.2G MACs, top-1 5.7 (baseline 77.2).
# mlp_ratios=0: the blocks keep only their token-mixer sub-block (norm1,
# pooling, layer scale, residual); no norm2 / MLP / second layer scale.
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None  # none released

model = dict(backbone=dict(mlp_ratios=0))
