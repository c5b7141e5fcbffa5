_base_ = './poolformer_s12_in1k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s36.pth.tar'  # noqa

model = dict(backbone=dict(arch='s36', drop_path_rate=0.2))
