"""``span_typing: prototype``: CLLMFS's spans typed by the support set's prototypes (release 17: +4.6 F1 on CoNLL-2003
with Qwen), wired through the harness, refused where it cannot work, and invisible to runs recorded before it."""

from __future__ import annotations

import json

import pytest
import yaml

from hub_tiny import load_recipe
from ner_adapters.cllmfs import experiment
from ner_adapters.cllmfs.entity_types import EntityType
from ner_adapters.cllmfs.experiment import MethodArguments, _check_prototype_typing, _prototype_typed
from ner_adapters.data import Sentence
from ner_adapters.episodes import Episode
from ner_adapters.spans import Span
from test_cllmfs_recipe import tiny_config

SUPPORT = [
    Sentence("Alice Smith visited Paris".split(), [Span(0, 2, "person"), Span(3, 4, "location")], id="a"),
    Sentence("Bob Jones flew to Berlin".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="b"),
]
QUERY = [Sentence("Carol White moved to Madrid".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="q")]
TYPES = [EntityType("person", "Person", "a person"), EntityType("location", "Location", "a place")]


def episode(**changes) -> Episode:
    fields = dict(id="e0", protocol="intra", n_way=2, k_shot=2, seed=0, support_dataset="toy", query_dataset="toy",
                  support_types=["person", "location"], query_types=["person", "location"], support=SUPPORT, query=QUERY)
    return Episode(**{**fields, **changes})


@pytest.mark.integration
def test_the_episodes_support_retypes_the_llms_spans():
    swapped = [[Span(0, 2, "location"), Span(4, 5, "person")]]
    assert _prototype_typed(episode(), TYPES, swapped, "sentence-transformers/all-MiniLM-L6-v2") == [QUERY[0].spans]


def test_it_is_refused_where_the_support_holds_no_examples_of_the_query_types():
    with pytest.raises(ValueError, match=r"episode 'e0' \(inter\).*use span_typing: llm"):
        _prototype_typed(episode(protocol="inter"), TYPES, [[]], "unused")
    with pytest.raises(ValueError, match=r"\(inter\)"):  # what run_episode asks before it trains anything
        _check_prototype_typing(episode(protocol="inter"), TYPES)
    assert _check_prototype_typing(episode(), TYPES) == ["person", "location"]
    only_people = [Sentence(s.tokens, [x for x in s.spans if x.type == "person"], id=s.id) for s in SUPPORT]
    with pytest.raises(ValueError, match=r"none of \['location'\]"):
        _prototype_typed(episode(support=only_people), TYPES, [[]], "unused")


def test_only_cllmfs_spans_are_retyped_and_the_choice_is_named():
    with pytest.raises(ValueError, match="span_typing must be one of"):
        MethodArguments(span_typing="gliner")
    with pytest.raises(ValueError, match="method 'proto' types its own"):
        MethodArguments(method="proto", span_typing="prototype")
    assert MethodArguments(span_typing="prototype").typing_encoder == "sentence-transformers/all-MiniLM-L6-v2"


def test_runs_recorded_before_the_option_existed_are_the_same_experiment(tmp_path):
    config = {"episodes": {"n_episodes": 5}, "method": {"method": "cllmfs", "span_typing": "llm",
                                                         "typing_encoder": "sentence-transformers/all-MiniLM-L6-v2"},
              "decoding": {}, "training": {}}
    old = {**config, "method": {"method": "cllmfs"}}  # written before span_typing / typing_encoder were recorded
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    assert experiment._same_experiment(path, config)
    assert not experiment._same_experiment(path, {**config, "method": {**config["method"], "span_typing": "prototype"}})
    # decoding's split_max_threshold came later still: a run recorded without it decoded with none
    assert experiment._same_experiment(path, {**config, "decoding": {"split_max_threshold": None}})
    assert not experiment._same_experiment(path, {**config, "decoding": {"split_max_threshold": 0.5}})


@pytest.mark.integration
def test_the_harness_scores_prototype_typed_spans(tmp_path, tiny_llm_dir, data_dir, monkeypatch):
    """End to end through the recipe: the (tiny) LLM's answers are scripted as the gold spans with every type rotated,
    so the LLM's typing scores 0 and the prototypes' recovers most of them."""
    from ner_adapters.cllmfs.extraction import CLLMFSExtractor

    def rotated(self, sentences, show_progress=False):
        labels = [t.label for t in self.entity_types]
        return [[Span(s.start, s.end, labels[(labels.index(s.type) + 1) % len(labels)]) for s in x.spans
                 if s.type in labels] for x in sentences]

    monkeypatch.setattr(CLLMFSExtractor, "predict_sentences", rotated)
    recipe = load_recipe("sft_cllmfs")
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=40, k_shot=5)
    f1 = {}
    for typing in ("llm", "prototype"):
        out = tmp_path / typing
        recipe.main(["--config", str(config), "--span_typing", typing, "--output_dir", str(out)])
        f1[typing] = json.loads((out / "results.json").read_text())["micro_f1"]["mean"]
        assert yaml.safe_load((out / "config.yaml").read_text())["method"]["span_typing"] == typing
    assert f1["llm"] == 0.0 and f1["prototype"] > 0.3, f1
