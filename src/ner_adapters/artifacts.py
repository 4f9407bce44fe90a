"""Every artifact's manifest in one place: file names, formats and versions, fingerprints, checked reading.

Three artifacts carry a manifest, each written by its own module but named, versioned and read here:

- a CLLMFS LoRA adapter: ``cllmfs_config.json`` beside PEFT's files (:mod:`ner_adapters.cllmfs.artifact`);
- a whole Multi-BERT set (``MultiBertModel.save``): ``multibert.json`` (:mod:`ner_adapters.multibert.model`);
- one exported Hub repo, a domain adapter or a router: ``ner_adapters.json`` (:mod:`ner_adapters.hub.layout`).

A fingerprint records what an adapter depends on in its base model, so loading it on another one is refused
with a clear error: the architecture numbers for CLLMFS (a LoRA adapter fits any copy of its base model, a
de-quantized one included), plus a hash of the word embeddings for Multi-BERT (its heads read the frozen core's
states, so only the very same weights will do).

Torch-free: the Hub code and the CLI read manifests without loading a model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

from .errors import ArtifactError

# --- names, formats and versions ---------------------------------------------------------------------------

CLLMFS_CONFIG = "cllmfs_config.json"
CLLMFS_FORMAT_VERSION = 1

MULTIBERT_MANIFEST = "multibert.json"
MULTIBERT_FORMAT = "ner_adapters.multibert"
MULTIBERT_FORMAT_VERSION = 1
MULTIBERT_FIELDS = ("core_model", "core_fingerprint", "max_length", "schemes", "domains", "general", "router")

HUB_MANIFEST = "ner_adapters.json"
HUB_FORMAT = "ner_adapters.hub"
HUB_FORMAT_VERSION = 1
KIND_DOMAIN = "multibert-domain"
KIND_ROUTER = "multibert-router"
KIND_MULTIBERT = "multibert"  # a whole ``MultiBertModel.save`` folder (local use; not pushed as such)
KIND_CLLMFS = "cllmfs"

# --- fingerprints ------------------------------------------------------------------------------------------

ARCHITECTURE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "intermediate_size", "vocab_size")


def architecture_fingerprint(config) -> dict:
    """The parts of a model config a LoRA adapter depends on (shapes, not weights)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return {key: getattr(text, key, None) for key in ARCHITECTURE_KEYS}


def core_fingerprint(model) -> dict:
    """Architecture numbers plus a hash of the word embeddings: enough to tell two cores apart.

    ``model`` is a transformers model (its tensors are read through their own methods: no torch import here).
    """
    config = model.config
    embeddings = model.get_input_embeddings().weight.detach().float().contiguous().numpy()
    return {
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "embeddings_sha256": hashlib.sha256(embeddings.tobytes()).hexdigest(),
    }


# --- reading -----------------------------------------------------------------------------------------------


def read_json(path: str | Path, *, error: type[Exception] = ArtifactError) -> dict:
    """A JSON object from ``path``; anything else raises ``error`` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        raise error(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def check_format(manifest: dict, path: Path, format: str, version: int, *,
                 required: Iterable[str] = (), error: type[Exception] = ArtifactError) -> dict:
    """``manifest`` if it is ``format`` at ``version`` and has every ``required`` field, else ``error``."""
    if manifest.get("format") != format or manifest.get("format_version") != version:
        raise error(f"{path}: format {manifest.get('format')!r} version {manifest.get('format_version')!r} is not "
                    f"{format!r} version {version}")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise error(f"{path}: missing field(s) {missing}")
    return manifest


def read_multibert_manifest(folder: str | Path, *, error: type[Exception] = ArtifactError) -> dict:
    """``multibert.json`` of a saved Multi-BERT set, checked (format, fields, the schemes its domains use)."""
    path = Path(folder) / MULTIBERT_MANIFEST
    if not path.is_file():
        raise error(f"{folder} is not a saved Multi-BERT model (no {MULTIBERT_MANIFEST})")
    manifest = check_format(read_json(path, error=error), path, MULTIBERT_FORMAT, MULTIBERT_FORMAT_VERSION,
                            required=MULTIBERT_FIELDS, error=error)
    domains = manifest["domains"] if isinstance(manifest["domains"], dict) else {}
    unknown = sorted({str(entry.get("scheme")) for entry in domains.values() if isinstance(entry, dict)}
                     - set(manifest["schemes"]))
    if unknown:
        raise error(f"{path}: domains use scheme(s) {unknown} that field 'schemes' does not define")
    return manifest


def read_hub_manifest(folder: str | Path, *, error: type[Exception] = ArtifactError) -> dict:
    """``ner_adapters.json`` of an exported Hub repo (a domain adapter or a router), checked."""
    path = Path(folder) / HUB_MANIFEST
    manifest = check_format(read_json(path, error=error), path, HUB_FORMAT, HUB_FORMAT_VERSION, error=error)
    if manifest.get("kind") not in (KIND_DOMAIN, KIND_ROUTER):
        raise error(f"{path}: unknown kind {manifest.get('kind')!r}")
    return manifest


def artifact_kind(folder: str | Path) -> str:
    """Which artifact a folder holds (one of the ``KIND_*``); anything else is refused with what to do instead."""
    folder = Path(folder)
    if (folder / HUB_MANIFEST).is_file():
        return read_hub_manifest(folder)["kind"]
    if (folder / MULTIBERT_MANIFEST).is_file():
        return KIND_MULTIBERT
    if (folder / CLLMFS_CONFIG).is_file():
        return KIND_CLLMFS
    if (folder / "adapter_config.json").is_file():
        model_dir = folder.parent.parent
        if (model_dir / MULTIBERT_MANIFEST).is_file():
            raise ArtifactError(f"{folder} is one adapter inside a saved Multi-BERT model: pass the model folder "
                                f"{model_dir} and choose the domain with domain={folder.name!r}")
        raise ArtifactError(f"{folder} holds an adapter without ner-adapters metadata ({HUB_MANIFEST} or "
                            f"{CLLMFS_CONFIG}): its head, label map and base model are unknown, so it is refused")
    raise ArtifactError(f"{folder} is not a ner-adapters artifact (no {HUB_MANIFEST}, {MULTIBERT_MANIFEST} or "
                        f"{CLLMFS_CONFIG})")


__all__ = [
    "ARCHITECTURE_KEYS", "CLLMFS_CONFIG", "CLLMFS_FORMAT_VERSION", "HUB_FORMAT", "HUB_FORMAT_VERSION", "HUB_MANIFEST",
    "KIND_CLLMFS", "KIND_DOMAIN", "KIND_MULTIBERT", "KIND_ROUTER", "MULTIBERT_FIELDS", "MULTIBERT_FORMAT",
    "MULTIBERT_FORMAT_VERSION", "MULTIBERT_MANIFEST", "architecture_fingerprint", "artifact_kind", "check_format",
    "core_fingerprint", "read_hub_manifest", "read_json", "read_multibert_manifest",
]
