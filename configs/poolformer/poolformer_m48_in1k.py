# inherits M36 for its crop_pct 0.95 test pipeline
_base_ = './poolformer_m36_in1k.py'
checkpoint_file = 'https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar'  # noqa

model = dict(backbone=dict(arch='m48', drop_path_rate=0.4))
