# Every target creates .venv when missing and installs what it needs.
# A Python >= 3.12 is found on PATH first, then under pyenv; set PYTHON=... to choose.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

define find_python
for c in $${PYTHON:-} python3.13 python3.12 python3; do \
  [ -n "$$c" ] || continue; \
  if command -v "$$c" >/dev/null 2>&1 && "$$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then command -v "$$c"; exit 0; fi; \
done; \
root=$$(pyenv root 2>/dev/null || echo "$$HOME/.pyenv"); \
for p in $$(ls -d "$$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
  if "$$p" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then echo "$$p"; exit 0; fi; \
done; exit 1
endef

$(BIN)/python:
	@py=$$($(find_python)) || { echo "linest needs Python >= 3.12: none found on PATH or under pyenv. Install one, or run: make PYTHON=/path/to/python3.12 ..." >&2; exit 1; }; \
	echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV) && $(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$*]"
	@touch $@

.PHONY: test test-slow lint bench demo study docs docs-figures docs-screenshots clean
# Two processes: XLA's CPU compiler segfaulted (three times, at different compilations)
# late in one process running the whole suite, never in a shorter one; one process per
# module would recompile what modules share (2-3 minutes more). They run side by side
# (the suite is mostly single-threaded compilation: on 2 cores this takes about 2/3 of
# the wall time of one after the other); the second one's output follows the first's.
TESTS_1 = tests/gradients $(filter-out tests/test_delayed.py tests/test_user_errors.py tests/test_fuzz.py tests/test_progress.py,$(wildcard tests/test_*.py)) tests/models/test_advection_diffusion.py tests/models/test_ctmc.py
TESTS_2 = $(filter-out $(TESTS_1),$(wildcard tests/models/test_*.py)) tests/test_delayed.py tests/test_user_errors.py tests/test_fuzz.py tests/test_progress.py tests/study
# Each process lists its 10 slowest tests (the default run must stay under 10 minutes).
# Most of the suite's time is XLA compiling small programs: LLVM's optimisation level 0
# compiles them 20-25 % faster (measured on tests/models/test_ctmc.py, 2 cores) and the
# numbers they compute are the same IEEE arithmetic; the library itself keeps XLA's default.
PYTEST = XLA_FLAGS="--xla_backend_optimization_level=0 $${XLA_FLAGS:-}" $(BIN)/python -m pytest -q -p no:cacheprovider --durations=10
define side_by_side
@log=$$(mktemp); \
$(PYTEST) $(1) $(TESTS_2) > $$log 2>&1 & pid=$$!; \
$(PYTEST) $(1) $(TESTS_1); first=$$?; \
wait $$pid; second=$$?; cat $$log; rm -f $$log; \
test $$first -eq 0 && test $$second -eq 0
endef

test: $(VENV)/.installed-test
	$(call side_by_side,)

test-slow: $(VENV)/.installed-test  # two processes side by side, for the same reason as test
	$(call side_by_side,-m slow)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check linest tests benchmarks examples docs
	$(BIN)/ruff format --check linest tests benchmarks examples docs
	$(BIN)/pyright

# The documentation site into site/: the docstrings' examples run first (a doctest that
# fails stops the build), then the figures (docs/figures.py: the quick ones made here, the
# slow ones from make demo's outputs when present), then mkdocs in strict mode (a broken
# link, a missing reference or a docstring mkdocstrings cannot read is an error).
docs: docs-figures
	$(BIN)/python -m pytest -q -p no:cacheprovider --doctest-modules linest -m "" -o addopts=""
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-figures: $(VENV)/.installed-docs $(VENV)/.installed-test
	$(BIN)/python docs/figures.py

# Screenshots of the built site in headless Chromium (Debian's chromium package).
docs-screenshots: docs
	$(BIN)/python docs/screenshots.py

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/gradient_cost.py

demo: $(VENV)/.installed-test
	$(BIN)/linest fit models/cav.toml --plot cav-prevalence.png --overwrite
	$(BIN)/linest fit models/cav.toml --covariates sex
	$(BIN)/linest fit models/ratings.toml
	$(BIN)/linest fit models/cav_misc.toml
	$(BIN)/linest sample models/cav.toml --chains 4 --warmup 300 --draws 300 --out cav-posterior.nc --overwrite --plots cav
	$(BIN)/python examples/compare_gradients.py
	$(BIN)/linest fit models/advection_diffusion_2d.toml --plot ad-fit.png --overwrite
	$(BIN)/linest fit models/advection_diffusion_spectral.toml --plot ad-spectral.png --overwrite
	$(BIN)/python examples/advection_diffusion.py --out .
	$(BIN)/linest fit models/quantum_ring.toml --plot quantum-fit.png --overwrite
	$(BIN)/python examples/quantum_potential.py --out .
	$(BIN)/linest fit models/theophylline.toml --plot theophylline.png --overwrite
	$(BIN)/python examples/ssm.py --out .

# The study answering the notes' questions (docs/study/study.md and its figures): one
# process per question (see TESTS_1 on long processes), then the report from their numbers.
STUDY = q1_theorem q2_dimension q3_surrogate_adjoint q4_orders q5_hmc_on_D q6_pictures
study: $(VENV)/.installed-test
	@start=$$(date +%s); for q in $(STUDY); do \
	  $(BIN)/python examples/study/$$q.py --out docs/study $(STUDY_FLAGS) || exit 1; done; \
	$(BIN)/python examples/study/report.py --out docs/study; \
	echo "make study: $$(( $$(date +%s) - start )) s"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info site docs/figures
