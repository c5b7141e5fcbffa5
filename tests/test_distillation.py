"""RIFormer's learning paradigm (mmpoolformer.RIFormerDistiller) and its
configs: a tiny RIFormer student distilled from a tiny PoolFormer teacher.

In process: the student starts from the teacher's weights except the token
mixers, every loss term is computed and positive, the teacher gets no
gradient and stays in eval mode, checkpoints hold the student only. End to
end (tools/train.py on synthetic ImageNet-layout data, a real Runner): the
loss goes down, and the saved checkpoint loads strictly into the plain
RIFormer classifier config, whose switch_to_deploy() folds the mixers with
the outputs of the trained student.
"""
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from test_configs import build

import mmpoolformer
from mmpoolformer.models.classifiers.riformer_distiller import (
    RIFormerDistiller,
    channel_relation,
    soft_kd_loss,
)

from helpers import TINY, randomise_, rel_error
from test_training import cls_opts, run_tool, scalars, schedule_opts, write_imagenet

ROOT = Path(__file__).resolve().parents[1]
DISTILL = ROOT / 'configs' / 'metaformer' / 'riformer_s12_distill_in1k.py'
PLAIN = ROOT / 'configs' / 'metaformer' / 'riformer_s12_in1k.py'
NUM_CLASSES = 3
# every term on, so that each one is computed and logged
ALL_TERMS = dict(soft=1., label=0.5, mixer_in=1., mixer_out=1., block_out=1.,
                 relation=1.)
TERMS = [f'loss_{k}' for k in ALL_TERMS]


def tiny_config(tmp_path, base=DISTILL, teacher_checkpoint=None):
    """The shipped config with tiny student and teacher (3 classes). The
    sizes are overrides of the presets' keys, so that each class keeps its
    own token mixer."""
    tiny = ', '.join(f'{k}={v!r}' for k, v in TINY.items())
    head = f'head=dict(in_channels=32, num_classes={NUM_CLASSES})'
    model = f'backbone=dict({tiny}, drop_path_rate=0.0), {head}'
    if base == DISTILL:
        model += (f', teacher=dict(backbone=dict({tiny}), {head}), '
                  f'teacher_checkpoint={teacher_checkpoint!r}, '
                  f'loss_weights={ALL_TERMS!r}')
    path = tmp_path / f'tiny_{base.stem}.py'
    path.write_text(f'_base_ = {str(base)!r}\nmodel = dict({model})\n')
    return path


def write_teacher(tmp_path):
    """A trained-looking tiny PoolFormer classifier checkpoint (our layout,
    as tools/train.py writes it) for ``teacher_checkpoint``."""
    cfg = Config.fromfile(str(tiny_config(tmp_path)))
    teacher = build(Config(dict(default_scope='mmpretrain',
                                model=cfg.model.teacher)))
    randomise_(teacher)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': teacher.state_dict()}, path)
    return path, teacher.state_dict()


@pytest.fixture
def distiller(tmp_path):
    mmpoolformer.register_all_modules()
    ckpt, teacher_state = write_teacher(tmp_path)
    cfg = Config.fromfile(
        str(tiny_config(tmp_path, teacher_checkpoint=str(ckpt))))
    model = build(cfg)
    model.init_weights()
    return model, teacher_state


def test_student_starts_from_the_teacher_but_its_mixers(distiller):
    model, teacher_state = distiller
    assert isinstance(model, RIFormerDistiller)
    assert type(model.backbone).__name__ == 'RIFormer'
    assert type(model.teacher.backbone).__name__ == 'PoolFormer'
    # the teacher is the checkpoint's
    for key, value in model.teacher.state_dict().items():
        assert torch.equal(value, teacher_state[key]), key
    student = model.state_dict()
    mixers = [k for k in student if '.token_mixer.' in k]
    assert len(mixers) == 2 * sum(TINY['depths'])  # affine weight and bias
    for key, value in student.items():
        if key in mixers:
            assert key not in teacher_state
        else:
            assert torch.equal(value, teacher_state[key]), key
    # checkpoints hold the student only, and load back strictly
    assert not any(k.startswith('teacher.') for k in student)
    model.load_state_dict(student, strict=True)


def test_every_loss_term_and_a_frozen_teacher(distiller):
    model, _ = distiller
    model.train()
    assert model.backbone.training and model.head.training
    assert not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())
    assert not any(p.requires_grad for p in model.teacher.parameters())

    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 64, 64, generator=gen)
    samples = [DataSample().set_gt_label(i % NUM_CLASSES) for i in range(4)]
    randomise_(model.backbone, seed=1)  # a student that differs
    losses = model.loss(x, samples)
    assert sorted(losses) == sorted(TERMS)
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value) and value > 0, name
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in model.named_parameters()
               if not n.startswith('teacher.')), 'a student weight is unused'
    assert not model.teacher.training  # still, after the step


def test_loss_formulas():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    # KL(p_t || p_s) of the softened distributions, times T^2
    T = 2.0
    p_t = torch.softmax(t / T, -1)
    expected = (p_t * (p_t.log() - torch.log_softmax(s / T, -1))).sum(-1)
    torch.testing.assert_close(soft_kd_loss(s, t, T), expected.mean() * T * T)
    assert soft_kd_loss(t, t, T).abs() < 1e-6
    # cosine similarities between channels over the tokens
    x = torch.randn(2, 3, 4, 5, generator=gen)
    rel = channel_relation(x)
    flat = x.flatten(2)
    assert rel.shape == (2, 3, 3)
    torch.testing.assert_close(
        rel[1, 0, 2], torch.cosine_similarity(flat[1, 0], flat[1, 2], dim=0))
    torch.testing.assert_close(torch.diagonal(rel, dim1=1, dim2=2),
                               torch.ones(2, 3))


def test_needs_a_same_shaped_teacher_for_imitation(tmp_path):
    mmpoolformer.register_all_modules()
    cfg = Config.fromfile(str(tiny_config(tmp_path)))
    cfg.model.teacher.backbone.depths = [1, 1, 1, 1]
    with pytest.raises(ValueError, match="student's depths and embed_dims"):
        build(cfg)
    cfg.model.loss_weights = dict(mixer_out=0., block_out=0., relation=0.,
                                  mixer_in=0.)
    cfg.model.init_student_from_teacher = False
    model = build(cfg)  # soft KD alone works with any teacher
    assert not model.imitates
    cfg.model.loss_weights = dict(hard=1.)
    with pytest.raises(ValueError, match=r"Unknown loss_weights \['hard'\]"):
        build(cfg)


def test_distill_train_then_deploy_the_plain_student(tmp_path):
    data_root = write_imagenet(tmp_path / 'data')
    teacher, _ = write_teacher(tmp_path)
    config = tiny_config(tmp_path, teacher_checkpoint=str(teacher))
    opts = cls_opts(Config.fromfile(str(config)), data_root)
    work_dir = tmp_path / 'work'
    steps = 6
    run_tool('train.py', config, '--work-dir', work_dir, '--cfg-options',
             *opts, *schedule_opts('epoch', steps))
    (run, ) = scalars(work_dir)
    logged = [e for e in run if 'loss' in e]
    assert len(logged) == steps
    for term in TERMS:  # every term logged at every step
        assert all(math.isfinite(e[term]) for e in logged), term
    losses = [e['loss'] for e in logged]
    print(f'\ndistillation losses {[round(v, 4) for v in losses]}')
    assert losses[-1] < losses[0], losses

    # the checkpoint is the student's: it loads strictly into the plain
    # RIFormer classifier config and deploys to the same outputs
    ckpt = work_dir / f'epoch_{steps}.pth'
    state = torch.load(ckpt, map_location='cpu', weights_only=False)[
        'state_dict']
    assert state and not any(k.startswith('teacher.') for k in state)
    plain = build(Config.fromfile(str(tiny_config(tmp_path, base=PLAIN))))
    plain.load_state_dict(state, strict=True)
    trained = build(Config.fromfile(str(config)))
    trained.load_state_dict(state, strict=True)  # the teacher stays its own
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    plain.eval()
    trained.eval()
    with torch.no_grad():
        student = trained(x, mode='tensor')
        before = plain(x, mode='tensor')
        plain.backbone.switch_to_deploy()
        after = plain(x, mode='tensor')
    assert torch.equal(before, student) or rel_error(before, student) < 1e-6
    assert all(type(b.token_mixer).__name__ == 'IdentityMixer'
               for s in plain.backbone.stages for b in s.blocks)
    err = rel_error(after, student)
    print(f'deployed student vs trained student: rel {err:.2e}')
    assert err <= 1e-5
