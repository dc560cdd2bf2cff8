# Two entry points for a fresh machine: `make study` (environment + smoke study) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ptmdd-installed

.PHONY: env study lab test lint

# Python writes the bytecode of each module it imports, once (its default), in every recipe here,
# even where the shell sets PYTHONDONTWRITEBYTECODE: compiling the whole environment up front
# (pip's default, or compileall) costs 20-30 s for ~14000 files, of which the suite and the study
# import ~5800; without bytecode every worker, kernel and command-line process would compile what
# it imports again
unexport PYTHONDONTWRITEBYTECODE

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	# strip notebook outputs on commit (.gitattributes names the filter; git config defines it)
	if git rev-parse --git-dir >/dev/null 2>&1; then $(BIN)/nbstripout --install; fi
	touch $(STAMP)

# The main job: the seven study notebooks on the offline smoke profile (figures/smoke/).
study: env
	$(BIN)/ptmdd study --profile smoke

# JupyterLab on the notebooks; the .venv kernel is registered as "python3", the kernel the
# notebooks name and papermill runs, so the lab and the batch use the same environment.
lab: env
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ptmdd .venv)"
	$(BIN)/jupyter lab notebooks/

lint: env
	$(BIN)/ruff check .

# Two test processes of one thread each (tests/conftest.py), whole files to one process (a file's
# module fixtures are built once); a plain `pytest` runs them one by one. xdist hands out the files
# with the most tests first, so the smoke study (three tests, a fifth of the suite's work) comes
# last, where its own two workers use the core the other test process has left.
test: env lint
	$(BIN)/python -m pytest -n 2 --dist loadfile
