"""Domains and label schemes of a run, read through the project's dataset registry.

A domain is one dataset subset (``parsner:health``, ``uner_en_ewt:email``, ``arman``); a scheme is a label
set shared by several domains, one tagging head each. By default every dataset is its own scheme;
``schemes`` merges datasets into one and ``type_map`` renames entity types so their labels line up
(Arman's ``pers`` and ParsTwiNER's ``PER``). Splits follow the registry; a dataset without a dev split
(Arman) or without a train split (UNER English-EWT) has one carved out with a seeded shuffle.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass
from typing import Sequence

from ..data import DataFormatError, Sentence, dataset_to_sentences, dataset_types, load_sentences
from ..data.registry import REGISTRY, resolve_spec, seeded_split
from ..spans import Span
from .config import ConfigError, DataArguments

NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class DomainSpec:
    """One ``DATASET[:CONFIG][=NAME]`` entry of the config, with its scheme."""

    name: str
    dataset: str
    config: str | None
    scheme: str


@dataclass
class DomainData:
    """A domain's sentences, entity types already mapped to its scheme."""

    name: str
    scheme: str
    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]

    @classmethod
    def from_datasets(cls, name: str, scheme: str, train, dev, test, *,
                      types: Sequence[str] | None = None) -> "DomainData":
        """From ``datasets.Dataset`` splits in the project schema (``load_ner_dataset``,
        ``from_token_classification``). With ``types`` (the scheme's), a split whose label set holds other
        types raises, naming them, rather than failing later on one sentence."""
        parts = []
        for split, dataset in (("train", train), ("dev", dev), ("test", test)):
            if types is not None and "ner_tags" in dataset.column_names:
                extra = [t for t in dataset_types(dataset) if t not in types]
                if extra:
                    raise DataFormatError(f"domain {name!r}, {split} split: its label set has type(s) {extra} that "
                                          f"scheme {scheme!r} lacks (scheme types: {list(types)})")
            try:
                parts.append(dataset_to_sentences(dataset))
            except DataFormatError as err:
                raise DataFormatError(f"domain {name!r}, {split} split: {err}") from None
        return cls(check_name("domain", name), scheme, *parts)


def check_name(kind: str, name: str) -> str:
    """Domain and scheme names become adapter/head names and folder names: keep them plain."""
    if not NAME.match(name):
        raise ConfigError(f"{kind} name {name!r} may only contain letters, digits, '_' and '-'")
    return name


def _pairs(entries: Sequence[str], field: str, with_dataset: bool) -> list[tuple[str | None, str, str]]:
    """``[DATASET:]KEY=VALUE`` entries as ``(dataset, key, value)``, with errors naming the field and entry."""
    out = []
    for entry in entries:
        head, sep, value = entry.partition("=")
        dataset, colon, key = head.partition(":") if with_dataset else (None, "", head)
        if not sep or not key or not value or (with_dataset and not colon):
            form = "DATASET:KEY=VALUE" if with_dataset else "DATASET=SCHEME"
            raise ConfigError(f"{field}: entry {entry!r} is not of the form {form}")
        out.append((dataset, key.strip(), value.strip()))
    return out


def get_spec(dataset: str, config: str | None = None, options: dict | None = None):
    """Any dataset's spec (:func:`ner_adapters.data.registry.resolve_spec`): registered, your own file or folder,
    or a Hub id."""
    return resolve_spec(dataset, config, **(options or {}))


def _default_name(dataset: str) -> str:
    """A domain or scheme name for a dataset: its registered name, or its file or folder name made plain."""
    if dataset in REGISTRY:
        return dataset
    from pathlib import Path

    stem = Path(dataset.rstrip("/\\")).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "data"


_ENTRY_KEYS = ("name", "data", "scheme", "config")


def _mapping_entry(entry: str) -> dict:
    """A ``{name, data, scheme, config}`` domain entry (a YAML mapping arrives here as JSON)."""
    import json

    try:
        data = json.loads(entry)
    except json.JSONDecodeError as err:
        raise ConfigError(f"domains: entry {entry!r} is not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"domains: entry {entry!r} must be a mapping")
    unknown = [k for k in data if k not in _ENTRY_KEYS]
    if unknown or not isinstance(data.get("data"), str) or not data["data"]:
        raise ConfigError(f"domains: entry {entry!r}: keys are {', '.join(_ENTRY_KEYS)} and 'data' (a dataset name, "
                          f"file or folder) is required" + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
    return data


def parse_domain_specs(domains: Sequence[str], schemes: Sequence[str] = ()) -> list[DomainSpec]:
    """Expand ``domains`` entries (``*`` = every config of the dataset) and attach their schemes.

    An entry is ``DATASET[:CONFIG][=NAME]`` (DATASET a registered name, a file or folder of your own, or a Hub
    id) or a mapping ``{name, data, scheme[, config]}``. Without a scheme, a registered dataset is its own scheme
    and so is your own data (named after its file or folder): give several domains one ``scheme`` to share a
    tagging head.
    """
    scheme_of = {}
    for _, dataset, scheme in _pairs(schemes, "schemes", with_dataset=False):
        try:
            get_spec(dataset)
        except (KeyError, FileNotFoundError, DataFormatError) as err:
            raise ConfigError(f"schemes: entry {dataset!r}: {err}") from None
        scheme_of[dataset] = check_name("scheme", scheme)
    specs: list[DomainSpec] = []
    for entry in domains:
        entry_scheme = None
        if entry.lstrip().startswith("{"):
            mapping = _mapping_entry(entry)
            dataset, config = mapping["data"], mapping.get("config") or ""
            name = mapping.get("name") or ""
            entry_scheme = mapping.get("scheme")
        else:
            head, _, name = entry.partition("=")
            import os

            dataset, _, config = (head, "", "") if os.path.exists(head) else head.partition(":")
        try:
            spec = get_spec(dataset)
        except (KeyError, FileNotFoundError, DataFormatError) as err:
            raise ConfigError(f"domains: entry {entry!r}: {err}") from None
        if config == "*":
            if name:
                raise ConfigError(f"domains: entry {entry!r}: a '*' entry cannot be renamed")
            configs: list[str | None] = list(spec.configs)
        else:
            if config and config not in spec.configs:
                raise ConfigError(f"domains: entry {entry!r}: {dataset} has no {spec.config_kind} {config!r}; "
                                  f"choose from {', '.join(spec.configs) or '(none)'}")
            configs = [config or None]
        for cfg in configs:
            domain = check_name("domain", name or cfg or _default_name(dataset))
            scheme = entry_scheme or scheme_of.get(dataset) or _default_name(dataset)
            specs.append(DomainSpec(domain, dataset, cfg, check_name("scheme", scheme)))
    seen: dict[str, DomainSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(f"domains: two domains are named {spec.name!r}; rename one with '=NAME'")
        seen[spec.name] = spec
    return specs


def scheme_types(specs: Sequence[DomainSpec], type_map: Sequence[str] = ()) -> dict[str, tuple[str, ...]]:
    """Each scheme's entity types: the union of its datasets' (mapped) types, in registry order."""
    mapping = parse_type_map(type_map)
    types: dict[str, list[str]] = {}
    for spec in specs:
        for entity_type in get_spec(spec.dataset, spec.config).types:
            mapped = mapping.get(spec.dataset, {}).get(entity_type, entity_type)
            if mapped not in types.setdefault(spec.scheme, []):
                types[spec.scheme].append(mapped)
    return {scheme: tuple(t) for scheme, t in types.items()}


def parse_type_map(entries: Sequence[str]) -> dict[str, dict[str, str]]:
    mapping: dict[str, dict[str, str]] = {}
    for dataset, source, target in _pairs(entries, "type_map", with_dataset=True):
        types = get_spec(dataset).types
        if source not in types:
            raise ConfigError(f"type_map: {dataset} has no entity type {source!r}; its types: {', '.join(types)}")
        mapping.setdefault(dataset, {})[source] = target
    return mapping


def parse_reader_options(entries: Sequence[str]) -> dict[str, dict]:
    import yaml

    options: dict[str, dict] = {}
    for dataset, key, value in _pairs(entries, "reader_options", with_dataset=True):
        get_spec(dataset)
        options.setdefault(dataset, {})[key] = yaml.safe_load(value)  # "named" -> str, "7" -> int
    return options


def _sample(sentences: list[Sentence], limit: int | None, seed: int) -> list[Sentence]:
    """At most ``limit`` sentences, a seeded sample kept in corpus order."""
    if limit is None or len(sentences) <= limit:
        return sentences
    keep = sorted(random.Random(seed).sample(range(len(sentences)), limit))
    return [sentences[i] for i in keep]


def _carve(sentences: list[Sentence], dev_fraction: float, seed: int) -> tuple[list[Sentence], list[Sentence]]:
    """A seeded train/dev partition of a split (the registry's seeded split, dev = the rest)."""
    train = seeded_split(sentences, "train", seed, (1 - dev_fraction, dev_fraction, 0.0))
    chosen = {id(s) for s in train}
    return train, [s for s in sentences if id(s) not in chosen]


def _map_types(sentences: list[Sentence], mapping: dict[str, str]) -> list[Sentence]:
    if not mapping:
        return sentences
    return [dataclasses.replace(s, spans=[Span(x.start, x.end, mapping.get(x.type, x.type)) for x in s.spans])
            for s in sentences]


def load_domains(args: DataArguments) -> tuple[dict[str, tuple[str, ...]], list[DomainData]]:
    """The schemes (name -> entity types) and the domains' train/dev/test sentences."""
    specs = parse_domain_specs(args.domains, args.schemes)
    schemes = scheme_types(specs, args.type_map)
    mapping = parse_type_map(args.type_map)
    options = parse_reader_options(args.reader_options)
    domains = []
    for spec in specs:
        registry_spec = get_spec(spec.dataset, spec.config, options.get(spec.dataset))

        def load(split: str) -> list[Sentence]:
            return load_sentences(spec.dataset, spec.config, split=split, data_dir=args.data_dir,
                                  **options.get(spec.dataset, {}))

        if "train" in registry_spec.splits:
            train = load("train")
            if "validation" in registry_spec.splits:
                dev = load("validation")
            else:
                train, dev = _carve(train, args.dev_fraction, args.split_seed)
        else:
            train, dev = _carve(load("validation"), args.dev_fraction, args.split_seed)
        test = load("test")
        parts = [_map_types(_sample(part, limit, args.split_seed), mapping.get(spec.dataset, {}))
                 for part, limit in ((train, args.max_train_sentences), (dev, args.max_dev_sentences),
                                     (test, args.max_test_sentences))]
        if not parts[0] or not parts[1]:
            raise ConfigError(f"domain {spec.name!r} ({spec.dataset}:{spec.config}) has no training or dev sentences")
        domains.append(DomainData(spec.name, spec.scheme, *parts))
    return schemes, domains


__all__ = ["DomainData", "DomainSpec", "check_name", "load_domains", "parse_domain_specs", "parse_reader_options",
           "parse_type_map", "scheme_types"]
