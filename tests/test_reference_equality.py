"""Our PoolFormer equals mmpretrain's and timm's, weights converted by key.

Both references are randomly initialised, then every parameter (layer scales
and norm affines included) is set to a non-trivial value, so that an error in
any branch of any block shows in the outputs. Every formulation is checked:
the plain one computes the references' operations in their order (equal to
1e-5 absolute, in practice bit-identical); the lean and fused ones reorder
fp32 arithmetic, so they are held to a relative (2-norm) tolerance: 1e-5
against mmpretrain, 5e-5 against timm's deeper randomised S18/v2 models
where the two implementations' own roundings add up (tests/test_models.py
holds them to 1e-5 against our plain formulation, and to 1e-10 in float64;
'auto' is one of them).
"""
import pytest
import torch

from mmpoolformer.checkpoint import convert_to_mmpoolformer
from mmpoolformer.models import PoolFormer

from helpers import randomise_, rel_error

TOL = 1e-5
FORMULATIONS = pytest.mark.parametrize('formulation',
                                       ['plain', 'lean', 'fused'])
X = torch.randn(2, 3, 97, 131, generator=torch.Generator().manual_seed(1))


def stage_outputs(model, x):
    """Raw stage outputs (before the output norms) and the returned tuple.
    The hooks fire in every formulation (each keeps the stages' NCHW
    boundaries)."""
    raw = []
    hooks = [s.register_forward_hook(lambda m, i, o: raw.append(o))
             for s in model.stages]
    with torch.no_grad():
        outs = model(x)
    for h in hooks:
        h.remove()
    return raw, outs


@FORMULATIONS
@pytest.mark.parametrize('arch', ['s12', 'm36'])
def test_equals_mmpretrain(arch, formulation):
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    ref = randomise_(MMPretrainPoolFormer(arch, out_indices=(0, 2, 4, 6)))
    ref.eval()  # mmpretrain's train() override returns None
    fmt, state_dict = convert_to_mmpoolformer(
        {f'backbone.{k}': v for k, v in ref.state_dict().items()})
    assert fmt == 'mmpretrain'
    ours = PoolFormer(arch).eval()
    ours.load_state_dict(state_dict, strict=True)
    ours.formulation = formulation
    with torch.no_grad():
        expected = ref(X)
    _, outs = stage_outputs(ours, X)
    assert_stages_equal(f'mmpretrain {arch}', outs, expected, formulation)


def assert_stages_equal(label, ours, expected, formulation='plain',
                        rel_tol=TOL):
    assert len(ours) == len(expected) == 4
    for i, (a, b) in enumerate(zip(ours, expected)):
        assert a.shape == b.shape
        diff, rel = (a - b).abs().max().item(), rel_error(a, b)
        print(f'{label} stage {i}: max abs diff {diff:.2e}, rel {rel:.2e}')
        assert (diff <= TOL) if formulation == 'plain' else (rel <= rel_tol)


@pytest.mark.parametrize('timm_name, family, arch', [
    ('poolformer_s12', 'PoolFormer', 's12'),
    ('poolformer_m36', 'PoolFormer', 'm36'),
    ('poolformerv2_s12', 'PoolFormerV2', 's12'),
    ('convformer_s18', 'ConvFormer', 's18'),
    ('caformer_s18', 'CAFormer', 's18'),
])
@FORMULATIONS
def test_equals_timm_features_only(timm_name, family, arch, formulation):
    import timm

    from mmpoolformer import models
    full = randomise_(timm.create_model(timm_name)).eval()
    fmt, state_dict = convert_to_mmpoolformer(full.state_dict())
    assert fmt == 'timm'
    ours = getattr(models, family)(arch, formulation=formulation).eval()
    missing, unexpected = ours.load_state_dict(state_dict, strict=False)
    # timm has no output norms on the feature maps; everything else is shared
    assert not unexpected and all(k.startswith('norm') for k in missing)

    features = timm.create_model(timm_name, features_only=True).eval()
    # features_only flattens ``stages.i`` into ``stages_i``
    features.load_state_dict({k.replace('stages.', 'stages_'): v
                              for k, v in full.state_dict().items()
                              if not k.startswith('head.')})
    with torch.no_grad():
        expected = features(X)
    raw, outs = stage_outputs(ours, X)
    assert_stages_equal(f'timm {timm_name}', raw, expected, formulation,
                        5e-5)
    # each returned tensor is that stage map through its output norm
    with torch.no_grad():
        normed = [getattr(ours, f'norm{i}')(b) for i, b in enumerate(expected)]
    assert_stages_equal(f'timm {timm_name} + output norms', outs, normed,
                        formulation, 5e-5)


@FORMULATIONS
@pytest.mark.parametrize('deploy', [False, True])
def test_riformer_equals_mmpretrain(deploy, formulation):
    from mmpretrain.models import RIFormer as MMPretrainRIFormer

    from mmpoolformer.models import RIFormer
    ref = randomise_(MMPretrainRIFormer('s12', out_indices=(0, 2, 4, 6)))
    ref.eval()
    if deploy:
        ref.switch_to_deploy()
    fmt, state_dict = convert_to_mmpoolformer(
        {f'backbone.{k}': v for k, v in ref.state_dict().items()})
    assert fmt == 'mmpretrain'
    ours = RIFormer('s12', deploy=deploy, formulation=formulation).eval()
    ours.load_state_dict(state_dict, strict=True)
    with torch.no_grad():
        expected = ref(X)
    _, outs = stage_outputs(ours, X)
    assert_stages_equal(f'mmpretrain RIFormer deploy={deploy}', outs,
                        expected, formulation)


def test_riformer_switch_to_deploy_keeps_outputs():
    from mmpoolformer.models import RIFormer
    from mmpoolformer.models.backbones.token_mixers import IdentityMixer
    model = randomise_(RIFormer('s12')).eval()
    with torch.no_grad():
        before = model(X)
        model.switch_to_deploy()
        after = model(X)
    assert all(type(b.token_mixer) is IdentityMixer
               for s in model.stages for b in s.blocks)
    assert_stages_equal('RIFormer switch_to_deploy', after, before, 'auto')
