# ConvFormer-S18 pre-trained on ImageNet-21k and fine-tuned on ImageNet-1k at
# 384x384: the sail-sg/metaformer release convformer_s18_384_in21ft1k.
# sail-sg/metaformer README (table "pretrained on ImageNet-21K and finetuned on
# ImageNet-1K"): 27M params, 11.6G MACs, top-1 85.0 (ImageNet-1k alone at 384:
# 84.4, convformer_s18_in1k_384.py).
# For the released weights: convert them
# (tools/model_converters/convert_checkpoint.py SRC DST keeps the head) and
# evaluate with tools/test.py (crop_pct 1.0: resize 384, centre crop 384).
# Fine-tuning recipe: not published. sail-sg/metaformer (checked at commit
# 64c534a) has no script for it, and neither its scripts nor its README say
# whether this model was fine-tuned at 384 from the 21k checkpoint or from the
# 224 in21ft1k one; for the 21k head it publishes
# misc/process_21k_ckpt_before_1k_finetuning.py (see
# convformer_s18_in21k_ft_in1k.py). The training part of this config is the
# authors' 384 ImageNet-1k fine-tuning recipe of convformer_s18_in1k_384.py
# (scripts/convformer/finetune_convformer_s18_384.sh: 30 epochs, batch 1024,
# AdamW lr 5e-5 held constant, no Mixup / CutMix, EMA 0.9999, drop path 0.3,
# head dropout 0.4), inherited: their recipe for 224 -> 384 on ImageNet-1k, not
# confirmed for the ImageNet-21k model.
_base_ = './convformer_s18_in1k_384.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18_384_in21ft1k.pth'  # noqa
