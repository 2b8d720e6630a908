# Two commands: `make figures` (every figure at the paper's settings) and `make test`.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= figures
CIFAR_DIR ?= data
QUICK ?=
QUICK_FLAG := $(if $(QUICK),--quick,)

.PHONY: figures toy-figures cifar-figures report test benchmark clean-venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

figures: toy-figures cifar-figures report

toy-figures: $(VENV)/.installed
	$(PY) Q_dynamics_elementwise.py $(QUICK_FLAG) --out $(OUT)
	$(PY) Q_distribution.py $(QUICK_FLAG) --out $(OUT)
	$(PY) Q_convergence_elementwise.py $(QUICK_FLAG) --out $(OUT)
	$(PY) Q_convergence_radial.py $(QUICK_FLAG) --out $(OUT)
	$(PY) Q_hessian_eigenvalues.py $(QUICK_FLAG) --out $(OUT)

cifar-figures: $(VENV)/.installed
	-$(PY) run_notebook.py ensemble_CIFAR.ipynb --out $(OUT) --cifar-dir $(CIFAR_DIR) $(QUICK_FLAG)
	-$(PY) run_notebook.py adversarial_CIFAR.ipynb --out $(OUT) --cifar-dir $(CIFAR_DIR) $(QUICK_FLAG)

report: $(VENV)/.installed
	$(PY) make_report.py --out $(OUT)

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

benchmark: $(VENV)/.installed
	$(PY) benchmarks/bench_training.py

clean-venv:
	rm -rf $(VENV)
