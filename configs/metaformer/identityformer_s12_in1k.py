# IdentityFormer-S12 (MetaFormer baselines: no token mixing at all) on
# ImageNet-1k from scratch. Paper: 11.9M params, 1.8G MACs, top-1 74.6.
# Recipe: scripts/identityformer/train_identityformer_s12.sh, the same as
# PoolFormerV2-S12's (AdamW lr 4e-3, batch 4096, 5 warm-up epochs, drop path
# 0.1, crop_pct 1.0); see poolformerv2_s12_in1k.py for the recipe and the
# deviations.
_base_ = './poolformerv2_s12_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/identityformer/identityformer_s12.pth'  # noqa

model = dict(backbone=dict(type='mmpoolformer.IdentityFormer'))
