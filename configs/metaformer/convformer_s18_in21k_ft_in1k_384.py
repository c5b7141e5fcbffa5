# ConvFormer-S18 pre-trained on ImageNet-21k and fine-tuned on ImageNet-1k at
# 384x384: the sail-sg/metaformer release convformer_s18_384_in21ft1k.
# Paper (sail-sg/metaformer README): 27M params, 11.6G MACs, top-1 85.0.
# For the released weights: convert them with their head
# (tools/model_converters/convert_checkpoint.py SRC DST --with-head) and
# evaluate with tools/test.py (crop_pct 1.0: resize 384, centre crop 384).
# The fine-tuning recipe from ImageNet-21k is not in the official scripts
# (nor in our references): the training part of this config is the 384
# ImageNet-1k fine-tuning recipe of convformer_s18_in1k_384.py, inherited.
_base_ = './convformer_s18_in1k_384.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18_384_in21ft1k.pth'  # noqa
