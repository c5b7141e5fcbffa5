"""The models a benchmark compares, all computing the same function.

Backbone level: ours (the default constructor), ours with the plain and
the lean formulations (``formulation='plain'`` / ``'lean'``), ours in
deploy mode, ours without output norms (what timm's ``features_only``
returns), mmpretrain's ``PoolFormer``
and timm's model; each of ours, ours-raw, mmpretrain and timm also under
``torch.compile`` (default inductor), as a row of its own.
Detector level: RetinaNet / Semantic FPN from our configs, once with our
backbone and once with ``mmpretrain.PoolFormer`` in its place.

Weights: the reference is randomised (layer scales and norm affines
included), converted by :func:`convert_to_mmpoolformer` and loaded into ours,
so every pair can be checked for equality before anything is timed.
"""
import copy
from pathlib import Path

import torch
import torch.nn as nn

from mmpoolformer.checkpoint import convert_to_mmpoolformer

#: where configs/ lies beside tools/ (a clone, or the package's .mim)
ROOT = Path(__file__).resolve().parents[3]

# timm name -> (our family, our arch, mmpretrain PoolFormer arch or None)
ARCHS = {
    'poolformer_s12': ('PoolFormer', 's12', 's12'),
    'poolformer_s24': ('PoolFormer', 's24', 's24'),
    'poolformer_m36': ('PoolFormer', 'm36', 'm36'),
    'poolformerv2_s12': ('PoolFormerV2', 's12', None),
    'convformer_s18': ('ConvFormer', 's18', None),
    'caformer_s18': ('CAFormer', 's18', None),
}
DETECTORS = {  # --detector -> (config, scope, mmpretrain out_indices)
    'retinanet': ('configs/poolformer/retinanet_poolformer_s12_coco.py', 'mmdet',
                  (2, 4, 6)),
    'fpn': ('configs/poolformer/fpn_poolformer_s12_ade20k.py', 'mmseg', (0, 2, 4, 6)),
}


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial values everywhere, so a wrong branch changes outputs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'scale' in name or name.endswith(('norm1.weight',
                                                 'norm2.weight')):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def _key_mapping(source: dict, converted: dict) -> dict:
    """``{source_key: converted_key}`` matched by value (the converter only
    renames and reshapes; randomised values are unique)."""
    by_numel = {}
    for k, v in converted.items():
        by_numel.setdefault(v.numel(), []).append(k)
    mapping = {}
    for k, v in source.items():
        hits = [c for c in by_numel.get(v.numel(), [])
                if torch.equal(converted[c].reshape(-1), v.reshape(-1))]
        if len(hits) != 1:
            raise RuntimeError(f'cannot map {k!r} to our layout: {hits}')
        mapping[k] = hits[0]
    return mapping


def _rebuilt(build, ours, **kwargs):
    """Ours built again through the public constructor with ``kwargs``,
    holding ``ours``' weights (output norms dropped when it has none)."""
    model = build(**kwargs)
    expected = model.state_dict()
    model.load_state_dict({k: v for k, v in ours.state_dict().items()
                           if k in expected}, strict=True)
    return model


def has_output_norms(row: str, reference: str) -> bool:
    """Whether a row's feature maps go through output norms (mmpretrain's
    and ours do, timm's ``features_only`` and ours-raw do not): a row is
    compared with the row of ours that computes the same function."""
    base = row.split('+')[0].split(' ')[0]
    if base in ('onnxruntime', 'reference-int8'):
        base = reference
    return base not in ('timm', 'ours-raw')


COMPILABLE = ('ours', 'ours-raw', 'ours-plain', 'mmpretrain', 'timm')


def compiled(model: nn.Module, freezing: bool = False,
             backend: str = 'inductor') -> nn.Module:
    """``torch.compile`` with its defaults (inductor) on a copy of the
    model: its own weights and optimizer, like a user's compiled model.
    ``freezing``: inductor with weights as constants (inference only)."""
    options = {'freezing': True} if freezing and backend == 'inductor' \
        else None
    return torch.compile(copy.deepcopy(model), backend=backend,
                         options=options)


def build_backbones(timm_name: str, seed: int = 0) -> dict:
    """``{row name: model}`` in eval mode, fp32, CPU (eager rows only;
    :func:`compiled` makes the ``+compile`` rows)."""
    import functools

    import timm

    from mmpoolformer import models as our_models
    family, arch, mm_arch = ARCHS[timm_name]
    build = functools.partial(getattr(our_models, family), arch)
    ours = randomise_(build(), seed)
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    rows = {}
    if mm_arch is not None:
        from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
        mm = randomise_(MMPretrainPoolFormer(mm_arch, out_indices=(0, 2, 4, 6)),
                        seed + 1)
        fmt, sd = convert_to_mmpoolformer(
            {f'backbone.{k}': v for k, v in mm.state_dict().items()}, shapes)
        assert fmt == 'mmpretrain', fmt
        ours.load_state_dict(sd, strict=True)
        rows['mmpretrain'] = mm

    full = randomise_(timm.create_model(timm_name), seed + 2)
    fmt, sd = convert_to_mmpoolformer(full.state_dict(), shapes)
    assert fmt == 'timm', fmt
    if mm_arch is None:  # timm is the only reference: ours from timm
        missing, unexpected = ours.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.startswith('norm') for k in missing)
    full_sd = {k: v for k, v in full.state_dict().items()
               if not k.startswith('head.')}
    ours_sd = ours.state_dict()
    timm_sd = {k: ours_sd[c].reshape(full_sd[k].shape).clone()
               for k, c in _key_mapping(full_sd, sd).items()}
    features = timm.create_model(timm_name, features_only=True)
    features.load_state_dict({k.replace('stages.', 'stages_'): v
                              for k, v in timm_sd.items()}, strict=True)
    rows['timm'] = features

    deploy = _rebuilt(build, ours)
    deploy.switch_to_deploy()
    rows = {'ours': ours,
            'ours-plain': _rebuilt(build, ours, formulation='plain'),
            'ours-lean': _rebuilt(build, ours, formulation='lean'),
            'ours-packed': _rebuilt(build, ours, formulation='packed'),
            'ours-deploy': deploy,
            'ours-raw': _rebuilt(build, ours, out_norm_cfg=None), **rows}
    for m in rows.values():
        m.eval()  # mmpretrain's train() returns None: no chaining
    return rows


def build_detectors(kind: str, seed: int = 0) -> dict:
    """``{'ours': model, 'ours-packed': model, 'mmpretrain': model}``: the
    config's detector or segmentor, BN in place of SyncBN (one CPU
    process), no pretrained weights, identical weights in all; ours-packed
    has its backbone in the packed formulation (inference only)."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmpoolformer import register_all_modules
    register_all_modules()
    config, scope, mm_out_indices = DETECTORS[kind]
    cfg = Config.fromfile(str(ROOT / config))
    init_default_scope(scope)
    if scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
        for head in ('decode_head', 'auxiliary_head'):
            if cfg.model.get(head):
                cfg.model[head].norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.backbone.init_cfg = None
    cfg.model.data_preprocessor = None  # inputs are given preprocessed
    ours = MODELS.build(copy.deepcopy(cfg.model))
    mm_cfg = copy.deepcopy(cfg.model)
    mm_cfg.backbone = dict(type='mmpretrain.PoolFormer', arch='s12',
                           out_indices=mm_out_indices, frozen_stages=-1,
                           drop_path_rate=0.)
    mm = MODELS.build(mm_cfg)
    randomise_(mm, seed)
    state = mm.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith('backbone.')}
    fmt, sd = convert_to_mmpoolformer(
        backbone, {k: v.shape for k, v in ours.backbone.state_dict().items()})
    assert fmt == 'mmpretrain', fmt
    rest = {k: v for k, v in state.items() if not k.startswith('backbone.')}
    ours.load_state_dict({**rest, **{f'backbone.{k}': v
                                     for k, v in sd.items()}}, strict=True)
    packed = copy.deepcopy(ours)
    packed.backbone.formulation = 'packed'
    return {'ours': ours, 'ours-packed': packed, 'mmpretrain': mm}


def _resize_scale(cfg, config: str, split: str):
    """``(long, short)`` of the one ``Resize`` of a split's pipeline."""
    loader = cfg[f'{split}_dataloader']
    resize = [t for t in loader.dataset.pipeline if t['type'] == 'Resize']
    if len(resize) != 1:
        raise ValueError(f'{config}: expected one Resize in the {split} '
                         f'pipeline, found {len(resize)}')
    return tuple(sorted(resize[0]['scale'], reverse=True))


def _padded(sizes, divisor: int) -> tuple:
    return tuple(-(-s // divisor) * divisor for s in sizes)


def detector_test_input(kind: str):
    """``(height, width)`` of a 4:3 image after the config's test
    ``Resize`` (keep_ratio) and the preprocessor's padding: RetinaNet
    800x1088, Semantic FPN 512x704."""
    from mmengine.config import Config
    config, _, _ = DETECTORS[kind]
    cfg = Config.fromfile(str(ROOT / config))
    long, short = _resize_scale(cfg, config, 'test')
    factor = min(long / 640, short / 480)
    preprocessor = cfg.model.data_preprocessor
    divisor = preprocessor.get('pad_size_divisor') or \
        preprocessor.get('size_divisor') or 32
    return _padded((round(480 * factor), round(640 * factor)), divisor)


def detector_training_input(kind: str):
    """``(images per GPU, (height, width))`` of the config's training:
    the batch of its train dataloader and, for a detector, the largest
    image its ``Resize`` makes, padded to the preprocessor's multiple
    (RetinaNet: 1333x800 -> 800x1344), for a segmentor its crop."""
    from mmengine.config import Config
    config, scope, _ = DETECTORS[kind]
    cfg = Config.fromfile(str(ROOT / config))
    batch = cfg.train_dataloader.batch_size
    if scope == 'mmseg':
        return batch, tuple(cfg.crop_size)
    long, short = _resize_scale(cfg, config, 'train')
    divisor = cfg.model.data_preprocessor.get('pad_size_divisor', 1)
    return batch, _padded((short, long), divisor)


def detector_batch(kind: str, batch: int, size, seed: int = 0,
                   device='cpu'):
    """A preprocessed image batch of ``size`` (int or (h, w)) and its ground
    truth (random boxes with labels, or a random label map) on ``device``."""
    h, w = (size, size) if isinstance(size, int) else size
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, h, w, generator=gen)
    meta = dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w),
                batch_input_shape=(h, w), scale_factor=(1., 1.))
    samples = []
    for _ in range(batch):
        if kind == 'retinanet':
            from mmdet.structures import DetDataSample
            from mmengine.structures import InstanceData
            scale = torch.tensor([w, h])
            xy = torch.rand(5, 2, generator=gen) * scale * 0.6
            wh = 16 + torch.rand(5, 2, generator=gen) * scale * 0.3
            gt = InstanceData(bboxes=torch.cat([xy, xy + wh], 1),
                              labels=torch.randint(0, 80, (5, ),
                                                   generator=gen))
            samples.append(DetDataSample(metainfo=meta, gt_instances=gt))
        else:
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            label = torch.randint(0, 150, (1, h, w), generator=gen)
            samples.append(SegDataSample(
                metainfo=meta, gt_sem_seg=PixelData(data=label)))
    return inputs.to(device), [s.to(device) for s in samples]
