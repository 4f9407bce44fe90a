"""What CLLMFS extraction decides, on scripted answers (an untrained model would answer at random or not at all):
one type per span by the model's own score, the none/entity threshold and its calibration, and the substring
constraint refusing an answer the input does not hold."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripted_answers import ScriptedAnswers
from ner_adapters.cllmfs import CLLMFSAdapterConfig, CLLMFSExtractor, DecodingConfig, EntityType, save_adapter
from ner_adapters.cllmfs.artifact import architecture_fingerprint
from ner_adapters.cllmfs.extraction import answer_score
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

TYPES = [EntityType("person", "Person", "a named person"), EntityType("location", "Location", "a named place")]
TEXT = "Ali met Sara in Rome"


@pytest.fixture(scope="module")
def extractor(tiny_llm_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    return CLLMFSExtractor(model, tokenizer, TYPES, decoding=DecodingConfig(max_new_tokens=24, batch_size=8))


@pytest.fixture
def decoding(extractor):
    """``decoding(**changes)`` sets the extractor's DecodingConfig for one test."""
    saved = extractor.decoding

    def set_(**changes):
        extractor.decoding = dataclasses.replace(saved, **changes)

    yield set_
    extractor.decoding = saved
    extractor.make_logits_processors = None


def triples(entities):
    return {(e["entity_group"], e["start"], e["end"]) for e in entities}


class ForcedAnswer:
    """Pushes every row towards one fixed answer text, whatever the input (a model that insists)."""

    def __init__(self, tokenizer, answer: str):
        self.target = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        self.prompt_length = None

    def keep(self, rows):
        pass

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        step = input_ids.shape[1] - self.prompt_length
        if step < len(self.target):
            scores[:, self.target[step]] += 1e4
        return scores


class DecisionScript(ScriptedAnswers):
    """ScriptedAnswers whose first answer token is not forced: there the model gives an entity-opening token the
    probability ``p_open[type name]`` and " none" the rest, so the none/entity choice is the threshold's to make."""

    def __init__(self, tokenizer, script, p_open):
        super().__init__(tokenizer, script)
        self.p_open = p_open
        self.open_id = tokenizer(" <<< x >>>", add_special_tokens=False)["input_ids"][0]
        self.none_id = tokenizer(" none", add_special_tokens=False)["input_ids"][0]
        self.names = None

    def __call__(self, input_ids, scores):
        if self.names is None:
            self.names = []
            for row in input_ids.tolist():
                prompt = b"".join(self.pieces[i] or b"" for i in row).decode("utf-8", errors="replace")
                self.names.append(prompt.split("Please extract the ", 1)[1].split(" in the sentence", 1)[0])
        first = self.targets is None
        scores = super().__call__(input_ids, scores)
        if first:
            for row, name in enumerate(self.names):
                p = self.p_open[name]
                scores[row] = float("-inf")
                scores[row, self.open_id], scores[row, self.none_id] = math.log(p), math.log(1 - p)
        return scores

    def keep(self, rows):
        super().keep(rows)
        self.names = [self.names[row] for row in rows]


# --- one type per span -------------------------------------------------------------------------------------------


def test_answer_score_carries_the_decision_to_list_an_entity():
    spans = [(0, 3), (3, 4), (4, 8), (8, 12)]  # " <<", "<", " Ali", " >>>"
    sure = answer_score(spans, [-0.1, -0.01, -0.2, -0.3], 0, 4, 8)
    unsure = answer_score(spans, [-2.0, -0.01, -0.2, -0.3], 0, 4, 8)
    assert sure == pytest.approx(math.exp(-0.11 - 0.2)) and unsure == pytest.approx(math.exp(-2.01 - 0.2))
    assert sure > unsure  # same entity tokens, the type whose prompt was surer of listing one wins
    assert answer_score(spans, [-0.1, -0.01, float("nan"), -0.3], 0, 4, 8) == 0.0  # no scored entity token


def test_one_span_under_two_types_keeps_the_better_scored(extractor, decoding):
    script = {"Person": ["Rome", "Ali"], "Location": ["Rome"]}
    extractor.make_logits_processors = lambda: [ScriptedAnswers(extractor.tokenizer, script)]
    decoding(resolve_overlaps="none")
    every = extractor(TEXT)
    assert triples(every) == {("person", 0, 3), ("person", 16, 20), ("location", 16, 20)}  # the paper: both types
    rome = {e["entity_group"]: e["score"] for e in every if e["start"] == 16}
    assert rome["person"] != rome["location"]
    decoding(resolve_overlaps="score")
    resolved = extractor(TEXT)
    winner = max(rome, key=rome.get)
    assert triples(resolved) == {("person", 0, 3), (winner, 16, 20)}
    for entity in resolved:
        assert TEXT[entity["start"] : entity["end"]] == entity["word"] and 0.0 < entity["score"] <= 1.0


def test_nested_spans_of_two_types_are_resolved_too(extractor, decoding):
    text = "we flew to New York today"
    script = {"Location": ["New York"], "Person": ["York"]}
    extractor.make_logits_processors = lambda: [ScriptedAnswers(extractor.tokenizer, script)]
    decoding(resolve_overlaps="none")
    assert triples(extractor(text)) == {("location", 11, 19), ("person", 15, 19)}
    decoding(resolve_overlaps="score")
    (kept,) = extractor(text)
    assert (kept["entity_group"], kept["start"], kept["end"]) in {("location", 11, 19), ("person", 15, 19)}


def test_the_pipeline_resolves_overlaps_as_configured(extractor, tiny_llm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from ner_adapters import pipeline

    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    config = CLLMFSAdapterConfig(base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(base.config),
                                 entity_types=[dataclasses.asdict(t) for t in TYPES])
    folder = save_adapter(model, extractor.tokenizer, tmp_path / "adapter", config)
    script = {"Person": ["Rome"], "Location": ["Rome"]}
    found = {}
    for mode in ("none", "score"):
        ner = pipeline("token-classification", model=str(tiny_llm_dir), adapter=str(folder),
                       decoding=DecodingConfig(max_new_tokens=24, resolve_overlaps=mode))
        ner.extractor.make_logits_processors = lambda: [ScriptedAnswers(ner.tokenizer, script)]
        found[mode] = ner(TEXT)
    assert triples(found["none"]) == {("person", 16, 20), ("location", 16, 20)}
    assert len(found["score"]) == 1 and found["score"][0] == max(found["none"], key=lambda e: e["score"])


def test_decoding_options_are_checked_by_name():
    assert DecodingConfig().resolve_overlaps == "score"
    assert DecodingConfig(resolve_overlaps=False).resolve_overlaps == "none"  # the former boolean
    with pytest.raises(ValueError, match="resolve_overlaps must be one of"):
        DecodingConfig(resolve_overlaps="best")
    assert DecodingConfig().none_threshold is None
    assert DecodingConfig(none_threshold="0.25").none_threshold == 0.25  # from the command line
    assert DecodingConfig(none_threshold="auto").none_threshold == "auto"
    assert DecodingConfig(none_threshold="Split").none_threshold == "split"
    assert DecodingConfig(none_threshold="null").none_threshold is None
    for bad in ("1.5", "sometimes", -0.1):
        with pytest.raises(ValueError, match="none_threshold must be"):
            DecodingConfig(none_threshold=bad)
    with pytest.raises(ValueError, match="none_threshold needs constrained"):
        DecodingConfig(none_threshold=0.3, constrained=False)


# --- the none/entity threshold ---------------------------------------------------------------------------------


def test_threshold_moves_the_none_decision(extractor, decoding):
    script = {"Person": ["Ali"], "Location": ["Rome"]}
    p_open = {"Person": 0.3, "Location": 0.2}
    extractor.make_logits_processors = lambda: [DecisionScript(extractor.tokenizer, script, p_open)]
    decoding()  # greedy: " none" is likelier for both types
    assert extractor(TEXT) == []
    decoding(none_threshold=0.25)
    assert triples(extractor(TEXT)) == {("person", 0, 3)}
    decoding(none_threshold=0.0)
    assert triples(extractor(TEXT)) == {("person", 0, 3), ("location", 16, 20)}
    decoding(none_threshold="auto")
    with pytest.raises(ValueError, match="calibrate_none_threshold"):
        extractor(TEXT)


def test_calibration_picks_the_threshold_that_scores_best_on_held_back_sentences(extractor, decoding):
    script = {"Person": ["Ali", "Omid"], "Location": ["Rome", "Tehran"]}  # locations are not gold: a wrong answer
    p_open = {"Person": 0.3, "Location": 0.2}
    extractor.make_logits_processors = lambda: [DecisionScript(extractor.tokenizer, script, p_open)]
    held_back = [Sentence("Ali met Sara in Rome".split(), [Span(0, 1, "person")], id="a"),
                 Sentence("Omid flew to Tehran".split(), [Span(0, 1, "person")], id="b")]
    decoding()
    chosen = extractor.calibrate_none_threshold(held_back)
    assert chosen == pytest.approx(0.3) and extractor.decoding.none_threshold == chosen
    assert extractor.stats["none_threshold_f1"] == pytest.approx(1.0)
    assert extractor.predict_sentences(held_back) == [[Span(0, 1, "person")], [Span(0, 1, "person")]]
    assert all("_p_entity" not in e for e in extractor(TEXT))  # the calibration key stays internal


def _two_type_rows() -> list[list[dict]]:
    """40 forced-pass rows: one sentence in four holds each type; person's p lies below 0.5 everywhere, location's
    above it everywhere."""
    rows = []
    for i in range(40):
        high = i % 4 == 0
        rows.append([{"entity_group": "person", "start": 0, "end": 1, "_p_entity": 0.42 if high else 0.36},
                     {"entity_group": "location", "start": 2, "end": 3, "_p_entity": 0.8 if high else 0.62}])
    return rows


def test_split_decides_each_type_by_its_own_split_of_the_batch():
    """``none_threshold: split``: a type whose p sits below 0.5 everywhere (greedy: never answered) still keeps
    its high group, and a type above 0.5 everywhere (greedy: always answered) drops its low group."""
    from ner_adapters.cllmfs.extraction import otsu_cut, split_decisions

    assert otsu_cut([0.1, 0.12, 0.11, 0.9, 0.95]) == pytest.approx((0.12 + 0.9) / 2)
    assert otsu_cut([0.3, 0.3]) == 0.3  # one group: nothing below the cut
    with pytest.raises(ValueError):
        otsu_cut([])
    rows = _two_type_rows()
    kept = split_decisions(rows)
    assert [len(row) for row in kept] == [2 if i % 4 == 0 else 0 for i in range(40)]
    assert all("_p_entity" not in e for row in kept for e in row)
    assert [len(row) for row in split_decisions(rows[:8])] == [1] * 8  # too few answers per type: 0.5 decides


def test_split_capped_at_half_only_adds_answers_to_greedy():
    """``max_threshold=0.5``: a type whose cut lies above 0.5 keeps every answer greedy keeps (p >= 0.5); a type
    whose cut lies below 0.5 is split as before."""
    from ner_adapters.cllmfs.extraction import split_decisions

    rows = _two_type_rows()
    kept = split_decisions(rows, max_threshold=0.5)
    assert [sorted(e["entity_group"] for e in row) for row in kept] == [
        ["location", "person"] if i % 4 == 0 else ["location"] for i in range(40)]
    assert [len(row) for row in split_decisions(rows)] != [len(row) for row in kept]  # the cap changed something
    with pytest.raises(ValueError, match="max_threshold"):
        split_decisions(rows, max_threshold=1.0)


def test_split_runs_one_forced_pass_and_falls_back_to_half_on_few_inputs(extractor, decoding, monkeypatch):
    from ner_adapters.cllmfs import extraction

    script = {"Person": ["Ali"], "Location": ["Rome"]}
    p_open = {"Person": 0.7, "Location": 0.2}
    extractor.make_logits_processors = lambda: [DecisionScript(extractor.tokenizer, script, p_open)]
    decoding(none_threshold="split")
    assert extractor.decoding.none_threshold == "split"
    entities = extractor(TEXT)
    assert triples(entities) == {("person", 0, 3)} and all("_p_entity" not in e for e in entities)
    assert extractor.decoding.none_threshold == "split"  # restored after the forced pass
    monkeypatch.setattr(extraction, "SPLIT_MIN_ANSWERS", 1)  # one p per type: no low group, every answer stays
    assert triples(extractor(TEXT)) == {("person", 0, 3), ("location", 16, 20)}


def test_split_max_threshold_reaches_the_split_and_is_checked(extractor, decoding, monkeypatch):
    """``split_max_threshold`` is the cap of :func:`split_decisions` (tested above) in the extractor's config, so
    the harness and the pipeline can decode with the capped split; it means nothing without ``split``, nor at 1,
    and both are stored as no cap (so an overlay's cap does not block ``--none_threshold null``)."""
    from ner_adapters.cllmfs import extraction

    seen = []
    original = extraction.split_decisions

    def recording(rows, min_answers=None, max_threshold=None):
        seen.append(max_threshold)
        return original(rows, min_answers, max_threshold)

    monkeypatch.setattr(extraction, "split_decisions", recording)
    extractor.make_logits_processors = lambda: [DecisionScript(extractor.tokenizer, {"Person": ["Ali"],
                                                                                     "Location": ["Rome"]},
                                                               {"Person": 0.7, "Location": 0.2})]
    decoding(none_threshold="split", split_max_threshold="0.5")  # a string, as from the command line
    assert extractor.decoding.split_max_threshold == 0.5
    assert triples(extractor(TEXT)) == {("person", 0, 3)} and seen == [0.5]
    decoding(none_threshold="split")
    extractor(TEXT)
    assert seen == [0.5, None]
    for none_threshold in (None, 0.3, "auto"):
        assert DecodingConfig(none_threshold=none_threshold, split_max_threshold=0.5).split_max_threshold is None
    for no_cap in (1.0, "1", "null", None):
        assert DecodingConfig(none_threshold="split", split_max_threshold=no_cap).split_max_threshold is None
    decoding(none_threshold="split", split_max_threshold=1.0)
    extractor(TEXT)
    assert seen == [0.5, None, None]
    for bad in (0.0, 1.5, -0.2, "half", True):
        with pytest.raises(ValueError, match="split_max_threshold must lie in"):
            DecodingConfig(none_threshold="split", split_max_threshold=bad)


# --- the substring constraint ----------------------------------------------------------------------------------


def answers(extractor, monkeypatch):
    """Record every generated answer text."""
    seen = []
    original = extractor._read_answer

    def read(job, token_ids, logprobs, decision=None):
        seen.append(extractor.tokenizer.decode(token_ids, skip_special_tokens=True))
        return original(job, token_ids, logprobs, decision)

    monkeypatch.setattr(extractor, "_read_answer", read)
    return seen


@pytest.mark.parametrize("forced", [" <<< London >>>", " <<< Rom >>>", " <<< Sara in Rome Ali >>>"])
def test_the_constraint_blocks_an_answer_the_input_does_not_hold(extractor, decoding, monkeypatch, forced):
    extractor.make_logits_processors = lambda: [ForcedAnswer(extractor.tokenizer, forced)]
    seen = answers(extractor, monkeypatch)
    decoding(constrained=False)
    unmatched = extractor.stats["unmatched"]
    assert extractor(TEXT) == []
    assert all(forced.strip() in answer for answer in seen)  # free decoding writes what it is pushed to
    assert extractor.stats["unmatched"] == unmatched + len(TYPES)  # ... which extraction then cannot place
    seen.clear()
    decoding(constrained=True)
    entities = extractor(TEXT)
    assert seen and not any(forced.strip() in answer for answer in seen)
    assert extractor.stats["unmatched"] == unmatched + len(TYPES)
    for entity in entities:
        assert TEXT[entity["start"] : entity["end"]] == entity["word"]


def test_a_calibrated_threshold_travels_with_the_adapter(extractor, tiny_llm_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from ner_adapters import pipeline

    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    config = CLLMFSAdapterConfig(base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(base.config),
                                 entity_types=[dataclasses.asdict(t) for t in TYPES], none_threshold=0.25)
    folder = save_adapter(model, extractor.tokenizer, tmp_path / "adapter", config)
    assert pipeline("token-classification", adapter=str(folder)).extractor.decoding.none_threshold == 0.25
    explicit = pipeline("token-classification", adapter=str(folder), decoding=DecodingConfig(max_new_tokens=8))
    assert explicit.extractor.decoding.none_threshold is None  # a DecodingConfig given is used as it is


def test_finalise_entities_settles_overlaps_as_extraction_does():
    """The diagnostic re-scores forced passes with this function, so it must be the extractor's own rule."""
    from ner_adapters.cllmfs.extraction import finalise_entities

    person = {"entity_group": "person", "score": 0.9, "start": 0, "end": 5}
    org = {"entity_group": "org", "score": 0.4, "start": 0, "end": 11}
    repeated = dict(person, score=0.2)  # the same answer from an overlapping chunk
    later = {"entity_group": "org", "score": 0.1, "start": 12, "end": 17}
    assert finalise_entities([org, person, repeated, later], "score") == [person, later]
    assert finalise_entities([org, person, repeated, later], "none") == [person, org, later]
