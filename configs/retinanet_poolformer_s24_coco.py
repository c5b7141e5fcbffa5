# Alias kept for `python tools/train.py configs/retinanet_poolformer_s24_coco.py`
# from before the configs moved into folders: the config itself is
# configs/poolformer/retinanet_poolformer_s24_coco.py
# (`_base_ = 'mmpoolformer::poolformer/retinanet_poolformer_s24_coco.py'` from
# an installed package).
_base_ = './poolformer/retinanet_poolformer_s24_coco.py'
