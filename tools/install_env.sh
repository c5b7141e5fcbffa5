#!/usr/bin/env bash
# One-command set-up of the OpenMMLab 2.x stack for mmpoolformer in ./.venv.
#
# Why each pin (measured on Python 3.11, x86_64, no GPU):
#   torch 2.14.1 + torchvision 0.29.1  the only pair with a working torchvision here (mmpretrain needs it)
#   setuptools >=77.0.3,<81            torch needs >=77.0.3; 81+ drops pkg_resources, which mmcv's setup.py
#                                      and mmengine's `mmdet::` base-config lookup import
#   mmcv 2.1.0 from source             mmdet 3.3 / mmseg 1.2 refuse mmcv>=2.2; no wheel exists for this torch,
#                                      and torch 2.14 headers need C++20. The built wheel is cached outside the
#                                      checkout, keyed by mmcv/torch/python versions, so it is built once a machine.
# A second run only checks a stamp and finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY_BOOT="${PYTHON:-python3.11}"
command -v "$PY_BOOT" >/dev/null 2>&1 || PY_BOOT=python3

TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
SETUPTOOLS_SPEC='setuptools>=77.0.3,<81'
STACK=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0
       'numpy<2' ftfy regex 'timm==1.0.*' pytest
       onnx onnxruntime onnxscript grad-cam)

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mmpoolformer"
LOG_DIR="$CACHE_ROOT/logs"
mkdir -p "$LOG_DIR"

# The stamp changes whenever this script or setup.py changes, so edits re-run the install.
STAMP_KEY="$(cat "$0" "$ROOT/setup.py" | sha256sum | cut -c1-16)"
STAMP="$VENV/.mmpoolformer-install-$STAMP_KEY"

step() {  # step NAME CMD...: run CMD with its output in a log; on failure name the step and show the log's tail
  local name="$1"; shift
  local log="$LOG_DIR/$(echo "$name" | tr ' /' '__').log"
  printf '[install] %s ... ' "$name"
  local t0=$SECONDS
  if "$@" >"$log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED"
    echo "[install] step '$name' failed; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

if [ -f "$STAMP" ] && "$VENV/bin/python" -c 'import mmcv.ops, mmdet, mmseg, mmpretrain, timm, mmpoolformer' 2>/dev/null; then
  echo "[install] environment in .venv is up to date"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "create venv" "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

step "pin setuptools" "${PIP[@]}" install -U pip wheel "$SETUPTOOLS_SPEC"
step "install torch $TORCH_VERSION" "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
WHEEL_DIR="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG-$(uname -m)"
build_mmcv() {  # commands chained with && because `set -e` does not apply inside `if`
  local work src
  work="$(mktemp -d)" && src="$work/mmcv-$MMCV_VERSION" &&
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$work" "mmcv==$MMCV_VERSION" &&
  tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work" &&
  # torch 2.14's headers refuse C++ standards older than 20
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py" &&
  (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$work/dist" .) &&
  mkdir -p "$WHEEL_DIR" && cp "$work"/dist/mmcv-*.whl "$WHEEL_DIR/" && rm -rf "$work"
}
if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
  echo "[install] no cached mmcv $MMCV_VERSION wheel for torch $TORCH_VERSION/$PY_TAG: building it once (about 11 min on 2 cores)"
  step "build mmcv $MMCV_VERSION wheel" build_mmcv
fi
step "install mmcv $MMCV_VERSION" "${PIP[@]}" install --no-deps "$WHEEL_DIR"/mmcv-*.whl
step "install mmcv requirements" "${PIP[@]}" install addict 'numpy<2' packaging Pillow pyyaml yapf opencv-python
step "install OpenMMLab stack" "${PIP[@]}" install "${STACK[@]}" "$SETUPTOOLS_SPEC"
step "install mmpoolformer (editable)" "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
step "check imports" "$PY" -c 'import mmcv.ops, mmdet, mmseg, mmpretrain, timm, mmpoolformer; from mmcv.ops import nms'

rm -f "$VENV"/.mmpoolformer-install-*
touch "$STAMP"
echo "[install] done: activate with 'source .venv/bin/activate'"
