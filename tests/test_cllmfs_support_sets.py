"""Training data as the paper uses it: several support sets per episode (INTRA), several sources (INTER), the
baselines on the same labelled sentences (INTRA) or a K-shot set of the target (INTER), and the none threshold
chosen on held-back support sentences, all through recipes/sft_cllmfs.py on a tiny model."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml

from ner_adapters.cllmfs.support_sets import sample_support_sets, support_parts, with_support_sets
from ner_adapters.data import Sentence
from ner_adapters.episodes import Episode, load_episodes
from ner_adapters.spans import Span

from hub_tiny import load_recipe

# The tiny models here are untrained: their answers ramble up to max_new_tokens, and extraction rightly says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_new_tokens.*before their end:UserWarning")

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sft_cllmfs.py"


def pool(prefix: str, n: int, types=("person", "place")) -> list[Sentence]:
    """``n`` sentences, each with one entity of every type."""
    return [Sentence([f"{prefix}{i}", "met", "X", "in", "Y"], [Span(2, 3, types[0]), Span(4, 5, types[1])], id=f"{prefix}-{i}")
            for i in range(n)]


def episode(support, types=("person", "place"), dataset="toy") -> Episode:
    return Episode(id=f"{dataset}-inter-2way1shot-seed0", protocol="inter", n_way=2, k_shot=1, seed=0,
                   support_dataset=dataset, query_dataset="target", support_types=list(types), query_types=["thing"],
                   support=list(support), query=[Sentence(["a"], [], id="q")])


def test_support_sets_are_disjoint_while_the_data_allows(caplog):
    sentences = pool("s", 10)
    sets = sample_support_sets(sentences, ["person", "place"], 2, 4, "seed")
    ids = [s.id for support in sets for s in support]
    assert len(sets) == 4 and len(ids) == len(set(ids)) == 8  # 2-shot with one mention per type: 2 sentences a set
    assert sets == sample_support_sets(sentences, ["person", "place"], 2, 4, "seed")  # seeded
    assert sets != sample_support_sets(sentences, ["person", "place"], 2, 4, "other")
    with caplog.at_level(logging.WARNING):
        crowded = sample_support_sets(sentences, ["person", "place"], 2, 7, "seed")
    assert len(crowded) == 7 and "may repeat sentences" in caplog.text
    assert len({s.id for s in crowded[5]}) == 2  # a set itself never repeats a sentence
    with pytest.raises(ValueError, match="n_support_sets must be >= 1"):
        sample_support_sets(sentences, ["person"], 1, 0, "seed")


def test_one_set_of_one_source_is_the_plain_episode():
    plain = episode(pool("s", 1))
    assert with_support_sets(plain, n_support_sets=1, load_pool=None, source_types=None) is plain


def test_several_sets_keep_the_episode_own_set_first():
    own = pool("s", 1)
    plain = episode(own)
    extended = with_support_sets(plain, n_support_sets=3, load_pool=lambda name, config: pool("s", 12),
                                 source_types=lambda name: ["person", "place"])
    assert extended.id == plain.id + "-3sets" and extended.support[:1] == own
    assert len(extended.support) == 3 and len({s.id for s in extended.support}) == 3
    assert extended.support_types == plain.support_types and extended.query == plain.query
    assert support_parts(extended) == [("toy", extended.support, ["person", "place"])]


def test_several_sources_ask_each_sentence_for_its_own_types():
    plain = episode(pool("a", 1))
    pools = {"toy": pool("a", 6), "other": pool("b", 6, types=("drug", "person")), "third": pool("c", 6, types=("gene", "cell"))}
    extended = with_support_sets(plain, n_support_sets=2, sources=["toy", "other", "third/sub"],
                                 load_pool=lambda name, config: pools[name],
                                 source_types=lambda name: {"other": ["drug", "person"], "third": ["gene", "cell"]}[name])
    assert extended.support_dataset == "toy+other+third/sub"
    assert extended.id == "toy+other+third/sub-inter-5way1shot-seed0-2sets"
    assert extended.support_types == ["person", "place", "drug", "gene", "cell"]
    assert all(s.id.split(":")[0] in ("toy", "other", "third/sub") for s in extended.support)
    parts = support_parts(extended)
    assert [(source, len(sentences), types) for source, sentences, types in parts] == [
        ("toy", 2, ["person", "place"]), ("other", 2, ["person", "drug"]), ("third/sub", 2, ["gene", "cell"])]
    with pytest.raises(ValueError, match="source_datasets\\[0\\] must be the episode's source"):
        with_support_sets(plain, sources=["other", "toy"], load_pool=None, source_types=None)
    with pytest.raises(ValueError, match="lists a dataset twice"):
        with_support_sets(plain, sources=["toy", "toy"], load_pool=None, source_types=None)


def test_episode_arguments_are_checked_by_name():
    from ner_adapters.cllmfs.experiment import EpisodeArguments, MethodArguments

    args = EpisodeArguments(source_datasets=["conll2003", "gum/news"], target_dataset="wnut17")
    assert (args.dataset, args.dataset_config) == ("conll2003", None)
    with pytest.raises(ValueError, match="n_support_sets must be >= 1"):
        EpisodeArguments(n_support_sets=0)
    with pytest.raises(ValueError, match="source_datasets is for INTER"):
        EpisodeArguments(source_datasets=["conll2003"])
    with pytest.raises(ValueError, match="episodes_file holds"):
        EpisodeArguments(episodes_file="e.jsonl", n_support_sets=2)
    with pytest.raises(ValueError, match="none_threshold_holdout must be in"):
        MethodArguments(none_threshold_holdout=1.0)


# --- through the recipe --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("sft_cllmfs")


def tiny_config(tmp_path, tiny_llm_dir, shared_data, name="run", **overrides):
    config = yaml.safe_load((RECIPE.parent / "cllmfs" / "wnut17_intra_5shot.yaml").read_text())
    config.update(
        model_name_or_path=str(tiny_llm_dir), output_dir=str(tmp_path / name), data_dir=str(shared_data),
        n_way=2, k_shot=1, query_size=3, max_steps=1, per_device_train_batch_size=2, max_new_tokens=8,
        lora_r=2, lora_alpha=4, use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
    )
    config.update(overrides)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class RecordingTagger:
    """Stands in for PrototypeTagger: records what it is fitted on, predicts nothing."""

    fitted: list = []

    def __init__(self, encoder, method):
        self.method = method

    def fit(self, support, types):
        RecordingTagger.fitted.append(([s.id for s in support], list(types)))
        return self

    def predict(self, sentences):
        return [[] for _ in sentences]


def test_intra_trains_on_every_support_set_and_the_baselines_get_the_same(recipe, tmp_path, tiny_llm_dir, shared_data,
                                                                       monkeypatch, capsys):
    import ner_adapters.baselines

    from ner_adapters.cllmfs import sft_data

    built = []
    original = sft_data.build_sft_dataset

    def build(sentences, types, *args, **kwargs):
        built.append(([s.id for s in sentences], [t.label for t in types]))
        return original(sentences, types, *args, **kwargs)

    monkeypatch.setattr(sft_data, "build_sft_dataset", build)
    config = tiny_config(tmp_path, tiny_llm_dir, shared_data, n_support_sets=3)
    summary = recipe.main(["--config", str(config)])
    (saved,) = load_episodes(tmp_path / "run" / "episodes.jsonl")
    assert saved.id.endswith("-3sets") and summary["episodes"][0]["episode"] == saved.id
    support_ids = [s.id for s in saved.support]
    assert len(support_ids) == len(set(support_ids)) >= 3  # three disjoint 1-shot sets of 2 types
    assert built == [(support_ids, saved.support_types)]  # CLLMFS trained on all of them
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["episodes"]["n_support_sets"] == 3

    monkeypatch.setattr(ner_adapters.baselines, "PrototypeTagger", RecordingTagger)
    RecordingTagger.fitted.clear()
    recipe.main(["--config", str(config), "--method", "proto", "--output_dir", str(tmp_path / "proto")])
    assert RecordingTagger.fitted == [(support_ids, saved.support_types)]

    capsys.readouterr()  # the support-set count is part of the experiment: another count runs again
    recipe.main(["--config", str(config), "--method", "proto", "--output_dir", str(tmp_path / "proto")])
    assert "reusing" in capsys.readouterr().out
    recipe.main(["--config", str(config), "--method", "proto", "--output_dir", str(tmp_path / "proto"),
                 "--n_support_sets", "2"])
    assert "reusing" not in capsys.readouterr().out


def test_inter_from_several_sources_and_its_baselines(recipe, tmp_path, tiny_llm_dir, shared_data, monkeypatch):
    import ner_adapters.baselines

    config = tiny_config(tmp_path, tiny_llm_dir, shared_data, source_datasets=["conll2003", "gum"],
                         target_dataset="wnut17", n_way=None, dataset="wnut17")
    summary = recipe.main(["--config", str(config)])
    run = tmp_path / "run"
    (saved,) = load_episodes(run / "episodes.jsonl")
    assert saved.support_dataset == "conll2003+gum" and summary["source"] == "conll2003+gum"
    assert summary["target"] == "wnut17" and summary["protocol"] == "inter"
    adapter = json.loads((run / "episode-0" / "adapter" / "cllmfs_config.json").read_text())
    described = {t["label"]: t["description"] for t in adapter["entity_types"]}
    assert {"organisation", "misc", "abstract", "plant"} <= set(described)  # both sources' types
    assert "Other" not in described["plant"] and described["misc"] != described["plant"]
    predictions = [json.loads(line) for line in (run / "episode-0" / "predictions.jsonl").read_text().splitlines()]
    assert {span["type"] for p in predictions for span in p["spans"]} <= set(saved.query_types)

    monkeypatch.setattr(ner_adapters.baselines, "PrototypeTagger", RecordingTagger)
    RecordingTagger.fitted.clear()
    recipe.main(["--config", str(config), "--method", "nnshot", "--output_dir", str(tmp_path / "nn")])
    ((ids, types),) = RecordingTagger.fitted
    assert types == saved.query_types and all(i.startswith("wnut17train-") for i in ids)  # the target's own K-shot
    result = json.loads((tmp_path / "nn" / "episode-0" / "results.json").read_text())
    assert result["target_support"] == ids


def test_an_inter_target_without_a_train_split_lends_its_validation_split_to_the_baselines(
        recipe, tmp_path, tiny_llm_dir, data_dir, monkeypatch):
    """UNER English-EWT publishes only validation and test: the prototype baselines' 5-shot target set comes from
    validation (recorded), never from the test split the queries come from."""
    import ner_adapters.baselines
    from ner_adapters.data.registry import load_sentences

    monkeypatch.setattr(ner_adapters.baselines, "PrototypeTagger", RecordingTagger)
    RecordingTagger.fitted.clear()
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, target_dataset="uner_en_ewt", n_way=None, k_shot=1)
    recipe.main(["--config", str(config), "--method", "proto"])
    ((ids, types),) = RecordingTagger.fitted
    validation = {s.id for s in load_sentences("uner_en_ewt", split="validation", data_dir=data_dir)}
    (saved,) = load_episodes(tmp_path / "run" / "episodes.jsonl")
    assert types == ["PER", "ORG", "LOC"] and ids and set(ids) <= validation
    assert not set(ids) & {s.id for s in saved.query}
    result = json.loads((tmp_path / "run" / "episode-0" / "results.json").read_text())
    assert result["target_support"] == ids and result["target_support_split"] == "validation"


def test_auto_none_threshold_is_chosen_on_held_back_support_and_recorded(recipe, tmp_path, tiny_llm_dir, shared_data,
                                                                        monkeypatch):
    from ner_adapters.cllmfs import sft_data

    trained = []
    original = sft_data.build_sft_dataset

    def build(sentences, types, *args, **kwargs):
        trained.extend(s.id for s in sentences)
        return original(sentences, types, *args, **kwargs)

    monkeypatch.setattr(sft_data, "build_sft_dataset", build)
    config = tiny_config(tmp_path, tiny_llm_dir, shared_data, n_support_sets=3, none_threshold="auto",
                         none_threshold_holdout=0.4)
    recipe.main(["--config", str(config)])
    run = tmp_path / "run"
    result = json.loads((run / "episode-0" / "results.json").read_text())
    assert 0.0 <= result["none_threshold"] <= 1.0 and 0.0 <= result["none_threshold_f1"] <= 1.0
    assert result["calibrate_seconds"] > 0 and result["peak_rss_mib"] > 100  # beside F1: time and memory
    held = result["held_back_sentences"]
    (saved,) = load_episodes(run / "episodes.jsonl")
    assert held and not set(held) & set(trained) and set(held) | set(trained) == {s.id for s in saved.support}
    adapter = json.loads((run / "episode-0" / "adapter" / "cllmfs_config.json").read_text())
    assert adapter["none_threshold"] == result["none_threshold"]
    with pytest.raises(ValueError, match="none_threshold: auto is chosen on support sentences held back"):
        recipe.main(["--config", str(config), "--method", "zero_shot", "--output_dir", str(tmp_path / "zs")])


def test_a_source_type_too_rare_for_k_shot_is_left_out(caplog):
    plain = episode(pool("a", 1))
    rare = pool("b", 6, types=("drug", "gene"))
    for sentence in rare[1:]:
        sentence.spans = [span for span in sentence.spans if span.type != "gene"]  # one "gene" mention in all
    with caplog.at_level(logging.WARNING):
        extended = with_support_sets(plain, sources=["toy", "other"], load_pool=lambda name, config: rare,
                                     source_types=lambda name: ["drug", "gene"])
    assert extended.support_types == ["person", "place", "drug", "gene"] and "fewer than" not in caplog.text  # K=1: enough
    extended = with_support_sets(dataclasses.replace(plain, k_shot=2), sources=["toy", "other"],
                                 load_pool=lambda name, config: rare, source_types=lambda name: ["drug", "gene"])
    assert "gene" not in extended.support_types and "types ['gene'] have fewer than 2 mentions" in caplog.text


def test_training_can_start_from_a_saved_adapter(recipe, tmp_path, tiny_llm_dir, shared_data):
    """``init_adapter`` (say, the zero-shot adapter) continues training from its LoRA weights; a fresh LoRA starts
    with B = 0. At learning rate 0 the saved weights come back unchanged, so the start is exactly the adapter."""
    from safetensors.torch import load_file

    def lora(run):
        return load_file(str(tmp_path / run / "episode-0" / "adapter" / "adapter_model.safetensors"))

    config = tiny_config(tmp_path, tiny_llm_dir, shared_data)
    recipe.main(["--config", str(config), "--output_dir", str(tmp_path / "first"), "--warmup_ratio", "0"])
    first = lora("first")
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in first.items())  # its step moved B

    adapter = str(tmp_path / "first" / "episode-0" / "adapter")
    recipe.main(["--config", str(config), "--output_dir", str(tmp_path / "warm"), "--learning_rate", "0",
                 "--init_adapter", adapter])
    warm = lora("warm")
    assert warm.keys() == first.keys() and all(torch.equal(warm[k], first[k]) for k in first)
    recipe.main(["--config", str(config), "--output_dir", str(tmp_path / "fresh"), "--learning_rate", "0"])
    assert all(v.abs().sum() == 0 for k, v in lora("fresh").items() if k.endswith("lora_B.weight"))
    recorded = yaml.safe_load((tmp_path / "warm" / "config.yaml").read_text())["method"]["init_adapter"]
    assert recorded == adapter  # part of the experiment: a run from another start is another experiment

    with pytest.raises(ValueError, match="init_adapter starts CLLMFS training"):
        recipe.main(["--config", str(config), "--method", "proto", "--init_adapter", adapter,
                     "--output_dir", str(tmp_path / "p")])
