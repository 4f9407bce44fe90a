"""Property-based tests (hypothesis) across the data layer: spans and offsets, tag schemes against seqeval, the
span metric against seqeval, the episode sampler, and the file readers on random files.

Complements the properties already in test_spans.py, test_metrics.py and test_episodes.py: here the tokens
are drawn from all of Unicode (astral characters, zero-width joiners, right-to-left text, no-break spaces),
tag sequences are arbitrary (ill-formed ones included) and compared entity by entity with seqeval, and
files are written to disk in every layout the readers accept.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from seqeval.metrics import classification_report
from seqeval.metrics.sequence_labeling import get_entities
from seqeval.scheme import IOB2, Entities

from ner_adapters.data import Sentence, read_conll, read_presidio_json, read_uner_iob2
from ner_adapters.episodes import Episode, EpisodeSamplingError, load_episodes, sample_episode, save_episodes
from ner_adapters.metrics import sequence_scores, span_scores
from ner_adapters.spans import (
    Span,
    char_span_to_tokens,
    normalize_tags,
    spans_from_dicts,
    spans_to_dicts,
    spans_to_tags,
    tags_to_spans,
    token_char_offsets,
)

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Tokens: any character but ASCII space/tab, CR and LF (the separators of the formats), so astral emoji, U+200C
# (ZWNJ), RTL letters, combining marks, U+00A0 and the other line separators (U+2028, U+0085, U+001C) all appear.
TOKEN_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=" \t\n\r")
TOKEN = st.one_of(
    st.text(TOKEN_CHARS, min_size=1, max_size=6),
    st.sampled_from(["می\u200cخواهم", "😀", "𝔘𝔫𝔦", "Zaha", "حديد", "U.S.", "e-mail", "Tōkyō", "\u00a0x", "٣", "B-PER",
                     "a\u2028b", "x\x85y", "\x1c", "New\u00a0York", "\u3000"]),
)
TYPES = st.sampled_from(["PER", "LOC", "creative-work", "ORG", "B", "I-x"])  # types that look like prefixes too
TAG_TYPES = ["A", "B", "creative-work"]
ANY_TAG = st.sampled_from(["O"] + [f"{p}-{t}" for p in "BI" for t in TAG_TYPES])


@st.composite
def sentences(draw, min_tokens=1, max_tokens=20):
    tokens = draw(st.lists(TOKEN, min_size=min_tokens, max_size=max_tokens))
    spans, position = [], 0
    while position < len(tokens):
        position += draw(st.integers(0, 3))
        length = draw(st.integers(1, 4))
        if position + length > len(tokens):
            break
        spans.append(Span(position, position + length, draw(TYPES)))
        position += length
    return tokens, spans


# --- spans <-> tags <-> character offsets -------------------------------------------------------------------


@settings(max_examples=150, **SETTINGS)
@given(sentences())
def test_iob2_spans_char_offsets_round_trip(sentence):
    """IOB2 tags -> spans -> character offsets -> token ranges -> spans -> IOB2 tags gives back what it started
    with, whatever the characters (offsets count code points, so astral characters and ZWNJ are one each)."""
    tokens, spans = sentence
    text = " ".join(tokens)
    tags = spans_to_tags(spans, len(tokens))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = tags_to_spans(tags, mode="strict")
    assert read == spans
    rows = spans_to_dicts(read, tokens)
    offsets = token_char_offsets(tokens)
    assert [text[s:e] for s, e in offsets] == tokens
    back = []
    for row in rows:
        assert text[row["char_start"] : row["char_end"]] == " ".join(tokens[row["start"] : row["end"]])
        start, end = char_span_to_tokens(offsets, row["char_start"], row["char_end"], expand=False)
        back.append(Span(start, end, row["type"]))
    assert back == spans and spans_from_dicts(rows) == spans
    assert spans_to_tags(back, len(tokens)) == tags


@settings(max_examples=200, **SETTINGS)
@given(st.lists(ANY_TAG, max_size=25))
def test_arbitrary_tags_read_like_seqeval(tags):
    """Any tag sequence, ill-formed ones included: our IOB1 reading and IOB2 "repair" reading find exactly
    seqeval's (conlleval) entities, "drop" exactly seqeval's strict IOB2 entities, and normalising to IOB2
    (from IOB1 or BIO) keeps the entities and yields valid IOB2."""

    def ours(spans):
        return sorted((s.type, s.start, s.end - 1) for s in spans)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conlleval = sorted(get_entities(list(tags)))
        assert ours(tags_to_spans(tags, "IOB1")) == conlleval
        assert ours(tags_to_spans(tags, "IOB2", mode="repair")) == conlleval
        assert ours(tags_to_spans(tags, "BIO", mode="repair")) == conlleval
        strict = sorted((e.tag, e.start, e.end - 1) for e in Entities([list(tags)], IOB2).entities[0])
        assert ours(tags_to_spans(tags, "IOB2", mode="drop")) == strict
        for scheme in ("IOB1", "BIO"):
            normal = normalize_tags(tags, scheme)
            assert len(normal) == len(tags)
            assert tags_to_spans(normal, "IOB2", mode="strict") == tags_to_spans(tags, scheme)
            # valid IOB2 reads the same in every mode, and seqeval's strict mode agrees with conlleval on it
            strict_normal = sorted((e.tag, e.start, e.end - 1) for e in Entities([normal], IOB2).entities[0])
            assert strict_normal == sorted(get_entities(normal))


# --- the metric against seqeval (strict IOB2) -------------------------------------------------------------------


def _seqeval(gold, pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)


@st.composite
def gold_and_predicted(draw):
    n = draw(st.integers(1, 6))
    gold, pred = [], []
    for _ in range(n):
        length = draw(st.integers(1, 15))
        gold.append(draw(st.lists(ANY_TAG, min_size=length, max_size=length)))
        if draw(st.booleans()):  # predictions near the gold (most spans match), or anything at all
            row = [t if draw(st.integers(0, 5)) else draw(ANY_TAG) for t in gold[-1]]
        else:
            row = draw(st.lists(ANY_TAG, min_size=length, max_size=length))
        pred.append(row)
    return gold, pred


@settings(max_examples=150, **SETTINGS)
@given(gold_and_predicted())
def test_metric_matches_seqeval_strict_report(data):
    gold, pred = data
    ours = sequence_scores(gold, pred)  # mode="drop": seqeval strict IOB2
    if ours.micro.gold == 0 and ours.micro.predicted == 0:
        assert ours.micro.f1 == 0.0 and ours.per_type == {}
        return  # seqeval has no row to compare
    theirs = _seqeval(gold, pred)
    assert set(ours.per_type) == {k for k in theirs if not k.endswith(" avg")}
    for key, value in (("precision", ours.micro.precision), ("recall", ours.micro.recall), ("f1-score", ours.micro.f1)):
        assert value == pytest.approx(theirs["micro avg"][key], abs=1e-12), key
    assert ours.macro_f1 == pytest.approx(theirs["macro avg"]["f1-score"], abs=1e-12)
    assert ours.macro_precision == pytest.approx(theirs["macro avg"]["precision"], abs=1e-12)
    assert ours.macro_recall == pytest.approx(theirs["macro avg"]["recall"], abs=1e-12)
    for entity_type, s in ours.per_type.items():
        assert (s.precision, s.recall, s.f1) == pytest.approx(
            (theirs[entity_type]["precision"], theirs[entity_type]["recall"], theirs[entity_type]["f1-score"]), abs=1e-12)
        assert s.gold == theirs[entity_type]["support"]
    # scoring spans directly gives the same numbers as scoring their tags
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        as_spans = span_scores([tags_to_spans(g, mode="drop") for g in gold], [tags_to_spans(p, mode="drop") for p in pred])
    assert as_spans == ours


@settings(max_examples=100, **SETTINGS)
@given(st.lists(sentences(max_tokens=10), min_size=1, max_size=5))
def test_metric_identities(rows):
    """Perfect predictions score 1 (0 with no gold), swapping gold and prediction swaps P and R, F1 in [0, 1]."""
    gold = [spans for _, spans in rows]
    perfect = span_scores(gold, gold)
    total = sum(len(g) for g in gold)
    assert perfect.micro.f1 == (1.0 if total else 0.0)
    pred = [spans[1:] + [Span(0, 1, "PER")] for spans in gold]
    forward, backward = span_scores(gold, pred), span_scores(pred, gold)
    assert forward.micro.precision == pytest.approx(backward.micro.recall)
    assert forward.micro.f1 == pytest.approx(backward.micro.f1)
    assert 0.0 <= forward.micro.f1 <= 1.0


# --- the episode sampler ---------------------------------------------------------------------------------------


@st.composite
def pools(draw):
    """Sentences with random ids (duplicated texts, different ids) and up to 4 entities of types A-D."""
    n = draw(st.integers(4, 40))
    out = []
    for i in range(n):
        length = draw(st.integers(1, 8))
        spans, position = [], 0
        while position < length:
            position += draw(st.integers(0, 3))
            if position >= length:
                break
            size = draw(st.integers(1, min(2, length - position)))
            spans.append(Span(position, position + size, draw(st.sampled_from("ABCD"))))
            position += size
        out.append(Sentence([f"w{j}" for j in range(length)], spans, id=f"s{i}"))
    return out


def _type_counts(sentences, types):
    counts = Counter(span.type for s in sentences for span in s.spans)
    return {t: counts[t] for t in types}


@settings(max_examples=150, **SETTINGS)
@given(pools(), st.integers(1, 3), st.integers(1, 4), st.integers(0, 10_000), st.booleans())
def test_sampler_k_to_2k_and_no_query_in_support(pool, k, n_way, seed, kshot_query):
    """INTRA episodes from one pool: every sampled type K..2K times in the support (and in a K-shot query),
    nothing outside the N types, no query sentence in the support, and a failure is an explicit error."""
    try:
        episode = sample_episode(pool, pool, support_types=["A", "B", "C", "D"], n_way=n_way, k_shot=k, seed=seed,
                                 query_size=None if kshot_query else 5, query_k_shot=k if kshot_query else None,
                                 support_dataset="toy", query_dataset="toy")
    except EpisodeSamplingError as err:
        assert "cannot sample" in str(err)
        return
    chosen = episode.support_types
    assert len(chosen) == n_way and set(chosen) <= set("ABCD")
    for n in _type_counts(episode.support, chosen).values():
        assert k <= n <= 2 * k
    if kshot_query:
        for n in _type_counts(episode.query, chosen).values():
            assert k <= n <= 2 * k
    support_ids = [s.id for s in episode.support]
    assert len(support_ids) == len(set(support_ids))  # drawn without replacement
    assert not set(support_ids) & {s.id for s in episode.query}
    assert all(span.type in chosen for s in episode.support + episode.query for span in s.spans)
    # the support sentences are the pool's sentences, restricted to the chosen types
    by_id = {s.id: s for s in pool}
    for s in episode.support:
        assert s.tokens == by_id[s.id].tokens and set(s.spans) <= set(by_id[s.id].spans)


@settings(max_examples=40, **SETTINGS)
@given(pools(), st.integers(0, 1000), st.lists(TOKEN, min_size=1, max_size=4))
def test_episode_jsonl_round_trip(tmp_path_factory, pool, seed, odd_tokens):
    pool = pool + [Sentence(odd_tokens, [Span(0, 1, "A")], id="odd")]
    try:
        episode = sample_episode(pool, pool, support_types=["A"], k_shot=1, seed=seed, query_size=3,
                                 support_dataset="toy", query_dataset="toy")
    except EpisodeSamplingError:
        return
    path = save_episodes([episode], tmp_path_factory.mktemp("ep") / "e.jsonl")
    (loaded,) = load_episodes(path)
    assert loaded.to_json() == episode.to_json()
    assert isinstance(Episode.from_json(json.loads(path.read_text(encoding="utf-8"))), Episode)


# --- readers on random files ---------------------------------------------------------------------------------


@st.composite
def corpora(draw):
    """Random sentences plus a random way of writing them as CoNLL."""
    rows = draw(st.lists(sentences(max_tokens=12), min_size=1, max_size=6))
    rows = [(tokens, spans) for tokens, spans in rows if not tokens[0].startswith("-DOCSTART-")]
    assume(rows)
    layout = {
        "scheme": draw(st.sampled_from(["IOB2", "IOB1", "IOBES", "BILOU"])),
        "delimiter": draw(st.sampled_from(["\t", " ", "  "])),
        "extra_columns": draw(st.integers(0, 2)),  # POS-like columns between token and tag
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "blank_lines": draw(st.integers(1, 3)),
        "docstart": draw(st.booleans()),
        "bom": draw(st.booleans()),
        "trailing": draw(st.sampled_from(["", "\n", "\n\n  \n"])),
    }
    return rows, layout


def write_conll(path, rows, layout):
    nl = layout["newline"]
    blocks = []
    if layout["docstart"]:
        blocks.append(layout["delimiter"].join(["-DOCSTART-", *["-X-"] * layout["extra_columns"], "O"]))
    for tokens, spans in rows:
        tags = spans_to_tags(spans, len(tokens), layout["scheme"])
        lines = [layout["delimiter"].join([token, *["NN"] * layout["extra_columns"], tag]) for token, tag in zip(tokens, tags)]
        blocks.append(nl.join(lines))
    text = (nl * (layout["blank_lines"] + 1)).join(blocks) + layout["trailing"].replace("\n", nl)
    path.write_bytes(("\ufeff" if layout["bom"] else "").encode("utf-8") + text.encode("utf-8"))


@settings(max_examples=120, **SETTINGS)
@given(corpora())
def test_conll_files_round_trip(tmp_path_factory, corpus):
    rows, layout = corpus
    if layout["delimiter"] != "\t":  # space-separated columns: a token may not hold the separator
        rows = [(tokens, spans) for tokens, spans in rows if not any(" " in t for t in tokens)]
        assume(rows)
    path = tmp_path_factory.mktemp("conll") / "random.conll"
    write_conll(path, rows, layout)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well-formed files never need a repair
        read = read_conll(path, scheme=layout["scheme"], mode="strict")
    assert [(s.tokens, s.spans) for s in read] == [(tokens, sorted(spans)) for tokens, spans in rows]
    assert len({s.id for s in read}) == len(read)


@settings(max_examples=60, **SETTINGS)
@given(st.lists(sentences(max_tokens=10), min_size=1, max_size=5))
def test_uner_iob2_files_round_trip(tmp_path_factory, rows):
    lines = []
    for i, (tokens, spans) in enumerate(rows):
        lines += [f"# sent_id = answers-{i}", f"# text = {' '.join(tokens)}"]
        for j, (token, tag) in enumerate(zip(tokens, spans_to_tags(spans, len(tokens)))):
            lines.append(f"{j + 1}\t{token}\t{tag}\t-\tann")
        lines.append("")
    path = tmp_path_factory.mktemp("uner") / "random.iob2"
    path.write_text("\n".join(lines), encoding="utf-8")
    read = read_uner_iob2(path, mode="strict")
    assert [(s.tokens, s.spans, s.domain) for s in read] == [(t, sorted(sp), "answers") for t, sp in rows]


WORDS = st.sampled_from(["Jane", "Doe", "Tehran", "😀", "می\u200cخواهم", "555-1234", "U.S.", "Zürich", "a", "ok"])


@settings(max_examples=60, **SETTINGS)
@given(st.lists(st.tuples(st.lists(WORDS, min_size=1, max_size=10), st.randoms(use_true_random=False)),
                min_size=1, max_size=4))
def test_presidio_char_spans_round_trip(tmp_path_factory, records):
    """Character spans on word boundaries come back as the same words, whatever the script."""
    data, expected = [], []
    for words, rng in records:
        text = " ".join(words)
        starts = [sum(len(w) + 1 for w in words[:i]) for i in range(len(words))]
        spans, i = [], 0
        while i < len(words):
            if rng.random() < 0.4:
                j = min(len(words), i + rng.randint(1, 2))
                spans.append({"entity_type": "X", "start_position": starts[i], "end_position": starts[j - 1] + len(words[j - 1])})
                expected_text = text[starts[i] : starts[j - 1] + len(words[j - 1])]
                expected.append(expected_text)
                i = j + 1
            else:
                i += 1
        data.append({"full_text": text, "spans": spans})
    path = tmp_path_factory.mktemp("presidio") / "random.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    read = read_presidio_json(path)
    found = []
    for sentence in read:
        for span in sentence.spans:
            found.append(span.type)
    assert found == ["X"] * len(expected)
    # each span's tokens, re-joined with the text's own spacing, are the marked text
    texts = iter(expected)
    for record, sentence in zip(data, read):
        for span in sentence.spans:
            want = next(texts)
            assert "".join(sentence.tokens[span.start : span.end]) == want.replace(" ", "")
