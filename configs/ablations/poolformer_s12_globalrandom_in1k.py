# PoolFormer paper ablation (Table 5, "token mixers"): pooling -> global
# random matrix, a frozen random row-stochastic token-mixing matrix per block.
# Paper: 11.9M params + 21M frozen, 3.3G MACs, top-1 75.8 (baseline 77.2).
# The matrices are drawn for 224x224 inputs: 56x56/28x28/14x14/7x7 grids,
# i.e. 3136/784/196/49 tokens; other input sizes resample them. Memory: the
# stage-1 matrices are 3136^2 floats (39 MB) each, 21.1M frozen floats
# (85 MB) in all, plus 1.5G MACs of matrix products per 224x224 image.
# No released weights (ablation checkpoints were shared only on Google
# Drive, sail-sg/poolformer#5/#46).
_base_ = '../poolformer/poolformer_s12_in1k.py'
checkpoint_file = None

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpoolformer.MetaFormer',  # PoolFormer builds pooling only
        arch=dict(
            depths=[2, 2, 6, 2],
            embed_dims=[64, 128, 320, 512],
            token_mixers=[
                dict(type='RandomMixing', num_tokens=3136),
                dict(type='RandomMixing', num_tokens=784),
                dict(type='RandomMixing', num_tokens=196),
                dict(type='RandomMixing', num_tokens=49),
            ]),
        drop_path_rate=0.1,
        out_indices=(3, ),
        frozen_stages=-1))
