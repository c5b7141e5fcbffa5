# RIFormer-S24 trained with RIFormer's learning paradigm from the released
# PoolFormer-S24; everything as riformer_s12_distill_in1k.py but the size
# (drop path 0.1, as PoolFormer-S24's recipe).
# Paper: RIFormer-S24 21M params, 3.4G MACs, top-1 80.3 (80.28, 600 epochs).
_base_ = './riformer_s12_distill_in1k.py'
# the weights the paper released for this size (mmpretrain's conversion)
checkpoint_file = 'https://download.openmmlab.com/mmclassification/v1/riformer/riformer-s24_32xb128_in1k_20230406-fdab072a.pth'  # noqa
teacher_checkpoint = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(arch='s24', drop_path_rate=0.1),
    head=dict(in_channels=512),
    teacher=dict(
        backbone=dict(arch='s24'), head=dict(in_channels=512)),
    teacher_checkpoint=teacher_checkpoint)
