"""The one dataset schema every reader produces and every trainer consumes.

A sentence is ``tokens`` plus entity ``spans``; ``ner_tags`` (IOB2, ``ClassLabel``) are derived from
the spans so the two columns can never disagree. ``domain`` and ``document_id`` are ``None`` where the
source has no such notion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from datasets import ClassLabel, Dataset, Features, List, Value

from ..spans import Span, label_names, spans_from_dicts, spans_to_dicts, spans_to_tags
from ..errors import DataFormatError  # noqa: F401  (re-exported: raised here)

SPAN_FEATURE = {
    "type": Value("string"),
    "start": Value("int32"),
    "end": Value("int32"),
    "char_start": Value("int32"),
    "char_end": Value("int32"),
}

REQUIRED_COLUMNS = ("tokens", "spans")


@dataclass
class Sentence:
    """One annotated sentence, the in-memory form of a dataset row."""

    tokens: list[str]
    spans: list[Span] = field(default_factory=list)
    id: str = ""
    domain: str | None = None
    document_id: str | None = None

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    def to_row(self, types: Sequence[str] | None = None) -> dict:
        """A dataset row; with ``types`` the spans of other types are dropped."""
        spans = [s for s in self.spans if types is None or s.type in types]
        return {
            "id": self.id,
            "tokens": list(self.tokens),
            "ner_tags": spans_to_tags(spans, len(self.tokens)),
            "spans": spans_to_dicts(spans, self.tokens),
            "domain": self.domain,
            "document_id": self.document_id,
        }

    @classmethod
    def from_row(cls, row: dict) -> "Sentence":
        return cls(
            tokens=list(row["tokens"]),
            spans=spans_from_dicts(row.get("spans") or []),
            id=str(row.get("id") or ""),
            domain=row.get("domain"),
            document_id=row.get("document_id"),
        )


def ner_features(types: Sequence[str]) -> Features:
    """The ``Features`` of a dataset over the entity ``types`` (their order fixes the label ids)."""
    return Features(
        {
            "id": Value("string"),
            "tokens": List(Value("string")),
            "ner_tags": List(ClassLabel(names=label_names(types))),
            "spans": List(SPAN_FEATURE),
            "domain": Value("string"),
            "document_id": Value("string"),
        }
    )


def sentences_to_dataset(sentences: Iterable[Sentence], types: Sequence[str]) -> Dataset:
    """Build a dataset; spans of a type outside ``types`` raise, since they would silently vanish."""
    known = set(types)
    rows = []
    for sentence in sentences:
        unknown = {s.type for s in sentence.spans} - known
        if unknown:
            raise DataFormatError(
                f"sentence {sentence.id!r} has entity types {sorted(unknown)} outside the label set {list(types)}"
            )
        rows.append(sentence.to_row())
    features = ner_features(types)
    if not rows:  # from_list cannot infer an empty table
        return Dataset.from_dict({name: [] for name in features}, features=features)
    return Dataset.from_list(rows, features=features)


def dataset_types(dataset: Dataset) -> list[str]:
    """The entity types of a dataset in label order, read from its ``ner_tags`` ClassLabel."""
    names = dataset.features["ner_tags"].feature.names
    return [name[2:] for name in names if name.startswith("B-")]


def dataset_to_sentences(dataset: Dataset) -> list[Sentence]:
    """Rows back to :class:`Sentence` objects, checking the columns a reader is expected to provide."""
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
    if missing:
        raise DataFormatError(
            f"dataset is missing the column(s) {missing}; it has {dataset.column_names}. "
            "Load it with ner_adapters.load_ner_dataset or map it with ner_adapters.data.from_token_classification"
        )
    return [Sentence.from_row(row) for row in dataset]
