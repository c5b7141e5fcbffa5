"""model-index.yml and its metafiles describe exactly the configs in configs/
with numbers that hold: parameter counts of the models the configs build,
FLOPs that get_flops.py's counting reproduces, the published results and the
configs' checkpoint URLs; tools/model_zoo/gen_model_zoo.py renders, checks
and updates from them. Also the progress bars of the converter and of the
synthetic data sets: shown when asked for, silent in captured output."""
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from mmengine.config import Config
from test_configs import build, load

import mmpoolformer

from cli.synthetic_shapes import write_imagenet_shapes
from helpers import load_tool

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / 'tools' / 'model_zoo' / 'gen_model_zoo.py'
CONVERTER = ROOT / 'tools' / 'model_converters' / 'convert_checkpoint.py'
README = ROOT / 'README.md'
DOCS = ROOT / 'docs' / 'model_zoo.md'


zoo = load_tool('model_zoo/gen_model_zoo.py')
mmpoolformer.register_all_modules()
METAFILES = zoo.load_index()
MODELS = {m['Name']: m for m in zoo.models_of(METAFILES)}
# the model zoo's configs: those in the folders of configs/ (files directly
# in configs/ are short aliases of those)
CONFIGS = sorted(p.relative_to(ROOT).as_posix()
                 for p in (ROOT / 'configs').rglob('*.py')
                 if p.parent != ROOT / 'configs'
                 and p.parent.name != 'deploy')  # deploy configs: no models

# The published numbers (sail-sg/poolformer and sail-sg/metaformer READMEs,
# i.e. the papers); no other model has a published result.
TOP1 = 'Top 1 Accuracy'
PUBLISHED = {
    'poolformer_s12_in1k': {TOP1: 77.2},
    'poolformer_s24_in1k': {TOP1: 80.3},
    'poolformer_s36_in1k': {TOP1: 81.4},
    'poolformer_m36_in1k': {TOP1: 82.1},
    'poolformer_m48_in1k': {TOP1: 82.5},
    'retinanet_poolformer_s12_coco': {'box AP': 36.2},
    'retinanet_poolformer_s24_coco': {'box AP': 38.9},
    'retinanet_poolformer_s36_coco': {'box AP': 39.5},
    'mask_rcnn_poolformer_s12_coco': {'box AP': 37.3, 'mask AP': 34.6},
    'mask_rcnn_poolformer_s24_coco': {'box AP': 40.1, 'mask AP': 37.0},
    'mask_rcnn_poolformer_s36_coco': {'box AP': 41.0, 'mask AP': 37.7},
    'fpn_poolformer_s12_ade20k': {'mIoU': 37.2},
    'fpn_poolformer_s24_ade20k': {'mIoU': 40.3},
    'fpn_poolformer_s36_ade20k': {'mIoU': 42.0},
    'fpn_poolformer_m36_ade20k': {'mIoU': 42.4},
    'fpn_poolformer_m48_ade20k': {'mIoU': 42.7},
    'poolformerv2_s12_in1k': {TOP1: 78.0},
    'identityformer_s12_in1k': {TOP1: 74.6},
    'randformer_s12_in1k': {TOP1: 76.6},
    'convformer_s18_in1k': {TOP1: 83.0},
    'caformer_s18_in1k': {TOP1: 83.6},
    'convformer_s18_in1k_384': {TOP1: 84.4},
    'convformer_s18_in21k_ft_in1k': {TOP1: 83.7},
    'convformer_s18_in21k_ft_in1k_384': {TOP1: 85.0},
    'caformer_s18_in1k_384': {TOP1: 85.0},
    'caformer_s18_in21k_ft_in1k': {TOP1: 84.1},
    'caformer_s18_in21k_ft_in1k_384': {TOP1: 85.4},
    # RIFormer paper / mmpretrain's release of its weights (600 epochs with
    # the distillation paradigm)
    'riformer_s12_distill_in1k': {TOP1: 76.90},
    'riformer_s24_distill_in1k': {TOP1: 80.28},
    'riformer_s36_distill_in1k': {TOP1: 81.29},
    'riformer_m36_distill_in1k': {TOP1: 82.57},
    'riformer_m48_distill_in1k': {TOP1: 82.75},
}
# configs trained on another data set than their scope's usual one
TRAINING_DATA = {'convformer_s18_in21k': 'ImageNet-21k',
                 'caformer_s18_in21k': 'ImageNet-21k'}
TRAINING_DATA.update({
    f'mask2former_{backbone}_coco_panoptic': 'COCO-panoptic'
    for backbone in ('poolformer_s12', 'poolformer_s24', 'convformer_s18',
                     'caformer_s18')})
# the newer heads on our backbones (mmdet's / mmseg's recipes): no result
# is published for any of them
MODERN_HEADS = ('cascade_mask_rcnn_', 'dino_4scale_', 'mask2former_')


# ------------------------------------------------------------- the index
def test_every_config_is_listed_once_in_its_folder_metafile():
    listed = Counter(m['Config'] for m in MODELS.values())
    assert sum(listed.values()) == len(MODELS)  # names are unique too
    assert [c for c, n in listed.items() if n > 1] == []
    assert sorted(listed) == CONFIGS and len(CONFIGS) == 88
    # 4 backbones x 5: Cascade Mask R-CNN, DINO, Mask2Former (COCO instance,
    # COCO panoptic, ADE20K)
    assert len([n for n in listed if Path(n).stem.startswith(
        MODERN_HEADS)]) == 20
    assert zoo.unlisted_configs() == [] and zoo.zoo_configs() == CONFIGS
    # one metafile per config folder, each listing that folder's configs
    imported = {p.resolve() for p in METAFILES}
    assert imported == {p.resolve() for p in
                        (ROOT / 'configs').rglob('metafile.yml')}
    for path, meta in METAFILES.items():
        for model in meta['Models']:
            assert Path(model['Config']).parent == \
                path.resolve().parent.relative_to(ROOT), model['Name']
            assert model['Name'] == Path(model['Config']).stem


def test_metafiles_follow_the_schema_and_the_configs():
    collections = {c['Name']: c for meta in METAFILES.values()
                   for c in meta['Collections']}
    for collection in collections.values():
        assert collection['Paper']['Title']
        assert collection['Paper']['URL'].startswith('https://arxiv.org/')
        assert (ROOT / collection['Code']['URL']).is_file()
    for name, model in MODELS.items():
        assert model['In Collection'] in collections
        meta = model['Metadata']
        cfg = Config.fromfile(str(ROOT / model['Config']))
        shape, part = zoo.flops_setting(cfg)  # 224, or a classifier's crop
        assert meta['Training Data'] == TRAINING_DATA.get(name, {
            'mmpretrain': 'ImageNet-1k', 'mmdet': 'COCO',
            'mmseg': 'ADE20K'}[cfg.default_scope])
        assert meta['Architecture'] and meta['Parameters'] > 0
        assert meta['FLOPs'] > 0
        assert meta['FLOPs Input'] == 'x'.join(map(str, shape))
        assert meta['FLOPs Counted'] == part
        schedule = cfg.train_cfg.get('max_epochs') or cfg.train_cfg.max_iters
        assert meta.get('Epochs', meta.get('Iterations')) == schedule
        # the released weights of the model itself, or those its backbone
        # starts from: the URL the config names
        ckpt = cfg.get('checkpoint_file')
        if cfg.default_scope == 'mmpretrain':
            assert model.get('Weights') == ckpt, name
            assert 'Pretrained Backbone' not in meta
        else:
            assert meta.get('Pretrained Backbone') == ckpt, name
            assert cfg.model.backbone.init_cfg.checkpoint == ckpt
            assert 'Weights' not in model
        # published numbers only, with their source
        results = model.get('Results')
        if name in PUBLISHED:
            metrics = {k: v for r in results for k, v in r['Metrics'].items()}
            assert metrics == PUBLISHED[name], name
            assert all(r['Dataset'] == meta['Training Data'] and r['Task']
                       for r in results)
            assert re.match(r'https://github.com/sail-sg/(poolformer|'
                            r'metaformer)$|https://arxiv.org/abs/2304.05659$',
                            model['Results Source'])
        else:
            assert results is None and 'Results Source' not in model, name


def test_newer_heads_are_listed_as_their_configs_build_them():
    """Cascade Mask R-CNN, DINO and Mask2Former on our backbones: the head
    last in Architecture, the backbone's released weights, no published
    result; FLOPs of backbone+neck, or of the whole Mask2Former (no neck:
    its pixel decoder and transformer decoder are the head)."""
    heads = {'cascade_mask_rcnn_': 'Cascade Mask R-CNN',
             'dino_4scale_': 'DINO', 'mask2former_': 'Mask2Former'}
    names = [n for n in MODELS if n.startswith(MODERN_HEADS)]
    assert len(names) == 20
    for name in names:
        model = MODELS[name]
        meta = model['Metadata']
        head = next(h for prefix, h in heads.items()
                    if name.startswith(prefix))
        assert meta['Architecture'][-1] == head
        assert 'Results' not in model and name not in PUBLISHED
        assert meta['FLOPs Counted'] == (
            'whole model' if head == 'Mask2Former' else 'backbone+neck')
        assert meta['FLOPs Input'] == ('1x3x512x512' if name.endswith(
            '_ade20k') else '1x3x800x1280')


def test_metafiles_are_in_the_tools_layout():
    """--update-metadata rewrites them with dump_metafile: a hand edit in
    another layout would turn into a noisy diff there."""
    for path in METAFILES:
        text = path.read_text()
        assert text == zoo.dump_metafile(yaml.safe_load(text),
                                         zoo._header(text)), path
    assert (ROOT / 'model-index.yml').read_text().endswith(
        zoo.dump_metafile({'Import': [
            'configs/poolformer/metafile.yml', 'configs/metaformer/metafile.yml',
            'configs/ablations/metafile.yml']}))


# -------------------------------------------------------- measured numbers
def dino_fork_extra(model) -> int:
    """The metafiles count OpenMMLab's mmdet 3.3 DINO, whose decoder feeds
    its reference-point MLP the sine encoding of (x, y): 2 x 256 features.
    onedl's mmdet fork encodes (x, y, w, h), 4 x 256, and so has 256 x 512
    weights more in that MLP's first layer; 0 for every other model."""
    head = getattr(getattr(model, 'decoder', None), 'ref_point_head', None)
    if type(model).__name__ != 'DINO' or head is None:
        return 0
    first = head.layers[0]
    assert first.in_features in (2 * first.out_features,
                                 4 * first.out_features)
    return (first.in_features - 2 * first.out_features) * first.out_features


@pytest.mark.parametrize('name', sorted(MODELS))
def test_parameters_are_those_of_the_built_model(name):
    model = build(load(MODELS[name]['Config'].split('/', 1)[1]))
    meta = MODELS[name]['Metadata']
    assert sum(p.numel() for p in model.parameters()) == \
        meta['Parameters'] + dino_fork_extra(model)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == meta.get('Frozen Parameters', 0)


def test_flops_of_the_cheapest_configs_are_reproduced():
    cheapest = sorted(MODELS, key=lambda n: MODELS[n]['Metadata']['FLOPs'])
    get_flops = zoo._get_flops_tool()
    for name in cheapest[:3]:
        meta = MODELS[name]['Metadata']
        measured = zoo.measure(MODELS[name]['Config'], get_flops)
        assert measured == {k: meta[k] for k in zoo.MEASURED if k in meta}
    # the same count as get_flops.py's own whole-model row: the paper's ops
    # (the plain formulation) whatever formulation the config names
    meta = MODELS['poolformer_s12_in1k']['Metadata']
    for formulation in ('auto', 'lean'):
        cfg = load('poolformer/poolformer_s12_in1k.py', formulation=formulation)
        with torch.no_grad():
            rows = get_flops.get_flops(cfg, (224, 224))
        assert rows['whole model']['flops'] == meta['FLOPs'], formulation
        assert rows['whole model']['params'] == meta['Parameters']


def test_update_metadata_rewrites_only_the_measured_keys(tmp_path, capsys):
    name = 'poolformer_s12_in1k'
    entry = dict(MODELS[name], Metadata=dict(MODELS[name]['Metadata']))
    true = {k: entry['Metadata'][k] for k in zoo.MEASURED
            if k in entry['Metadata']}
    entry['Metadata'].update(Parameters=1, FLOPs=2)
    header = '# kept\n'
    collection = next(c for c in METAFILES[ROOT / 'configs/poolformer/metafile.yml']
                      ['Collections'])
    meta = tmp_path / 'metafile.yml'
    meta.write_text(zoo.dump_metafile(
        {'Collections': [collection], 'Models': [entry]}, header))
    index = tmp_path / 'model-index.yml'
    index.write_text('Import:\n- metafile.yml\n')

    changed, written = zoo.update_metadata(index)  # stdout is no terminal
    assert capsys.readouterr().out == ''  # so no progress bar
    assert list(changed) == [name] and written == [meta]
    assert changed[name][1] == true
    again = yaml.safe_load(meta.read_text())['Models'][0]
    assert again == MODELS[name]
    assert meta.read_text().startswith(header)
    # measured again: nothing changes; the forced bar counts one config
    assert zoo.update_metadata(index, only=[name], progress=True) == ({}, [])
    assert '1/1' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='no model named nope'):
        zoo.main(['--index', str(index), '--update-metadata',
                  '--only', 'nope'])


# ------------------------------------------------------------------ tables
def test_readme_and_docs_tables_are_up_to_date(capsys):
    for path in (README, DOCS):
        if not zoo.has_markers(path.read_text()):
            pytest.skip(f'{path.name} has no {zoo.START} / {zoo.END} '
                        'markers yet')
    # no FILE: both, the summary in README.md and every config in the docs
    assert zoo.main(['--check']) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert 'README.md: model-zoo tables up to date' in out
    assert 'docs/model_zoo.md: model-zoo tables up to date' in out


def test_tables_are_written_checked_and_printed(tmp_path, capsys):
    block = zoo.render()
    assert zoo.main(['--print']) == 0
    assert capsys.readouterr().out == block
    # every model once, with its config link; published numbers; weights
    for name, model in MODELS.items():
        assert block.count(f'[{name}]({model["Config"]})') == 1
    assert '| 77.2 |' in block and '| 37.3 | 34.6 |' in block
    assert '(https://github.com/sail-sg/poolformer/releases/download/v1.0/' \
        'poolformer_m48.pth.tar)' in block
    assert '33.05 (21.13 frozen)' in block  # the global random matrices
    for line in ('FLOPs: whole model at 1×3×224×224.',
                 'FLOPs: backbone+neck at 1×3×800×1280.',
                 'FLOPs: whole model at 1×3×512×512.',
                 # COCO tables with Mask2Former: each row names its part
                 'FLOPs: backbone+neck at 1×3×800×1280; whole model at '
                 '1×3×800×1280.',
                 '**PoolFormer: COCO panoptic segmentation**'):
        assert line in block
    for name in ('cascade_mask_rcnn_poolformer_s12_coco_3x',
                 'mask2former_poolformer_s12_coco_instance'):
        meta = MODELS[name]['Metadata']
        assert f'| {meta["FLOPs"] / 1e9:.2f} ({meta["FLOPs Counted"]}) |' \
            in block
    assert '| 1.82 |' in block  # tables of one part: the number alone
    # links relative to the file's folder
    docs_block = zoo.render(base=ROOT / 'docs')
    for name, model in MODELS.items():
        assert f'[{name}](../{model["Config"]})' in docs_block

    doc = tmp_path / 'doc.md'
    before, after = '# Title\n\nintro\n\n', '\nafter\n'
    doc.write_text(f'{before}{zoo.START}\nstale\n{zoo.END}{after}')
    assert zoo.main([str(doc), '--check']) == 1
    out = capsys.readouterr().out
    assert '-stale' in out and '+| config |' in out and 'out of date' in out
    assert 'stale' in doc.read_text()  # --check never writes

    assert zoo.main([str(doc)]) == 0
    local = zoo.render(base=tmp_path)
    assert doc.read_text() == f'{before}{zoo.START}\n{local}{zoo.END}{after}'
    assert zoo.main([str(doc), '--check']) == 0
    assert 'up to date' in capsys.readouterr().out

    doc.write_text(f'markers quoted in a line do not count: {zoo.START}\n')
    with pytest.raises(SystemExit, match='gen_model_zoo.py: error: .* needs '
                       'one <!-- model-zoo:start'):
        zoo.main([str(doc), '--check'])


def test_summary_has_one_row_per_family_and_task(tmp_path, capsys):
    summary = zoo.render_summary()
    assert zoo.main(['--print', '--summary']) == 0
    assert capsys.readouterr().out == summary
    rows = [line for line in summary.splitlines()
            if line.startswith('| ') and not line.startswith('| family')]
    assert 10 <= len(rows) <= 20
    # every config counted once
    assert sum(int(row.split(' | ')[3]) for row in rows) == len(MODELS)
    cells = {tuple(row.split(' | ')[:2]): row for row in rows}
    poolformer = cells['| PoolFormer', 'classification (ImageNet-1k)']
    assert 'S12, S24, S36, M36, M48' in poolformer
    assert 'top-1 77.2–82.5' in poolformer
    assert '11.9–73.5' in poolformer  # params (M)
    assert '[configs/poolformer/](configs/poolformer/)' in poolformer
    detection = next(r for k, r in cells.items()
                     if k[0] == '| PoolFormer' and k[1].startswith('detection'))
    assert 'RetinaNet, Mask R-CNN, Cascade Mask R-CNN, DINO, Mask2Former' \
        in detection
    assert 'box AP 36.2–41.0; mask AP 34.6–37.7' in detection
    panoptic = cells['| PoolFormer',
                     'panoptic segmentation (COCO-panoptic): Mask2Former']
    assert '| S12, S24 | 2 |' in panoptic and panoptic.endswith(
        '| - | [configs/poolformer/](configs/poolformer/) |')
    # trainable parameters: not the frozen teacher of a distillation config
    riformer = next(r for k, r in cells.items() if k[0] == '| RIFormer')
    assert '11.9–73.5' in riformer
    assert '(docs/model_zoo.md)' in summary

    # links relative to the file's folder
    below = zoo.render_summary(base=ROOT / 'docs')
    assert '[configs/poolformer/](../configs/poolformer/)' in below
    assert '(model_zoo.md)' in below

    # written, checked with --summary
    doc = tmp_path / 'README.md'
    doc.write_text(f'# x\n{zoo.START}\n{zoo.END}\n')
    assert zoo.main([str(doc), '--summary']) == 0
    assert zoo.render_summary(base=tmp_path) in doc.read_text()
    assert zoo.main([str(doc), '--summary', '--check']) == 0
    assert zoo.main([str(doc), '--check']) == 1  # the full tables differ
    assert f'gen_model_zoo.py {doc}' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        zoo.main(['--summary'])  # goes with FILE or --print


def test_no_file_writes_and_checks_both(tmp_path, monkeypatch, capsys):
    readme, docs = tmp_path / 'README.md', tmp_path / 'docs' / 'model_zoo.md'
    docs.parent.mkdir()
    for path in (readme, docs):
        path.write_text(f'# x\n{zoo.START}\n{zoo.END}\n')
    monkeypatch.setattr(zoo, 'README', readme)
    monkeypatch.setattr(zoo, 'DOCS', docs)
    assert zoo.main(['--check']) == 1  # both stale
    assert zoo.main([]) == 0
    assert zoo.render_summary(base=tmp_path) in readme.read_text()
    assert zoo.render(base=docs.parent) in docs.read_text()
    assert '(docs/model_zoo.md)' in readme.read_text()
    capsys.readouterr()
    assert zoo.main(['--check']) == 0
    assert capsys.readouterr().out.count('up to date') == 2
    docs.write_text(docs.read_text().replace('| 77.2 |', '| 77.3 |'))
    assert zoo.main(['--check']) == 1  # one stale file is enough


def test_top_level_aliases_are_no_entries(tmp_path, monkeypatch):
    configs = tmp_path / 'configs'
    (configs / 'poolformer').mkdir(parents=True)
    (configs / 'alias.py').write_text("_base_ = './poolformer/a.py'\n")
    (configs / 'poolformer' / 'a.py').write_text('')
    monkeypatch.setattr(zoo, 'ROOT', tmp_path)
    assert zoo.zoo_configs() == ['configs/poolformer/a.py']


# ----------------------------------------------------------- progress bars
def test_synthetic_data_progress_bar(tmp_path, capsys):
    write_imagenet_shapes(tmp_path / 'a', 1, 1, image_size=16)
    assert capsys.readouterr().out == ''  # not a terminal: no bar
    write_imagenet_shapes(tmp_path / 'b', 1, 1, image_size=16, progress=True)
    assert '6/6' in capsys.readouterr().out  # 2 images x 3 classes
    files = sorted(p.relative_to(tmp_path / 'a')
                   for p in (tmp_path / 'a').rglob('*') if p.is_file())
    assert len(files) == 8
    for f in files:  # the bar does not change what is written
        assert (tmp_path / 'a' / f).read_bytes() == \
            (tmp_path / 'b' / f).read_bytes()


def test_converter_progress_bar(tmp_path, capsys):
    converter = load_tool('model_converters/convert_checkpoint.py')
    state = mmpoolformer.models.PoolFormer('s12').state_dict()
    torch.save(state, tmp_path / 'src.pth')
    args = [str(tmp_path / 'src.pth'), '--arch', 'poolformer_s12']
    converter.main([*args[:1], str(tmp_path / 'a.pth'), *args[1:]])
    assert 'task/s' not in capsys.readouterr().out  # not a terminal: no bar
    converter.main([*args[:1], str(tmp_path / 'b.pth'), *args[1:],
                    '--progress'])
    assert f'{len(state)}/{len(state)}' in capsys.readouterr().out
    a, b = torch.load(tmp_path / 'a.pth'), torch.load(tmp_path / 'b.pth')
    assert a['state_dict'].keys() == b['state_dict'].keys()
