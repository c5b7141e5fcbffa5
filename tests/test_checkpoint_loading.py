"""init_cfg=Pretrained loads every v1 layout, or names what does not fit.
(The MetaFormer-baseline layouts: test_convert_checkpoint.py.)"""
import logging

import pytest
import torch

from mmpoolformer.checkpoint import CheckpointMismatchError, detect_format
from mmpoolformer.models import PoolFormer

from helpers import official_layout, randomise_


@pytest.fixture(scope='module')
def mmpretrain_s12():
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    return randomise_(MMPretrainPoolFormer('s12', out_indices=(0, 2, 4, 6)))


def load(tmp_path, checkpoint, arch='s12', out_indices=(0, 1, 2, 3), **init):
    path = tmp_path / 'ckpt.pth'
    torch.save(checkpoint, path)
    model = PoolFormer(arch, out_indices=out_indices,
                       init_cfg=dict(type='Pretrained', checkpoint=str(path), **init))
    model.init_weights()
    return model


def test_mmpretrain_checkpoint_with_prefix(tmp_path, mmpretrain_s12):
    state = {f'backbone.{k}': v for k, v in mmpretrain_s12.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(1000, 512)
    model = load(tmp_path, {'state_dict': state, 'meta': {}}, prefix='backbone.')
    torch.testing.assert_close(model.stages[2].blocks[5].mlp.fc2.weight,
                               mmpretrain_s12.network[4][5].mlp.fc2.weight)
    torch.testing.assert_close(model.norm3.weight, mmpretrain_s12.norm6.weight)
    torch.testing.assert_close(model.stages[1].downsample.conv.bias,
                               mmpretrain_s12.network[1].proj.bias)


def test_official_checkpoint(tmp_path, mmpretrain_s12):
    state = official_layout(mmpretrain_s12.state_dict())
    assert detect_format(state) == 'official'
    model = load(tmp_path, state)
    torch.testing.assert_close(model.norm3.bias, state['norm.bias'])
    torch.testing.assert_close(model.stages[0].blocks[1].layer_scale2.scale,
                               state['network.0.1.layer_scale_2'])
    torch.testing.assert_close(model.stem.conv.weight, state['patch_embed.proj.weight'])


def test_keys_of_unbuilt_stages_are_skipped_and_reported(tmp_path,
                                                          mmpretrain_s12):
    """out_indices=(1, 2): no stage 3 is built (no Parameter without a
    gradient), its keys and the unreturned output norms' are skipped, and
    the log says so."""
    from mmengine.logging import MMLogger
    state = official_layout(mmpretrain_s12.state_dict())
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model = load(tmp_path, state, out_indices=(1, 2))
    finally:
        logger.removeHandler(handler)
    logged = '\n'.join(logged)
    assert not hasattr(model, 'norm3') and len(model.stages) == 3
    torch.testing.assert_close(model.stages[2].blocks[5].mlp.fc1.weight,
                               state['network.4.5.mlp.fc1.weight'])
    assert "tensors of stages [3], which the model does not build" in logged
    assert "output norms of stages not returned: ['norm3.weight'" in logged


def test_timm_and_own_checkpoints(tmp_path):
    import timm
    ref = randomise_(timm.create_model('poolformer_s12'))
    model = load(tmp_path, ref.state_dict())
    torch.testing.assert_close(model.stages[3].blocks[1].norm2.weight,
                               ref.stages[3].blocks[1].norm2.weight)
    own = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    again = load(tmp_path, {'state_dict': own}, prefix='backbone.')
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)


def test_checkpoint_of_another_arch_is_refused(tmp_path, mmpretrain_s12):
    state = official_layout(mmpretrain_s12.state_dict())
    with pytest.raises(CheckpointMismatchError) as err:
        load(tmp_path, state, arch='s24')
    message = str(err.value)
    assert 'official format' in message and "PoolFormer arch 's24'" in message
    assert 'depths [4, 4, 12, 4]' in message
    assert 'missing keys' in message and 'stages.0.blocks.2.norm1.weight' in message
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        load(tmp_path, state, arch='m36')


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match='Unrecognised checkpoint layout'):
        load(tmp_path, {'conv1.weight': torch.zeros(1)})


@pytest.fixture(scope='module')
def mmpretrain_riformer():
    """State dicts of one random mmpretrain RIFormer-S12, before and after
    ``switch_to_deploy``."""
    from mmpretrain.models import RIFormer as MMPretrainRIFormer
    ref = randomise_(MMPretrainRIFormer('s12', out_indices=(0, 2, 4, 6)))
    ref.eval()
    train_state = {f'backbone.{k}': v.clone() for k, v in ref.state_dict().items()}
    ref.switch_to_deploy()
    return train_state, {f'backbone.{k}': v for k, v in ref.state_dict().items()}


def load_riformer(tmp_path, state, deploy):
    from mmpoolformer.models import RIFormer
    path = tmp_path / 'riformer.pth'
    torch.save({'state_dict': state}, path)
    model = RIFormer('s12', deploy=deploy, init_cfg=dict(
        type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    return model


def test_riformer_checkpoints_need_the_matching_mode(tmp_path, mmpretrain_riformer):
    train_state, deploy_state = mmpretrain_riformer
    model = load_riformer(tmp_path, deploy_state, deploy=True)
    torch.testing.assert_close(model.stages[2].blocks[3].norm1.bias,
                               deploy_state['backbone.network.4.3.norm_reparam.bias'])
    model = load_riformer(tmp_path, train_state, deploy=False)
    torch.testing.assert_close(model.stages[2].blocks[3].token_mixer.affine.weight,
                               train_state['backbone.network.4.3.token_mixer.affine.weight'])

    with pytest.raises(CheckpointMismatchError) as err:
        load_riformer(tmp_path, deploy_state, deploy=False)
    message = str(err.value)
    assert 'deployed RIFormer' in message and 'deploy=True' in message
    assert 'switch_to_deploy()' in message and 'token_mixer.affine' in message
    with pytest.raises(CheckpointMismatchError) as err:
        load_riformer(tmp_path, train_state, deploy=True)
    message = str(err.value)
    assert 'training-time RIFormer' in message and 'deploy=False' in message
    assert 'deploy=True)' in message  # the expected arch says it is deployed


def test_no_riformer_hint_for_other_mismatches(tmp_path, mmpretrain_riformer):
    from mmpoolformer.models import RIFormer
    torch.save({'state_dict': mmpretrain_riformer[1]}, tmp_path / 'r.pth')
    model = RIFormer('s24', init_cfg=dict(type='Pretrained',
                                          checkpoint=str(tmp_path / 'r.pth')))
    with pytest.raises(CheckpointMismatchError) as err:
        model.init_weights()
    message = str(err.value)
    assert "RIFormer arch 's24'" in message and 'missing keys' in message
    assert 'switch_to_deploy' not in message  # blocks missing: not the mode


def test_classifier_head_is_ignored_by_backbone_init_cfg(tmp_path, monkeypatch):
    """A whole classifier (what the converter writes by default) loads into a
    backbone through init_cfg, with or without prefix: the head keys are
    skipped, said at INFO level, and are no mismatch."""
    from mmpoolformer.checkpoint import loading
    logged = []
    monkeypatch.setattr(loading, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw)))
    own = PoolFormer('s12', out_indices=(3, ))
    state = {f'backbone.{k}': v for k, v in own.state_dict().items()}
    state['head.fc.weight'], state['head.fc.bias'] = torch.zeros(7, 512), torch.zeros(7)
    for init in ({}, {'prefix': 'backbone.'}):
        model = load(tmp_path, {'state_dict': state}, **init)
        torch.testing.assert_close(model.stages[3].blocks[1].mlp.fc2.weight,
                                   own.stages[3].blocks[1].mlp.fc2.weight)
        message, kwargs = logged.pop()
        assert 'ignored the 2 tensors of the classifier head' in message
        assert kwargs.get('level') is None  # INFO: nothing is wrong


def test_a_missing_head_is_named_with_the_converter_flag(monkeypatch):
    """MetaFormerClsHead says when a checkpoint loaded into its classifier has
    no head; mmengine / torch 2 hand it its own keys only, older torch the
    whole state dict: both are recognised."""
    import logging

    from mmpoolformer.checkpoint import loading
    from mmpoolformer.models.heads import MetaFormerClsHead
    logged = []
    monkeypatch.setattr(loading, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw)))
    head = MetaFormerClsHead(num_classes=3, in_channels=8)
    whole = {f'head.{k}': v for k, v in head.state_dict().items()}
    backbone = {'backbone.stem.conv.weight': torch.zeros(1)}
    for state_dict in ({}, backbone):  # filtered, or whole without a head
        assert loading.warn_if_head_missing(head, state_dict, 'head.')
        message, kwargs = logged.pop()
        assert kwargs['level'] == logging.WARNING
        for text in ('no classifier head', 'MetaFormerClsHead keeps its random '
                     'initialisation', 'convert_checkpoint.py --backbone-only',
                     'init_cfg'):
            assert text in message, (text, message)
    assert not loading.warn_if_head_missing(head, {**backbone, **whole}, 'head.')
    assert not logged
    # through nn.Module loading, as mmengine's load_checkpoint does
    classifier = torch.nn.ModuleDict(dict(head=head))
    classifier.load_state_dict(backbone, strict=False)
    assert len(logged) == 1
    classifier.load_state_dict(whole)
    assert len(logged) == 1
