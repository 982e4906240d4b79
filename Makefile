# Two commands do all the set-up on a fresh machine:
#   make demo   -> builds .venv and runs the main job on the embedded default data
#   make test   -> builds .venv (with test extras) and runs the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= demo-out
# pytest workers; CI machines have 2 cores
WORKERS ?= 2

.PHONY: demo test lab install install-test install-docs docs bench wheel-check binder-lock clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch is pinned to 2.13.0. On a public index the plain pin is a multi-GB CUDA build, so the CPU wheel
# index is probed once (3 s at most) and used when it answers; where it does not (a machine with its own
# package mirror, as on CI), the plain pin is the fallback and takes the CPU wheel that mirror holds.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_SOURCE = $(shell $(PY) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=3)" \
	>/dev/null 2>&1 && echo "--index-url $(TORCH_CPU_INDEX)")
TORCH = "torch==2.13.0"

$(VENV)/.torch: $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install --quiet $(TORCH_SOURCE) $(TORCH)
	touch $@

install: $(VENV)/.torch
	$(BIN)/pip install --quiet $(TORCH) -e .

install-test: $(VENV)/.torch
	$(BIN)/pip install --quiet $(TORCH) -e ".[notebooks,test]"

demo: install
	$(BIN)/pdviz demo --out $(OUT)

test: install-test
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --nbval-lax tests notebooks

# The site (build/site/index.html), warnings as errors. The notebooks are rendered from executed copies in
# build/notebooks: CI's notebook tests leave them there (notebooks/conftest.py); a copy missing or older than
# its notebook is executed here in fast mode, WORKERS at a time (rm -rf build/notebooks to execute all again).
NOTEBOOKS := $(wildcard notebooks/[0-9][0-9]_*.ipynb)
EXECUTED := $(patsubst notebooks/%,build/notebooks/%,$(NOTEBOOKS))

build/notebooks/%.ipynb: notebooks/%.ipynb
	$(BIN)/python docs/execute.py $< $@

install-docs: $(VENV)/.torch
	$(BIN)/pip install --quiet $(TORCH) -e ".[notebooks,docs]"

docs: install-docs
	$(MAKE) --no-print-directory -j$(WORKERS) $(EXECUTED)
	rm -f docs/notebooks/*.ipynb
	cp $(EXECUTED) docs/notebooks/
	rm -rf build/site
	$(BIN)/sphinx-build -E -W --keep-going -q -b html docs build/site

lab: install-test
	$(BIN)/jupyter lab notebooks/

bench: install
	$(BIN)/pdviz bench --quick --out benchmarks/quick

# What a user of the wheel gets: build it, install it in a fresh venv (torch first, as above), then run
# `pdviz bench --quick` and the README's Python quickstart from outside the source tree.
WHEEL_VENV ?= /tmp/pdviz-wheel-venv
QUICKSTART = import sys; f = chr(96) * 3; print(open(sys.argv[1]).read().split("\#\# In Python")[1].split(f + "python")[1].split(f)[0])
wheel-check: $(BIN)/python
	rm -rf dist $(WHEEL_VENV) /tmp/pdviz-wheel-run
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	$(PY) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install --quiet $(TORCH_SOURCE) $(TORCH)
	$(WHEEL_VENV)/bin/pip install --quiet dist/pdviz-*.whl
	mkdir -p /tmp/pdviz-wheel-run
	$(BIN)/python -c '$(QUICKSTART)' README.md > /tmp/pdviz-wheel-run/quickstart.py
	cd /tmp/pdviz-wheel-run && $(WHEEL_VENV)/bin/pdviz --version && $(WHEEL_VENV)/bin/pdviz bench --quick --quiet --out bench
	cd /tmp/pdviz-wheel-run && MPLBACKEND=Agg $(WHEEL_VENV)/bin/python quickstart.py && test -s quickstart.png

# binder/requirements.txt: the whole tree of binder/requirements.in pinned (pip's resolver, nothing installed)
binder-lock: $(BIN)/python
	$(BIN)/python binder/lock.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache build dist $(WHEEL_VENV) docs/notebooks/*.ipynb
