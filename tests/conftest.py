"""Shared test setup: an offline, local Hugging Face Hub for the whole session.

Order matters here. ``huggingface_hub`` reads ``HF_ENDPOINT``/``HF_TOKEN``/``HF_HOME`` once, when
``huggingface_hub.constants`` is first imported (``transformers``, ``peft``, ``datasets`` and
``gradio`` all import it), so the environment is prepared and the local Hub started *before* any
of them can be imported. Keep this file free of those imports at module level.

Sections:
1. Session environment and local Hub (runs at import time).
2. Hub fixtures.
(Add new sections below for other fixtures.)
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:  # makes ``tests/hub_server.py`` importable as ``hub_server``
    sys.path.insert(0, str(TESTS_DIR))

from hub_server import HubServer  # noqa: E402  (stdlib only: safe before the HF imports)

if TYPE_CHECKING:
    from huggingface_hub import HfApi

# ----------------------------------------------------------------------------------------------
# 1. Session environment and local Hub
# ----------------------------------------------------------------------------------------------

if "huggingface_hub" in sys.modules:  # e.g. a pytest plugin or a filterwarnings class imported it first
    raise RuntimeError(
        "huggingface_hub was imported before tests/conftest.py could point HF_ENDPOINT at the local Hub; "
        "tests would talk to huggingface.co. Keep package imports at pytest start-up light."
    )

HUB_TOKEN = "hf_local_test_token"
"""The only token the local Hub accepts; a fake, never a real credential."""

SESSION_TMP = Path(tempfile.mkdtemp(prefix="ner_adapters_tests_"))

_HUB = HubServer(SESSION_TMP / "hub", token=HUB_TOKEN).start()

os.environ.update(
    {
        "HF_ENDPOINT": _HUB.url,
        "HF_TOKEN": HUB_TOKEN,
        # Caches, token file and hf_xet logs go to the session dir, never to ~/.cache.
        "HF_HOME": str(SESSION_TMP / "hf_home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",  # datasets' own telemetry: a HEAD to s3.amazonaws.com
        # The local Hub speaks only the legacy git-LFS "basic" transfer. huggingface_hub offers
        # Xet to the server whenever the hf_xet package is importable (it is installed), and Xet
        # needs Hugging Face's CAS service, which a stdlib test server cannot provide. Disabling
        # it pins the client to the LFS path for uploads and plain HTTP for downloads.
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TOKENIZERS_PARALLELISM": "false",
    }
)
# Converted models are slow to rebuild, so they live outside the throwaway session dir.
os.environ.setdefault("NER_ADAPTERS_CACHE", str(REPO_ROOT / ".cache" / "ner_adapters"))


def _shutdown_session() -> None:
    """Stop the Hub and delete the session dir when the interpreter exits."""
    _HUB.stop()
    shutil.rmtree(SESSION_TMP, ignore_errors=True)


atexit.register(_shutdown_session)

# ----------------------------------------------------------------------------------------------
# 2. Hub fixtures
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def hub() -> HubServer:
    """The session's local Hub (``.url``, ``.requests``, ``.inject_failure()``...)."""
    return _HUB


@pytest.fixture(autouse=True)
def _reset_hub_failures(hub: HubServer) -> Iterator[None]:
    """A test's injected failures never leak into the next test."""
    yield
    hub.clear_failures()


@pytest.fixture(scope="session")
def hub_api(hub: HubServer) -> HfApi:
    """An authenticated ``HfApi`` client for the local Hub."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=HUB_TOKEN)


@pytest.fixture
def unique_repo_id(request: pytest.FixtureRequest) -> str:
    """A repo id no other test uses: ``tester/<test name>-<8 hex>``."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")[:40] or "repo"
    return f"tester/{name}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------------------
# 3. Real data
# ----------------------------------------------------------------------------------------------

_SHARED_CANDIDATES = [
    os.environ.get("NER_ADAPTERS_DATA_DIR", ""),
    str(REPO_ROOT.parent / "shared" / "datasets"),
]


def _full_data_dir() -> Path | None:
    for candidate in _SHARED_CANDIDATES:
        if candidate and (Path(candidate) / "wnut17").is_dir() and (Path(candidate) / "gum").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data folder (``../shared/datasets`` or ``$NER_ADAPTERS_DATA_DIR``): for tests of datasets that
    are not bundled (CoNLL-2003, GUM, Arman, ParsNER, Presidio). Tests that the bundled WNUT-17, UNER English-EWT
    or ParsTwiNER can serve use ``data_dir`` instead, so a fresh clone runs them too."""
    found = _full_data_dir()
    if found is None:
        pytest.skip("needs the full dataset folder (../shared/datasets or $NER_ADAPTERS_DATA_DIR): this test uses "
                    "a dataset that is not bundled with the package")
    return found


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """A data folder holding at least the bundled datasets (WNUT-17, UNER English-EWT, ParsTwiNER): the full
    folder when present, else the package's bundled copies, so these tests run on a fresh clone as well."""
    from ner_adapters.data.registry import BUNDLED_DIR

    return _full_data_dir() or BUNDLED_DIR


# ----------------------------------------------------------------------------------------------
# 4. Tiny models (built from configs: fast, no downloads)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The packaged SmolLM2-135M-Instruct as a HF folder (converted once per machine, then cached)."""
    from ner_adapters.models import SMOLLM2, materialize_packaged

    return materialize_packaged(SMOLLM2)


@pytest.fixture(scope="session")
def tiny_llm_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 5-layer Llama with SmolLM2's real tokenizer and chat template, saved as a folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llm")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT core with a WordPiece vocabulary of the synthetic Multi-BERT sentences (read-only)."""
    from multibert_tiny import build_tiny_core

    return build_tiny_core(tmp_path_factory.mktemp("tiny-bert-core"))


# ----------------------------------------------------------------------------------------------
# 5. Hub delivery: tiny artifacts and one push of them (tests/hub_tiny.py)
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def multibert_run(tmp_path_factory: pytest.TempPathFactory, hub_api: HfApi):
    """A saved tiny Multi-BERT model with results.json; its core is a repo of the local Hub."""
    from hub_tiny import build_multibert_run
    from multibert_tiny import one_torch_thread

    with one_torch_thread():
        return build_multibert_run(tmp_path_factory.mktemp("multibert"), hub_api)


@pytest.fixture(scope="session")
def cllmfs_run(tmp_path_factory: pytest.TempPathFactory, hub_api: HfApi, tiny_llm_dir: Path):
    """A tiny CLLMFS run folder (one episode with its LoRA adapter); its base LLM is a local-Hub repo."""
    from hub_tiny import build_cllmfs_run
    from multibert_tiny import one_torch_thread

    with one_torch_thread():
        return build_cllmfs_run(tmp_path_factory.mktemp("cllmfs"), hub_api, tiny_llm_dir)


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, multibert_run, cllmfs_run) -> dict:
    """Both runs pushed once by recipes/push_to_hub.py: ``{"report", "prefix", "export_dir", "report_file"}``."""
    from hub_tiny import load_recipe

    recipe = load_recipe("push_to_hub")
    root = tmp_path_factory.mktemp("published")
    prefix = f"tiny-{uuid.uuid4().hex[:6]}"
    args = recipe.PushArguments(multibert_dir=str(multibert_run.model_dir), cllmfs_runs=[str(cllmfs_run.run_dir)],
                                repo_prefix=prefix, export_dir=str(root / "export"),
                                report_file=str(root / "report.json"), example="mary visited paris today .")
    return {"report": recipe.run(args), "prefix": prefix, "export_dir": root / "export",
            "report_file": root / "report.json"}
