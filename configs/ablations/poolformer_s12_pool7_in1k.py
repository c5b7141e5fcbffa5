# PoolFormer paper ablation (Table 5, "token mixers"): pooling size 3 -> 7
# (stride 1, padding 3, padding not counted in the average).
# Paper: 11.9M params, 1.8G MACs, top-1 77.1 (pool size 3, the base config
# poolformer_s12_in1k.py: 77.2). No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(backbone=dict(pool_size=7))
