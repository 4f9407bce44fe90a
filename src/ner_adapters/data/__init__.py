"""Reading NER data into one schema: readers per format, a registry by name, your own files and folders
(:mod:`.sources`), and the Hub mapping."""

from .hub import from_token_classification, load_hub_dataset
from .readers import (
    read_conll,
    read_conllu_entities,
    read_ner_jsonl,
    read_presidio_json,
    read_text,
    read_uner_iob2,
)
from .registry import (
    REGISTRY,
    DatasetSpec,
    bundled_datasets,
    dataset_folder,
    get_spec,
    list_datasets,
    load_ner_dataset,
    load_sentences,
    resolve_data_dir,
    resolve_spec,
)
from .sources import UnknownDatasetError
from .schema import DataFormatError, Sentence, dataset_to_sentences, dataset_types, ner_features, sentences_to_dataset
from .stats import dataset_stats

__all__ = [
    "REGISTRY",
    "DataFormatError",
    "DatasetSpec",
    "UnknownDatasetError",
    "Sentence",
    "bundled_datasets",
    "dataset_folder",
    "dataset_stats",
    "dataset_to_sentences",
    "dataset_types",
    "from_token_classification",
    "get_spec",
    "list_datasets",
    "load_hub_dataset",
    "load_ner_dataset",
    "load_sentences",
    "ner_features",
    "read_conll",
    "read_conllu_entities",
    "read_ner_jsonl",
    "read_presidio_json",
    "read_text",
    "read_uner_iob2",
    "resolve_data_dir",
    "resolve_spec",
    "sentences_to_dataset",
]
