# Two commands do the whole set-up on a fresh machine that has only python3:
#   make demo   creates .venv, installs robustlens, runs the demo
#   make test   creates .venv, installs robustlens with its test and peer extras, runs lint, types and tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# CPU build of PyTorch; see README "Installing PyTorch elsewhere" for CUDA.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.PHONY: demo test lint typecheck bench install install-dev clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	touch $@

$(VENV)/.torch: $(VENV)/.created
	$(PIP) install -q "$(TORCH_SPEC)"
	touch $@

$(VENV)/.installed: $(VENV)/.torch pyproject.toml
	$(PIP) install -q -e ".[demo]"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install -q -e ".[demo,dev,peers]"
	# torchattacks declares torchvision and an old requests that would pull a CUDA torch; its code needs neither.
	$(PIP) install -q --no-deps "torchattacks==3.5.1"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/robustlens demo $(DEMO_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests $(wildcard benchmarks)

typecheck: $(VENV)/.installed-dev
	$(VENV)/bin/mypy

test: $(VENV)/.installed-dev lint typecheck
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/attacks.py
	$(PY) benchmarks/geometry.py
	$(PY) benchmarks/training.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
