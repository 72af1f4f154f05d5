# make demo          - set up .venv and run the main job on the embedded toy backbone (writes outputs/)
# make test          - set up .venv and run the test suite
# make lab           - JupyterLab on 127.0.0.1 with the notebooks (the mask painter needs it, or Notebook 7 / VS Code)
# make browser-test  - the notebooks and the mask painter in a real browser (Debian's chromium + chromium-driver)
# make site          - execute the notebooks and refresh docs/ (Markdown + pictures + GIFs a browser of the repo sees)
PYTHON ?= python3
# PyPI's torch + torchvision pair (CUDA builds that also run on a CPU, as Colab has); SAM2's processor needs torchvision
TORCH ?= torch==2.14.1 torchvision==0.29.1
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAB_PORT ?= 8888

.PHONY: setup demo test lab browser-test site lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m loraedit_nb demo --out outputs

test: $(STAMP)
	$(BIN)/python -m pytest -q

# --allow-root only where the user is root (containers, rented GPU machines): JupyterLab refuses root otherwise
lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --port $(LAB_PORT) --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root,)

browser-test: $(STAMP)
	$(BIN)/python scripts/browser_test.py --out outputs/browser_test

site: $(STAMP)
	$(BIN)/python -m loraedit_nb site --out docs

lint: $(STAMP)
	$(BIN)/ruff check loraedit_nb tests scripts experiments

clean:
	rm -rf outputs .pytest_cache
