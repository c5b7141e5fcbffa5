# Every target installs what is missing first (a second install takes seconds).
#   make test                  the original OpenMMLab 2.x stack in .venv
#   make test STACK=onedl      the maintained onedl fork in .venv-onedl
#   make install CUDA=yes      mmcv with its CUDA ops (default auto: when nvidia-smi sees a GPU)
STACK ?= openmmlab
CUDA ?= auto
CUDA_ARCH ?=
VENV := $(if $(filter onedl,$(STACK)),.venv-onedl,.venv)
PY := $(VENV)/bin/python

.PHONY: install lint test demo
install:
	bash tools/install_env.sh --stack $(STACK) --cuda $(CUDA) $(if $(CUDA_ARCH),--cuda-arch "$(CUDA_ARCH)")

lint: install  # ruff: pycodestyle, pyflakes and import order (pyproject.toml)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest tests -q -p no:cacheprovider

demo: install  # make demo ARGS="--task seg" for Semantic FPN
	$(PY) tools/demo.py $(ARGS)
