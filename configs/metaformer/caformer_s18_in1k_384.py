# CAFormer-S18 at 384x384: the 224 model fine-tuned on ImageNet-1k, the
# sail-sg/metaformer release caformer_s18_384.
# sail-sg/metaformer README (table "trained on ImageNet-1K"): 26M params,
# 13.4G MACs, top-1 85.0 (at 224: 83.6, caformer_s18_in1k.py).
# Recipe: sail-sg/metaformer scripts/caformer/finetune_caformer_s18_384.sh
# (checked at commit 64c534a): as ConvFormer-S18's 384 fine-tuning
# (convformer_s18_in1k_384.py: 30 epochs at 384x384, batch 1024, constant lr,
# no Mixup / CutMix, EMA 0.9999, drop path 0.3, head dropout 0.4, crop_pct
# 1.0) but with the LAMB optimizer at lr 1e-4 (no extra grad clipping, as
# caformer_s18_in1k.py).
# It starts from the whole 224 classifier, converted once (the converter
# keeps the head by default) and passed as load_from (see
# convformer_s18_in1k_384.py).
_base_ = './convformer_s18_in1k_384.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18_384.pth'  # noqa

model = dict(backbone=dict(type='mmpoolformer.CAFormer'))

# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
optim_wrapper = dict(
    optimizer=dict(
        _delete_=True,
        _scope_='mmpretrain',
        type='Lamb',
        lr=1e-4,
        weight_decay=0.05,
        betas=(0.9, 0.999),
        eps=1e-6),
    clip_grad=None)
