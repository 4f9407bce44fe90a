"""Span-level scores: agreement with seqeval on real data, spans vs tags, the offline evaluate module."""

import random
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2

from ner_adapters.data import load_sentences
from ner_adapters.metrics import load_metric, sequence_scores, span_scores
from ner_adapters.spans import Span, spans_to_tags


def seqeval_report(gold, pred, strict=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if strict:
            return classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
        return classification_report(gold, pred, output_dict=True, zero_division=0)


def corrupt(tags, labels, rng, rate=0.15):
    """Realistic-looking predictions: gold tags with random substitutions (some ill-formed)."""
    return [rng.choice(labels) if rng.random() < rate else t for t in tags]


def assert_matches(ours, theirs):
    assert ours.micro.f1 == pytest.approx(theirs["micro avg"]["f1-score"], abs=1e-12)
    assert ours.micro.precision == pytest.approx(theirs["micro avg"]["precision"], abs=1e-12)
    assert ours.micro.recall == pytest.approx(theirs["micro avg"]["recall"], abs=1e-12)
    assert ours.macro_f1 == pytest.approx(theirs["macro avg"]["f1-score"], abs=1e-12)
    for entity_type, s in ours.per_type.items():
        assert s.f1 == pytest.approx(theirs[entity_type]["f1-score"], abs=1e-12), entity_type
        assert s.gold == theirs[entity_type]["support"], entity_type


@pytest.mark.parametrize("name", ["wnut17", "conll2003"])
def test_agrees_with_seqeval_on_real_data(request, name):
    folder = request.getfixturevalue("data_dir" if name == "wnut17" else "shared_data")  # WNUT-17 is bundled
    sentences = load_sentences(name, split="test", data_dir=folder)
    gold = [spans_to_tags(s.spans, len(s.tokens)) for s in sentences]
    labels = sorted({t for tags in gold for t in tags})
    rng = random.Random(0)
    pred = [corrupt(tags, labels, rng) for tags in gold]
    assert_matches(sequence_scores(gold, pred), seqeval_report(gold, pred, strict=True))
    assert_matches(sequence_scores(gold, pred, mode="repair"), seqeval_report(gold, pred, strict=False))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(["O", "B-A", "I-A", "B-B", "I-B"]), min_size=1, max_size=12),
                          st.integers(0, 2**32 - 1)), min_size=1, max_size=8))
def test_agrees_with_seqeval_on_random_sequences(rows):
    gold = [tags for tags, _ in rows]
    pred = [corrupt(tags, ["O", "B-A", "I-A", "B-B", "I-B"], random.Random(seed), rate=0.4) for tags, seed in rows]
    ours = sequence_scores(gold, pred)
    if ours.micro.gold == 0 and ours.micro.predicted == 0:
        return  # seqeval has no rows to report
    theirs = seqeval_report(gold, pred)
    assert ours.micro.f1 == pytest.approx(theirs["micro avg"]["f1-score"], abs=1e-12)


def test_span_inputs_and_types():
    gold = [[Span(0, 2, "PER"), {"type": "LOC", "start": 3, "end": 4}], []]
    pred = [[(0, 2, "PER"), {"entity_group": "LOC", "start": 3, "end": 5}], [Span(0, 1, "PER")]]
    scores = span_scores(gold, pred)
    assert (scores.micro.tp, scores.micro.predicted, scores.micro.gold) == (1, 3, 2)
    assert scores.per_type["PER"].precision == 0.5 and scores.per_type["LOC"].f1 == 0.0
    restricted = span_scores(gold, pred, types=["PER", "ORG"])
    assert set(restricted.per_type) == {"PER", "ORG"} and restricted.per_type["ORG"].f1 == 0.0
    assert "micro avg" in scores.table()
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        span_scores(gold, pred[:1])


def test_evaluate_module_loads_offline():
    metric = load_metric()
    result = metric.compute(predictions=[["B-PER", "I-PER", "O", "I-LOC"]], references=[["B-PER", "I-PER", "O", "B-LOC"]])
    assert result["overall_f1"] == pytest.approx(2 / 3)
    assert result["PER"]["f1"] == 1.0 and result["LOC"]["number"] == 1
    assert result["overall_accuracy"] == 0.75
