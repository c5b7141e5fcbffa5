"""Ratios, the speed and memory targets, and the printed tables.

Speed ratios are reference ms / our ms (> 1: ours faster); memory ratios
are our peak / the reference's (< 1: ours smaller). Every row of a peer is
compared with the row of ours that computes the same function: rows with
output norms (mmpretrain's, its ONNX export) with ``ours``, rows without
(timm's ``features_only``) with ``ours-raw`` (``output_norms`` of a row).
"""
# against the reference implementations, eager against eager (or the best
# configuration of both sides for a pattern ending in '*'):
# (label, reference, ours, metric, op, goal)
BACKBONE_TARGETS = {
    'mmpretrain': [
        ('inference vs mmpretrain', 'mmpretrain', 'ours', 'infer', '>=', 1.4),
        ('train step vs mmpretrain', 'mmpretrain', 'ours', 'train', '>=',
         1.25),
        ('peak train memory vs mmpretrain', 'mmpretrain', 'ours', 'peak',
         '<=', 0.75),
    ],
    'timm': [
        ('inference vs timm', 'timm', 'ours-raw', 'infer', '>=', 1.4),
        ('train step vs timm', 'timm', 'ours-raw', 'train', '>=', 1.25),
        ('peak train memory vs timm', 'timm', 'ours-raw', 'peak', '<=',
         0.75),
    ],
    'onnxruntime': [
        ('deploy inference vs onnxruntime', 'onnxruntime*', 'ours-deploy*',
         'infer', '>=', 1.0),
    ],
}
#: a whole model's eager rows of ours (default and packed backbone)
EAGER_OURS = ('ours', 'ours-packed')


def whole_model_targets(model: str) -> list:
    """A whole model's inference against the same model on mmpretrain's
    backbone: eager, compiled, in onnxruntime."""
    return [
        (f'{model} inference vs mmpretrain backbone', 'mmpretrain',
         EAGER_OURS, 'infer', '>=', 1.3),
        (f'{model} compiled inference vs mmpretrain backbone compiled',
         'mmpretrain+compile', 'ours+compile', 'infer', '>=', 1.0),
        (f'{model} in onnxruntime vs mmpretrain backbone in onnxruntime',
         'mmpretrain-onnxruntime', 'ours-onnxruntime', 'infer', '>=', 1.0)]


DETECTOR_TARGETS = {
    'retinanet': [('RetinaNet train step vs mmpretrain backbone',
                   'mmpretrain', 'ours', 'train', '>=', 1.2)],
    'fpn': [('Semantic FPN train step vs mmpretrain backbone', 'mmpretrain',
             'ours', 'train', '>=', 1.2)],
    'retinanet inference': whole_model_targets('RetinaNet'),
    'fpn inference': whole_model_targets('Semantic FPN'),
}

# against the fastest peer: what a user could pick instead of ours, and
# our rows
PEERS = ('mmpretrain', 'mmpretrain+compile', 'timm', 'timm+compile',
         'onnxruntime', 'onnxruntime (spinning, alone)')
OURS_DEFAULT = {True: ('ours', ), False: ('ours-raw', )}  # by output norms
OURS_BEST = {True: ('ours', 'ours+compile', 'ours-packed', 'ours-deploy',
                    'ours-deploy+compile'),
             False: ('ours-raw', 'ours-raw+compile')}
# compiled against compiled: ours under torch.compile (the lean formulation)
# against the fastest compiled peer computing the same function
COMPILED_PEERS = ('mmpretrain+compile', 'timm+compile')
OURS_COMPILED = {True: ('ours+compile', ), False: ('ours-raw+compile', )}
COMPILED_TARGETS = (
    ('compiled inference >= 1.10x fastest compiled peer', 'infer', 1.10),
    ('compiled train step >= 1.05x fastest compiled peer', 'train', 1.05))
PLAIN_TOL = 1e-5  # outputs and gradients against the plain formulation


def _metric(results, row, metric):
    r = results['rows'].get(row, {})
    if metric == 'peak':
        return r.get('peak_train_mb')
    return r.get(f'{metric}_ms')


def ratio(results, ref, ours, metric):
    a, b = _metric(results, ref, metric), _metric(results, ours, metric)
    if a is None or b is None:
        return None
    return b / a if metric == 'peak' else a / b


def best_row(results, pattern, metric):
    """``ours-deploy*``: the fastest of the rows with that prefix (for a
    reference too: the yardstick is its best configuration); a tuple of
    names: the fastest of those."""
    if isinstance(pattern, tuple):
        rows = [r for r in pattern if _metric(results, r, metric) is not None]
        return min(rows, key=lambda r: _metric(results, r, metric)) if rows \
            else pattern[0]
    if not pattern.endswith('*'):
        return pattern
    rows = [r for r in results['rows'] if r.startswith(pattern[:-1])
            and _metric(results, r, metric) is not None]
    return min(rows, key=lambda r: _metric(results, r, metric)) if rows \
        else pattern[:-1]


#: target groups, by what they compare
REFERENCE, PEER, LEAN, GPU = ('vs reference', 'vs fastest peer',
                                  'lean formulation', 'GPU')


def _target(label, ours, ref, value, op, goal, group):
    met = value >= goal if op == '>=' else value <= goal
    return dict(target=label, ours=ours, reference=ref, ratio=value,
                goal=f'{op} {goal}', met=met, group=group)


def check_targets(results, targets, group=REFERENCE):
    out = []
    for label, ref, ours, metric, op, threshold in targets:
        ours = best_row(results, ours, metric)
        ref = best_row(results, ref, metric)
        value = ratio(results, ref, ours, metric)
        if value is not None:
            out.append(_target(label, ours, ref, value, op, threshold, group))
    return out


def _fastest_peer(results, metric, ours_rows, peers=PEERS):
    """``(ratio, our row, peer row)`` against the peer that comes closest:
    for every peer, the fastest of ``ours_rows[its output norms]``."""
    worst = None
    for peer in peers:
        peer_ms = _metric(results, peer, metric)
        if peer_ms is None:
            continue
        norms = results['rows'][peer].get('output_norms', True)
        ours = [(_metric(results, r, metric), r) for r in ours_rows[norms]
                if _metric(results, r, metric) is not None]
        if not ours:
            continue
        ours_ms, row = min(ours)
        if worst is None or peer_ms / ours_ms < worst[0]:
            worst = (peer_ms / ours_ms, row, peer)
    return worst


def peer_targets(results):
    """Against the fastest peer, memory against the reference, and
    agreement with the plain formulation (docs/speed.md)."""
    out = []
    for label, metric, ours_rows, goal in (
            ('default eager inference >= fastest peer', 'infer',
             OURS_DEFAULT, 1.0),
            ('best inference >= 1.15x fastest peer', 'infer', OURS_BEST,
             1.15),
            ('best train step >= 1.15x fastest peer', 'train', OURS_BEST,
             1.15)):
        found = _fastest_peer(results, metric, ours_rows)
        if found is not None:
            out.append(_target(label, found[1], found[2], found[0], '>=',
                               goal, PEER))
    for label, metric, goal in COMPILED_TARGETS:
        found = _fastest_peer(results, metric, OURS_COMPILED, COMPILED_PEERS)
        if found is not None:
            out.append(_target(label, found[1], found[2], found[0], '>=',
                               goal, LEAN))
    lean = (results.get('traffic') or {}).get('lean_vs_plain')
    if lean is not None:
        out.append(_target('eager forward traffic <= 0.6x plain', 'ours',
                           'ours-plain', lean, '<=', 0.6, LEAN))
    ref = results.get('reference')
    ours = OURS_DEFAULT[has_norms(results, ref)][0]
    value = ratio(results, ref, ours, 'peak')
    if value is not None:
        out.append(_target(f'peak train memory <= 0.6x {ref}', ours, ref,
                           value, '<=', 0.6, PEER))
    for row, diff in (results.get('plain_equality') or {}).items():
        out.append(_target(f'{row}: outputs and gradients vs plain, fp32',
                           row, 'ours-plain', diff, '<=', PLAIN_TOL, PEER))
    for row, detail in (results.get('plain_equality_detail') or {}).items():
        if 'vs_float64' in detail:  # as accurate as plain in fp32 (within
            # 10%: two correct fp32 sums differ by their rounding alone)
            out.append(_target(
                f'{row}: fp32 error vs float64 <= 1.1x ours-plain\'s', row,
                'ours-plain', detail['vs_float64'] / detail['rounding_floor'],
                '<=', 1.1, PEER))
    return out


#: bf16 CPU inference: our best row against the fastest compiled peer
#: (PoolFormer archs / the others) and against the GEMM floor with convs
BF16_PEER_GOAL = {'poolformer': 1.6, 'other': 1.3}
BF16_FLOOR_GOAL = 1.6
OURS_EAGER_INFER = ('ours', 'ours-packed', 'ours-deploy')


def low_precision_targets(results):
    """The bf16 and int8 inference targets of a ``--dtype bf16`` run: ours
    against its own GEMM floor and the compiled peers, int8 against ours in
    bf16 and against the reference quantized the same way."""
    config = results.get('config', {})
    if config.get('dtype') != 'bf16' or 'infer' not in config.get('modes',
                                                                   ()):
        return []
    out = []
    # a row of ours with output norms computes more than a peer without
    # them (timm's features_only): a fair, if strict, match for it too
    with_norms = OURS_BEST[True] + OURS_EAGER_INFER
    rows = {True: with_norms, False: OURS_BEST[False] + with_norms}
    best = [r for r in rows[False] if _metric(results, r, 'infer')]
    eager = [r for r in OURS_EAGER_INFER if r in best]
    if eager and _metric(results, 'floor+convs', 'infer'):
        row = min(eager, key=lambda r: _metric(results, r, 'infer'))
        value = _metric(results, row, 'infer') / _metric(
            results, 'floor+convs', 'infer')
        out.append(_target(f'bf16 inference <= {BF16_FLOOR_GOAL}x '
                           'floor+convs', row, 'floor+convs', value, '<=',
                           BF16_FLOOR_GOAL, PEER))
    goal = BF16_PEER_GOAL['poolformer' if config.get('arch', '').startswith(
        'poolformer') else 'other']
    found = _fastest_peer(results, 'infer', rows, COMPILED_PEERS)
    if found is not None:
        out.append(_target(f'bf16 inference >= {goal}x fastest compiled '
                           'peer', found[1], found[2], found[0], '>=', goal,
                           PEER))
    int8 = _metric(results, 'ours-int8', 'infer')
    if int8 is not None and best:
        row = min(best, key=lambda r: _metric(results, r, 'infer'))
        out.append(_target('int8 inference >= 1.5x ours in bf16', 'ours-int8',
                           row, _metric(results, row, 'infer') / int8, '>=',
                           1.5, PEER))
    value = ratio(results, 'reference-int8', 'ours-int8', 'infer')
    if value is not None:
        out.append(_target('int8 inference >= the reference quantized the '
                           'same way', 'ours-int8', 'reference-int8', value,
                           '>=', 1.0, PEER))
    return out


def has_norms(results, row):
    return results['rows'].get(row, {}).get('output_norms', True)


def gpu_table_targets(results):
    """The GPU table's targets for one arch: inference against
    timm eager (ours default) and timm compiled (our best), the training
    step and its memory against mmpretrain (ours default; against timm
    where mmpretrain has no such model)."""
    out = []
    for label, ref, rows, goal in (
            ('inference >= 1.5x timm eager', 'timm', OURS_DEFAULT, 1.5),
            ('inference >= timm compiled', 'timm+compile', OURS_BEST, 1.0)):
        found = [(ratio(results, ref, r, 'infer'), r) for r in rows[False]
                 if ratio(results, ref, r, 'infer') is not None]
        if found:
            value, row = max(found)
            out.append(_target(label, row, ref, value, '>=', goal, GPU))
    ref = 'mmpretrain' if 'mmpretrain' in results['rows'] else 'timm'
    ours = OURS_DEFAULT[has_norms(results, ref)][0]
    for label, metric, op, goal in (
            (f'train step >= 1.3x {ref}', 'train', '>=', 1.3),
            (f'peak train memory <= 0.7x {ref}', 'peak', '<=', 0.7)):
        value = ratio(results, ref, ours, metric)
        if value is not None:
            out.append(_target(label, ours, ref, value, op, goal, GPU))
    return out


def format_targets(targets):
    return [f'{"MET " if t["met"] else "MISS"}  [{t["group"]}] '
            f'{t["target"]}: '
            f'{t["ours"]} vs {t["reference"]} = {t["ratio"]:.3g} '
            f'(goal {t["goal"]})' for t in targets]


def format_floor(results):
    """``ours / floor``: how far each of our rows is from the time of its
    GEMMs alone (1.0 would be nothing but GEMMs)."""
    rows = results['rows']
    lines = []
    for floor in ('floor', 'floor+convs'):
        if floor not in rows:
            continue
        info = results.get('floor', {}).get(floor, {})
        parts = []
        for mode in ('infer', 'train'):
            f = rows[floor].get(f'{mode}_ms')
            if f is None:
                continue
            ours = [(rows[r][f'{mode}_ms'], r) for r in rows
                    if r.startswith('ours') and rows[r].get(f'{mode}_ms')]
            ratios = ', '.join(f'{r} {ms / f:.2f}' for ms, r in sorted(ours))
            gflop = info.get(f'{mode}_gflop')
            parts.append(f'  {mode}: {f:.1f} ms'
                         + (f' ({gflop:.3g} GFLOP, {gflop / f * 1e3:.3g} '
                            'GFLOP/s)'
                            if gflop else '')
                         + (f'; ours / floor: {ratios}' if ratios else ''))
        what = ('1x1 convs, linears, attention products' if floor == 'floor'
                else 'the same plus the stem and downsampling convolutions '
                'as im2col GEMMs')
        lines += [f'GEMM {floor} ({what}):'] + parts
    return lines


def format_table(results) -> str:
    modes = results['config']['modes']
    cols = [('infer ms', 'infer_ms', '.1f')] * ('infer' in modes) + \
        [('train ms', 'train_ms', '.1f'),
         ('peak train MB', 'peak_train_mb', '.1f'),
         ('saved act MB', 'saved_activations_mb', '.1f')] * ('train' in modes)
    width = max(len(r) for r in results['rows']) + 2
    head = f'{"row":<{width}}' + ''.join(f'{h:>{len(h) + 3}}'
                                         for h, _, _ in cols)
    lines = [head, '-' * len(head)]
    for name, r in results['rows'].items():
        cells = []
        for h, key, fmt in cols:
            v = r.get(key)
            cells.append(f'{"-" if v is None else format(v, fmt):>{len(h) + 3}}')
        lines.append(f'{name:<{width}}' + ''.join(cells))
    for name, why in (results.get('failed_rows') or {}).items():
        lines.append(f'{name:<{width}}  FAILED: {why}')
    for name, r in results['rows'].items():
        if r.get('compile_s') is not None:
            hits = r.get('recompile_limit_hits')
            lines.append(f'{name}: first calls (compilation, not timed) '
                         f'{r["compile_s"]:.0f} s, graph breaks '
                         f'{r.get("graph_breaks", "?")}'
                         + (f', recompile limit hit {hits}x (partly eager)'
                            if hits else ''))
    lines += [''] + format_floor(results)
    lines += [''] + format_targets(results['targets'])
    return '\n'.join(lines)


def _per_s(images, ms):
    return None if ms is None else images * 1e3 / ms


def format_gpu_table(table) -> str:
    """Markdown: backbones (img/s, peak MB), targets per arch, detectors
    (training iterations/s)."""
    lines = ['| arch | row | inference img/s | training img/s | '
             'peak train MB |', '|---|---|---|---|---|']
    target_lines = []
    for item, res in table['items'].items():
        if res['kind'] != 'backbone':
            continue
        batch = res['config']['batch']
        first = True
        for name, r in res['rows'].items():
            cells = [_per_s(batch, r.get('infer_ms')),
                     _per_s(batch, r.get('train_ms')), r.get('peak_train_mb')]
            cells = ['-' if v is None else f'{v:.0f}' for v in cells]
            lines.append(f'| {item if first else ""} | {name} | '
                         + ' | '.join(cells) + ' |')
            first = False
        for t in res['targets']:
            target_lines.append(
                f'| {item} | {t["target"]} | {t["ours"]} vs '
                f'{t["reference"]} | {t["ratio"]:.2f} ({t["goal"]}) | '
                f'{"MET" if t["met"] else "MISS"} |')
    det = [(item, res) for item, res in table['items'].items()
           if res['kind'] == 'detector']
    if target_lines:
        lines += ['', '| arch | target | rows | ratio | |',
                  '|---|---|---|---|---|'] + target_lines
    if det:
        lines += ['', '| model | input | row | training it/s | '
                  'peak train MB |', '|---|---|---|---|---|']
        for item, res in det:
            cfg = res['config']
            size = 'x'.join(map(str, cfg['size_hw']))
            for name, r in res['rows'].items():
                lines.append(f'| {item} | {cfg["batch"]} x {size} | {name} | '
                             f'{1e3 / r["train_ms"]:.2f} | '
                             f'{r["peak_train_mb"]:.0f} |')
        lines += [''] + [line for _, res in det
                         for line in format_targets(res['targets'])]
    return '\n'.join(lines)
