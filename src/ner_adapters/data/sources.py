"""Your own data wherever a dataset is named: files, folders, saved datasets and Hub ids as registry entries.

:func:`resolve_spec` turns any dataset name into a :class:`~ner_adapters.data.registry.DatasetSpec`, so every
entry point that samples episodes, counts statistics or trains domains works the same on a registered name and
on a user's corpus:

- a **CoNLL/IOB file** (token per line, any column layout; ``.conll``, ``.txt``, ``.iob2``... or anything that
  is not JSON), a **JSONL file** (:func:`~ner_adapters.data.readers.read_ner_jsonl`: tokens + tags, tokens +
  spans, or text + character spans) or a **CoNLL-U file** with ``Entity=`` mentions. A single file has no
  splits of its own: train/validation/test are seeded 80/10/10 partitions of it (``seed=``, default 42), as
  for ParsNER and Presidio;
- a **folder of split files**, the split read from each file name (``train``; ``dev``, ``valid``,
  ``validation`` or ``val``; ``test``), in any of the formats above;
- a **folder saved with** ``datasets``' ``save_to_disk`` (a ``DatasetDict`` or one ``Dataset``), in the project
  schema or any ``tokens`` + ``ner_tags`` token-classification layout;
- a **Hub dataset id**, for users who are online.

The label set is read from the data (the union over all splits, in order of first appearance, so label ids
agree across splits). ``format=`` (``conll``, ``jsonl``, ``conllu``, ``disk``, ``hub``) overrides the
detection; other options go to the reader (``scheme="IOB1"``, ``tag_column=``, ``delimiter=``...).

Mistakes are answered at once: a name close to a registered one gets a suggestion instead of a Hub
lookup, a path that does not exist names the nearest existing folder, and an unknown name while the Hub is
offline or unreachable says so without the client's retries.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from functools import lru_cache
from pathlib import Path

from ..paths import looks_local, missing_path_error
from .readers import read_conll, read_conllu_entities, read_ner_jsonl
from .schema import DataFormatError, Sentence
from ..errors import UnknownDatasetError  # noqa: F401  (re-exported: raised here)

FORMATS = ("conll", "jsonl", "conllu", "disk", "hub")
SPLITS = ("train", "validation", "test")
_SPLIT_WORDS = {"train": "train", "training": "train", "dev": "validation", "valid": "validation",
                "validation": "validation", "val": "validation", "test": "test", "testing": "test"}
_JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
#: Files a data folder often holds beside its splits (documentation, configs): never read as data.
_NOT_DATA = (".md", ".yaml", ".yml", ".py", ".cff", ".bib", ".pdf", ".html")
_CONLL_OPTIONS = ("token_column", "tag_column", "min_columns", "delimiter", "scheme", "mode", "comment_prefix",
                  "encoding")
_JSONL_OPTIONS = ("scheme", "mode", "encoding")


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def suggest_registered(name: str) -> str | None:
    """The registered name that ``name`` is most likely a typo or a variant of (``WNUT17``, ``wnut-17``)."""
    from .registry import REGISTRY

    hub_ids = {spec.hub_id for spec in REGISTRY.values() if spec.hub_id}
    if name in REGISTRY or name in hub_ids:  # a registered dataset's own Hub id is a real Hub dataset
        return None
    by_key = {_normalised(registered): registered for registered in REGISTRY}
    key = _normalised(name)
    if key in by_key:
        return by_key[key]
    close = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.75)
    return by_key[close[0]] if close else None


def hub_unavailable_reason() -> str | None:
    """Why the Hub cannot serve datasets right now (offline flags, unreachable endpoint), or ``None``."""
    from huggingface_hub import constants

    from ..models import _endpoint_reachable

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_DATASETS_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return "the Hub is offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set)"
    endpoint = constants.ENDPOINT
    if not _endpoint_reachable(endpoint):
        return f"the Hub ({endpoint}) cannot be reached from here"
    return None


def check_hub_name(name: str) -> None:
    """Raise at once, without network retries, for a name that cannot be a Hub dataset worth asking for."""
    from .registry import list_datasets

    suggestion = suggest_registered(name)
    if suggestion is not None:
        raise UnknownDatasetError(f"unknown dataset {name!r}; did you mean {suggestion!r}? (registered: "
                                  f"{', '.join(list_datasets())})")
    if looks_local(name):
        raise missing_path_error(name, "dataset file or folder")
    reason = hub_unavailable_reason()
    if reason is not None:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}: it is not registered ({', '.join(list_datasets())}), not a local file or "
            f"folder, and {reason}, so it cannot be looked up as a Hub dataset id")


# --- local files and folders ---------------------------------------------------------------------------------


def _strip_gz(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def detect_file_format(path: Path) -> str:
    """``jsonl``, ``conllu`` or ``conll`` from the suffix, else from the first non-blank character."""
    name = _strip_gz(path)
    if name.endswith(_JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(".conllu"):
        return "conllu"
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "conll"
    return "conll"


def split_of(path: Path) -> str | None:
    """The split a file name names (``wnut17train.conll`` -> train, ``en-dev.iob2`` -> validation)."""
    stem = _strip_gz(path)
    words = [w for w in re.split(r"[^a-z]+", stem) if w]
    found = {_SPLIT_WORDS[w] for w in words if w in _SPLIT_WORDS}
    if len(found) == 1:
        return found.pop()
    if not found:  # glued names such as wnut17train.conll or emerging.dev.conll
        glued = {_SPLIT_WORDS[w] for w in ("train", "validation", "valid", "dev", "test") if w in stem}
        return glued.pop() if len(glued) == 1 else None
    return None


def _read_file(path: Path, file_format: str, options: dict) -> list[Sentence]:
    if file_format == "jsonl":
        return read_ner_jsonl(path, **{k: v for k, v in options.items() if k in _JSONL_OPTIONS})
    if file_format == "conllu":
        return read_conllu_entities(path, **{k: v for k, v in options.items() if k in ("entities", "encoding")})
    return read_conll(path, **{k: v for k, v in options.items() if k in _CONLL_OPTIONS})


def _split_files(folder: Path) -> dict[str, Path]:
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")
             and not p.name.lower().endswith(_NOT_DATA)
             and p.name.upper() not in ("LICENSE", "LICENSE.TXT", "NOTICE", "README", "README.TXT")]
    by_split: dict[str, list[Path]] = {}
    for path in files:
        split = split_of(path)
        if split is not None:
            by_split.setdefault(split, []).append(path)
    doubled = {split: paths for split, paths in by_split.items() if len(paths) > 1}
    if doubled:
        split, paths = next(iter(doubled.items()))
        raise DataFormatError(f"several files name the {split} split: {', '.join(p.name for p in paths)}; keep one "
                              "per split (train, dev/valid/validation, test)", folder)
    if not by_split:
        if len(files) == 1:
            return {"": files[0]}
        raise DataFormatError(
            "no split files found: name them by split (e.g. train.conll, dev.conll, test.conll; 'valid' or "
            "'validation' work for dev), or point at one file; the folder holds "
            + (", ".join(p.name for p in files[:10]) or "no files"), folder)
    return {split: by_split[split][0] for split in SPLITS if split in by_split}


def _seeded(sentences: list[Sentence], split: str, seed: int) -> list[Sentence]:
    from .registry import seeded_split

    return seeded_split(sentences, split, seed)


def _types_in_order(parts: list[list[Sentence]]) -> tuple[str, ...]:
    types: dict[str, None] = {}
    for sentences in parts:
        for sentence in sentences:
            for span in sentence.spans:
                types.setdefault(span.type, None)
    return tuple(types)


def _copy(sentences: list[Sentence]) -> list[Sentence]:
    """Fresh sentence objects: callers relabel domains and spans, and the cached read must stay as read."""
    return [dataclasses.replace(s, tokens=list(s.tokens), spans=list(s.spans)) for s in sentences]


def _from_disk(path: Path, options: dict) -> dict[str, list[Sentence]]:
    from datasets import Dataset, DatasetDict, load_from_disk

    from .hub import from_token_classification
    from .schema import dataset_to_sentences

    loaded = load_from_disk(str(path))
    parts = loaded if isinstance(loaded, DatasetDict) else {"": loaded}
    out = {}
    for key, dataset in parts.items():
        if not isinstance(dataset, Dataset):
            raise DataFormatError(f"split {key!r} is a {type(dataset).__name__}, not a datasets.Dataset", path)
        if "spans" not in dataset.column_names:
            keep = {k: v for k, v in options.items() if k in ("tokens_column", "tags_column", "label_list", "scheme")}
            try:
                dataset = from_token_classification(dataset, **keep)
            except DataFormatError as err:
                raise DataFormatError(f"split {key or '(single)'}: {err}", path) from None
        split = key and {"dev": "validation", "valid": "validation", "val": "validation"}.get(key, key)
        out[split] = dataset_to_sentences(dataset)
    return _unique_ids(out)


def _unique_ids(parts: dict[str, list[Sentence]]) -> dict[str, list[Sentence]]:
    """Sentence ids made unique across splits (``train-0``, ``test-0``) when the source repeats them (row numbers
    of ``datasets`` splits, JSONL ids counted per file): episodes keep query ids out of the support set, so a
    test sentence sharing a train sentence's id would silently leave the query."""
    seen: dict[str, str] = {}
    clash = False
    for split, sentences in parts.items():
        for sentence in sentences:
            if seen.setdefault(sentence.id, split) != split:
                clash = True
    if clash:
        for split, sentences in parts.items():
            for sentence in sentences:
                sentence.id = f"{split or 'data'}-{sentence.id}"
    return parts


def _fingerprint(path: Path) -> tuple:
    """What invalidates the cached read of a path: its files' names, sizes and modification times."""
    entries = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in entries[:2000])


@lru_cache(maxsize=16)
def _local_parts(path_text: str, fingerprint: tuple, file_format: str | None,
                 frozen_options: tuple) -> tuple[str, dict[str, list[Sentence]]]:
    """``(format, {split or "": sentences})`` of a local source, read once per content."""
    del fingerprint  # part of the cache key only
    path, options = Path(path_text), dict(frozen_options)
    if path.is_dir():
        if file_format == "disk" or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return "disk", _from_disk(path, options)
        if file_format in ("hub",):
            raise DataFormatError(f"format={file_format!r} does not apply to a local folder", path)
        files = _split_files(path)
        return "folder", _unique_ids({split: _read_file(f, file_format or detect_file_format(f), options)
                                      for split, f in files.items()})
    if file_format in ("disk", "hub"):
        raise DataFormatError(f"format={file_format!r} does not apply to a file", path)
    chosen = file_format or detect_file_format(path)
    return chosen, {"": _read_file(path, chosen, options)}


def local_spec(path: str | os.PathLike, *, format: str | None = None, **options):
    """The :class:`DatasetSpec` of a local file or folder (see the module docstring)."""
    from .registry import DatasetSpec

    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    resolved = Path(os.path.expanduser(os.fspath(path)))
    if not resolved.exists():
        raise missing_path_error(path, "dataset file or folder")
    seed = int(options.pop("seed", 42))
    frozen = tuple(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in options.items()))
    kind, parts = _local_parts(str(resolved.resolve()), _fingerprint(resolved), format, frozen)
    whole = parts.get("")
    splits = SPLITS if whole is not None else tuple(s for s in (*SPLITS, *sorted(parts)) if s in parts and s)
    splits = tuple(dict.fromkeys(splits))
    types = _types_in_order([parts[s] for s in ("train", "validation", "test", *parts) if s in parts])

    def read(folder: Path, config: str | None, split: str, read_options: dict) -> list[Sentence]:
        if whole is not None:
            return _copy(_seeded(whole, split, int(read_options.get("seed", seed))))
        return _copy(parts[split])

    described = "file" if resolved.is_file() else "folder"
    return DatasetSpec(
        name=os.fspath(path), language="?", domain=f"{kind} {described} {resolved}", types=types, splits=splits,
        licence="(your data)", citation="", reader=read, folder=resolved, source="local",
    )


@lru_cache(maxsize=8)
def _hub_parts(name: str, config: str | None) -> tuple[tuple[str, ...], dict[str, list[Sentence]]]:
    """``(types, {split: sentences})`` of a Hub dataset, downloaded and mapped once per process."""
    from datasets import DatasetDict

    from .hub import load_hub_dataset
    from .schema import dataset_to_sentences, dataset_types

    loaded = load_hub_dataset(name, config)
    parts = loaded if isinstance(loaded, DatasetDict) else {"train": loaded}
    types: list[str] = []
    out = {}
    for split, dataset in parts.items():
        types += [t for t in dataset_types(dataset) if t not in types]
        out[{"dev": "validation", "valid": "validation"}.get(split, split)] = dataset_to_sentences(dataset)
    return tuple(types), _unique_ids(out)


def hub_spec(name: str, config: str | None = None):
    """A Hub token-classification dataset as a :class:`DatasetSpec` (read once per process)."""
    from .registry import DatasetSpec

    check_hub_name(name)
    types, parts = _hub_parts(name, config)

    def read(folder: Path, cfg: str | None, split: str, read_options: dict) -> list[Sentence]:
        return _copy(parts[split])

    return DatasetSpec(name=name, language="?", domain=f"Hub dataset {name}", types=types, splits=tuple(parts),
                       licence="see the Hub dataset card", citation="", reader=read,
                       configs=(config,) if config else (), default_config=config, source="hub")


__all__ = ["FORMATS", "UnknownDatasetError", "check_hub_name", "detect_file_format", "hub_spec",
           "hub_unavailable_reason", "local_spec", "split_of", "suggest_registered"]
