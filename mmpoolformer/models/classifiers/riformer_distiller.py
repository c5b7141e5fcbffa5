"""RIFormer's training paradigm (Wang et al., "RIFormer: Keep Your Vision
Backbone Effective But Removing Token Mixer", CVPR 2023, Sec. 4).

A token-mixer-free student (RIFormer: affine mixers) learns from a frozen
teacher by

* soft-label knowledge distillation only: KL divergence of the softened
  logits times T^2, no ground-truth cross-entropy;
* module imitation of a same-shaped MetaFormer teacher (e.g. PoolFormer of
  the same size), block by block: the mixer inputs (norm1 outputs, L_in),
  the mixer outputs (L_out), the block outputs (the next mixer's input,
  L'_in), all as MSE, and a relation loss (L_rel) between the channel Gram
  matrices of the mixer outputs;
* the student starts from the teacher's weights except the token mixers.

The paper's objective is L_soft + l1 L'_in + l2 L_out + l3 L_rel; every term
has a weight in ``loss_weights`` (0 skips it). Only the student is saved:
checkpoints load into a plain RIFormer classifier config, whose
``switch_to_deploy()`` then folds the mixers.
"""
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

from mmpoolformer.checkpoint.convert import convert_classifier, unwrap_checkpoint
from mmpoolformer.checkpoint.torch_load import load_checkpoint_file
from mmpoolformer.registry import MODELS

#: imitation terms, named after what they compare block by block
IMITATION = ('mixer_in', 'mixer_out', 'block_out', 'relation')
DEFAULT_WEIGHTS = dict(soft=1., label=0., mixer_in=0., mixer_out=1.,
                       block_out=1., relation=1.)


def load_classifier_checkpoint(model: nn.Module, filename: str,
                               map_location='cpu') -> str:
    """Load a whole-classifier checkpoint of any layout that
    :func:`~mmpoolformer.checkpoint.convert.convert_classifier` reads; every
    key must fit. Returns the layout name."""
    state = unwrap_checkpoint(load_checkpoint_file(filename, map_location))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fmt, converted = convert_classifier(state, shapes)
    missing = sorted(set(shapes) - set(converted))
    unexpected = sorted(set(converted) - set(shapes))
    mis_shaped = [k for k in converted
                  if k in shapes and tuple(converted[k].shape) != shapes[k]]
    if missing or unexpected or mis_shaped:
        raise ValueError(
            f'Teacher checkpoint {filename} ({fmt} format) does not fit the '
            f'teacher config: missing {missing[:6]}, unexpected '
            f'{unexpected[:6]}, mis-shaped {mis_shaped[:6]}; give the '
            f'teacher the arch and head of that checkpoint.')
    model.load_state_dict(converted)
    print_log(f'Loaded the teacher from {filename} ({fmt} format)',
              logger='current')
    return fmt


def blocks_of(backbone: nn.Module) -> List[nn.Module]:
    """The MetaFormer blocks of a backbone, stage by stage."""
    return [block for stage in backbone.stages for block in stage.blocks]


@contextmanager
def tap_blocks(backbone: Optional[nn.Module]):
    """Record, per block, the mixer input (norm1's output), the mixer output
    and the block output during the forward passes inside the context
    (nothing for ``backbone=None``)."""
    taps: Dict[str, list] = {k: [] for k in ('mixer_in', 'mixer_out',
                                             'block_out')}

    def keep(name):
        return lambda module, args, output: taps[name].append(output)

    handles = []
    for block in blocks_of(backbone) if backbone is not None else []:
        handles += [block.norm1.register_forward_hook(keep('mixer_in')),
                    block.token_mixer.register_forward_hook(keep('mixer_out')),
                    block.register_forward_hook(keep('block_out'))]
    try:
        yield taps
    finally:
        for handle in handles:
            handle.remove()


def channel_relation(x: torch.Tensor) -> torch.Tensor:
    """(B, C, C) cosine similarities between the channels of (B, C, H, W)
    maps over their tokens. A token-by-token Gram matrix would be N^2 (3136^2
    per image in stage 1 at 224x224); this one is C^2."""
    x = F.normalize(x.flatten(2).float(), dim=2)
    return x @ x.transpose(1, 2)


def soft_kd_loss(student: torch.Tensor, teacher: torch.Tensor,
                 temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the softened distributions, times T^2 (so
    the gradients keep their scale across temperatures)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=-1),
                    F.log_softmax(teacher / t, dim=-1), log_target=True,
                    reduction='batchmean') * t * t


@MODELS.register_module()
class RIFormerDistiller(ImageClassifier):
    """An mmpretrain ``ImageClassifier`` (the student: ``backbone``,
    ``neck``, ``head``) trained by RIFormer's distillation from a frozen
    ``teacher``.

    Args:
        backbone, neck, head (dict): The student, as in a plain classifier
            config (e.g. ``mmpoolformer.RIFormer`` + GlobalAveragePooling +
            LinearClsHead).
        teacher (dict): Config of the teacher classifier, built in
            mmpretrain's scope: an ``ImageClassifier`` whose backbone is a
            MetaFormer with the student's depths and widths for module
            imitation (PoolFormer of the same size), or any classifier
            (e.g. ``TimmClassifier``) for soft KD alone (imitation weights
            0, ``init_student_from_teacher=False``).
        teacher_checkpoint (str, optional): Whole-classifier weights of the
            teacher in any layout the converter reads (official, timm,
            mmpretrain, ours), loaded by ``init_weights()``.
        temperature (float): Softmax temperature of the soft KD loss.
        loss_weights (dict): Weights of ``soft`` (KD), ``label`` (the head's
            own loss on the ground truth; the paper uses none), ``mixer_in``
            (L_in), ``mixer_out`` (L_out), ``block_out`` (L'_in) and
            ``relation`` (L_rel); missing keys take :data:`DEFAULT_WEIGHTS`,
            0 skips a term.
        init_student_from_teacher (bool): Copy every teacher weight except
            the token mixers into the student in ``init_weights()``.
    """

    def __init__(self,
                 backbone: dict,
                 teacher: dict,
                 neck: Optional[dict] = None,
                 head: Optional[dict] = None,
                 teacher_checkpoint: Optional[str] = None,
                 temperature: float = 1.0,
                 loss_weights: Optional[dict] = None,
                 init_student_from_teacher: bool = True,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(backbone, neck=neck, head=head, train_cfg=train_cfg,
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        unknown = set(loss_weights or {}) - set(DEFAULT_WEIGHTS)
        if unknown:
            raise ValueError(f'Unknown loss_weights {sorted(unknown)}; known: '
                             f'{sorted(DEFAULT_WEIGHTS)}.')
        if temperature <= 0:
            raise ValueError(f'temperature must be positive, got '
                             f'{temperature}.')
        self.loss_weights = {**DEFAULT_WEIGHTS, **(loss_weights or {})}
        self.temperature = temperature
        self.teacher_checkpoint = teacher_checkpoint
        self.init_student_from_teacher = init_student_from_teacher

        self.teacher = MMPRETRAIN_MODELS.build(teacher)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.imitates = any(self.loss_weights[k] for k in IMITATION)
        if self.imitates or init_student_from_teacher:
            self._check_same_shape()
        # checkpoints hold the student only; the teacher comes from its
        # config and checkpoint (init_weights), also when resuming
        self._register_state_dict_hook(_drop_teacher_keys)
        self._register_load_state_dict_pre_hook(_keep_teacher_weights,
                                                with_module=True)

    def _check_same_shape(self):
        teacher = getattr(self.teacher, 'backbone', None)

        def layout(backbone):
            return (getattr(backbone, 'depths', None),
                    getattr(backbone, 'embed_dims', None))

        if teacher is None or not hasattr(teacher, 'stages') or \
                layout(teacher) != layout(self.backbone):
            raise ValueError(
                f'Module imitation and initialising the student from the '
                f'teacher need a MetaFormer teacher backbone with the '
                f'student\'s depths and embed_dims {layout(self.backbone)}, '
                f'got {type(teacher).__name__} {layout(teacher)}; use e.g. '
                f'PoolFormer of the same size, or set the imitation '
                f'loss_weights ({", ".join(IMITATION)}) to 0 and '
                f'init_student_from_teacher=False for soft KD alone.')

    # ------------------------------------------------------------ weights
    def init_weights(self):
        super().init_weights()
        if self.teacher_checkpoint:
            load_classifier_checkpoint(self.teacher, self.teacher_checkpoint)
        if self.init_student_from_teacher:
            self.inherit_teacher_weights()

    @torch.no_grad()
    def inherit_teacher_weights(self):
        """Copy every teacher weight into the student except the token
        mixers (the student's mixers differ by design)."""
        teacher = self.teacher.state_dict()
        copied, kept = 0, []
        for key, value in self.state_dict().items():  # the student's only
            if '.token_mixer.' in key:
                kept.append(key)
                continue
            source = teacher.get(key)
            if source is None or source.shape != value.shape:
                raise ValueError(
                    f'The teacher has no weight of shape '
                    f'{tuple(value.shape)} for the student\'s {key}; the '
                    f'student inherits all but its token mixers from a '
                    f'same-shaped teacher (same arch, neck and head), or set '
                    f'init_student_from_teacher=False.')
            value.copy_(source)
            copied += 1
        print_log(f'Student initialised from the teacher: {copied} tensors '
                  f'copied, {len(kept)} token-mixer tensors kept',
                  logger='current')

    # -------------------------------------------------------------- train
    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen: no dropout, drop path or BN updates
        return self

    def loss(self, inputs: torch.Tensor, data_samples) -> dict:
        imitate = self.imitates
        with torch.no_grad(), tap_blocks(
                self.teacher.backbone if imitate else None) as t_taps:
            t_logits = self.teacher(inputs, mode='tensor')
        with tap_blocks(self.backbone if imitate else None) as s_taps:
            feats = self.extract_feat(inputs)
            s_logits = self.head(feats)

        w = self.loss_weights
        losses = {}
        if w['soft']:
            losses['loss_soft'] = w['soft'] * soft_kd_loss(
                s_logits, t_logits, self.temperature)
        if w['label']:
            losses['loss_label'] = w['label'] * self.head.loss(
                feats, data_samples)['loss']
        for name in ('mixer_in', 'mixer_out', 'block_out'):
            if w[name]:
                losses[f'loss_{name}'] = w[name] * _mean(
                    F.mse_loss(s, t) for s, t in zip(s_taps[name],
                                                      t_taps[name]))
        if w['relation']:
            losses['loss_relation'] = w['relation'] * _mean(
                F.mse_loss(channel_relation(s), channel_relation(t))
                for s, t in zip(s_taps['mixer_out'], t_taps['mixer_out']))
        return losses


def _mean(values) -> torch.Tensor:
    values = list(values)
    return sum(values) / len(values)


def _drop_teacher_keys(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + 'teacher.')]:
        del state_dict[key]
    return state_dict


def _keep_teacher_weights(module, state_dict, prefix, *args):
    """A (student-only) checkpoint leaves the teacher as it is."""
    for key, value in module.teacher.state_dict(
            prefix=prefix + 'teacher.').items():
        state_dict.setdefault(key, value)
