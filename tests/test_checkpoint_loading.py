"""init_cfg=Pretrained loads every v1 layout, or names what does not fit."""
import re

import pytest
import torch

from mmpoolformer.checkpoint import CheckpointMismatchError, detect_format
from mmpoolformer.models import PoolFormer

from helpers import randomise_


@pytest.fixture(scope='module')
def mmpretrain_s12():
    from mmpretrain.models import PoolFormer as MMPretrainPoolFormer
    return randomise_(MMPretrainPoolFormer('s12', out_indices=(0, 2, 4, 6)))


def official_layout(mmpretrain_state):
    """sail-sg layout: mmpretrain names, a final ``norm`` and a ``head``."""
    out = {k: v for k, v in mmpretrain_state.items()
           if not re.match(r'norm[024]\.', k)}
    for suffix in ('weight', 'bias'):
        out[f'norm.{suffix}'] = out.pop(f'norm6.{suffix}')
    out['head.weight'], out['head.bias'] = torch.zeros(1000, 512), torch.zeros(1000)
    return out


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


def test_output_norms_of_unreturned_stages_are_skipped(tmp_path, mmpretrain_s12):
    state = official_layout(mmpretrain_s12.state_dict())
    model = load(tmp_path, state, out_indices=(1, 2))
    assert not hasattr(model, 'norm3')
    torch.testing.assert_close(model.stages[3].blocks[1].mlp.fc1.weight,
                               state['network.6.1.mlp.fc1.weight'])


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
    assert 'official format' in message and 'depths [4, 4, 12, 4]' in message
    assert 'missing keys' in message and 'stages.0.blocks.2.norm1.weight' in message
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        load(tmp_path, state, arch='m36')


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match='Unrecognised checkpoint layout'):
        load(tmp_path, {'conv1.weight': torch.zeros(1)})
