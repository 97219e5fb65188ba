# petct-study: every target creates/refreshes .venv on first use and skips that when it is up to date.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results/quick
PROFILE ?= quick
JOBS ?= 2
# pytest-xdist workers for make test: one runs the shared tiny study and its tests, the other the rest
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: study test lab report clean lint

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

study: $(STAMP)
	$(BIN)/python -m studylib study --profile $(PROFILE) --out $(RESULTS) --jobs $(JOBS)
	$(MAKE) report RESULTS=$(RESULTS)

test: $(STAMP)
	$(BIN)/ruff check studylib tests benchmarks tools
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=10  # the slowest tests: the suite must stay under 15 minutes on 2 cores

lab: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=. $$([ "$$(id -u)" = 0 ] && echo --allow-root)  # containers often run as root

report: $(STAMP)
	$(BIN)/python -m studylib report --results $(RESULTS)

clean:
	rm -rf results cache report/_site report/.quarto report/index.html report/index.pdf report/index.ipynb .pytest_cache .ruff_cache
