"""Ratios, the issue's targets, and the printed table."""

# (label, reference row, our row, metric, comparison, threshold)
# speed ratios are reference ms / our ms (> 1: ours faster); the memory
# ratio is our peak / reference peak (< 1: ours smaller)
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
DETECTOR_TARGETS = {
    'retinanet': [('RetinaNet train step vs mmpretrain backbone',
                   'mmpretrain', 'ours', 'train', '>=', 1.2)],
    'fpn': [('Semantic FPN train step vs mmpretrain backbone', 'mmpretrain',
             'ours', 'train', '>=', 1.2)],
}


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
    reference too: the yardstick is its best configuration)."""
    if not pattern.endswith('*'):
        return pattern
    rows = [r for r in results['rows'] if r.startswith(pattern[:-1])
            and _metric(results, r, metric) is not None]
    return min(rows, key=lambda r: _metric(results, r, metric)) if rows \
        else pattern[:-1]


def check_targets(results, targets):
    out = []
    for label, ref, ours, metric, op, threshold in targets:
        ours = best_row(results, ours, metric)
        ref = best_row(results, ref, metric)
        value = ratio(results, ref, ours, metric)
        if value is None:
            continue
        met = value >= threshold if op == '>=' else value <= threshold
        out.append(dict(target=label, ours=ours, reference=ref,
                        ratio=value, goal=f'{op} {threshold}', met=met))
    return out


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
    lines.append('')
    for t in results['targets']:
        lines.append(f'{"MET " if t["met"] else "MISS"}  {t["target"]}: '
                     f'{t["ours"]} vs {t["reference"]} = {t["ratio"]:.3f} '
                     f'(goal {t["goal"]})')
    return '\n'.join(lines)
