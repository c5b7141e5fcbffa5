"""ONNX export (mmpoolformer.deployment, tools/deployment/export_onnx.py):
onnxruntime computes what PyTorch computes on several batch and spatial
sizes (the axes really are dynamic), in plain and deploy mode; the graph has
no GroupNorm operator; the user's model is left alone; the tool runs end to
end on a tiny classifier config and stops bad input with one message."""
import copy
from pathlib import Path

import onnx
import pytest
import torch
import torch.nn as nn

from mmpoolformer.deployment import ExportGroupNorm, export_onnx, ort_session, run_session, verify
from mmpoolformer.models import PoolFormer

from helpers import load_tool, randomise_, tool_error

ROOT = Path(__file__).resolve().parents[1]
ARCH = dict(depths=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64])
TOL = 1e-4
# two batch sizes, two spatial sizes (one not a multiple of 32)
SIZES = [(1, 3, 64, 64), (3, 3, 97, 130)]


tool = load_tool('deployment/export_onnx.py')


def fails(*argv):
    return tool_error(tool, *argv, prog='export_onnx.py')


def op_types(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope='module')
def tiny():
    """Random non-trivial weights (layer scales and norm affines too), the
    default formulation, as a user's model comes."""
    return randomise_(PoolFormer(arch=ARCH)).eval()


@pytest.fixture(scope='module', params=['plain', 'deploy'])
def exported(request, tiny, tmp_path_factory):
    """(mode, ONNX path) of the tiny backbone; deploy mode folds a copy."""
    model = tiny
    if request.param == 'deploy':
        if not hasattr(tiny, 'switch_to_deploy'):
            pytest.skip('PoolFormer has no switch_to_deploy() yet')
        model = copy.deepcopy(tiny)
        model.switch_to_deploy()
    path = tmp_path_factory.mktemp('onnx') / f'{request.param}.onnx'
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, str(path), input_shape=(1, 3, 64, 64))
    # the model itself is untouched: formulation, norms and weights
    assert model.formulation == 'auto'
    assert type(model.norm3).__name__ == 'GroupNorm1'
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    return request.param, path


def test_onnxruntime_matches_pytorch_on_dynamic_shapes(exported, tiny):
    mode, path = exported
    graph = onnx.load(str(path)).graph
    dims = [d.dim_param or d.dim_value
            for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 'height', 'width']
    assert [o.name for o in graph.output] == [f'output{i}' for i in range(4)]
    # the reference is the unfolded model in its default formulation
    diffs = verify(tiny, path, SIZES)
    assert set(diffs) == set(SIZES)
    assert all(d <= TOL for d in diffs.values()), (mode, diffs)
    outs = run_session(ort_session(str(path)), torch.zeros(SIZES[1]))
    assert [tuple(o.shape) for o in outs] == [
        (3, 16, 24, 32), (3, 32, 12, 16), (3, 48, 6, 8), (3, 64, 3, 4)]


def test_graph_has_no_group_norm_operator(exported):
    ops = op_types(exported[1])
    assert 'GroupNormalization' not in ops
    # nor the Reshape + InstanceNormalization that nn.GroupNorm exports as
    assert 'InstanceNormalization' not in ops
    assert {'ReduceMean', 'Sqrt', 'Div'} <= ops


def test_torchscript_exporter_fallback_gives_the_same(tiny, tmp_path):
    """The exporter export_onnx falls back to if torch.export fails."""
    path = tmp_path / 'torchscript.onnx'
    assert export_onnx(tiny, str(path), (1, 3, 64, 64),
                       dynamo=False) == 'torchscript'
    assert not {'GroupNormalization', 'InstanceNormalization'} & \
        op_types(path)
    diffs = verify(tiny, path, SIZES)
    assert all(d <= TOL for d in diffs.values()), diffs


@pytest.mark.parametrize('groups', [1, 4])
@pytest.mark.parametrize('affine', [True, False])
def test_export_group_norm_computes_group_norm(groups, affine):
    norm = nn.GroupNorm(groups, 8, eps=1e-5, affine=affine)
    if affine:
        randomise_(norm)
    x = 3 + 2 * torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(ExportGroupNorm(norm)(x), norm(x),
                               rtol=0, atol=1e-5)


def test_mmpretrain_poolformer_exports(tmp_path):
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    model = randomise_(MMPretrainPoolFormer(
        dict(layers=[1, 1, 1, 1], embed_dims=[16, 32, 48, 64]),
        out_indices=(0, 2, 4, 6)))
    model.eval()  # its train() returns None: eval() cannot be chained
    path = tmp_path / 'mmpretrain.onnx'
    export_onnx(model, str(path), input_shape=(1, 3, 64, 64))
    assert 'GroupNormalization' not in op_types(path)
    diffs = verify(model, path, SIZES)
    assert all(d <= TOL for d in diffs.values()), diffs


def tiny_classifier_config(tmp_path):
    config = tmp_path / 'tiny_cls.py'
    config.write_text(
        f"_base_ = [{str(ROOT / 'configs' / 'poolformer' / 'poolformer_s12_in1k.py')!r}]\n"
        f"model = dict(backbone=dict(arch=dict(_delete_=True, **{ARCH!r})),\n"
        "             head=dict(in_channels=64, num_classes=10))\n")
    return config


def test_cli_exports_a_tiny_classifier(tmp_path):
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    config = tiny_classifier_config(tmp_path)
    model = randomise_(MODELS.build(Config.fromfile(str(config)).model))
    checkpoint = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'out' / 'tiny.onnx'
    deploy = ['--deploy'] if hasattr(model.backbone, 'switch_to_deploy') \
        else []
    result = tool.main([str(config), '--checkpoint', str(checkpoint),
                        '--out', str(out), '--shape', '64', '--runs', '2',
                        '--warmup', '0', '--verify-shapes', '1x64x64',
                        '2x96x80', *deploy])
    assert out.is_file() and result['out'] == str(out)
    assert 'GroupNormalization' not in op_types(out)
    assert all(d <= TOL for d in result['diffs'].values()), result['diffs']
    assert set(result['timings']) == {'pytorch', 'onnxruntime'}
    # the graph computes the classifier's logits for any batch and size
    model.eval()
    x = torch.randn(2, 3, 96, 80)
    logits, = run_session(ort_session(str(out)), x)
    with torch.no_grad():
        expected = model.head(model.extract_feat(x))
    assert logits.shape == (2, 10)
    torch.testing.assert_close(logits, expected, rtol=0, atol=TOL)

    # a checkpoint of another arch: one message naming what does not fit
    other = tmp_path / 'other.py'
    other.write_text(config.read_text().replace('64]', '72]').replace(
        'in_channels=64', 'in_channels=72'))
    message = fails(other, '--checkpoint', checkpoint, '--out',
                    tmp_path / 'x.onnx')
    assert f'checkpoint {checkpoint} does not fit the model of {other}' \
        in message
    assert 'shape mismatches' in message and 'backbone.' in message
    assert not (tmp_path / 'x.onnx').exists()


def test_cli_bad_input(tmp_path):
    assert 'config file nowhere.py does not exist' in fails('nowhere.py')
    config = tiny_classifier_config(tmp_path)
    assert 'checkpoint missing.pth does not exist' in fails(
        config, '--checkpoint', 'missing.pth')
    message = fails('--arch', 'NoFormer/s12')
    assert "unknown family 'NoFormer'" in message and 'PoolFormer' in message
    message = fails('--arch', 'PoolFormer/s99')
    assert "unknown PoolFormer arch 's99'" in message and 's12' in message
    message = fails(ROOT / 'configs' / 'poolformer' / 'retinanet_poolformer_s12_coco.py')
    assert 'is a detection config' in message and '--backbone-only' in message
    assert 'exactly one' in fails()
    assert 'exactly one' in fails(config, '--arch', 'PoolFormer/s12')
    tiny_backbone = tmp_path / 'tiny_backbone.pth'
    torch.save(PoolFormer(arch=ARCH).state_dict(), tiny_backbone)
    message = fails('--arch', 'PoolFormer/s12', '--checkpoint', tiny_backbone)
    assert "does not fit the expected PoolFormer arch 's12'" in message
    bad = tmp_path / 'bad.pth'
    bad.write_text('not a checkpoint')
    assert f'cannot read checkpoint {bad}' in fails(config, '--checkpoint',
                                                    bad)
    with pytest.raises(FileNotFoundError, match='does not exist'):
        ort_session(str(tmp_path / 'missing.onnx'))



def test_cli_replaces_a_file_only_with_force_and_after_verification(
        tmp_path):
    """An existing --out (here not even an ONNX file) is refused without
    --force; with --force, an export failing its check leaves it as it was;
    one passing the check replaces it. No temporary file stays behind."""
    config = tiny_classifier_config(tmp_path)
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'my notes, saved under an unlucky name')
    args = [config, '--out', out, '--shape', '64', '--runs', '0',
            '--verify-shapes', '1x64x64']
    assert f'--out {out} exists; pass --force' in fails(*args)
    message = fails(*args, '--force', '--atol', '-1')
    assert 'differs from PyTorch by more than --atol -1' in message
    assert f'{out} is left as it was' in message
    assert out.read_bytes() == b'my notes, saved under an unlucky name'
    result = tool.main([str(a) for a in args] + ['--force'])
    assert result['out'] == str(out) and 'Conv' in op_types(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'model.onnx', 'tiny_cls.py']
