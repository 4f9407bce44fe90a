"""Datasets by name: where their files are, how to read them, their label sets, splits and licences.

``load_ner_dataset("wnut17", split="train")`` finds the files in the data folder (an argument, else
``$NER_ADAPTERS_DATA_DIR``, else ``../shared/datasets`` when present, else the copies bundled in the
package) and returns a ``datasets.Dataset`` in the project schema. Names that are not registered can be
your own files and folders (CoNLL, JSONL, split folders, ``save_to_disk`` folders) or Hub dataset ids, all
mapped to the same schema (:mod:`ner_adapters.data.sources`, :mod:`ner_adapters.data.hub`).
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

from datasets import Dataset, DatasetDict

from .readers import read_conll, read_conllu_entities, read_presidio_json, read_uner_iob2
from .schema import DataFormatError, Sentence, sentences_to_dataset

BUNDLED_DIR = Path(__file__).parent / "bundled"
ENV_DATA_DIR = "NER_ADAPTERS_DATA_DIR"
SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "val": "validation"}
#: Fractions of the seeded train/validation/test splits made for sources that publish none.
SEEDED_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry knows about one dataset folder."""

    name: str
    language: str
    domain: str
    types: tuple[str, ...]
    splits: tuple[str, ...]
    licence: str
    citation: str
    #: Reads ``(folder, config, split, options)`` into sentences.
    reader: Callable[[Path, str | None, str, dict], list[Sentence]] = field(repr=False)
    configs: tuple[str, ...] = ()
    default_config: str | None = None
    config_kind: str = "subset"
    open_licence: bool = False
    hub_id: str | None = None
    #: Where a user's dataset lives (``source="local"``); registered datasets are found by name instead.
    folder: Path | None = None
    #: ``"registry"``, ``"local"`` (a file or folder, :func:`ner_adapters.data.sources.local_spec`) or ``"hub"``.
    source: str = "registry"
    #: ``{label: (display name, description)}``: how prompts name and define each type (CLLMFS instructions,
    #: model cards). Every registered type has one; a user's dataset has none (defaults come from the label).
    type_descriptions: Mapping[str, tuple[str, str]] = field(default_factory=dict, repr=False)


def _conll_files(files: dict[str, str], **read_options) -> Callable:
    def read(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
        return read_conll(_find(folder, files[split]), **{**read_options, **options})

    return read


def _find(folder: Path, name: str) -> Path:
    """A file in the folder, or its gzipped copy (the bundled data is gzipped)."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataFormatError(f"dataset file {name} not found", folder)


def seeded_split(sentences: list[Sentence], split: str, seed: int, fractions=SEEDED_FRACTIONS) -> list[Sentence]:
    """One part of a reproducible shuffled train/validation/test partition (for sources without splits)."""
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * fractions[0])
    n_dev = round(len(order) * fractions[1])
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_dev), "test": (n_train + n_dev, len(order))}
    lo, hi = bounds[split]
    return [sentences[i] for i in sorted(order[lo:hi])]


# --- per-dataset readers -------------------------------------------------------------------------------

GUM_GENRES = ("academic", "bio", "conversation", "court", "essay", "fiction", "interview", "letter", "news",
              "podcast", "speech", "textbook", "vlog", "voyage", "whow")
GENTLE_GENRES = ("dictionary", "esports", "legal", "medical", "poetry", "proof", "syllabus", "threat")
PARSNER_DOMAINS = ("academic", "art", "economic", "fun", "game", "general_news", "health", "it_news", "sports",
                   "travel")
UNER_EWT_GENRES = ("answers", "email", "newsgroup", "reviews", "weblog")


@lru_cache(maxsize=4)
def _gum_split_docs(splits_file: Path) -> dict[str, tuple[str, ...]]:
    docs: dict[str, list[str]] = {}
    current = None
    for line in splits_file.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"##\s+(\w+)", line)
        if heading:
            current = heading.group(1)
            continue
        item = re.match(r"\s*\*\s+(\S+)", line)
        if item and current:
            docs.setdefault(current, []).append(item.group(1))
    return {("validation" if k == "dev" else k): tuple(v) for k, v in docs.items()}


def _read_gum(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
    documents = _gum_split_docs(_find(folder, "splits.md"))[split]
    sentences = []
    for doc in documents:
        genre = doc.split("_")[1]
        if config is not None and genre != config:
            continue
        path = folder / "dep" / f"{doc}.conllu"
        if not path.is_file():
            if doc.startswith("GUM_reddit_"):
                continue  # Reddit documents are not redistributed (their text must be rebuilt from Reddit)
            raise DataFormatError(f"document {doc} listed in splits.md is missing", path)
        sentences += read_conllu_entities(path, **options)
    return sentences


def _read_arman(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
    fold = config or "fold1"
    return read_conll(_find(folder, f"{split}_{fold}.txt"), scheme="IOB1", **options)


def _read_parsner(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
    seed = options.pop("seed", 42)
    sentences = []
    for domain in [config] if config else PARSNER_DOMAINS:
        domain_sentences = read_conll(_find(folder / "social", f"{domain}.pos"), min_columns=3, **options)
        for sentence in domain_sentences:
            sentence.domain = domain
        sentences += seeded_split(domain_sentences, split, seed)
    return sentences


def _read_uner(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
    name = {"validation": "dev", "test": "test"}[split]
    sentences = read_uner_iob2(_find(folder, f"en_ewt-ud-{name}.iob2"), **options)
    return [s for s in sentences if config is None or s.domain == config]


def _read_presidio(folder: Path, config: str | None, split: str, options: dict) -> list[Sentence]:
    seed = options.pop("seed", 42)
    return seeded_split(read_presidio_json(_find(folder, "synth_dataset_v2.json"), **options), split, seed)


def described(*entries: tuple[str, str, str]) -> dict:
    """``types`` and ``type_descriptions`` of a :class:`DatasetSpec` from ``(label, display name, description)``
    entries, so each type is written once, with its description beside it."""
    return {"types": tuple(label for label, _, _ in entries),
            "type_descriptions": {label: (name, description) for label, name, description in entries}}


_PERSON = "a specific, named person, real or fictional, referred to by name"
_ORGANIZATION = "a named organization, such as a company, institution, agency, team or political party"


REGISTRY: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in [
        DatasetSpec(
            name="wnut17", language="en", domain="social media",
            **described(
                ("person", "Person", "the name of a person, including fictional characters and online handles used "
                                     "as names"),
                ("location", "Location", "the name of a place, such as a country, city, building, street or natural "
                                         "landmark"),
                ("group", "Group", "the name of a group of people that is not a company, such as a band, sports "
                                   "team, political party or community"),
                ("corporation", "Corporation", "the name of a company, brand-owning business or commercial "
                                               "organization"),
                ("product", "Product", "the name of a product or service, such as a device, app, vehicle, software "
                                       "or food brand"),
                ("creative-work", "Creative Work", "the title of a creative work, such as a song, film, book, TV "
                                                   "show, video game or artwork"),
            ),
            splits=("train", "validation", "test"), licence="CC-BY-4.0", open_licence=True, hub_id="wnut_17",
            citation="Derczynski et al. 2017, Results of the WNUT2017 Shared Task on Novel and Emerging Entity Recognition",
            reader=_conll_files({"train": "wnut17train.conll", "validation": "emerging.dev.conll",
                                 "test": "emerging.test.annotated"}),
        ),
        DatasetSpec(
            name="conll2003", language="en", domain="news",
            **described(
                ("person", "Person", _PERSON),
                ("location", "Location", "a named place, such as a country, city, region, river or mountain"),
                ("organisation", "Organisation", _ORGANIZATION + ", or a sports club"),
                ("misc", "Miscellaneous", "another named entity that is not a person, location or organisation, "
                                          "such as a nationality, language, event, or the name of a product or work"),
            ),
            splits=("train", "validation", "test"), licence="Reuters RCV1 licence (text); not redistributable",
            hub_id="conll2003",
            citation="Tjong Kim Sang and De Meulder 2003, CoNLL-2003 shared task",
            reader=_conll_files({"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}),
        ),
        DatasetSpec(
            name="gum", language="en", domain="multi-genre",
            **described(
                ("abstract", "Abstract", "a mention of an abstract notion, such as an idea, field, quality, policy "
                                         "or named prize, law or work"),
                ("animal", "Animal", "a mention of an animal or animal species"),
                ("event", "Event", "a mention of an event or happening, such as a war, election, meeting, storm or "
                                   "festival"),
                ("object", "Object", "a mention of a concrete, inanimate object or artifact, such as a tool, "
                                     "building part, vehicle or document"),
                ("organization", "Organization", "a mention of an organization or institution, such as a company, "
                                                 "government, school or team"),
                ("person", "Person", "a mention of a person or group of people, named or not"),
                ("place", "Place", "a mention of a place or location, such as a country, city, building or region"),
                ("plant", "Plant", "a mention of a plant, tree or plant species"),
                ("substance", "Substance", "a mention of a substance or material, such as water, food, chemicals or "
                                           "metals"),
                ("time", "Time", "a mention of a point or period in time, such as a date, year, day, season or "
                                 "duration"),
            ),
            splits=("train", "validation", "test", "test2"), configs=GUM_GENRES + GENTLE_GENRES, config_kind="genre",
            licence="CC-BY-4.0 annotations; per-genre text licences, some non-commercial",
            citation="Zeldes 2017, The GUM corpus",
            reader=_read_gum,
        ),
        DatasetSpec(
            name="arman", language="fa", domain="formal news",
            **described(
                ("pers", "Person", _PERSON),
                ("org", "Organization", _ORGANIZATION),
                ("loc", "Location", "a named geographical place, such as a country, city, province, river or "
                                    "mountain"),
                ("fac", "Facility", "a named facility or man-made structure, such as a building, airport, bridge, "
                                    "stadium or hospital"),
                ("pro", "Product", "a named product, such as a device, vehicle, software, publication or brand"),
                ("event", "Event", "a named event, such as a war, festival, election, conference or sports "
                                   "tournament"),
            ),
            splits=("train", "test"), configs=("fold1", "fold2", "fold3"), default_config="fold1", config_kind="fold",
            licence="academic research use only",
            citation="Poostchi et al. 2018, BiLSTM-CRF for Persian named-entity recognition (ArmanPersoNERCorpus)",
            reader=_read_arman,
        ),
        DatasetSpec(
            name="parstwiner", language="fa", domain="informal tweets",
            **described(
                ("PER", "Person", _PERSON),
                ("LOC", "Location", "a named geographical place or facility, such as a country, city, street or "
                                    "building"),
                ("ORG", "Organization", _ORGANIZATION),
                ("NAT", "Nation", "a nation or nationality, such as Iranian, Afghans or Americans"),
                ("POG", "Political Group", "a named political, religious or ideological group or movement"),
                ("EVE", "Event", "a named event, such as a war, election, holiday, match or festival"),
            ),
            splits=("train", "validation", "test"), licence="MIT", open_licence=True,
            citation="Aghajani et al. 2021, ParsTwiNER: a corpus for NER at informal Persian",
            reader=_conll_files({"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}),
        ),
        DatasetSpec(
            name="parsner", language="fa", domain="10 social-media topics",
            **described(
                ("PERS", "Person", _PERSON),
                ("LOC", "Location", "a named place, such as a country, city, region or landmark"),
                ("ORG", "Organization", _ORGANIZATION),
                ("MISC", "Miscellaneous", "another named entity that is not a person, location or organization, "
                                          "such as an event, product, work, nationality or date"),
            ),
            splits=("train", "validation", "test"), configs=PARSNER_DOMAINS, config_kind="domain",
            licence="none stated",
            citation="Asgari 2021, ParsNER (github.com/majidasgari/ParsNER)",
            reader=_read_parsner,
        ),
        DatasetSpec(
            name="uner_en_ewt", language="en", domain="web text (5 genres)",
            **described(
                ("PER", "Person", _PERSON),
                ("ORG", "Organization", _ORGANIZATION),
                ("LOC", "Location", "a named place, such as a country, city, region, street, building or landmark"),
            ),
            splits=("validation", "test"), configs=UNER_EWT_GENRES, config_kind="genre",
            licence="CC-BY-SA-4.0", open_licence=True,
            citation="Mayhew et al. 2024, Universal NER: A Gold-Standard Multilingual NER Benchmark",
            reader=_read_uner,
        ),
        DatasetSpec(
            name="presidio_synth", language="en", domain="synthetic PII",
            **described(
                ("PERSON", "Person", "the full or partial name of a person"),
                ("STREET_ADDRESS", "Street Address", "a postal street address, with number, street and possibly "
                                                     "city and code"),
                ("GPE", "Geopolitical Entity", "a country, state, city or other political region"),
                ("ORGANIZATION", "Organization", "the name of a company, institution or other organization"),
                ("CREDIT_CARD", "Credit Card", "a credit card number"),
                ("DATE_TIME", "Date Time", "a date, time, day, month, year or period"),
                ("TITLE", "Title", "a personal title or honorific, such as Mr., Dr. or Professor"),
                ("PHONE_NUMBER", "Phone Number", "a telephone or fax number"),
                ("AGE", "Age", "the age of a person"),
                ("NRP", "Nationality Religion Politics", "a nationality, religious or political group"),
                ("EMAIL_ADDRESS", "Email Address", "an email address"),
                ("ZIP_CODE", "Zip Code", "a postal or zip code"),
                ("DOMAIN_NAME", "Domain Name", "an internet domain name or website address"),
                ("IBAN_CODE", "IBAN Code", "an international bank account number (IBAN)"),
                ("US_SSN", "Social Security Number", "a US social security number"),
                ("IP_ADDRESS", "IP Address", "an IPv4 or IPv6 network address"),
                ("US_DRIVER_LICENSE", "Driver License", "a US driver's license number"),
            ),
            splits=("train", "validation", "test"), licence="MIT", open_licence=True,
            citation="Microsoft presidio-research, synth_dataset_v2",
            reader=_read_presidio,
        ),
    ]
}

def list_datasets() -> list[str]:
    return sorted(REGISTRY)


def get_spec(name: str) -> DatasetSpec:
    """A registered dataset's spec; an unknown name raises, suggesting the registered name it is close to."""
    try:
        return REGISTRY[name]
    except KeyError:
        from .sources import UnknownDatasetError, suggest_registered

        suggestion = suggest_registered(str(name))
        hint = f"; did you mean {suggestion!r}?" if suggestion else ""
        raise UnknownDatasetError(f"unknown dataset {name!r}{hint} (registered: {', '.join(list_datasets())}; a "
                                  "file or folder of your own works too)") from None


def resolve_spec(name: str | os.PathLike, config: str | None = None, **options) -> DatasetSpec:
    """The spec of any dataset name: registered, a local file or folder, or a Hub dataset id.

    ``options`` matter for local and Hub sources only: ``format=`` and the reader's options (they decide the
    label set, so they are read here); see :mod:`ner_adapters.data.sources`.
    """
    from .sources import check_hub_name, hub_spec, local_spec

    text = os.fspath(name)
    if text in REGISTRY and not isinstance(name, os.PathLike):
        if options.get("format") is not None:
            raise ValueError(f"{text!r} is a registered dataset; format= is for files, folders and Hub ids")
        return REGISTRY[text]
    file_format = options.get("format")
    if os.path.exists(os.path.expanduser(text)) or file_format in ("conll", "jsonl", "conllu", "disk"):
        return local_spec(text, **options)
    check_hub_name(text)
    return hub_spec(text, config)


def _repo_shared_dirs() -> list[Path]:
    here = Path(__file__).resolve()
    return [Path.cwd() / ".." / "shared" / "datasets", here.parents[4] / "shared" / "datasets"]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The data folder to read from, or ``None`` for the bundled copies.

    Order: the argument, ``$NER_ADAPTERS_DATA_DIR``, ``../shared/datasets`` when present, bundled data.
    """
    for source, value in (("data_dir", data_dir), (ENV_DATA_DIR, os.environ.get(ENV_DATA_DIR))):
        if value:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{source}={value!s} is not a folder")
            return path
    for candidate in _repo_shared_dirs():
        if candidate.is_dir():
            return candidate.resolve()
    return None


def dataset_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``name``'s files: in the data folder, else the bundled copy."""
    root = resolve_data_dir(data_dir)
    searched = []
    if root is not None:
        folder = root / name
        if folder.is_dir():
            return folder
        searched.append(str(folder))
    bundled = BUNDLED_DIR / name
    if bundled.is_dir():
        return bundled
    searched.append(f"{bundled} (bundled)")
    raise FileNotFoundError(
        f"dataset {name!r} not found; looked in {', '.join(searched)}. Point {ENV_DATA_DIR} or data_dir= at a "
        "folder that holds it (the bundled copies are: " + ", ".join(bundled_datasets()) + ")"
    )


def bundled_datasets() -> list[str]:
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir()) if BUNDLED_DIR.is_dir() else []


def _normalise_split(spec: DatasetSpec, split: str) -> str:
    split = SPLIT_ALIASES.get(split, split)
    if split not in spec.splits:
        raise ValueError(f"dataset {spec.name!r} has no split {split!r}; its splits: {', '.join(spec.splits)}")
    return split


def load_sentences(
    name: str, config: str | None = None, *, split: str, data_dir: str | os.PathLike | None = None, **options
) -> list[Sentence]:
    """The sentences of one split of any dataset (see :func:`load_ner_dataset`).

    A registered dataset whose files hold entity types outside its registered label set raises (naming the
    folder, the split and the types) rather than dropping them: a ``--data-dir`` copy with other types is a
    dataset of its own, to be named by its path.
    """
    spec = resolve_spec(name, config, **options)
    split = _normalise_split(spec, split)
    if config is not None and config not in spec.configs:
        raise ValueError(
            f"dataset {name!r} has no {spec.config_kind} {config!r}; choose one of: {', '.join(spec.configs) or '(none)'}"
        )
    if spec.source != "registry":
        return spec.reader(spec.folder or Path(), config, split, {k: v for k, v in options.items() if k == "seed"})
    folder = dataset_folder(name, data_dir)
    sentences = spec.reader(folder, config or spec.default_config, split, dict(options))
    known = set(spec.types)
    extra = sorted({s.type for sentence in sentences for s in sentence.spans} - known)
    if extra:
        first = next(x for x in sentences if any(s.type in extra for s in x.spans))
        raise DataFormatError(
            f"sentence {first.id!r} has entity types {sorted({s.type for s in first.spans} - known)} outside the "
            f"label set {list(spec.types)} (dataset {name!r}, split {split!r}); the split's types outside it: "
            f"{extra}. To use this data with its own types, name its folder or files instead of {name!r}", folder)
    return sentences


def load_ner_dataset(
    name: str,
    config: str | None = None,
    *,
    split: str | None = None,
    data_dir: str | os.PathLike | None = None,
    **options,
) -> Dataset | DatasetDict:
    """Load any dataset in the project schema: a registered name, your own file or folder, or a Hub id.

    Args:
        name: a registered name (:func:`list_datasets`); a CoNLL/IOB, JSONL or CoNLL-U file; a folder of split
            files (train / dev|valid|validation / test by name) or one saved with ``save_to_disk``; or a Hub
            dataset id such as ``"wnut_17"`` (see :mod:`ner_adapters.data.sources`; ``format=`` overrides the
            detection, the label set is read from the data).
        config: the subset: GUM/UNER genre, ParsNER domain, Arman fold (``None``: all of them / fold1).
        split: ``"train"``, ``"validation"`` (or ``"dev"``), ``"test"``...; ``None`` gives a ``DatasetDict``.
        data_dir: the folder holding the dataset folders (see :func:`resolve_data_dir`).
        options: reader options, e.g. ``entities="named"`` for GUM, ``seed=`` for the seeded ParsNER and
            Presidio splits, ``mode="strict"`` to reject ill-formed tag sequences.

    Returns:
        `datasets.Dataset` (one split) or `datasets.DatasetDict`, with the columns ``tokens``, ``ner_tags`` (an
        IOB2 ``ClassLabel``), ``spans`` (type, token and character offsets; ends exclusive), ``domain`` and
        ``document_id``.

    Raises:
        `ner_adapters.errors.UnknownDatasetError`: a name that is neither registered, nor a path, nor on the Hub
            (a close registered name is suggested at once; offline, no network retries).
        `FileNotFoundError`: a path that does not exist (the nearest existing folder is named).
        `ner_adapters.errors.DataFormatError`: a file that cannot be read, naming the file and line.

    Example:

    ```python
    >>> from ner_adapters import load_ner_dataset
    >>> wnut = load_ner_dataset("wnut17", split="test")
    >>> wnut[0]["tokens"][:4], wnut.features["ner_tags"].feature.names[:3]
    (['&', 'gt', ';', '*'], ['O', 'B-person', 'I-person'])
    >>> mine = load_ner_dataset("path/to/my_conll_folder")     # train/dev/test files, types read from the data
    ```
    """
    if os.fspath(name) not in REGISTRY or isinstance(name, os.PathLike):
        from .sources import check_hub_name

        text = os.fspath(name)
        if options.get("format") == "hub" or not (
                os.path.exists(os.path.expanduser(text)) or options.get("format") is not None):
            options.pop("format", None)
            check_hub_name(text)
            from .hub import load_hub_dataset

            return load_hub_dataset(text, config, split=split, **options)
        spec = resolve_spec(text, config, **options)
        if split is None:
            return DatasetDict({s: load_ner_dataset(name, config, split=s, **options) for s in spec.splits})
        split = _normalise_split(spec, split)
        sentences = load_sentences(text, config, split=split, **options)
        dataset = sentences_to_dataset(sentences, spec.types)
        dataset.info.description = f"{text}, split {split}"
        return dataset
    spec = REGISTRY[name]
    if split is None:
        return DatasetDict(
            {s: load_ner_dataset(name, config, split=s, data_dir=data_dir, **options) for s in spec.splits}
        )
    split = _normalise_split(spec, split)
    sentences = load_sentences(name, config, split=split, data_dir=data_dir, **options)
    try:
        dataset = sentences_to_dataset(sentences, spec.types)
    except DataFormatError as err:  # a type outside the registered label set: say which files hold it
        raise DataFormatError(f"{err} (dataset {name!r}, split {split!r})", dataset_folder(name, data_dir)) from None
    dataset.info.description = f"{name} ({spec.language}, {spec.domain}), split {split}"
    dataset.info.license = spec.licence
    dataset.info.citation = spec.citation
    return dataset
