# ConvFormer-S18 pre-trained on ImageNet-21k (21841 classes, 224x224): the
# sail-sg/metaformer release convformer_s18_in21k, a start for fine-tuning. Its
# README lists it (table "pretrained on ImageNet-21K") with resolution and
# download only: no params, MACs or accuracy are published for it.
# Convert it with tools/model_converters/convert_checkpoint.py (the 21841-way
# head is kept by default, for this config; --backbone-only drops it), or load
# its backbone through init_cfg (head keys are ignored there).
# The classifier as the release: the MLP head with 21841 outputs. The data are
# mmpretrain's ImageNet21k under data/imagenet21k (meta/train.txt, meta/val.txt
# of your own split: ImageNet-21k has no official one).
# Pre-training recipe: not published. sail-sg/metaformer (checked at commit
# 64c534a) has ImageNet-1k training scripts (scripts/*/train_*.sh) and 384
# fine-tuning scripts (scripts/*/finetune_*_384.sh), no ImageNet-21k one, and
# its README gives no 21k settings; the paper's could not be checked here, so
# no number is taken from it. The training part is therefore the 224
# ImageNet-1k recipe of convformer_s18_in1k.py, inherited: a placeholder, not
# the authors' pre-training.
_base_ = './convformer_s18_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18_in21k.pth'  # noqa
num_classes = 21841

model = dict(head=dict(num_classes=num_classes))
data_preprocessor = dict(num_classes=num_classes)
train_dataloader = dict(
    dataset=dict(type='ImageNet21k', data_root='data/imagenet21k'))
val_dataloader = dict(
    dataset=dict(type='ImageNet21k', data_root='data/imagenet21k'))
test_dataloader = val_dataloader
