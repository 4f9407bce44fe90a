"""CLLMFS: contrastive LoRA fine-tuning of a decoder LLM for few-shot NER, and constrained extraction."""

from .artifact import AdapterMismatchError, CLLMFSAdapterConfig, save_adapter
from .cllmfs_config import CLLMFSConfig
from .cllmfs_trainer import CLLMFSTrainer, ContrastiveCollator
from .entity_types import DESCRIPTIONS, EntityType, as_entity_types, dataset_entity_types
from .extraction import CLLMFSExtractor, DecodingConfig
from .prompts import PromptFormat
from .sft_data import build_sft_dataset

__all__ = [
    "DESCRIPTIONS",
    "AdapterMismatchError",
    "CLLMFSAdapterConfig",
    "CLLMFSConfig",
    "CLLMFSExtractor",
    "CLLMFSTrainer",
    "ContrastiveCollator",
    "DecodingConfig",
    "EntityType",
    "PromptFormat",
    "as_entity_types",
    "build_sft_dataset",
    "dataset_entity_types",
    "save_adapter",
]
