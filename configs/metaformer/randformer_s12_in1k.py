# RandFormer-S12 (MetaFormer baselines: identity mixers in stages 1-2, a
# frozen random token-mixing matrix per block in stages 3-4) on ImageNet-1k
# from scratch. Paper: 11.9M + 0.2M frozen params, 1.9G MACs, top-1 76.6.
# Recipe: scripts/randformer/train_randformer_s12.sh, the same as
# PoolFormerV2-S12's (AdamW lr 4e-3, batch 4096, 5 warm-up epochs, drop path
# 0.1, crop_pct 1.0); see poolformerv2_s12_in1k.py for the recipe and the
# deviations. The matrices are drawn for 224x224 inputs (196 and 49 tokens);
# the released weights hold them, a from-scratch run draws its own from the
# run's seed.
_base_ = './poolformerv2_s12_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/randformer/randformer_s12.pth'  # noqa

model = dict(backbone=dict(type='mmpoolformer.RandFormer'))
