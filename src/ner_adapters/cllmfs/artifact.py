"""A CLLMFS adapter on disk: the PEFT LoRA weights plus what extraction needs to use them.

``cllmfs_config.json`` beside PEFT's files records the prompt mode, the entity types with their
descriptions, the base model and a fingerprint of its architecture, so an adapter loads with one call
and is refused, with a clear error, on a base model it was not trained on.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..artifacts import CLLMFS_CONFIG, CLLMFS_FORMAT_VERSION, architecture_fingerprint  # noqa: F401
from ..atomic import atomic_directory, atomic_write_text
from .entity_types import EntityType
from ..errors import AdapterMismatchError  # noqa: F401  (re-exported: raised here)

CONFIG_NAME = CLLMFS_CONFIG
FORMAT_VERSION = CLLMFS_FORMAT_VERSION


@dataclass
class CLLMFSAdapterConfig:
    """Contents of ``cllmfs_config.json``."""

    base_model: str
    base_fingerprint: dict
    entity_types: list[dict]
    prompt_mode: str = "per_type"
    cl_layer: int | None = None
    #: The none/entity threshold chosen on held-back support sentences (``none_threshold: auto``); extraction
    #: uses it when no DecodingConfig is given. ``None``: greedy, as the paper.
    none_threshold: float | None = None
    metrics: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def types(self) -> list[EntityType]:
        return [EntityType(**t) for t in self.entity_types]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "CLLMFSAdapterConfig":
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise AdapterMismatchError(f"{folder} is not a CLLMFS adapter: it has no {CONFIG_NAME}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            config = cls(**data)
            if not config.types:
                raise ValueError("it lists no entity types")
            return config
        except (ValueError, TypeError) as err:
            raise AdapterMismatchError(f"{path}: not a valid CLLMFS adapter config ({err})") from None

    def check_base(self, config, where: str) -> None:
        """Refuse a base model whose architecture differs from the one the adapter was trained on."""
        found = architecture_fingerprint(config)
        diff = {k: (v, found.get(k)) for k, v in self.base_fingerprint.items() if found.get(k) != v}
        if diff:
            details = ", ".join(f"{k}: adapter {a!r} vs model {b!r}" for k, (a, b) in diff.items())
            raise AdapterMismatchError(
                f"the adapter {where} was trained on {self.base_model}, whose architecture differs from this base "
                f"model ({details}); load it with its own base model"
            )


def save_adapter(model, tokenizer, output_dir: str | os.PathLike, config: CLLMFSAdapterConfig) -> Path:
    """Save a PEFT model's adapter, its tokenizer and ``cllmfs_config.json`` atomically (temp dir, rename).

    The folder is complete on its own: ``adapter_config.json`` names the base model as the user gave it (a Hub
    id, not the local folder a packaged model was converted into), and ``README.md`` is the project's card, not
    PEFT's empty template, so a folder pushed by hand or loaded by PEFT alone is still right.
    """
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        peft_config = staging / "adapter_config.json"
        if peft_config.is_file():
            data = json.loads(peft_config.read_text(encoding="utf-8"))
            data["base_model_name_or_path"] = config.base_model
            peft_config.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        (staging / CONFIG_NAME).write_text(json.dumps(asdict(config), indent=2, ensure_ascii=False), encoding="utf-8")
        write_card(staging, name=output_dir.parent.name or output_dir.name)
    return output_dir


def write_card(folder: str | os.PathLike, *, name: str | None = None, episode_results: dict | None = None,
               run_results: dict | None = None, run_config: dict | None = None,
               support_sentences: int | None = None) -> None:
    """The project's model card (``README.md``) in an adapter folder, from what the folder and the run recorded."""
    from ..hub.model_card import cllmfs_card

    folder = Path(folder)
    card = cllmfs_card(name or folder.name, folder, episode_results=episode_results, run_results=run_results,
                       run_config=run_config, network=False, support_sentences=support_sentences)
    atomic_write_text(folder / "README.md", str(card))


def update_metrics(folder: str | os.PathLike, metrics: dict) -> None:
    """Record measured metrics in a saved adapter's ``cllmfs_config.json`` (atomic replace)."""
    path = Path(folder) / CONFIG_NAME
    data = json.loads(path.read_text(encoding="utf-8"))
    data["metrics"] = metrics
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))
