# CAFormer-S18 pre-trained on ImageNet-21k and fine-tuned on ImageNet-1k at
# 224x224: the sail-sg/metaformer release caformer_s18_in21ft1k.
# sail-sg/metaformer README (table "pretrained on ImageNet-21K and finetuned on
# ImageNet-1K"): 26M params, 4.1G MACs, top-1 84.1 (ImageNet-1k alone: 83.6,
# caformer_s18_in1k.py).
# For the released weights: convert them
# (tools/model_converters/convert_checkpoint.py SRC DST keeps the head) and
# evaluate with tools/test.py (crop_pct 1.0: resize 224, centre crop 224).
# Fine-tuning recipe: not published. sail-sg/metaformer (checked at commit
# 64c534a) has no 21k->1k fine-tuning script: scripts/ holds the ImageNet-1k
# training (train_*.sh) and 384 fine-tuning (finetune_*_384.sh) ones only. What
# it does publish is how the 1k head starts:
# misc/process_21k_ckpt_before_1k_finetuning.py keeps, of the 21841-way output
# layer, the rows of 999 ImageNet-1k classes (misc/in21k_to_1k_class_map.json);
# class 850, absent from the map, starts from the mean of all 21841 rows. To
# start as the authors did, run it on caformer_s18_in21k.pth, convert its
# output (head kept, now 1000 classes) and pass that as load_from. Epochs, lr,
# batch, drop path, head dropout and EMA of this fine-tuning are in neither the
# scripts nor the README; the paper's could not be checked here, so no number
# is taken from it. The training part of this config is therefore the 224
# ImageNet-1k from-scratch recipe of caformer_s18_in1k.py, inherited (300
# epochs): a placeholder, not the authors' fine-tuning.
_base_ = './caformer_s18_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18_in21ft1k.pth'  # noqa
