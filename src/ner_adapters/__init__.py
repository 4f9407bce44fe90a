"""ner-adapters: Hub-native adapters for few-shot (CLLMFS) and multi-domain (Multi-BERT) NER."""

__version__ = "0.1.0"

from .data import Sentence, load_ner_dataset
from .spans import Span

__all__ = ["Sentence", "Span", "__version__", "load_ner_dataset"]
