# RIFormer-M48 trained with RIFormer's learning paradigm from the released
# PoolFormer-M48; everything as riformer_m36_distill_in1k.py (the medium
# models' test crop_pct 0.95) but the depth and drop path 0.4, as
# PoolFormer-M48's recipe.
# Paper: RIFormer-M48 73M params, 11.6G MACs, top-1 82.8 (82.75, 600 epochs).
_base_ = './riformer_m36_distill_in1k.py'
# the weights the paper released for this size (mmpretrain's conversion)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v1/riformer/riformer-m48_32xb128_in1k_20230406-2b9d1abf.pth'  # noqa
teacher_checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='m48', drop_path_rate=0.4),
    teacher=dict(backbone=dict(arch='m48')),
    teacher_checkpoint=teacher_checkpoint)
