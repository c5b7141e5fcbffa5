# ConvFormer-S18 at 384x384: the 224 model fine-tuned on ImageNet-1k, the
# sail-sg/metaformer release convformer_s18_384.
# sail-sg/metaformer README (table "trained on ImageNet-1K"): 27M params,
# 11.6G MACs, top-1 84.4 (at 224: 83.0, convformer_s18_in1k.py).
# Recipe: sail-sg/metaformer scripts/convformer/finetune_convformer_s18_384.sh
# (checked at commit 64c534a) with train.py's defaults: 30 epochs at 384x384,
# batch 1024 (8 GPUs x 32 x 4 accumulation steps), AdamW lr 5e-5 held
# constant (--sched None), no Mixup / CutMix, model EMA (decay 0.9999), drop
# path 0.3, head dropout 0.4; evaluated at crop_pct 1.0 (resize 384, centre
# crop 384). The rest (RandAugment, random erasing 0.25, label smoothing 0.1,
# wd 0.05) is train.py's defaults, as in the 224 recipe.
# It starts from the whole 224 classifier (--initial-checkpoint); convert the
# release once (the converter keeps the head by default) and pass it as
# load_from:
#   python tools/model_converters/convert_checkpoint.py convformer_s18.pth \
#       convformer_s18_mm.pth
#   python tools/train.py THIS_CONFIG --cfg-options load_from=convformer_s18_mm.pth
_base_ = './convformer_s18_in1k.py'
checkpoint_file = 'https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18_384.pth'  # noqa
img_size = 384

model = dict(
    backbone=dict(drop_path_rate=0.3),
    head=dict(dropout=0.4),
    train_cfg=None)  # no Mixup / CutMix

optim_wrapper = dict(optimizer=dict(lr=5e-5))
# `_scope_`: what replaces a base's entry wholesale names mmpretrain's
# registries itself; as a `mmpoolformer::` base it would otherwise get ours
# constant lr, no warm-up
param_scheduler = [
    dict(_scope_='mmpretrain', type='ConstantLR', factor=1.0, by_epoch=True)
]
train_cfg = dict(max_epochs=30)
custom_hooks = [
    dict(
        _scope_='mmpretrain',
        type='EMAHook',
        momentum=1e-4,
        priority='ABOVE_NORMAL')
]

train_pipeline = [
    dict(_scope_='mmpretrain', type='LoadImageFromFile'),
    dict(
        _scope_='mmpretrain',
        type='RandomResizedCrop',
        scale=img_size,
        backend='pillow',
        interpolation='bicubic'),
    dict(
        _scope_='mmpretrain',
        type='RandomFlip',
        prob=0.5,
        direction='horizontal'),
    dict(
        _scope_='mmpretrain',
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(
        _scope_='mmpretrain',
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=[103.53, 116.28, 123.675],
        fill_std=[57.375, 57.12, 58.395]),
    dict(_scope_='mmpretrain', type='PackInputs'),
]
test_pipeline = [
    dict(_scope_='mmpretrain', type='LoadImageFromFile'),
    dict(
        _scope_='mmpretrain',
        type='ResizeEdge',
        scale=img_size,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(_scope_='mmpretrain', type='CenterCrop', crop_size=img_size),
    dict(_scope_='mmpretrain', type='PackInputs'),
]
# 32 GPUs x 32 images (lr = 5e-5 at 1024); --auto-scale-lr rescales
train_dataloader = dict(batch_size=32, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
auto_scale_lr = dict(base_batch_size=1024)
