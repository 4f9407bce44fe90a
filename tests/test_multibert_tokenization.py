"""Word/sub-token alignment and character offsets of predicted entities (Persian, ZWNJ, emoji included)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multibert_tiny import build_tiny_core, one_torch_thread
from ner_adapters.data import DataFormatError, Sentence
from ner_adapters.multibert.tokenization import (IGNORE_INDEX, Words, align_labels, as_words, encode_tagging,
                                                 entities_from_labels, predict_word_labels)
from ner_adapters.spans import Span, label_names

LABELS = label_names(["PER", "LOC"])  # O B-PER I-PER B-LOC I-LOC


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(build_tiny_core(tmp_path_factory.mktemp("core")))


def test_align_labels_first_subtoken_only():
    #            [CLS] w0  w1  w1  w1  w2  [SEP]
    word_ids = [None, 0, 1, 1, 1, 2, None]
    assert align_labels(word_ids, [3, 1, 0]) == [IGNORE_INDEX, 3, 1, IGNORE_INDEX, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_encode_aligns_with_real_wordpieces(tokenizer):
    sentence = Sentence(["mary", "visiting", "paris"], [Span(0, 1, "PER"), Span(2, 3, "LOC")], id="s1")
    encoding = encode_tagging(tokenizer, [sentence], LABELS, max_length=32)
    pieces = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    assert pieces == ["[CLS]", "mary", "visit", "##ing", "paris", "[SEP]"]
    assert encoding["labels"][0] == [IGNORE_INDEX, 1, 0, IGNORE_INDEX, 3, IGNORE_INDEX]


def test_encode_rejects_types_outside_the_scheme(tokenizer):
    sentence = Sentence(["arsenal", "won"], [Span(0, 1, "ORG")], id="sports-0-3")
    with pytest.raises(DataFormatError, match=r"train: sentence 'sports-0-3' has entity type\(s\) \['ORG'\] outside"):
        encode_tagging(tokenizer, [sentence], LABELS, max_length=32, where="train: ")


def test_prediction_reads_first_subtokens_and_windows_long_sentences(tokenizer):
    import torch

    seen = {}

    def forward(encoding):  # label = position parity: B-PER on even positions, O elsewhere
        seen["ids"] = encoding["input_ids"]
        logits = torch.zeros(*encoding["input_ids"].shape, len(LABELS))
        logits[:, ::2, 1] = 5.0
        logits[:, 1::2, 0] = 5.0
        return logits

    words = [["mary", "visiting", "paris"], ["paris"] * 10]
    predicted = predict_word_labels(forward, tokenizer, words, max_length=6, batch_size=8)
    # sentence 0: [CLS]=0 mary=1 visit=2 ##ing=3 paris=4 -> mary O, visiting B-PER (its first piece), paris B-PER
    assert predicted[0][0] == [0, 1, 1]
    # sentence 1 (12 sub-tokens with [CLS]/[SEP]) is read in windows of 4 words: every word gets a score, and the
    # words only the first window holds get that window's labels (word k at position k + 1)
    assert None not in predicted[1][1]
    assert predicted[1][0][:3] == [0, 1, 0]


PERSIAN = ["علی", "در", "تهران", "می\u200cخواهد", "😀", "بماند", ".", "سارا\u200c", "و", "👩\u200d💻"]


@settings(max_examples=60, deadline=None)
@given(words=st.lists(st.sampled_from(PERSIAN + ["Mary", "Paris", "e-mail", "U.S.", "!"]), min_size=1, max_size=12),
       gaps=st.lists(st.sampled_from([" ", "  ", "\u200c ", "\n", " \t"]), min_size=12, max_size=12),
       labels=st.lists(st.integers(0, len(LABELS) - 1), min_size=40, max_size=40))
def test_offsets_slice_the_raw_text(words, gaps, labels):
    text = "".join(w + g for w, g in zip(words, gaps))
    sentence = as_words(text)
    assert all(text[s:e] == w for w, (s, e) in zip(sentence.words, sentence.offsets))
    n = len(sentence.words)
    entities = entities_from_labels(sentence, labels[:n], [0.5] * n, LABELS)
    for entity in entities:
        assert text[entity.start : entity.end] == entity.word
        assert entity.start == sentence.offsets[entity.token_start][0]
        assert entity.end == sentence.offsets[entity.token_end - 1][1]
        assert entity.as_dict().keys() == {"entity_group", "score", "word", "start", "end"}


def test_token_lists_use_space_joined_offsets():
    words = as_words(["علی", "در", "تهران", "می\u200cخواهد"])
    assert words.text == "علی در تهران می\u200cخواهد"
    entity = entities_from_labels(words, [1, 0, 3, 4], [0.9, 0.9, 0.8, 0.6], LABELS)
    assert [(e.entity_group, e.word, e.score) for e in entity] == [("PER", "علی", 0.9),
                                                                    ("LOC", "تهران می\u200cخواهد", 0.7)]
    assert isinstance(as_words(words), Words)
    with pytest.raises(TypeError):
        as_words([1, 2])


def test_zwnj_only_words_get_no_subtoken_and_stay_outside(tokenizer):
    import torch

    words = as_words("mary \u200c paris")
    assert words.words == ["mary", "\u200c", "paris"]
    predicted = predict_word_labels(lambda enc: torch.ones(*enc["input_ids"].shape, len(LABELS)), tokenizer,
                                    [words.words], max_length=16)
    assert predicted[0][1][1] is None and predicted[0][0][1] == 0


def test_word_distributions_read_each_strategy_from_the_right_sub_tokens():
    from ner_adapters.multibert.tokenization import word_distributions

    # [CLS] w0 w1a w1b [SEP]: word 1 has two sub-tokens with different beliefs
    probabilities = torch.tensor([[1.0, 0.0, 0.0], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.0, 0.1, 0.9], [1.0, 0.0, 0.0]])
    word_ids = [None, 0, 1, 1, None]
    first = word_distributions(word_ids, probabilities, "first")
    assert set(first) == {0, 1} and torch.equal(first[1], probabilities[2])
    assert torch.allclose(word_distributions(word_ids, probabilities, "average")[1], torch.tensor([0.3, 0.2, 0.5]))
    assert torch.equal(word_distributions(word_ids, probabilities, "max")[1], probabilities[3])  # 0.9 beats 0.6
    with pytest.raises(ValueError, match="unknown word strategy 'simple'"):
        word_distributions(word_ids, probabilities, "simple")


def test_stitch_windows_takes_each_word_from_its_owner_and_skips_dropped_words():
    from ner_adapters.multibert.tokenization import stitch_windows

    windows = [(0, 4), (2, 6)]  # words 2 and 3 in both: 2 is more central in window 0, 3 in window 1
    per_window = [{0: "a0", 1: "a1", 2: "a2", 3: "a3"}, {2: "b2", 4: "b4", 5: "b5"}]  # window 1 dropped word 3
    assert stitch_windows(windows, per_window) == {0: "a0", 1: "a1", 2: "a2", 4: "b4", 5: "b5"}
