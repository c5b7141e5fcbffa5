"""The README's demo runs end to end (shortened) and writes its picture."""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('task, metric', [('det', 'bbox mAP'), ('seg', 'mIoU')])
def test_demo_runs_and_reports_both_figures(task, metric, tmp_path):
    result = subprocess.run(
        [sys.executable, 'tools/demo.py', '--task', task, '--iters', '6',
         '--num-train', '8', '--num-val', '4', '--image-size', '64',
         '--work-dir', str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert 'overrides for a short from-scratch CPU run' in out
    figures = re.findall(rf'{metric} (?:untrained|after 6 iterations): ([\d.]+)', out)
    assert len(figures) == 2 and all(float(f) >= 0 for f in figures)
    assert 'Iter(train) [6/6]' in result.stdout + result.stderr  # Runner logging
    png = cv2.imread(str(tmp_path / task / 'predictions.png'))
    assert png is not None and png.shape[0] >= 64 and png.std() > 1
    assert (tmp_path / task / 'iter_6.pth').is_file()
