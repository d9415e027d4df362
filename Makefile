# Two commands on a fresh clone, nothing before them:
#   make demo   the main job on the bundled sample (tiles, captions, dataset, HTML report) in outputs/
#   make test   the unit tests and every notebook (nbval), offline
#   make lab    JupyterLab on notebooks/ (the interactive explorer)
# Both create the virtual environment .venv from requirements.txt when it is missing or older than
# requirements.txt / pyproject.toml, and reuse it after.  The install also sets up nbstripout, so
# notebooks saved in JupyterLab stay without outputs in git.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wavdiff-installed
# what a run or a save adds to a notebook besides outputs (nbstripout drops those by itself)
NB_EXTRA_KEYS := metadata.language_info metadata.papermill metadata.widgets cell.metadata.papermill cell.metadata.execution

.PHONY: demo test lab install clean-outputs

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --progress-bar off -r requirements.txt
	if git rev-parse --git-dir >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install && git config filter.nbstripout.extrakeys "$(NB_EXTRA_KEYS)"; fi
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m wavdiff_utils --input sample_data --output outputs/dataset

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

# JupyterLab on the notebooks, from the project's environment (as root it needs --allow-root)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

clean-outputs:
	rm -rf outputs
