"""Tag schemes, spans and character offsets: the conversions everything else relies on."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ner_adapters.spans import (
    Span,
    TagError,
    TagRepairWarning,
    char_span_to_tokens,
    flatten_outermost,
    label_names,
    normalize_tags,
    spans_to_tags,
    split_tag,
    tags_to_spans,
    token_char_offsets,
    token_span_to_char,
)


def test_split_tag_on_first_dash_only():
    assert split_tag("B-creative-work") == ("B", "creative-work")
    assert split_tag("O") == ("O", None)
    with pytest.raises(TagError, match="not valid"):
        split_tag("X-PER")
    with pytest.raises(TagError):
        split_tag("B-")


def test_iob2_reading():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert tags_to_spans(tags) == [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(4, 6, "LOC")]


def test_stray_inside_tag_repair_strict_and_drop():
    tags = ["O", "I-PER", "I-PER", "B-LOC", "I-ORG"]
    with pytest.warns(TagRepairWarning, match="position 1"):
        assert tags_to_spans(tags) == [Span(1, 3, "PER"), Span(3, 4, "LOC"), Span(4, 5, "ORG")]
    with pytest.raises(TagError) as err:
        tags_to_spans(tags, mode="strict")
    assert err.value.position == 1
    assert tags_to_spans(tags, mode="drop") == [Span(3, 4, "LOC")]


def test_on_repair_collects_positions_instead_of_warning():
    repaired = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spans = tags_to_spans(["O", "I-PER", "I-PER", "B-LOC", "I-ORG"], on_repair=repaired.append)
    assert spans == [Span(1, 3, "PER"), Span(3, 4, "LOC"), Span(4, 5, "ORG")]
    assert repaired == [1, 4]
    with pytest.raises(TagError):  # strict still raises, whatever the callback
        tags_to_spans(["O", "I-PER"], mode="strict", on_repair=repaired.append)


def test_iob1_is_normalised_to_iob2():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC"]
    assert normalize_tags(iob1, "IOB1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # I- after O is valid IOB1: no repair warning
        normalize_tags(iob1, "IOB")


def test_iobes_and_bilou():
    assert tags_to_spans(["S-PER", "B-LOC", "I-LOC", "E-LOC"], "IOBES") == [Span(0, 1, "PER"), Span(1, 4, "LOC")]
    assert tags_to_spans(["U-PER", "B-LOC", "L-LOC"], "BILOU") == [Span(0, 1, "PER"), Span(1, 3, "LOC")]
    assert spans_to_tags([Span(0, 1, "PER"), Span(1, 4, "LOC")], 4, "IOBES") == ["S-PER", "B-LOC", "I-LOC", "E-LOC"]


def test_unknown_scheme_is_rejected():
    with pytest.raises(TagError, match="unknown tag scheme 'BIOX'"):
        tags_to_spans(["O"], "BIOX")


def test_overlapping_spans_cannot_become_tags():
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([Span(0, 2, "A"), Span(1, 3, "B")], 3)


def test_char_offsets_over_space_joined_text():
    tokens = ["Zaha", "Hadid", "(", "born", "1950", ")"]
    text = " ".join(tokens)
    start, end = token_span_to_char(tokens, 0, 2)
    assert text[start:end] == "Zaha Hadid"
    offsets = token_char_offsets(tokens)
    assert char_span_to_tokens(offsets, start, end) == (0, 2)
    assert char_span_to_tokens(offsets, 2, 7) == (0, 2)  # a cut token is taken whole
    assert char_span_to_tokens(offsets, 2, 7, expand=False) is None
    assert Span(0, 2, "person").to_dict(tokens) == {"type": "person", "start": 0, "end": 2, "char_start": 0, "char_end": 10}


def test_flatten_keeps_outermost():
    nested = [Span(0, 5, "org"), Span(1, 2, "place"), Span(3, 5, "person"), Span(6, 7, "time")]
    assert flatten_outermost(nested) == [Span(0, 5, "org"), Span(6, 7, "time")]


def test_label_names():
    assert label_names(["PER", "LOC"]) == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


# --- properties -------------------------------------------------------------------------------

TYPES = st.sampled_from(["PER", "LOC", "creative-work", "ORG"])
TOKEN = st.text(st.characters(blacklist_categories=("Zs", "Cc", "Cs")), min_size=1, max_size=8)


@st.composite
def sentences_with_spans(draw):
    tokens = draw(st.lists(TOKEN, min_size=1, max_size=25))
    spans, position = [], 0
    while position < len(tokens):
        position += draw(st.integers(0, 3))
        length = draw(st.integers(1, 4))
        if position + length > len(tokens):
            break
        spans.append(Span(position, position + length, draw(TYPES)))
        position += length
    return tokens, spans


@settings(max_examples=300, deadline=None)
@given(sentences_with_spans(), st.sampled_from(["IOB2", "IOB1", "IOBES", "BILOU"]))
def test_spans_round_trip_through_every_scheme(sentence, scheme):
    tokens, spans = sentence
    tags = spans_to_tags(spans, len(tokens), scheme)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # well-formed tags never need repair
        assert tags_to_spans(tags, scheme) == spans
    assert normalize_tags(tags, scheme) == spans_to_tags(spans, len(tokens))


@settings(max_examples=300, deadline=None)
@given(sentences_with_spans())
def test_char_offsets_round_trip(sentence):
    tokens, spans = sentence
    text = " ".join(tokens)
    offsets = token_char_offsets(tokens)
    for span in spans:
        row = span.to_dict(tokens)
        assert text[row["char_start"] : row["char_end"]] == span.text(tokens)
        assert char_span_to_tokens(offsets, row["char_start"], row["char_end"], expand=False) == (span.start, span.end)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]), max_size=30))
def test_any_tag_sequence_normalises_to_valid_iob2(tags):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        normal = normalize_tags(tags)
        assert tags_to_spans(normal, mode="strict") == tags_to_spans(tags)
