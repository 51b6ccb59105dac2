# Set-up is part of every target: a fresh clone needs nothing but `make train` or `make test`.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# torch first and pinned: an unpinned resolve would pull the CUDA build and gigabytes of packages.
TORCH  ?= torch==2.13.0
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install train test test-fast soak clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev,dashboard]"
	touch $@

train: install
	$(PY) train.py $(ARGS)

test: install
	$(PY) -m pytest -n 2 --dist loadgroup -m "not soak" $(ARGS)

test-fast: install
	$(PY) -m pytest -n 2 --dist loadgroup -m "not slow and not soak" $(ARGS)

soak: install
	$(PY) -m pytest -m soak $(ARGS)

clean:
	rm -rf $(VENV) outputs .pytest_cache
