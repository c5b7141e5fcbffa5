# CAFormer-S18 pre-trained on ImageNet-21k and fine-tuned on ImageNet-1k at
# 224x224: the sail-sg/metaformer release caformer_s18_in21ft1k.
# Paper (sail-sg/metaformer README): 26M params, 4.1G MACs, top-1 84.1.
# For the released weights: convert them with their head
# (tools/model_converters/convert_checkpoint.py SRC DST --with-head) and
# evaluate with tools/test.py (crop_pct 1.0: resize 224, centre crop 224).
# The ImageNet-21k pre-training and this fine-tuning recipe are not in the
# official scripts (nor in our references): the training part of this config
# is the 224 ImageNet-1k recipe of caformer_s18_in1k.py, inherited.
_base_ = './caformer_s18_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18_in21ft1k.pth'  # noqa
