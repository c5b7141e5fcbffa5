# PoolFormer paper ablation (Table 5, "activation"): GELU -> SiLU in the
# channel MLPs. Paper: 11.9M params, 1.8G MACs, top-1 77.2 (baseline 77.2).
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(backbone=dict(act_cfg=dict(type='SiLU')))
