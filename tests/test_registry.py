"""The dataset registry: counts as published, data-folder resolution, bundled copies, Hub mapping."""

import pytest
from datasets import ClassLabel, Dataset, Features, List, Value

from ner_adapters.data import (
    DataFormatError,
    bundled_datasets,
    dataset_folder,
    dataset_to_sentences,
    dataset_types,
    from_token_classification,
    load_ner_dataset,
    load_sentences,
    registry,
)
from ner_adapters.spans import Span

# Sentence counts from ../shared/datasets/README.md.
EXPECTED = {
    ("wnut17", None): {"train": 3394, "validation": 1009, "test": 1287},
    ("conll2003", None): {"train": 14041, "validation": 3250, "test": 3453},
    ("gum", None): {"train": 10224, "validation": 1575, "test": 1464, "test2": 1334},
    ("parstwiner", None): {"train": 6417, "validation": 446, "test": 303},
    ("uner_en_ewt", None): {"validation": 2001, "test": 2077},
}
PARSNER = {"academic": 1875, "art": 1807, "economic": 2820, "fun": 1993, "game": 1167, "general_news": 2028,
           "health": 779, "it_news": 1905, "sports": 2327, "travel": 3324}


@pytest.mark.parametrize("name,config", list(EXPECTED))
def test_counts_match_the_published_readme(shared_data, name, config):
    for split, expected in EXPECTED[(name, config)].items():
        assert len(load_sentences(name, config, split=split, data_dir=shared_data)) == expected, split


def test_parsner_domains_and_seeded_splits(shared_data):
    for domain, expected in PARSNER.items():
        parts = {s: load_sentences("parsner", domain, split=s, data_dir=shared_data) for s in ("train", "validation", "test")}
        assert sum(map(len, parts.values())) == expected
        ids = [{x.id for x in part} for part in parts.values()]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert all(x.domain == domain for part in parts.values() for x in part)
    again = load_sentences("parsner", "health", split="test", data_dir=shared_data)
    assert [s.id for s in again] == [s.id for s in load_sentences("parsner", "health", split="test", data_dir=shared_data)]
    other_seed = load_sentences("parsner", "health", split="test", data_dir=shared_data, seed=7)
    assert [s.id for s in other_seed] != [s.id for s in again]


def test_arman_folds_and_presidio(shared_data):
    for fold in ("fold1", "fold2", "fold3"):
        train = load_sentences("arman", fold, split="train", data_dir=shared_data)
        test = load_sentences("arman", fold, split="test", data_dir=shared_data)
        assert 5000 < len(train) < 5200 and 2500 < len(test) < 2600
    assert sum(len(load_sentences("presidio_synth", split=s, data_dir=shared_data)) for s in ("train", "validation", "test")) == 1500


def test_gum_genres_and_named_option(shared_data):
    news = load_ner_dataset("gum", "news", split="test", data_dir=shared_data)
    assert set(news["domain"]) == {"news"}
    named = load_ner_dataset("gum", "news", split="test", data_dir=shared_data, entities="named")
    assert sum(map(len, named["spans"])) < sum(map(len, news["spans"]))
    assert dataset_types(news) == list(registry.get_spec("gum").types)


def test_uner_genres(data_dir):
    email = load_sentences("uner_en_ewt", "email", split="test", data_dir=data_dir)
    assert email and {s.domain for s in email} == {"email"}


def test_dataset_rows_are_consistent(data_dir):
    dataset = load_ner_dataset("wnut17", split="validation", data_dir=data_dir)
    names = dataset.features["ner_tags"].feature.names
    for row in dataset.select(range(200)):
        text = " ".join(row["tokens"])
        for span in row["spans"]:
            assert text[span["char_start"] : span["char_end"]] == " ".join(row["tokens"][span["start"] : span["end"]])
            assert names[row["ner_tags"][span["start"]]] == f"B-{span['type']}"
    assert dataset.info.license == "CC-BY-4.0"


def test_bad_split_and_config_names():
    with pytest.raises(ValueError, match="no split 'train'; its splits: validation, test"):
        load_sentences("uner_en_ewt", split="train")
    with pytest.raises(ValueError, match="no genre 'poems'"):
        load_sentences("gum", "poems", split="train")
    with pytest.raises(KeyError, match="unknown dataset"):
        registry.get_spec("nope")
    assert len(load_sentences("wnut17", split="dev")) == 1009  # alias


def test_data_dir_resolution_order(tmp_path, monkeypatch, data_dir):
    (tmp_path / "wnut17").mkdir()
    (tmp_path / "wnut17" / "emerging.dev.conll").write_text("Paris\tB-location\n")
    monkeypatch.setenv("NER_ADAPTERS_DATA_DIR", str(tmp_path))
    assert dataset_folder("wnut17") == tmp_path / "wnut17"
    assert len(load_sentences("wnut17", split="validation")) == 1
    assert len(load_sentences("wnut17", split="validation", data_dir=data_dir)) == 1009  # argument wins
    # A folder the data dir lacks falls back to the bundled copy.
    assert dataset_folder("uner_en_ewt") == registry.BUNDLED_DIR / "uner_en_ewt"
    monkeypatch.setenv("NER_ADAPTERS_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="NER_ADAPTERS_DATA_DIR=.*is not a folder"):
        dataset_folder("wnut17")


def test_bundled_copies_without_shared_folder(monkeypatch, shared_data):
    monkeypatch.delenv("NER_ADAPTERS_DATA_DIR", raising=False)
    monkeypatch.setattr(registry, "_repo_shared_dirs", lambda: [])
    assert set(bundled_datasets()) == {"wnut17", "uner_en_ewt", "parstwiner"}
    for name in bundled_datasets():
        spec = registry.get_spec(name)
        assert spec.open_licence
        for split in spec.splits:
            bundled = load_sentences(name, split=split)
            shared = load_sentences(name, split=split, data_dir=shared_data)
            assert [(s.tokens, s.spans) for s in bundled] == [(s.tokens, s.spans) for s in shared]
    with pytest.raises(FileNotFoundError, match="dataset 'conll2003' not found.*bundled copies are: parstwiner"):
        load_sentences("conll2003", split="train")
    assert (registry.BUNDLED_DIR / "NOTICE.md").is_file()
    assert (registry.BUNDLED_DIR / "uner_en_ewt" / "LICENSE.txt").is_file()


def hub_shaped_dataset():
    labels = ["O", "B-person", "I-person", "B-location", "I-location"]
    features = Features({"id": Value("string"), "tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=labels))})
    return Dataset.from_dict(
        {"id": ["0", "1"], "tokens": [["Ana", "Lima", "in", "Rio"], ["hi"]], "ner_tags": [[1, 2, 0, 3], [0]]},
        features=features,
    )


def test_hub_token_classification_mapping():
    mapped = from_token_classification(hub_shaped_dataset())
    assert dataset_types(mapped) == ["person", "location"]
    sentences = dataset_to_sentences(mapped)
    assert sentences[0].spans == [Span(0, 2, "person"), Span(3, 4, "location")]
    string_tags = Dataset.from_dict({"tokens": [["a", "b"]], "tags": [["I-X", "O"]]})
    with pytest.raises(DataFormatError, match="column 'ner_tags' not found"):
        from_token_classification(string_tags)
    assert dataset_to_sentences(from_token_classification(string_tags, tags_column="tags", scheme="IOB1"))[0].spans == [Span(0, 1, "X")]


def test_hub_dataset_id_through_the_local_hub(hub_api, unique_repo_id, monkeypatch):
    """A name that is not registered is a Hub dataset id, mapped to the project schema."""
    import datasets

    # datasets asks datasets-server.<endpoint host> for a parquet export first; the local Hub has none.
    monkeypatch.setattr(datasets.config, "USE_PARQUET_EXPORT", False)
    hub_shaped_dataset().push_to_hub(unique_repo_id, split="train")
    loaded = load_ner_dataset(unique_repo_id, split="train")
    assert dataset_types(loaded) == ["person", "location"]
    assert loaded[0]["spans"][0] == {"type": "person", "start": 0, "end": 2, "char_start": 0, "char_end": 8}


def test_dataset_to_sentences_requires_columns():
    with pytest.raises(DataFormatError, match=r"missing the column\(s\) \['spans'\]"):
        dataset_to_sentences(Dataset.from_dict({"tokens": [["a"]]}))
