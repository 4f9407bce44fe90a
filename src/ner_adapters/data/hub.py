"""Token-classification datasets from the Hub (``wnut_17``, ``conll2003``...) mapped to the project schema.

Hub NER datasets store ``tokens`` and integer ``ner_tags`` with a ``ClassLabel`` feature; this turns
them into the same ``tokens`` / ``ner_tags`` / ``spans`` rows the local readers produce, so every
trainer and metric takes either.
"""

from __future__ import annotations

import warnings
from typing import Sequence

from datasets import ClassLabel, Dataset, DatasetDict, load_dataset

from ..spans import TagRepairWarning, split_tag, tags_to_spans
from .schema import DataFormatError, Sentence, sentences_to_dataset


def from_token_classification(
    dataset: Dataset,
    *,
    tokens_column: str = "tokens",
    tags_column: str = "ner_tags",
    label_list: Sequence[str] | None = None,
    scheme: str = "IOB2",
    domain_column: str | None = None,
    document_column: str | None = None,
) -> Dataset:
    """Map a ``tokens`` + ``ner_tags`` dataset (integer ``ClassLabel`` or string tags) to the project schema."""
    for column in (tokens_column, tags_column):
        if column not in dataset.column_names:
            raise DataFormatError(f"column {column!r} not found; the dataset has {dataset.column_names}")
    feature = dataset.features[tags_column]
    inner = getattr(feature, "feature", None)
    if label_list is None and isinstance(inner, ClassLabel):
        label_list = inner.names
    types: list[str] = []
    sentences = []
    repaired: list[int] = []  # row of each I- tag read as an entity start: one warning for all of them
    for index, row in enumerate(dataset):
        tags, tokens = row[tags_column], row[tokens_column]
        if not isinstance(tags, (list, tuple)) or not isinstance(tokens, (list, tuple)):
            raise DataFormatError(f"row {index}: fields {tokens_column!r} and {tags_column!r} must be lists")
        if len(tags) != len(tokens):
            raise DataFormatError(f"row {index}: {len(tokens)} tokens in field {tokens_column!r} but {len(tags)} tags "
                                  f"in field {tags_column!r}")
        if tags and not isinstance(tags[0], str):
            if label_list is None:
                raise DataFormatError(f"{tags_column!r} holds integers but no label names; pass label_list=")
            bad = [t for t in tags if not isinstance(t, int) or not 0 <= t < len(label_list)]
            if bad:
                raise DataFormatError(f"row {index}, field {tags_column!r}: label id(s) {bad} outside the "
                                      f"{len(label_list)} label names {list(label_list)}")
            tags = [label_list[t] for t in tags]
        try:
            spans = tags_to_spans(tags, scheme, on_repair=lambda position, row=index: repaired.append(row))
        except ValueError as err:
            raise DataFormatError(f"row {index}, field {tags_column!r}: {err}") from None
        types += [s.type for s in spans if s.type not in types]
        sentences.append(
            Sentence(
                list(tokens),
                spans,
                id=str(row.get("id", index)),
                domain=row.get(domain_column) if domain_column else None,
                document_id=row.get(document_column) if document_column else None,
            )
        )
    if repaired:
        rows = sorted(set(repaired))
        shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
        warnings.warn(f"field {tags_column!r}: {len(repaired)} I- tag(s) with no entity of their type before them "
                      f"were read as entity starts (rows {shown})", TagRepairWarning, stacklevel=2)
    if label_list is not None:  # keep the source's type order, including types absent from this split
        ordered = []
        for label in label_list:
            _, entity_type = split_tag(label, scheme)
            if entity_type is not None and entity_type not in ordered:
                ordered.append(entity_type)
        types = ordered + [t for t in types if t not in ordered]
    return sentences_to_dataset(sentences, types)


def load_hub_dataset(name: str, config: str | None = None, *, split: str | None = None, **options) -> Dataset | DatasetDict:
    """``datasets.load_dataset(name, config)`` mapped with :func:`from_token_classification` (needs the Hub).

    A name the Hub does not know raises :class:`~ner_adapters.data.sources.UnknownDatasetError` saying that it
    is neither registered nor a local path either, since that is what the user most likely meant.
    """
    from datasets.exceptions import DatasetNotFoundError

    from .registry import list_datasets
    from .sources import UnknownDatasetError

    try:
        loaded = load_dataset(name, config, split=split)
    except DatasetNotFoundError as err:
        raise UnknownDatasetError(f"unknown dataset {name!r}: not registered ({', '.join(list_datasets())}), not a "
                                  f"local file or folder, and not found on the Hub ({err})") from None
    if isinstance(loaded, DatasetDict):
        return DatasetDict({key: from_token_classification(value, **options) for key, value in loaded.items()})
    return from_token_classification(loaded, **options)
