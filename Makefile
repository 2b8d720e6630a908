# Two commands: `make figures` (every figure at the paper's settings) and `make test`.
# Each creates .venv and installs what it needs on first use. Any failing step stops make with a
# non-zero status; the one skip is a CIFAR-10 notebook without CIFAR-10 (see cifar-figures).
# `make figures QUICK=1` is a smoke test with tiny settings: it writes to figures-quick/
# (git-ignored), or to OUT, but never into the committed figures/ (refused before anything runs).
# Ctrl-C or SIGTERM stop every script make started within seconds, leaving no partial file.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
OUT ?= $(if $(QUICK),figures-quick,figures)
CIFAR_DIR ?= data
QUICK ?=
QUICK_FLAG := $(if $(QUICK),--quick,)
# Seeds for the claims that are judged over several draws (seed 0 is the paper's; the plots of the
# paper's figures show seed 0 only): Fig. 6 and its same-function experiment, Fig. 9 and its own.
# A quick run uses 2 (it only checks that the pipeline works).
SEEDS_CONVERGENCE ?= $(if $(QUICK),2,8)
SEEDS_HESSIAN ?= $(if $(QUICK),2,10)

# run_notebook.py's exit status when CIFAR-10 is absent and could not be downloaded
CIFAR_MISSING := 3
# OUT is the committed figures/, however it is spelled (./figures, an absolute path, a symbolic link)
OUT_IS_COMMITTED := $(filter $(realpath figures) $(realpath figures)/% $(CURDIR)/figures $(CURDIR)/figures/%,\
                      $(realpath $(OUT)) $(abspath $(OUT)))
ifneq ($(QUICK),)
ifneq ($(OUT_IS_COMMITTED),)
$(error a quick run never writes into the committed figures/ (OUT=$(OUT)): without OUT, quick output goes to figures-quick/; or give another folder)
endif
endif
# A full run into figures/ also saves the executed notebooks (figures and tables) over the committed
# ones; a quick run, or one into another OUT, leaves them alone.
IN_PLACE := $(if $(QUICK),,$(if $(OUT_IS_COMMITTED),--in-place,))
# EXECUTED=DIR: also save each executed notebook there (the tests read them)
EXECUTED_FLAG = $(if $(EXECUTED),--executed "$(EXECUTED)/$(1)",)
# CIFAR_DOWNLOAD=0: never download CIFAR-10 (the tests; nothing is created then)
DOWNLOAD_FLAG := $(if $(filter 0,$(CIFAR_DOWNLOAD)),--no-download,)

# The start of a recipe that runs scripts: `run COMMAND` prints COMMAND and runs it in the background while
# the shell waits for it, so that Ctrl-C or SIGTERM reach the shell's trap at once (make passes SIGTERM to the
# shell only, and a shell defers its trap until a foreground command ends). The trap ends every script the
# recipe started (SIGTERM: each removes its partial files and ends its worker processes) and stops make with
# 130 (Ctrl-C) or 143 (SIGTERM). A script started with & ignores Ctrl-C itself: the trap is what ends it.
END_SCRIPTS_ON_SIGNALS = pids=; \
  stop() { trap '' INT TERM; kill -TERM $$pids 2>/dev/null; wait; exit $$1; }; \
  trap 'stop 130' INT; trap 'stop 143' TERM; \
  run() { echo "$$*"; "$$@" & pids="$$pids $$!"; wait $$!; }

.PHONY: figures toy-figures paper-scripts cifar-figures report test benchmark clean-venv

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# APGD and Square of the standard robustness evaluation (robustness.py; the tests' reference FGSM/PGD
	# too); --no-deps because its metadata pins an old requests that it never imports (its real needs
	# are in requirements.txt).
	$(PY) -m pip install --quiet --no-deps "torchattacks>=3.5.1,<4"
	touch $@

figures: toy-figures cifar-figures report

# The five gradient-flow scripts at the paper's settings, Figs. 6 and 9 over several seeds with their
# same-function experiments (Q moved along the symmetry at a fixed network function), and Fig. 3
# once more in float64 (the report checks that the float64 drift of Q is proportional to the learning rate).
toy-figures: paper-scripts
	@$(END_SCRIPTS_ON_SIGNALS); run $(PY) Q_dynamics_elementwise.py $(QUICK_FLAG) --dtype float64 --out "$(OUT)/float64"

# Fig. 7 trains its radial runs in one process, on one core, so it runs beside the other four (which
# use every core through their worker processes); the first failure's status is make's.
paper-scripts: $(VENV)/.installed
	@$(END_SCRIPTS_ON_SIGNALS); \
	echo '$(PY) Q_convergence_radial.py $(QUICK_FLAG) --out "$(OUT)" &'; \
	$(PY) Q_convergence_radial.py $(QUICK_FLAG) --out "$(OUT)" & radial=$$!; pids=$$radial; \
	run $(PY) Q_dynamics_elementwise.py $(QUICK_FLAG) --out "$(OUT)" && \
	run $(PY) Q_distribution.py $(QUICK_FLAG) --out "$(OUT)" && \
	run $(PY) Q_convergence_elementwise.py $(QUICK_FLAG) --seeds $(SEEDS_CONVERGENCE) --same-function --out "$(OUT)" && \
	run $(PY) Q_hessian_eigenvalues.py $(QUICK_FLAG) --seeds $(SEEDS_HESSIAN) --same-function --out "$(OUT)"; \
	status=$$?; wait $$radial; radial_status=$$?; \
	if [ $$status -ne 0 ]; then exit $$status; fi; exit $$radial_status

# The CIFAR-10 notebooks, headless. Without CIFAR-10 (none in CIFAR_DIR, and offline or
# CIFAR_DOWNLOAD=0: run_notebook.py's exit status 3) a notebook is skipped with a message and the
# report says it was not run; any other failure (a bug, a corrupt data file) stops make.
cifar-figures: $(VENV)/.installed
	$(call run_cifar_notebook,ensemble_CIFAR.ipynb,Fig. 10)
	$(call run_cifar_notebook,adversarial_CIFAR.ipynb,Fig. 11)

# $(1): the notebook, $(2): its figure
define run_cifar_notebook
@$(END_SCRIPTS_ON_SIGNALS); \
run $(PY) run_notebook.py $(1) --out "$(OUT)" --cifar-dir "$(CIFAR_DIR)" $(QUICK_FLAG) $(DOWNLOAD_FLAG) $(IN_PLACE) $(call EXECUTED_FLAG,$(1)); status=$$?; \
if [ $$status -eq $(CIFAR_MISSING) ]; then \
  echo "SKIPPED $(2) ($(1)): see the error above. To provide CIFAR-10, put cifar-10-batches-py in $(CIFAR_DIR)/ or pass CIFAR_DIR=/path (it is downloaded there when online)."; \
elif [ $$status -ne 0 ]; then exit $$status; fi
endef

report: $(VENV)/.installed
	$(PY) make_report.py --out "$(OUT)" --cifar-dir "$(CIFAR_DIR)"

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

benchmark: $(VENV)/.installed
	$(PY) benchmarks/bench_training.py

clean-venv:
	rm -rf $(VENV)
