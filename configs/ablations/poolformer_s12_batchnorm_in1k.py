# PoolFormer paper ablation (Table 5, "normalization"): modified layer norm
# -> batch norm, in the blocks and the final norm. Plain per-GPU BatchNorm2d
# as a timm trainer would build it (the paper does not mention SyncBN; add
# --cfg-options model.backbone.norm_cfg.type=SyncBN to synchronise).
# Paper: 11.9M params, 1.8G MACs, top-1 76.4 (baseline 77.2).
# No released weights.
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(backbone=dict(norm_cfg=dict(type='BN')))
