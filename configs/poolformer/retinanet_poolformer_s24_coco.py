_base_ = './retinanet_poolformer_s12_coco.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar'  # noqa

model = dict(
    backbone=dict(
        arch='s24',
        init_cfg=dict(checkpoint=checkpoint_file)))
