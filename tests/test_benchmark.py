"""The benchmark runs end to end on a small input and reports what it
promises (speed is never asserted here: it lives in the benchmark only)."""
import json

import pytest

from mmpoolformer.benchmark import PeakLiveBytes
from mmpoolformer.utils.errors import ToolError

from helpers import load_tool


benchmark = load_tool('analysis_tools/benchmark.py')


def test_backbone_rows_agree_and_are_reported(tmp_path):
    out = tmp_path / 'bench.json'
    benchmark.main(['--batch', '1', '--size', '64', '--reps', '1',
                      '--warmup', '0', '--json', str(out)])
    results = json.loads(out.read_text())
    rows = results['rows']
    assert {'ours', 'ours-plain', 'ours-deploy', 'ours-raw', 'mmpretrain',
            'timm', 'onnxruntime'} <= set(rows)
    assert all(r['infer_ms'] > 0 for r in rows.values())
    assert 'train_ms' not in rows['ours-deploy']
    assert rows['ours']['peak_train_mb'] > rows['ours']['saved_activations_mb'] > 0
    # the rows were checked to compute one function before timing
    assert all(d < 1e-4 for d in results['max_rel_diff_fp32'].values())
    assert {t['target'] for t in results['targets']} == {
        'inference vs mmpretrain', 'train step vs mmpretrain',
        'peak train memory vs mmpretrain', 'deploy inference vs onnxruntime'}


def test_detector_mode(tmp_path):
    out = tmp_path / 'bench.json'
    benchmark.main(['--detector', 'retinanet', '--size', '64', '--reps',
                      '1', '--warmup', '0', '--json', str(out)])
    results = json.loads(out.read_text())
    assert set(results['rows']) == {'ours', 'mmpretrain'}
    assert results['loss_rel_diff'] < 1e-4  # same weights, same function
    assert results['targets'][0]['target'].startswith('RetinaNet')


def test_peak_live_bytes_counts_what_is_held_at_once():
    import torch
    with PeakLiveBytes() as meter:
        a = torch.ones(1024, 256)           # 1 MiB
        b = a * 2                           # 1 MiB more
        del a
        c = b + 1                           # a freed: still 2 MiB at once
        c.add_(1)                           # in place: nothing new
    del b, c
    assert meter.peak == 2 * 2**20
    assert meter.current == 0


def test_bad_arguments_are_one_clear_error():
    with pytest.raises(SystemExit):
        benchmark.main(['--arch', 'poolformer_s99'])
    with pytest.raises((SystemExit, ToolError)):
        benchmark.main(['--modes', 'fly'])
