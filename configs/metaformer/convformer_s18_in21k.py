# ConvFormer-S18 pre-trained on ImageNet-21k (21841 classes, 224x224): the
# sail-sg/metaformer release convformer_s18_in21k, a start for fine-tuning
# (convert it with --with-head for the whole classifier, or load its
# backbone through init_cfg). No accuracy is published for it.
# The classifier as the release: the MLP head with 21841 outputs. The data
# are mmpretrain's ImageNet21k under data/imagenet21k (meta/train.txt,
# meta/val.txt of your own split: ImageNet-21k has no official one). The
# pre-training recipe is not in the official scripts (nor in our
# references): the training part is the 224 ImageNet-1k recipe of
# convformer_s18_in1k.py, inherited.
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
