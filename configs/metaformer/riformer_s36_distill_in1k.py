# RIFormer-S36 trained with RIFormer's learning paradigm from the released
# PoolFormer-S36; everything as riformer_s12_distill_in1k.py but the size
# (drop path 0.2, as PoolFormer-S36's recipe).
# Paper: RIFormer-S36 31M params, 5.0G MACs, top-1 81.3 (81.29, 600 epochs).
_base_ = './riformer_s12_distill_in1k.py'
# the weights the paper released for this size (mmpretrain's conversion)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v1/riformer/riformer-s36_32xb128_in1k_20230406-fdfcd3b0.pth'  # noqa
teacher_checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s36.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='s36', drop_path_rate=0.2),
    head=dict(in_channels=512),
    teacher=dict(
        backbone=dict(arch='s36'), head=dict(in_channels=512)),
    teacher_checkpoint=teacher_checkpoint)
