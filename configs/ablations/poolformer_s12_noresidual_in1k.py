# PoolFormer paper ablation (Table 5, "other components"): residual
# connection -> none, everything else PoolFormer-S12 with its ImageNet
# recipe. Paper: 11.9M params, 1.8G MACs, top-1 0.1 (baseline 77.2): the
# network does not train.
# Each block computes x = ls1 * mixer(norm1(x)), then x = ls2 * mlp(norm2(x))
# (residual=False): no skip connection anywhere. No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None  # none released

model = dict(backbone=dict(residual=False))
