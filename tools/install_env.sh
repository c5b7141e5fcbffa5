#!/usr/bin/env bash
# One-command set-up of an OpenMMLab 2.x stack for mmpoolformer in a virtual environment.
#
#   bash tools/install_env.sh [--stack openmmlab|onedl] [--cuda auto|yes|no] [--cuda-arch LIST]
#                             [--cuda-home DIR] [--venv DIR]
#
#   --stack openmmlab  (default) the original OpenMMLab 2.x releases, in ./.venv
#   --stack onedl      the maintained fork with the same import names (onedl-mm*), in ./.venv-onedl
#   --cuda auto        (default) build mmcv's CUDA ops when `nvidia-smi` sees a GPU, else the CPU ops
#   --cuda yes|no      force either; `yes` works without a GPU (e.g. to build a wheel for another machine)
#   --cuda-arch LIST   TORCH_CUDA_ARCH_LIST for the CUDA build, e.g. "9.0" or "8.0;8.6;9.0"; default: the
#                      compute capabilities of the visible GPUs, or DEFAULT_CUDA_ARCHS without one
#   --cuda-home DIR    use an existing CUDA toolkit (its major version must equal torch's CUDA) instead of
#                      the registry's nvcc (pip package cuda-toolkit[nvcc,cccl], installed into the venv)
#   --venv DIR         another virtual environment
#
# Why each pin (measured on Python 3.11, x86_64):
#   torch 2.14.1 + torchvision 0.29.1  the only pair with a working torchvision here (mmpretrain needs it);
#                                      the registry serves it as a CUDA 13.0 build (CPU use needs no GPU)
#   setuptools >=77.0.3,<81            torch needs >=77.0.3; 81+ drops pkg_resources, which mmcv's setup.py
#                                      and mmengine's `mmdet::` base-config lookup import
#   mmcv from source                   no wheel exists for this torch, and torch 2.14's headers need C++20
#                                      (g++ and nvcc); mmdet 3.3 / mmseg 1.2 refuse mmcv>=2.2, so the original
#                                      stack pins 2.1.0, the fork ships onedl-mmcv 2.3.6 as an sdist.
# The built wheel is cached outside the checkout, keyed by mmcv / torch / CPU-or-CUDA+arch / Python, so it
# is built once a machine; a second run only checks a stamp and finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_NAME=openmmlab
CUDA_MODE=auto
CUDA_ARCH=''
CUDA_HOME_ARG=''
VENV=''
DEFAULT_CUDA_ARCHS='8.0;8.6;8.9;9.0+PTX'  # A100, RTX 30xx/A10, L4/RTX 40xx, H100/H200 (+PTX for newer GPUs)

usage() { sed -n '4,16p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) STACK_NAME="${2:?--stack needs openmmlab or onedl}"; shift 2 ;;
    --cuda) CUDA_MODE="${2:?--cuda needs auto, yes or no}"; shift 2 ;;
    --cuda-arch) CUDA_ARCH="${2:?--cuda-arch needs a list such as 9.0}"; shift 2 ;;
    --cuda-home) CUDA_HOME_ARG="${2:?--cuda-home needs a directory}"; shift 2 ;;
    --venv) VENV="${2:?--venv needs a directory}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "[install] unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

PY_BOOT="${PYTHON:-python3.11}"
command -v "$PY_BOOT" >/dev/null 2>&1 || PY_BOOT=python3
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
SETUPTOOLS_SPEC='setuptools>=77.0.3,<81'
COMMON=(ftfy regex 'timm==1.0.*' pytest 'ruff==0.17.6' onnx onnxruntime onnxscript grad-cam)
case "$STACK_NAME" in
  openmmlab)
    MMCV_DIST=mmcv; MMCV_VERSION=2.1.0
    STACK=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 'numpy<2')
    : "${VENV:=$ROOT/.venv}" ;;
  onedl)
    MMCV_DIST=onedl-mmcv; MMCV_VERSION=2.3.6
    STACK=(onedl-mmengine==0.10.12 onedl-mmdetection==3.5.1 onedl-mmsegmentation==1.4.2
           onedl-mmpretrain==1.3.6 'numpy>=2')
    : "${VENV:=$ROOT/.venv-onedl}" ;;
  *) echo "[install] unknown stack '$STACK_NAME'; choose openmmlab (default) or onedl" >&2; exit 2 ;;
esac
case "$CUDA_MODE" in
  auto) if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
          CUDA_MODE=yes; else CUDA_MODE=no; fi ;;
  yes|no) ;;
  *) echo "[install] --cuda takes auto, yes or no, got '$CUDA_MODE'" >&2; exit 2 ;;
esac
if [ "$CUDA_MODE" = yes ] && [ -z "$CUDA_ARCH" ]; then
  # compute capabilities of the visible GPUs, e.g. "9.0"; a build without a GPU takes the default list
  CUDA_ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | paste -sd';' || true)"
  : "${CUDA_ARCH:=$DEFAULT_CUDA_ARCHS}"
fi

CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mmpoolformer"
LOG_DIR="$CACHE_ROOT/logs/$(basename "$VENV")"
mkdir -p "$LOG_DIR"

# The stamp changes whenever this script, setup.py or the options change, so edits re-run the install.
STAMP_KEY="$( (cat "$0" "$ROOT/setup.py"; echo "$STACK_NAME $CUDA_MODE $CUDA_ARCH $CUDA_HOME_ARG") | sha256sum | cut -c1-16)"
STAMP="$VENV/.mmpoolformer-install-$STAMP_KEY"

step() {  # step NAME CMD...: run CMD with its output in a log; on failure name the step and show the log's tail
  local name="$1"; shift
  local log="$LOG_DIR/$(echo "$name" | tr ' /;' '___').log"
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

CHECK_IMPORTS='import mmcv.ops, mmdet, mmseg, mmpretrain, timm, mmdeploy.apis, mmpoolformer; from mmcv.ops import nms'
if [ -f "$STAMP" ] && "$VENV/bin/python" -c "$CHECK_IMPORTS" 2>/dev/null; then
  echo "[install] environment in $(basename "$VENV") ($STACK_NAME stack) is up to date"
  exit 0
fi
echo "[install] $STACK_NAME stack into $VENV, mmcv ops for $([ "$CUDA_MODE" = yes ] && echo "CUDA (arch $CUDA_ARCH)" || echo CPU)"

if [ ! -x "$VENV/bin/python" ]; then
  step "create venv" "$PY_BOOT" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

step "pin setuptools" "${PIP[@]}" install -U pip wheel "$SETUPTOOLS_SPEC"
step "install torch $TORCH_VERSION" "${PIP[@]}" install "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
TORCH_CUDA="$("$PY" -c 'import torch; print(torch.version.cuda or "")')"
BUILD_ENV=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
if [ "$CUDA_MODE" = yes ]; then
  if [ -z "$TORCH_CUDA" ]; then
    echo "[install] --cuda yes needs a CUDA build of torch; this torch $TORCH_VERSION is a CPU build" >&2; exit 1
  fi
  CUDA_MAJOR="${TORCH_CUDA%%.*}"
  if [ -n "$CUDA_HOME_ARG" ]; then
    CUDA_HOME_DIR="$CUDA_HOME_ARG"
    NVCC_VERSION="$("$CUDA_HOME_DIR/bin/nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\),.*/\1/p')"
    if [ "${NVCC_VERSION%%.*}" != "$CUDA_MAJOR" ]; then
      echo "[install] --cuda-home $CUDA_HOME_DIR has nvcc '${NVCC_VERSION:-none}', but torch is built with" \
           "CUDA $TORCH_CUDA: use a CUDA $CUDA_MAJOR.x toolkit, or leave out --cuda-home for the registry's nvcc" >&2
      exit 1
    fi
  else
    # nvcc of torch's CUDA version from the package registry (into the venv, no system toolkit needed)
    step "install nvcc $TORCH_CUDA" "${PIP[@]}" install "cuda-toolkit[nvcc,cccl]==$TORCH_CUDA.*"
    CUDA_HOME_DIR="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nvidia/cu$CUDA_MAJOR"
    # torch's build helpers link against lib/libcudart.so, which the pip layout only has versioned
    if [ ! -e "$CUDA_HOME_DIR/lib/libcudart.so" ]; then
      ln -s "$(basename "$(ls "$CUDA_HOME_DIR"/lib/libcudart.so.* | head -n1)")" "$CUDA_HOME_DIR/lib/libcudart.so"
    fi
  fi
  BUILD_ENV+=(FORCE_CUDA=1 CUDA_HOME="$CUDA_HOME_DIR" TORCH_CUDA_ARCH_LIST="$CUDA_ARCH"
              PATH="$CUDA_HOME_DIR/bin:$PATH"
              CPLUS_INCLUDE_PATH="$CUDA_HOME_DIR/include/cccl${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}")
  VARIANT="cu${TORCH_CUDA//./}-sm$(echo "$CUDA_ARCH" | tr -d '.+' | tr ';' '_')"
else
  # mmcv's setup.py builds CUDA ops whenever torch sees a GPU (FORCE_CUDA=0 does not stop it): hide it
  BUILD_ENV+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=)
  VARIANT=cpu
fi
WHEEL_DIR="$CACHE_ROOT/wheels/$MMCV_DIST-$MMCV_VERSION-torch$TORCH_VERSION-$VARIANT-$PY_TAG-$(uname -m)"

build_mmcv() {  # commands chained with && because `set -e` does not apply inside `if`
  local work src
  work="$(mktemp -d)" &&
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$work" "$MMCV_DIST==$MMCV_VERSION" &&
  tar -xzf "$work"/*.tar.gz -C "$work" && src="$(ls -d "$work"/*/ | head -n1)" &&
  # torch 2.14's headers refuse C++ standards older than 20 (g++ and nvcc flags alike)
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py" &&
  (cd "$src" && env "${BUILD_ENV[@]}" "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$work/dist" .) &&
  mkdir -p "$WHEEL_DIR" && cp "$work"/dist/*.whl "$WHEEL_DIR/" && rm -rf "$work"
}
if ! ls "$WHEEL_DIR"/*.whl >/dev/null 2>&1; then
  echo "[install] no cached $MMCV_DIST $MMCV_VERSION wheel ($VARIANT, torch $TORCH_VERSION, $PY_TAG): building it" \
       "once (CPU ops about 11 min on 2 cores; CUDA ops for one arch much longer, see README)"
  step "build $MMCV_DIST $MMCV_VERSION wheel ($VARIANT)" build_mmcv
fi
step "install $MMCV_DIST $MMCV_VERSION ($VARIANT)" "${PIP[@]}" install --no-deps --force-reinstall "$WHEEL_DIR"/*.whl
step "install mmcv requirements" "${PIP[@]}" install addict "${STACK[-1]}" packaging Pillow pyyaml yapf opencv-python
step "install $STACK_NAME stack" "${PIP[@]}" install "${STACK[@]}" "${COMMON[@]}" "$SETUPTOOLS_SPEC"
# mmdeploy 1.3.1 (tools/deployment/deploy.py): --no-deps, since its pins (protobuf<=3.20.2, any torch)
# would replace what the stack needs; its pure-Python imports are installed beside it
step "install mmdeploy 1.3.1" "${PIP[@]}" install --no-deps mmdeploy==1.3.1 aenum multiprocess dill \
  prettytable terminaltables
# --no-deps: setup.py names no OpenMMLab distribution (a fork installed here must not be replaced)
step "install mmpoolformer (editable)" "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
step "check imports" "$PY" -c "$CHECK_IMPORTS"
if [ "$CUDA_MODE" = yes ]; then
  step "check mmcv CUDA ops" "$PY" -c '
from mmcv.ops import get_compiling_cuda_version
version = get_compiling_cuda_version()
assert version not in ("", "not available"), version
print("mmcv ops compiled with CUDA", version)'
fi

rm -f "$VENV"/.mmpoolformer-install-*
touch "$STAMP"
echo "[install] done: activate with 'source $(realpath --relative-to="$PWD" "$VENV" 2>/dev/null || echo "$VENV")/bin/activate'"
