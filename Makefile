# Two commands do all the set-up on a fresh machine:
#   make demo   -> builds .venv and runs the main job on the embedded default data
#   make test   -> builds .venv (with test extras) and runs the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= demo-out
# pytest workers; CI machines have 2 cores
WORKERS ?= 2

.PHONY: demo test lab install install-test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip

# torch is pinned: 2.13.0 is a CPU wheel; an unpinned torch would pull a multi-GB CUDA build
install: $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0" -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.13.0" -e ".[notebooks,test]"

demo: install
	$(BIN)/pdviz demo --out $(OUT)

test: install-test
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadfile --nbval-lax tests notebooks

lab: install-test
	$(BIN)/jupyter lab notebooks/

bench: install
	$(BIN)/pdviz bench --quick --out benchmarks/quick

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
