#!/usr/bin/env bash
# The GPU table in one command, on a machine with a CUDA GPU and PyTorch.
#
#   bash tools/analysis_tools/gpu_table.sh [OUT_DIR] [ITEMS]
#       the backbone items (default: PoolFormer-S12, PoolFormerV2-S12,
#       ConvFormer-S18, CAFormer-S18, then PoolFormer-S24 and -M36) under AMP
#       bf16, batch 128 at 224²: ours (lean on the GPU), ours-plain,
#       mmpretrain, timm, eager and compiled, inference and a training step,
#       peak memory; then the backbones' CUDA tests. Writes
#       OUT_DIR/gpu_table.json (an item already there is kept: a run cut
#       short resumes), gpu_table.md and the logs; OUT_DIR defaults to
#       work_dirs/gpu_table. No item starts after BUDGET seconds (default
#       420): run it again to measure the rest. BENCH_ARGS adds options of
#       benchmark.py (``--device cpu --batch 1 --size 64 --no-compile`` is a
#       dry run without a GPU).
#   bash tools/analysis_tools/gpu_table.sh --bundle [DIR]
#       copy the pure-Python parts of this environment's OpenMMLab packages
#       ($PYTHON, default .venv/bin/python) and their small dependencies
#       into DIR (default .gpu_site/, git-ignored; ~11 MB) for a GPU machine
#       that has PyTorch and timm but no OpenMMLab; the table puts
#       .gpu_site/ on PYTHONPATH when it is there. mmcv's compiled ops do not
#       travel: the detector items need a full install on that machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE=.gpu_site

if [[ ${1:-} == --bundle ]]; then
    DEST=${2:-$SITE}
    rm -rf "$DEST"
    "${PYTHON:-.venv/bin/python}" - "$DEST" <<'PYTHON'
import importlib.util
import os
import shutil
import sys

dest = sys.argv[1]
packages = ('mmengine', 'mmcv', 'mmpretrain', 'addict', 'yapf',
            'yapf_third_party', 'termcolor', 'mat4py', 'modelindex',
            'ordered_set', 'platformdirs', 'importlib_metadata',
            'lazy_importer')
skip = shutil.ignore_patterns('__pycache__', '*.pyc', '*.so', '.mim')
for name in packages:
    spec = importlib.util.find_spec(name)
    if spec is None:
        continue
    if spec.submodule_search_locations:  # a package
        shutil.copytree(list(spec.submodule_search_locations)[0],
                        os.path.join(dest, name), ignore=skip)
    else:  # a single module
        os.makedirs(dest, exist_ok=True)
        shutil.copy(spec.origin, dest)
    print(f'{name}: copied')
PYTHON
    du -sh "$DEST"
    exit 0
fi

OUT=${1:-work_dirs/gpu_table}
ITEMS=${2:-poolformer_s12,poolformerv2_s12,convformer_s18,caformer_s18,poolformer_s24,poolformer_m36}
BUDGET=${BUDGET:-420}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if [[ -d $SITE ]]; then
    export PYTHONPATH="$PWD/$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
    > "$OUT/device.txt" 2>&1 || true
"$PY" -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name()
                               if torch.cuda.is_available() else "(no CUDA device)")' \
    | tee -a "$OUT/device.txt"
start=$SECONDS
for item in ${ITEMS//,/ }; do
    if (( SECONDS - start > BUDGET )); then
        echo "budget of $BUDGET s spent: $item and later items are left for the next run" \
            | tee -a "$OUT/gpu_table.log"
        break
    fi
    "$PY" tools/analysis_tools/benchmark.py --gpu-table "$OUT/gpu_table.json" \
        --items "$item" --reps "${REPS:-10}" --warmup 3 ${BENCH_ARGS:-} 2>&1 \
        | tee -a "$OUT/gpu_table.log"
done
echo "GPU table: $((SECONDS - start)) s" | tee -a "$OUT/gpu_table.log"
"$PY" - "$OUT" <<'PYTHON'
import json
import sys

sys.path.insert(0, 'tools/analysis_tools')
from speed.report import format_gpu_table  # noqa: E402

out = sys.argv[1]
with open(f'{out}/gpu_table.json') as f:
    table = json.load(f)
with open(f'{out}/gpu_table.md', 'w') as f:
    f.write(format_gpu_table(table) + '\n')
PYTHON
# the backbone tests on the GPU (the detector ones need mmcv's CUDA ops)
"$PY" -m pytest tests/test_cuda.py -q -p no:cacheprovider -m cuda \
    -k 'equals_plain or with_cp' 2>&1 | tail -n 30 | tee "$OUT/cuda_tests.log"
