"""Malformed datasets, saved artifacts and configs: every one is refused with an error naming the file and line,
or the field, never a bare KeyError/IndexError, a usage dump, or a silently different run.

Covers what tests/test_readers.py, test_multibert_config.py and test_multibert_model.py do not: Hub-style
datasets with broken columns, dataset files with labels outside the registered label set, saved adapters and
Multi-BERT manifests that disagree with their label sets, and both recipes' configs (TRL's parser for CLLMFS,
the project's own for Multi-BERT), in process and as command-line runs.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ner_adapters.data import DataFormatError, from_token_classification, load_ner_dataset, read_conll, read_uner_iob2
from ner_adapters.episodes import load_episodes
from ner_adapters.yaml_config import ConfigFileError, check_config_file

REPO = Path(__file__).resolve().parents[1]
CLLMFS_RECIPE = REPO / "recipes" / "sft_cllmfs.py"
MULTIBERT_RECIPE = REPO / "recipes" / "train_multibert.py"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- dataset files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader,text,message", [
    (read_conll, "Paris\tB-LOC\n\nRome\n", r"f\.txt:3: expected at least 2 columns"),
    (read_conll, "Paris\tB-LOC\nis\tB-\n", r"f\.txt:2: tag 'B-' is not valid"),
    (read_conll, "Paris\tB-LOC\nis\tO\nnice\tZ-X\n", r"f\.txt:3: tag 'Z-X' is not valid"),
    (read_conll, "Paris\tB-LOC\n\tO\n", r"f\.txt:2: empty token"),
    # a token holding U+2028 (web text) is one line: the file used to shift every later line by one
    (read_conll, "New\u2028York\tB-LOC\nin\tO\nx\tQ-Y\n", r"f\.txt:3: tag 'Q-Y' is not valid"),
    (read_uner_iob2, "# sent_id = a-1\n1\tParis\tB-LOC\t-\t-\n2\tis\n", r"f\.txt:3: expected id, token and tag columns"),
])
def test_malformed_files_name_file_and_line(tmp_path, reader, text, message):
    with pytest.raises(DataFormatError, match=message):
        reader(write(tmp_path / "f.txt", text))


def test_episode_file_with_missing_fields_names_line(tmp_path):
    episode = {"id": "e", "protocol": "intra", "n_way": 1, "k_shot": 1, "seed": 0, "support_dataset": "x",
               "query_dataset": "x", "support_types": ["A"], "query_types": ["A"],
               "support": [{"tokens": ["a"], "spans": [{"type": "A", "start": 0, "end": 1}]}], "query": []}
    broken = dict(episode, support=[{"tokens": ["a"], "spans": [{"type": "A", "start": 0}]}])  # no "end"
    path = write(tmp_path / "ep.jsonl", json.dumps(episode) + "\n" + json.dumps(broken) + "\n")
    with pytest.raises(DataFormatError, match=r"ep\.jsonl:2: not an episode \(KeyError: 'end'\)"):
        load_episodes(path)
    bad_span = dict(episode, support=[{"tokens": ["a"], "spans": [{"type": "A", "start": 1, "end": 1}]}])
    write(path, json.dumps(bad_span) + "\n")
    with pytest.raises(DataFormatError, match=r"ep\.jsonl:1: not an episode \(ValueError: invalid span"):
        load_episodes(path)


def test_hub_style_datasets_with_broken_columns():
    from datasets import ClassLabel, Dataset, Features, List, Value

    features = Features({"tokens": List(Value("string")), "ner_tags": List(ClassLabel(names=["O", "B-PER", "I-PER"]))})
    good = Dataset.from_dict({"tokens": [["Ali", "left"]], "ner_tags": [[1, 0]]}, features=features)
    assert from_token_classification(good)[0]["spans"][0]["type"] == "PER"
    with pytest.raises(DataFormatError, match=r"column 'ner_tags' not found; the dataset has \['tokens'\]"):
        from_token_classification(good.remove_columns("ner_tags"))
    with pytest.raises(DataFormatError, match=r"column 'words' not found"):
        from_token_classification(good, tokens_column="words")
    # integer tags beyond the label names: used to be an IndexError
    ints = Dataset.from_dict({"tokens": [["Ali", "left"], ["x"]], "ner_tags": [[1, 0], [7]]})
    with pytest.raises(DataFormatError, match=r"row 1, field 'ner_tags': label id\(s\) \[7\] outside the 3 label"):
        from_token_classification(ints, label_list=["O", "B-PER", "I-PER"])
    # more tags than tokens: used to fail later with "span goes past the end" and no row
    uneven = Dataset.from_dict({"tokens": [["Ali"]], "ner_tags": [["B-PER", "I-PER", "O"]]})
    with pytest.raises(DataFormatError, match=r"row 0: 1 tokens in field 'tokens' but 3 tags in field 'ner_tags'"):
        from_token_classification(uneven)
    unknown = Dataset.from_dict({"tokens": [["Ali"]], "ner_tags": [["X-PER"]]})
    with pytest.raises(DataFormatError, match=r"row 0, field 'ner_tags': tag 'X-PER' is not valid"):
        from_token_classification(unknown)


def test_registered_dataset_with_an_unknown_label_names_folder_and_split(tmp_path):
    """A WNUT-17 file with a type outside WNUT-17's label set: the error names the folder, the split, the
    sentence and the type (it named only the sentence before)."""
    folder = tmp_path / "data" / "wnut17"
    for name in ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"):
        write(folder / name, "Ali\tB-person\nleft\tO\n")
    write(folder / "emerging.dev.conll", "Ali\tB-person\n\nthe\tO\ncat\tB-animal\n")
    assert len(load_ner_dataset("wnut17", split="train", data_dir=tmp_path / "data")) == 1
    with pytest.raises(DataFormatError, match=r"wnut17: sentence 'emerging\.dev-1' has entity types \['animal'\] outside "
                                              r"the label set .*\(dataset 'wnut17', split 'validation'\)"):
        load_ner_dataset("wnut17", split="validation", data_dir=tmp_path / "data")


def test_multibert_domain_from_datasets_names_domain_and_split():
    from datasets import Dataset

    from ner_adapters.multibert import DomainData

    table = Dataset.from_dict({"tokens": [["a"]], "ner_tags": [[0]]})
    with pytest.raises(DataFormatError, match=r"domain 'web', train split: dataset is missing the column\(s\) "
                                              r"\['spans'\]"):
        DomainData.from_datasets("web", "uner", table, table, table)


# --- artifacts whose label set disagrees ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_multibert(tmp_path_factory):
    from multibert_tiny import TYPES, build_tiny_core, one_torch_thread
    from ner_adapters.multibert import MultiBertModel

    with one_torch_thread():
        core = build_tiny_core(tmp_path_factory.mktemp("core"))
        mbert = MultiBertModel.from_core(str(core), max_length=32)
        mbert.add_scheme("toy", TYPES)
        mbert.add_domain("news", "toy")
        return mbert.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["domains"]["news"].update(scheme="people"),
     r"multibert\.json: domains use scheme\(s\) \['people'\] that field 'schemes' does not define"),
    (lambda m: m.pop("schemes"), r"multibert\.json: missing field\(s\) \['schemes'\]"),
    (lambda m: m["schemes"].update(toy=["O", "B-PER", "I-PER"]), r"heads/toy has labels \[.*\], the manifest says"),
    (lambda m: m.update(format="something-else"), r"format 'something-else' version 1 is not"),
])
def test_multibert_manifest_disagreeing_with_its_label_sets(saved_multibert, tmp_path, edit, message):
    import shutil

    from ner_adapters.multibert import MultiBertError, MultiBertModel

    copy = Path(shutil.copytree(saved_multibert, tmp_path / "model"))
    manifest = json.loads((copy / "multibert.json").read_text())
    edit(manifest)
    (copy / "multibert.json").write_text(json.dumps(manifest))
    with pytest.raises(MultiBertError, match=message):
        MultiBertModel.load(copy)


def test_multibert_manifest_not_json(saved_multibert, tmp_path):
    import shutil

    from ner_adapters.multibert import MultiBertError, MultiBertModel

    copy = Path(shutil.copytree(saved_multibert, tmp_path / "model"))
    (copy / "multibert.json").write_text("{half written")
    with pytest.raises(MultiBertError, match=r"multibert\.json: not valid JSON"):
        MultiBertModel.load(copy)


def test_cllmfs_adapter_config_with_broken_types(tmp_path):
    from ner_adapters.cllmfs import CLLMFSAdapterConfig
    from ner_adapters.cllmfs.artifact import AdapterMismatchError

    base = {"base_model": "x", "base_fingerprint": {}, "prompt_mode": "per_type"}
    for types, message in (([{"label": "person"}], "missing 2 required"), ([], "lists no entity types"),
                           (["person"], "must be a mapping")):
        write(tmp_path / "cllmfs_config.json", json.dumps({**base, "entity_types": types}))
        with pytest.raises(AdapterMismatchError, match=rf"cllmfs_config\.json: not a valid CLLMFS adapter config .*{message}"):
            CLLMFSAdapterConfig.load(tmp_path)


# --- configs ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cllmfs_recipe():
    spec = importlib.util.spec_from_file_location("sft_cllmfs_for_malformed", CLLMFS_RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def trl_parser(cllmfs_recipe):
    return cllmfs_recipe.TrlParser((cllmfs_recipe.EpisodeArguments, cllmfs_recipe.MethodArguments,
                                    cllmfs_recipe.DecodingConfig, cllmfs_recipe.CLLMFSConfig, cllmfs_recipe.ModelConfig))


def test_every_shipped_cllmfs_config_passes_the_check(trl_parser):
    files = sorted((REPO / "recipes" / "cllmfs").rglob("*.yaml"))
    assert len(files) > 10
    for path in files:
        check_config_file(path, trl_parser)


@pytest.mark.parametrize("line,message", [
    ("learning_rat: 0.1", r"c\.yaml:3: unknown key 'learning_rat'; did you mean 'learning_rate'"),
    ("k_shot: five", r"c\.yaml:3: key 'k_shot': argument --k_shot: invalid int value: 'five'"),
    ("k_shot: 5.5", r"c\.yaml:3: key 'k_shot': .*invalid int value: '5.5'"),  # TrlParser took 5.5 as is
    ("num_train_epochs: [1, 2]", r"c\.yaml:3: key 'num_train_epochs' takes one value, got a list"),  # and this
    ("constrained: maybe", r"c\.yaml:3: key 'constrained': .*Truthy value expected"),
    ("lr_scheduler_type: cosine_fast", r"c\.yaml:3: key 'lr_scheduler_type': .*invalid choice"),
])
def test_cllmfs_config_errors_name_file_line_and_key(trl_parser, tmp_path, line, message):
    path = write(tmp_path / "c.yaml", f"# a config\ndataset: wnut17\n{line}\nk_shot: 5\n" if not line.startswith("k_shot")
                 else f"# a config\ndataset: wnut17\n{line}\n")
    with pytest.raises(ConfigFileError, match=message):
        check_config_file(path, trl_parser)


def test_cllmfs_recipe_reports_the_users_file_not_the_merged_copy(cllmfs_recipe, tmp_path):
    base = REPO / "recipes" / "cllmfs" / "wnut17_intra_5shot.yaml"
    ablation = write(tmp_path / "ablation.yaml", "cl_weight: 0.0\nlora_rank: 4\n")
    with pytest.raises(ConfigFileError, match=r"ablation\.yaml:2: unknown key 'lora_rank'; did you mean .*'lora_r'"):
        cllmfs_recipe.main(["--config", str(base), "--config", str(ablation)])
    bad_value = write(tmp_path / "value.yaml", "cl_noise_kind: laplace\n")  # refused by CLLMFSConfig itself
    with pytest.raises(ConfigFileError, match=r"value\.yaml: cl_noise_kind must be 'uniform' or 'gaussian'"):
        cllmfs_recipe.main(["--config", str(base), "--config", str(bad_value)])
    with pytest.raises(ConfigFileError, match=r"missing\.yaml: config file not found"):
        cllmfs_recipe.main(["--config", str(tmp_path / "missing.yaml")])
    write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigFileError, match=r"list\.yaml:1: the top level must be a mapping"):
        cllmfs_recipe.main(["--config", str(tmp_path / "list.yaml")])
    write(tmp_path / "syntax.yaml", "dataset: wnut17\nk_shot: [5\n")
    with pytest.raises(ConfigFileError, match=r"syntax\.yaml:3: invalid YAML"):
        cllmfs_recipe.main(["--config", str(tmp_path / "syntax.yaml")])


def test_multibert_config_errors_name_file_line_and_key(tmp_path):
    from ner_adapters.multibert.config import ConfigError, parse_config

    path = write(tmp_path / "mb.yaml", "# domains\ndomains: [uner_en_ewt:email]\n\nlora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"mb\.yaml:4: unknown key 'lora_rank'"):
        parse_config([str(path)])
    write(path, "domains: [uner_en_ewt:email]\nmax_length: 12.5\n")
    with pytest.raises(ConfigError, match=r"mb\.yaml:2: key 'max_length': .*invalid int value: '12\.5'"):
        parse_config([str(path)])
    write(path, "domains: [uner_en_ewt:email]\nmax_length: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"mb\.yaml:2: key 'max_length' takes one value"):
        parse_config([str(path)])


def _start(recipe: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(recipe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)


def test_recipes_on_the_command_line_exit_with_a_one_line_error(tmp_path):
    """From a shell, a wrong key ends the run with the file, line and key on stderr, no traceback."""
    multibert = _start(MULTIBERT_RECIPE, str(write(tmp_path / "typo.yaml",
                                                   "domains: [uner_en_ewt:email]\nnum_train_epoch: 2\n")))
    cllmfs = _start(CLLMFS_RECIPE, "--config", str(write(tmp_path / "typo2.yaml", "dataset: wnut17\nnum_train_epoch: 2\n")))
    for process, expected in ((multibert, "typo.yaml:2: unknown key 'num_train_epoch'"),
                              (cllmfs, "typo2.yaml:2: unknown key 'num_train_epoch'; did you mean 'num_train_epochs'")):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 1, stderr[-2000:]
        assert expected in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_gzip_conll_with_bad_line_names_line(tmp_path):
    path = tmp_path / "g.conll.gz"
    path.write_bytes(gzip.compress("a\tO\nb\tO\nc\n".encode()))
    with pytest.raises(DataFormatError, match=r"g\.conll\.gz:3: expected at least 2 columns"):
        read_conll(path)


def test_yaml_lines_point_at_the_key(tmp_path):
    """The line in the message is where the key is written (comments and blank lines counted)."""
    from ner_adapters.yaml_config import load_mapping

    path = write(tmp_path / "l.yaml", "# header\n\nalpha: 1\n# note\nbeta:\n  - x\n  - y\ngamma: {a: 1}\n")
    data, lines = load_mapping(path)
    assert data == {"alpha": 1, "beta": ["x", "y"], "gamma": {"a": 1}}
    assert lines == {"alpha": 3, "beta": 5, "gamma": 8}
    assert yaml.safe_load(path.read_text()) == data


def test_one_loader_for_every_recipe(cllmfs_recipe, trl_parser, tmp_path, monkeypatch):
    """Both recipes parse through ``yaml_config.parse_recipe_args``: files in order, the command line last, a
    mapping value as JSON, ``env`` applied, and an error blamed on the first file after which the files are refused."""
    import inspect

    from ner_adapters.multibert import config as multibert_config
    from ner_adapters.yaml_config import parse_recipe_args

    from hub_tiny import load_recipe

    assert "parse_recipe_args(" in inspect.getsource(cllmfs_recipe.main)
    assert "parse_recipe_args(" in inspect.getsource(multibert_config.parse_config)
    for name in ("push_to_hub", "push_space"):
        assert "parse_recipe_args(" in inspect.getsource(load_recipe(name).main), name
    monkeypatch.delenv("NER_ADAPTERS_TEST_ENV", raising=False)
    base = write(tmp_path / "base.yaml", "dataset: wnut17\nk_shot: 5\nlearning_rate: 1.0e-3\n"
                 "env: {NER_ADAPTERS_TEST_ENV: 'on'}\n")
    overlay = write(tmp_path / "overlay.yaml", "k_shot: 1\nlr_scheduler_kwargs: {min_lr: 1.0e-5}\n")
    episode, _, _, training, _ = parse_recipe_args(
        trl_parser, ["--config", str(base), "--config", str(overlay), "--learning_rate", "2e-3"])
    assert (episode.dataset, episode.k_shot, training.learning_rate) == ("wnut17", 1, 2e-3)
    assert training.lr_scheduler_kwargs == {"min_lr": 1e-5}
    assert os.environ["NER_ADAPTERS_TEST_ENV"] == "on"
    bad = write(tmp_path / "bad.yaml", "cl_noise_kind: laplace\n")
    with pytest.raises(ConfigFileError, match=r"bad\.yaml: cl_noise_kind must be"):
        parse_recipe_args(trl_parser, ["--config", str(base), "--config", str(bad), "--config", str(overlay)])
    with pytest.raises(ConfigFileError, match=r"argument --k_shot.*: invalid int value: 'x'"):  # the command line: no exit
        parse_recipe_args(trl_parser, ["--config", str(base), "--k_shot", "x"])


def test_hub_style_repairs_warn_once_naming_their_rows():
    import warnings

    from datasets import Dataset

    from ner_adapters.spans import TagRepairWarning

    stray = Dataset.from_dict({"tokens": [["a", "b"], ["c"], ["d", "e"]],
                               "ner_tags": [["O", "I-PER"], ["O"], ["I-LOC", "I-PER"]]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = from_token_classification(stray)
    repairs = [str(w.message) for w in caught if w.category is TagRepairWarning]
    assert repairs == ["field 'ner_tags': 3 I- tag(s) with no entity of their type before them were read as entity "
                       "starts (rows 0, 2)"]
    assert [s["type"] for s in rows[2]["spans"]] == ["LOC", "PER"]
