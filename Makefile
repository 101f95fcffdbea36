# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first, pinned to the wheels this project is tested with; override for another CUDA build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.rils-installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

demo: install   # a second `make demo` moves the first run aside (runs/demo.old-*)
	$(PY) -m rils demo --out runs/demo

test: install
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
