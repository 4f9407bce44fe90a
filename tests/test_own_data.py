"""Your own data wherever a dataset is named (issue 14): files, split folders, JSONL, save_to_disk folders,
and the answers mistakes get (suggestions, missing paths, offline Hub, entity-type descriptions)."""

from __future__ import annotations

import json
from pathlib import Path
import os
import time
import warnings

import pytest
import yaml

from ner_adapters.data import DataFormatError, UnknownDatasetError, dataset_types, load_ner_dataset, load_sentences
from ner_adapters.data.registry import resolve_spec
from ner_adapters.data.sources import split_of
from ner_adapters.episodes import sample_episodes

TRAIN = [("Acme sells widgets in Paris", ["B-company", "O", "B-productline", "O", "B-city"]),
         ("Bob Smith joined Acme Corp", ["B-person", "I-person", "O", "B-company", "I-company"]),
         ("Acme makes gadgets", ["B-company", "O", "B-productline"]),
         ("Ann visited Rome", ["B-person", "O", "B-city"]),
         # one entity each, so that greedy K-shot sampling can always complete every type
         ("Initech grew", ["B-company", "O"]), ("gizmos sold out", ["B-productline", "O", "O"]),
         ("rain in Oslo", ["O", "O", "B-city"]), ("Dave left", ["B-person", "O"])]
DEV = [("Globex sells gizmos", ["B-company", "O", "B-productline"])]
TEST = [("Carol bought widgets in Oslo", ["B-person", "O", "B-productline", "O", "B-city"]),
        ("Initech hired Dave", ["B-company", "O", "B-person"])]


def write_conll(path, rows, columns=2):
    lines = []
    for text, tags in rows:
        for token, tag in zip(text.split(), tags):
            lines.append("\t".join([token] + ["X"] * (columns - 2) + [tag]))
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_corpus(folder, dev_name="dev.conll"):
    folder.mkdir(parents=True, exist_ok=True)
    write_conll(folder / "train.conll", TRAIN * 3)
    write_conll(folder / dev_name, DEV)
    write_conll(folder / "test.conll", TEST)
    return folder


def test_a_conll_folder_loads_with_its_own_label_set(tmp_path):
    folder = write_corpus(tmp_path / "corpus", dev_name="valid.txt")
    data = load_ner_dataset(str(folder))
    assert sorted(data) == ["test", "train", "validation"]
    assert [len(data[s]) for s in ("train", "validation", "test")] == [24, 1, 2]
    # one label set, read from the data, the same for every split (label ids agree)
    assert dataset_types(data["train"]) == dataset_types(data["test"]) == ["company", "productline", "city", "person"]
    row = data["test"][0]
    assert [s["type"] for s in row["spans"]] == ["person", "productline", "city"]
    assert load_ner_dataset(folder, split="dev")["tokens"] == [DEV[0][0].split()]  # a Path and the "dev" alias


def test_split_names_are_read_from_file_names():
    from pathlib import Path

    names = {"wnut17train.conll": "train", "emerging.dev.conll": "validation", "en_ewt-ud-test.iob2.gz": "test",
             "my-valid.jsonl": "validation", "validation.txt": "validation", "notes.txt": None}
    assert {name: split_of(Path(name)) for name in names} == names


def test_a_single_file_gets_seeded_splits_and_jsonl_shapes_read_alike(tmp_path):
    conll = write_conll(tmp_path / "all.conll", TRAIN * 5)
    spec = resolve_spec(str(conll))
    assert spec.splits == ("train", "validation", "test") and spec.source == "local"
    parts = [load_sentences(str(conll), split=s) for s in spec.splits]
    assert [len(p) for p in parts] == [32, 4, 4]
    assert len({s.id for p in parts for s in p}) == 40  # a partition: no sentence twice
    assert [s.id for s in load_sentences(str(conll), split="train", seed=1)] != [s.id for s in parts[0]]
    # the same sentences as JSONL: tokens + tags, and text + character spans
    tags = tmp_path / "tags.jsonl"
    tags.write_text("".join(json.dumps({"id": f"t{i}", "tokens": t.split(), "ner_tags": g}) + "\n"
                            for i, (t, g) in enumerate(TRAIN)), encoding="utf-8")
    chars = tmp_path / "chars.jsonl"
    chars.write_text(json.dumps({"text": "Acme sells widgets in Paris", "entities": [
        {"start": 0, "end": 4, "label": "company"}, [11, 18, "productline"], {"start": 22, "end": 27, "type": "city"}]})
        + "\n", encoding="utf-8")
    from ner_adapters.data import read_conll, read_ner_jsonl

    from_tags = read_ner_jsonl(tags)
    assert [s.spans for s in from_tags] == [s.spans for s in read_conll(write_conll(tmp_path / "x.conll", TRAIN))]
    assert read_ner_jsonl(chars)[0].spans == from_tags[0].spans
    data = load_ner_dataset(str(tags), split="train")
    assert set(dataset_types(data)) == {"company", "productline", "city", "person"}


def test_jsonl_errors_name_the_file_line_and_field(tmp_path):
    from ner_adapters.data import read_ner_jsonl

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tokens": ["a", "b"], "ner_tags": ["O", "B-x"]}\n{"tokens": ["a"], "ner_tags": ["O", "O"]}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: field 'ner_tags' must hold one string tag per token"):
        read_ner_jsonl(bad)
    bad.write_text('{"text": "abc", "spans": [{"start": 0, "end": 9, "type": "x"}]}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: field 'spans': span \[0, 9\) is outside"):
        read_ner_jsonl(bad)


def test_a_save_to_disk_folder_loads_in_either_schema(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    labels = ["O", "B-drug", "I-drug"]
    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=labels))})
    raw = DatasetDict({"train": Dataset.from_dict({"tokens": [["take", "aspirin"]] * 3, "ner_tags": [[0, 1]] * 3},
                                                  features=features),
                       "test": Dataset.from_dict({"tokens": [["no", "drugs"]], "ner_tags": [[0, 0]]},
                                                 features=features)})
    raw.save_to_disk(tmp_path / "raw")
    loaded = load_ner_dataset(str(tmp_path / "raw"))
    assert sorted(loaded) == ["test", "train"] and dataset_types(loaded["train"]) == ["drug"]
    assert loaded["train"][0]["spans"][0]["type"] == "drug"
    assert loaded["train"]["id"] == ["train-0", "train-1", "train-2"] and loaded["test"]["id"] == ["test-0"]
    # a folder already in the project schema (as load_ner_dataset returns it) round-trips
    loaded.save_to_disk(tmp_path / "project")
    episodes = sample_episodes(str(tmp_path / "project"), k_shot=1, seed=0)
    assert episodes[0].support_types == ["drug"] and len(episodes[0].query) == 1


def test_episodes_and_cli_take_a_folder_and_keep_every_type(tmp_path, capsys, monkeypatch):
    from ner_adapters.cli import main

    write_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)  # a relative name: episodes are seeded by their dataset's name, so fixed here
    folder = "corpus"
    episode = sample_episodes(folder, k_shot=1, seed=0)[0]
    assert episode.support_types == ["company", "productline", "city", "person"]
    assert episode.support_dataset == folder and {s.id for s in episode.query} == {"test-0", "test-1"}
    assert main(["data", "stats", str(folder), "--split", "test", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["test"]["per_type"] == {"city": 1, "company": 1, "person": 2, "productline": 1}
    out = tmp_path / "episodes.jsonl"
    assert main(["episodes", str(folder), "--k-shot", "1", "--out", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["support_types"] == episode.support_types


def test_a_data_dir_copy_with_other_types_is_refused_not_thinned(tmp_path, capsys):
    """``--data-dir`` pointing at a folder whose 'wnut17' has an extra type: stats and episodes used to drop it."""
    from ner_adapters.cli import main

    root = tmp_path / "data"
    folder = root / "wnut17"
    folder.mkdir(parents=True)
    write_conll(folder / "wnut17train.conll", [("Ann likes Acme", ["B-person", "O", "B-brand"])] * 6)
    write_conll(folder / "emerging.dev.conll", [("Ann", ["B-person"])])
    write_conll(folder / "emerging.test.annotated", [("Ann", ["B-person"])])
    for argv in (["data", "stats", "wnut17", "--split", "train"],
                 ["episodes", "wnut17", "--k-shot", "1", "--out", str(tmp_path / "e.jsonl")]):
        assert main(["--data-dir", str(root), *argv]) == 2
        err = capsys.readouterr().err
        assert "has entity types ['brand'] outside the label set" in err and str(folder) in err
        assert "(dataset 'wnut17', split 'train'); the split's types outside it: ['brand']" in err
    # named by its path, the same folder is a dataset of its own, with the extra type
    assert resolve_spec(str(folder)).types == ("person", "brand")


@pytest.mark.parametrize("name", ["WNUT17", "wnut-17", "Wnut_17x", "conll-2003"])
def test_names_close_to_registered_ones_get_a_suggestion_at_once(name):
    started = time.perf_counter()
    with pytest.raises(UnknownDatasetError, match=r"did you mean '(wnut17|conll2003)'\?") as caught:
        load_ner_dataset(name)
    assert time.perf_counter() - started < 2.0
    with pytest.raises(KeyError):  # what get_spec always raised, for callers that catch it
        raise caught.value


def test_unknown_names_offline_say_so_without_retries(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(UnknownDatasetError, match="not registered .* not a local file or folder, and the Hub is "
                                                  "offline"):
        sample_episodes("my-org/legal-ner")
    assert time.perf_counter() - started < 2.0


def test_missing_local_paths_name_the_nearest_existing_folder(tmp_path, monkeypatch):
    write_corpus(tmp_path / "corpora" / "legal")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such dataset file or folder: corpora/legl; did you mean "
                                                r"corpora/legal\?"):
        load_ner_dataset("corpora/legl")
    with pytest.raises(FileNotFoundError, match="corpora/legal/trian.conll; did you mean corpora/legal/train.conll"):
        sample_episodes("corpora/legal/trian.conll")


def test_a_mistyped_adapter_folder_is_a_file_not_found_error(tmp_path, monkeypatch):
    from ner_adapters import pipeline

    (tmp_path / "outputs" / "adapter").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    with pytest.raises(FileNotFoundError, match=r"no such adapter folder: outputs/adaptr; did you mean "
                                                r"outputs/adapter\?"):
        pipeline("token-classification", adapter="outputs/adaptr")
    assert time.perf_counter() - started < 2.0


def test_types_without_description_warn_once_with_readable_defaults():
    from ner_adapters.cllmfs.entity_types import EntityType, describe_labels, readable_name

    assert [readable_name(x) for x in ("productline", "ProductLine", "creative-work", "US_SSN", "person")] == \
        ["product line", "product line", "creative work", "US SSN", "person"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        types = describe_labels(["company", "productline", "person"], "wnut17", {"company": "a business"})
    assert types[0] == EntityType("company", "Company", "a business")
    assert types[1] == EntityType("productline", "Product line", "a named entity of type product line")
    assert types[2].description.startswith("the name of a person")  # the registry's own description
    assert len(caught) == 1 and "productline -> 'a named entity of type product line'" in str(caught[0].message)


def test_types_file_keys_must_be_labels_and_descriptions_non_empty(tmp_path):
    from ner_adapters.cllmfs.entity_types import EntityTypeError, load_types_file

    path = tmp_path / "types.yaml"
    path.write_text(yaml.safe_dump({"product_line": "a range of products"}))
    with pytest.raises(EntityTypeError, match=r"'product_line' is not an entity type of the data \(company, "
                                              r"productline\); closest: productline"):
        load_types_file(path, ["company", "productline"])
    path.write_text(yaml.safe_dump({"company": "  "}))
    with pytest.raises(EntityTypeError, match="the description of 'company' is empty"):
        load_types_file(path, ["company", "productline"])
    path.write_text(yaml.safe_dump({"company": "a business"}))
    assert load_types_file(path, ["company"]) == {"company": "a business"}


def test_episodes_file_runs_record_the_episodes_they_ran(tmp_path, monkeypatch):
    from ner_adapters.cllmfs.experiment import EpisodeArguments, recorded_episode_args

    write_corpus(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    episodes = sample_episodes("corpus", k_shot=1, seed=7, n_way=2, n_episodes=2)
    recorded = recorded_episode_args(EpisodeArguments(episodes_file="e.jsonl"), episodes)
    assert (recorded["dataset"], recorded["episode_seed"], recorded["n_way"], recorded["k_shot"],
            recorded["n_episodes"]) == ("corpus", 7, 2, 1, 2)
    assert recorded_episode_args(EpisodeArguments(), episodes)["dataset"] == "wnut17"  # sampled runs: as given


def test_registered_names_still_win_over_a_same_named_local_folder(tmp_path, monkeypatch):
    (tmp_path / "wnut17").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_spec("wnut17").source == "registry"
    assert os.path.isdir("wnut17")


def test_a_mistyped_cllmfs_adapter_folder_is_a_file_not_found_error(tmp_path, monkeypatch, tiny_llm_dir):
    from ner_adapters.cllmfs import CLLMFSExtractor

    (tmp_path / "outputs" / "adapter").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no such adapter folder: outputs/adaptr; did you mean "
                                                r"outputs/adapter\?"):
        CLLMFSExtractor.from_pretrained(str(tiny_llm_dir), adapter="outputs/adaptr")


def test_a_hub_dataset_id_works_wherever_a_dataset_is_named(hub_api, unique_repo_id):
    """A token-classification dataset on the (local) Hub: loaded, counted and sampled by its id."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, List, Value

    features = Features({"tokens": List(Value("string")),
                         "ner_tags": List(ClassLabel(names=["O", "B-drug", "I-drug", "B-dose", "I-dose"]))})
    rows = {"tokens": [["take", "aspirin", "daily"], ["ibuprofen", "200", "mg"], ["10", "mg", "twice"]] * 3,
            "ner_tags": [[0, 1, 0], [1, 3, 4], [3, 4, 0]] * 3}  # a dose-only row: the 1-shot sample always completes
    DatasetDict({"train": Dataset.from_dict(rows, features=features),
                 "test": Dataset.from_dict(rows, features=features)}).push_to_hub(unique_repo_id)
    data = load_ner_dataset(unique_repo_id, split="test")
    assert dataset_types(data) == ["drug", "dose"] and len(data) == 9
    spec = resolve_spec(unique_repo_id)
    assert spec.source == "hub" and spec.types == ("drug", "dose") and set(spec.splits) == {"train", "test"}
    episode = sample_episodes(unique_repo_id, k_shot=1, seed=0)[0]
    assert episode.support_types == ["drug", "dose"] and episode.type_counts("support")["dose"] >= 1
    assert len(episode.query) == 9  # row ids repeat across the Hub splits: made unique, no query row is lost


def test_episodes_take_an_explicit_format(tmp_path, capsys, monkeypatch):
    """A JSON Lines file whose name says nothing (``corpus.data``): ``--format`` / ``source_format`` decide."""
    from ner_adapters.cli import main

    monkeypatch.chdir(tmp_path)
    rows = [{"tokens": text.split(), "ner_tags": tags} for text, tags in TRAIN * 3 + DEV + TEST]
    Path("corpus.data").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    episode = sample_episodes("corpus.data", k_shot=1, seed=0, source_format="jsonl")[0]
    assert sorted(episode.support_types) == ["city", "company", "person", "productline"]
    out = tmp_path / "episodes.jsonl"
    assert main(["episodes", "corpus.data", "--format", "jsonl", "--k-shot", "1", "--out", str(out)]) == 0
    assert sorted(json.loads(out.read_text().splitlines()[0])["support_types"]) == sorted(episode.support_types)
