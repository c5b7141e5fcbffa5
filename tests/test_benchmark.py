"""The benchmark runs end to end on a small input and reports what it
promises (speed is never asserted here: it lives in the benchmark only)."""
import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from helpers import load_tool, tool_error
from speed import PeakLiveBytes
from speed.floor import gemm_floor_steps, gemm_flops, record_gemms
from speed.models import detector_test_input, detector_training_input
from speed.report import (
    LEAN,
    PEER,
    REFERENCE,
    gpu_table_targets,
    low_precision_targets,
    peer_targets,
)
from speed.traffic import OpBytes

ROOT = Path(__file__).resolve().parents[1]

benchmark = load_tool('analysis_tools/benchmark.py')

S12 = dict(depths=[2, 2, 6, 2], dims=[64, 128, 320, 512], mlp_ratio=4)


def s12_gemm_gflop(batch, size):
    """PoolFormer-S12's MLP GEMMs, counted from its arch: two products of
    C x 4C per block at stride 4, 8, 16, 32."""
    macs = sum(depth * 2 * S12['mlp_ratio'] * dim * dim *
               batch * (size // 2**(i + 2))**2
               for i, (depth, dim) in enumerate(zip(S12['depths'],
                                                    S12['dims'])))
    return 2 * macs / 1e9


def test_backbone_rows_agree_and_are_reported(tmp_path):
    out = tmp_path / 'bench.json'
    benchmark.main(['--batch', '1', '--size', '64', '--reps', '1',
                    '--warmup', '0', '--no-compile', '--json', str(out)])
    results = json.loads(out.read_text())
    rows = results['rows']
    assert {'ours', 'ours-plain', 'ours-deploy', 'ours-packed', 'ours-raw',
            'mmpretrain', 'timm', 'onnxruntime', 'ours-int8',
            'reference-int8', 'floor', 'floor+convs'} <= set(rows)
    assert not any('+compile' in r for r in rows)
    assert all(r['infer_ms'] > 0 for r in rows.values())
    assert all('train_ms' not in rows[r] for r in benchmark.INFER_ONLY
               if r in rows)
    # int8 is close to fp32, not equal (random weights, random calibration)
    assert set(results['int8_rel_deviation']) == {'ours-int8',
                                                  'reference-int8'}
    assert all(0 < d < 0.3 for d in results['int8_rel_deviation'].values())
    engines = results['environment']['cpu_matrix_engines']
    assert set(engines) == set(benchmark.MATRIX_FLAGS)
    assert rows['ours']['peak_train_mb'] > rows['ours']['saved_activations_mb'] > 0
    # the rows were checked to compute one function before timing
    assert all(d < 1e-4 for d in results['max_rel_diff_fp32'].values())
    assert rows['timm']['output_norms'] is False
    assert rows['mmpretrain']['output_norms'] is True
    # ours within 1e-5 of the plain formulation, gradients too
    detail = results['plain_equality_detail']['ours']
    assert 0 < detail['parameter_gradients'] < 1e-5
    assert 0 <= detail['outputs'] < 1e-5 and detail['input_gradient'] < 1e-5
    # ... and no farther from the float64 result than the plain one is
    assert 0 < detail['rounding_floor'] < 1e-5
    assert 0 < detail['vs_float64'] < 1e-5
    # the floor holds exactly the model's GEMMs; training adds the two
    # backward products of each
    floor = results['floor']['floor']
    assert floor['infer_gflop'] == pytest.approx(s12_gemm_gflop(1, 64))
    assert floor['train_gflop'] == pytest.approx(3 * floor['infer_gflop'])
    assert floor['products'] == 2 * sum(S12['depths'])
    assert results['floor']['floor+convs']['infer_gflop'] > \
        floor['infer_gflop']
    assert rows['floor']['train_ms'] > 0 and rows['floor']['infer_ms'] > 0
    targets = {(t['group'], t['target']) for t in results['targets']}
    assert {(REFERENCE, 'inference vs mmpretrain'),
            (REFERENCE, 'deploy inference vs onnxruntime'),
            (PEER, 'default eager inference >= fastest peer'),
            (PEER, 'best inference >= 1.15x fastest peer'),
            (PEER, 'best train step >= 1.15x fastest peer'),
            (PEER, 'peak train memory <= 0.6x mmpretrain'),
            (PEER, 'ours: outputs and gradients vs plain, fp32'),
            (PEER, "ours: fp32 error vs float64 <= 1.1x ours-plain's"),
            (LEAN, 'eager forward traffic <= 0.6x plain')} <= targets
    # the eager traffic a GPU would see: the lean formulation moves less
    traffic = results['traffic']
    assert traffic['batch'] == 128 and traffic['size'] == 64
    assert set(traffic['rows']) == {'ours', 'ours-plain', 'mmpretrain',
                                    'timm'}
    assert 0.5 < traffic['lean_vs_plain'] < 0.95
    assert traffic['rows']['ours-plain']['total'] == \
        traffic['rows']['mmpretrain']['total']  # the same op sequence


def test_compiled_rows_are_checked_and_timed(tmp_path):
    """A +compile row: compiled apart (not timed), equal to its eager row,
    timed in both modes; its memory is not known on CPU. (aot_eager: the
    rows' handling is the same as with inductor, which takes minutes.)"""
    out = tmp_path / 'bench.json'
    benchmark.main(['--rows', 'timm,timm+compile', '--compile-backend',
                    'aot_eager', '--batch', '1', '--size', '32', '--reps',
                    '1', '--warmup', '0', '--json', str(out)])
    results = json.loads(out.read_text())
    row = results['rows']['timm+compile']
    assert results['max_rel_diff_fp32']['timm+compile vs timm'] < 1e-4
    assert row['infer_ms'] > 0 and row['train_ms'] > 0
    assert row['compile_s'] > 0 and row['graph_breaks'] == 0
    assert 'peak_train_mb' not in row  # inductor's buffers are not seen
    assert results['rows']['timm']['peak_train_mb'] > 0


def test_a_failing_compiled_row_is_dropped_not_fatal():
    first = benchmark.FirstCalls()
    assert first.run('ours+compile', lambda: 2) == 2
    assert first.run('ours+compile', lambda: 1 / 0, 'train') is None
    assert first.run('ours+compile', lambda: 3) == 3  # inference still runs
    assert first.run('ours+compile', lambda: 4, 'train') is None
    assert first.run('timm+compile', lambda: 1 / 0) is None
    assert first.run('timm+compile', lambda: 5, 'train') is None
    assert first.failed == {
        'ours+compile (train)': 'ZeroDivisionError: division by zero',
        'timm+compile': 'ZeroDivisionError: division by zero'}
    assert first.seconds['ours+compile'] >= 0

    def hits_the_recompile_limit():  # what dynamo logs, then runs eagerly
        logging.getLogger('torch._dynamo.convert_frame').warning(
            'torch._dynamo hit config.%s (%s)', 'recompile_limit', 8)
        return 6
    assert first.run('mmpretrain+compile', hits_the_recompile_limit) == 6
    assert first.limit_hits == {'ours+compile': 0, 'mmpretrain+compile': 1}
    with pytest.raises(ZeroDivisionError):  # an eager row's error is a bug
        first.run('timm', lambda: 1 / 0)


def _results(ms, peak=None, reference='mmpretrain'):
    """Results with rows of given (infer ms, train ms)."""
    rows = {}
    for name, (infer, train) in ms.items():
        rows[name] = dict(infer_ms=infer, train_ms=train,
                          output_norms=not name.startswith(('timm',
                                                            'ours-raw')))
        if peak and name in peak:
            rows[name]['peak_train_mb'] = peak[name]
    return dict(rows=rows, reference=reference)


def test_peer_targets_compare_the_same_function():
    """Each peer against the row of ours that computes its function (timm:
    ours-raw); the peer that comes closest decides."""
    results = _results({
        'ours': (100, 400), 'ours+compile': (80, 350), 'ours-raw': (98, 390),
        'ours-raw+compile': (78, 345), 'ours-deploy': (90, None),
        'mmpretrain': (150, 500), 'mmpretrain+compile': (95, 420),
        'timm': (149, 495), 'timm+compile': (90, 400),
        'onnxruntime': (120, None)},
        peak={'ours': 60, 'mmpretrain': 100})
    results['plain_equality'] = {'ours': 3e-6, 'ours+compile': 2e-5}
    results['plain_equality_detail'] = {
        'ours': dict(vs_float64=9e-6, rounding_floor=1e-5),
        'ours+compile': dict(vs_float64=1.2e-5, rounding_floor=1e-5)}
    got = {t['target']: t for t in peer_targets(results)}
    default = got['default eager inference >= fastest peer']
    assert (default['ours'], default['reference']) == ('ours-raw',
                                                       'timm+compile')
    assert default['ratio'] == pytest.approx(90 / 98) and not default['met']
    best = got['best inference >= 1.15x fastest peer']
    assert (best['ours'], best['reference']) == ('ours-raw+compile',
                                                 'timm+compile')
    assert best['ratio'] == pytest.approx(90 / 78) and best['met']
    train = got['best train step >= 1.15x fastest peer']
    assert (train['ours'], train['reference']) == ('ours-raw+compile',
                                                   'timm+compile')
    assert train['ratio'] == pytest.approx(400 / 345) and train['met']
    memory = got['peak train memory <= 0.6x mmpretrain']
    assert memory['ratio'] == pytest.approx(0.6) and memory['met']
    assert got['ours: outputs and gradients vs plain, fp32']['met']
    assert not got['ours+compile: outputs and gradients vs plain, fp32']['met']
    accuracy = got["ours: fp32 error vs float64 <= 1.1x ours-plain's"]
    assert accuracy['ratio'] == pytest.approx(0.9) and accuracy['met']
    assert not got["ours+compile: fp32 error vs float64 <= 1.1x ours-plain's"]['met']
    # compiled against compiled: mmpretrain+compile (95) vs ours+compile
    # (80) and timm+compile (90) vs ours-raw+compile (78): timm is closer
    infer = got['compiled inference >= 1.10x fastest compiled peer']
    assert (infer['ours'], infer['reference']) == ('ours-raw+compile',
                                                   'timm+compile')
    assert infer['ratio'] == pytest.approx(90 / 78) and infer['met']
    train = got['compiled train step >= 1.05x fastest compiled peer']
    assert train['ratio'] == pytest.approx(400 / 345) and train['met']
    assert infer['group'] == train['group'] == LEAN


def test_gpu_table_targets():
    results = _results({'ours': (10, 40), 'ours+compile': (8, 36),
                        'ours-raw': (9.5, 39), 'ours-raw+compile': (7, 35),
                        'mmpretrain': (20, 52), 'timm': (15, 50),
                        'timm+compile': (7.7, 40)},
                       peak={'ours': 65, 'mmpretrain': 100})
    got = {t['target']: t for t in gpu_table_targets(results)}
    assert got['inference >= 1.5x timm eager']['ratio'] == \
        pytest.approx(15 / 9.5)
    assert got['inference >= 1.5x timm eager']['met']
    assert got['inference >= timm compiled']['ours'] == 'ours-raw+compile'
    assert got['inference >= timm compiled']['met']
    assert got['train step >= 1.3x mmpretrain']['ratio'] == \
        pytest.approx(52 / 40)
    assert got['peak train memory <= 0.7x mmpretrain']['met']
    # no mmpretrain model of the arch: timm is the training reference
    del results['rows']['mmpretrain']
    got = {t['target']: t for t in gpu_table_targets(results)}
    assert got['train step >= 1.3x timm']['ours'] == 'ours-raw'


class _TinyNet(nn.Module):
    """A strided conv, a 1x1 conv, a depthwise conv, a linear layer and
    attention: the kinds of layers the floor must tell apart."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 7, 4, 2)
        self.fc = nn.Conv2d(16, 32, 1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.qkv = nn.Linear(32, 96)

    def forward(self, x):
        x = self.dw(self.fc(self.stem(x)))
        B, C, H, W = x.shape
        q, k, v = self.qkv(x.flatten(2).transpose(1, 2)).reshape(
            B, H * W, 3, 2, 16).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v)


def test_floor_records_each_gemm_with_its_shape():
    gemms = record_gemms(_TinyNet(), torch.randn(2, 3, 32, 32))
    pixels = 2 * 8 * 8  # batch 2, 32 / 4 = 8
    assert gemms['gemm'] == Counter({
        (1, pixels, 16, 32): 1,      # the 1x1 conv
        (1, pixels, 32, 96): 1,      # the linear layer
        (4, 64, 16, 64): 1,          # Q @ K^T, batch x heads = 4
        (4, 64, 64, 16): 1})         # P @ V
    assert gemms['conv'] == Counter({(1, pixels, 3 * 7 * 7, 16): 1})
    steps = gemm_floor_steps(gemms['gemm'])
    steps['infer'](), steps['train']()
    assert gemm_flops(gemms['gemm'], training=False) == 2 * (
        pixels * 16 * 32 + pixels * 32 * 96 + 2 * 4 * 64 * 16 * 64)


def test_detectors_train_at_their_configs_resolution():
    assert detector_training_input('retinanet') == (2, (800, 1344))
    assert detector_training_input('fpn') == (4, (512, 512))


def test_detector_mode(tmp_path):
    out = tmp_path / 'bench.json'
    benchmark.main(['--detector', 'retinanet', '--size', '64', '--reps',
                    '1', '--warmup', '0', '--json', str(out)])
    results = json.loads(out.read_text())
    assert set(results['rows']) == {'ours', 'mmpretrain'}
    assert results['loss_rel_diff'] < 1e-4  # same weights, same function
    assert results['targets'][0]['target'].startswith('RetinaNet')


def test_detector_inference_mode(tmp_path, capsys):
    """Whole-model inference: ours, ours-packed and mmpretrain's backbone,
    each also compiled and in onnxruntime (ours after switch_to_deploy),
    same outputs, at the config's test size unless --size is given."""
    out = tmp_path / 'bench.json'
    benchmark.main(['--detector', 'fpn', '--modes', 'infer', '--size', '64',
                    '--reps', '1', '--warmup', '0', '--compile-backend',
                    'aot_eager', '--json', str(out)])
    results = json.loads(out.read_text())
    assert set(results['rows']) == {
        'ours', 'ours-packed', 'mmpretrain', 'ours+compile',
        'mmpretrain+compile', 'ours-onnxruntime', 'mmpretrain-onnxruntime'}
    assert len(results['max_rel_diff_fp32']) == 6
    assert all(d < 1e-4 for d in results['max_rel_diff_fp32'].values())
    assert results['size_hw'] == [64, 64]
    assert [t['target'] for t in results['targets']] == [
        'Semantic FPN inference vs mmpretrain backbone',
        'Semantic FPN compiled inference vs mmpretrain backbone compiled',
        'Semantic FPN in onnxruntime vs mmpretrain backbone in onnxruntime']
    assert 'CPU matrix engines: ' in capsys.readouterr().out
    assert detector_test_input('retinanet') == (800, 1088)
    assert detector_test_input('fpn') == (512, 704)


def test_profile_sorts_every_kernel_into_a_category(capsys):
    """profile_inference.py: per-category kernel self time of a forward,
    GEMMs first for PoolFormer; the categories add up to the total."""
    profiler = load_tool('analysis_tools/profile_inference.py')
    profiler.main(['--arch', 'poolformer_s12', '--formulation', 'packed',
                   '--batch', '1', '--size', '64', '--reps', '1'])
    out = capsys.readouterr().out
    total = float(out.split(' ms of kernel self time')[0].split(', ')[-1])
    shares = {line.split()[0]: float(line.split()[1])
              for line in out.split('share\n')[1].split('\n\n')[0].splitlines()}
    assert {'gemm', 'conv', 'norm'} <= set(shares)
    assert abs(sum(shares.values()) - total) < 0.05 * total + 0.1
    assert profiler.category('aten::mkldnn_convolution',
                             [[1, 64, 8, 8], [256, 64, 1, 1]]) == 'gemm'
    assert profiler.category('aten::mkldnn_convolution',
                             [[1, 64, 8, 8], [64, 1, 7, 7]]) == 'depthwise'
    assert profiler.category('graph_0_cpp_fused_gelu_3', []) == 'fused'


def test_low_precision_targets():
    """bf16: ours against its floor and the fastest compiled peer; int8:
    against ours in bf16 and the reference quantized the same way."""
    results = _results({'ours': (40, None), 'ours-packed': (30, None),
                        'mmpretrain+compile': (60, None),
                        'timm+compile': (66, None), 'floor+convs': (20, None),
                        'ours-int8': (15, None),
                        'reference-int8': (18, None)})
    results['config'] = dict(dtype='bf16', modes=['infer'],
                             arch='poolformer_s12')
    got = {t['target']: t for t in low_precision_targets(results)}
    floor = got['bf16 inference <= 1.6x floor+convs']
    assert floor['ours'] == 'ours-packed' and floor['ratio'] == 1.5
    assert floor['met']
    peer = got['bf16 inference >= 1.6x fastest compiled peer']
    assert (peer['reference'], peer['ratio'], peer['met']) == (
        'mmpretrain+compile', 2.0, True)
    assert got['int8 inference >= 1.5x ours in bf16']['ratio'] == 2.0
    same = got['int8 inference >= the reference quantized the same way']
    assert same['ratio'] == 1.2 and same['met']
    results['config']['dtype'] = 'fp32'
    assert low_precision_targets(results) == []


def test_gpu_table_dry_run_on_cpu(tmp_path, capsys):
    """The GPU table's code path with tiny settings; a second run keeps
    what the first measured (a run cut short resumes)."""
    out = tmp_path / 'gpu.json'
    argv = ['--gpu-table', str(out), '--device', 'cpu', '--items',
            'poolformer_s12,fpn', '--batch', '1', '--size', '64', '--reps',
            '1', '--warmup', '0', '--no-compile']
    benchmark.main(argv)
    table = json.loads(out.read_text())
    assert table['dtype'] == 'bf16'  # AMP bf16 is the table's default
    s12, fpn = table['items']['poolformer_s12'], table['items']['fpn']
    assert set(s12['rows']) == {'ours', 'ours-plain', 'ours-raw', 'mmpretrain',
                                'timm'}
    assert s12['config'] == dict(batch=1, size=64)
    assert all(r['infer_ms'] > 0 and r['train_ms'] > 0
               for r in s12['rows'].values())
    assert {t['target'] for t in s12['targets']} == {
        'inference >= 1.5x timm eager', 'train step >= 1.3x mmpretrain',
        'peak train memory <= 0.7x mmpretrain'}
    assert fpn['kind'] == 'detector' and fpn['config']['size_hw'] == [64, 64]
    assert set(fpn['rows']) == {'ours', 'mmpretrain'}
    printed = capsys.readouterr().out
    assert '| poolformer_s12 | ours |' in printed
    assert '| fpn | 1 x 64x64 | ours |' in printed

    benchmark.main(argv)
    assert 'poolformer_s12: already in' in capsys.readouterr().out
    assert json.loads(out.read_text())['items'] == table['items']


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs no CUDA')
def test_gpu_table_without_cuda_is_one_clear_error(tmp_path):
    message = tool_error(benchmark, '--gpu-table', tmp_path / 'gpu.json',
                         prog='benchmark.py')
    assert 'no CUDA device' in message and '--device cpu' in message
    assert not (tmp_path / 'gpu.json').exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_gpu_table_on_cuda(tmp_path):
    out = tmp_path / 'gpu.json'
    benchmark.main(['--gpu-table', str(out), '--items', 'poolformer_s12',
                    '--batch', '2', '--size', '64', '--reps', '2',
                    '--warmup', '1', '--no-compile'])
    rows = json.loads(out.read_text())['items']['poolformer_s12']['rows']
    assert all(r['peak_train_mb'] > 0 and r['infer_ms'] > 0
               for r in rows.values())


def test_peak_live_bytes_counts_what_is_held_at_once():
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
    with pytest.raises(SystemExit):
        benchmark.main(['--modes', 'fly'])
    with pytest.raises(SystemExit) as info:
        benchmark.main(['--rows', 'ours,mmpretrain+jit'])
    assert info.value.code == 2  # argparse: usage error naming the rows


def test_op_bytes_counts_what_each_op_moves():
    """Inputs read once each (a broadcast dimension once), outputs written;
    views and an input handed back unchanged move nothing."""
    a = torch.ones(1000, 8, device='meta')
    b = torch.ones(8, device='meta')
    with OpBytes() as counter:
        c = a + b                          # reads 32 KB + 32 B, writes 32 KB
        c.t().reshape(8000)[:10]           # a copy of 32 KB, then a view
        torch.ops.aten.dropout(c, 0.5, False)  # c itself
    assert counter.read == 32000 + 32 + 32000
    assert counter.written == 32000 + 32000
    assert counter.by_op == {'add': 64032, 'clone': 64000}


def test_gpu_bundle_carries_pure_python_openmmlab(tmp_path):
    """``gpu_table.sh --bundle DIR``: the OpenMMLab packages without
    compiled code, small enough to carry, and enough for our backbones and
    mmpretrain's reference (mmcv without its ops)."""
    site = tmp_path / 'site'
    script = ROOT / 'tools/analysis_tools/gpu_table.sh'
    subprocess.run(['bash', str(script), '--bundle', str(site)], check=True,
                   capture_output=True, env={**os.environ,
                                             'PYTHON': sys.executable})
    assert {'mmengine', 'mmcv', 'mmpretrain', 'addict', 'yapf'} <= {
        p.name for p in site.iterdir()}
    files = [p for p in site.rglob('*') if p.is_file()]
    assert not [p for p in files if p.suffix == '.so']
    assert sum(p.stat().st_size for p in files) < 48 * 2**20
    probe = ('import mmcv, mmpretrain.models, mmpoolformer.models as m, '
             'torch; print("mmcv:", mmcv.__file__); '
             'print("shape:", tuple(m.PoolFormer(dict(depths=[1] * 4, '
             'embed_dims=[8] * 4))(torch.randn(1, 3, 32, 32))[0].shape))')
    out = subprocess.run(
        [sys.executable, '-c', probe], check=True, capture_output=True,
        text=True, cwd=tmp_path,
        env={**os.environ, 'PYTHONPATH': f'{site}:{ROOT}'}).stdout
    # (the onedl stack prints a notice of its own on import)
    lines = dict(line.split(': ', 1) for line in out.splitlines()
                 if line.startswith(('mmcv: ', 'shape: ')))
    assert lines['mmcv'].startswith(str(site))
    assert lines['shape'] == '(1, 8, 8, 8)'


def test_gpu_table_script_dry_run(tmp_path):
    """The one-command GPU table, as a dry run on the CPU: the table file,
    its markdown and the CUDA tests' log (skipped here)."""
    out = tmp_path / 'gpu'
    proc = subprocess.run(
        ['bash', str(ROOT / 'tools/analysis_tools/gpu_table.sh'), str(out),
         'poolformer_s12'], capture_output=True, text=True, timeout=600,
        env={**os.environ, 'PYTHON': sys.executable, 'REPS': '1',
             'BENCH_ARGS': '--device cpu --batch 1 --size 64 --warmup 0 '
                           '--no-compile'})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = json.loads((out / 'gpu_table.json').read_text())
    assert list(table['items']) == ['poolformer_s12']
    assert '| poolformer_s12 | ours |' in (out / 'gpu_table.md').read_text()
    assert 'skipped' in (out / 'cuda_tests.log').read_text()
