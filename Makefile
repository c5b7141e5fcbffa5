# Every target installs what is missing first (a second install takes seconds).
PY := .venv/bin/python

.PHONY: install test demo
install:
	bash tools/install_env.sh

test: install
	$(PY) -m pytest tests -q -p no:cacheprovider

demo: install  # make demo ARGS="--task seg" for Semantic FPN
	$(PY) tools/demo.py $(ARGS)
