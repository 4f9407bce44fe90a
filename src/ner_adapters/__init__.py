"""ner-adapters: Hub-native adapters for few-shot (CLLMFS) and multi-domain (Multi-BERT) NER.

Top-level names are imported lazily: ``import ner_adapters`` (or a light submodule such as
``ner_adapters.spans``) does not import torch, datasets or huggingface_hub, so environment settings such
as ``HF_ENDPOINT`` made after it still take effect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Sentence": "ner_adapters.data.schema",
    "load_ner_dataset": "ner_adapters.data.registry",
    "Span": "ner_adapters.spans",
    "pipeline": "ner_adapters.pipelines",
    "NerAdaptersError": "ner_adapters.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ner_adapters' has no attribute {name!r}")


if TYPE_CHECKING:
    from .data.registry import load_ner_dataset
    from .data.schema import Sentence
    from .errors import NerAdaptersError
    from .pipelines import pipeline
    from .spans import Span
