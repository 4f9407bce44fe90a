"""Word-level labels on sub-word models: alignment for training, first-sub-token decoding for prediction.

Training: the first sub-token of each word carries the word's label, later sub-tokens and special tokens
get -100 (ignored by the loss). Prediction reads the label of each word's first sub-token, so one word
gets one label, and entities come back with character offsets into the text the caller gave:
``text[start:end] == word``, the convention of transformers' token-classification pipeline. A sentence
longer than ``max_length`` sub-tokens is tagged in overlapping windows of whole words (each word labelled by
the window where it sits most centrally), never cut; words the tokenizer drops entirely (a lone zero-width
non-joiner) are tagged ``O``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, Union

import torch

from ..data import DataFormatError, Sentence
from ..data.readers import tokenize_with_offsets
from ..spans import OUTSIDE, Span, spans_to_tags, tags_to_spans, token_char_offsets

IGNORE_INDEX = -100


class Words(NamedTuple):
    """A sentence as words with their character offsets in ``text``."""

    text: str
    words: list[str]
    offsets: list[tuple[int, int]]


SentenceInput = Union[str, Sequence[str], Words]


def as_words(item: SentenceInput) -> Words:
    """Raw text is split with the project's word tokenizer; a token list is joined with spaces."""
    if isinstance(item, Words):
        return item
    if isinstance(item, str):
        words, offsets = tokenize_with_offsets(item)
        return Words(item, words, offsets)
    tokens = list(item)
    if not all(isinstance(t, str) for t in tokens):
        raise TypeError(f"a sentence is a string or a list of string tokens, got {item!r}")
    return Words(" ".join(tokens), tokens, token_char_offsets(tokens))


def check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; word alignment needs word_ids() "
                        "(load it with AutoTokenizer, use_fast=True)")


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Per sub-token labels: the word's label on its first sub-token, -100 elsewhere."""
    labels, previous = [], None
    for word_id in word_ids:
        labels.append(IGNORE_INDEX if word_id is None or word_id == previous else word_labels[word_id])
        previous = word_id
    return labels


def encode_tagging(
    tokenizer, sentences: Sequence[Sentence], labels: Sequence[str], max_length: int, where: str = ""
) -> dict[str, list]:
    """Tokenize sentences and align their IOB2 labels; a type outside ``labels`` raises naming the sentence."""
    check_fast(tokenizer)
    label2id = {label: i for i, label in enumerate(labels)}
    sentences = [s for s in sentences if s.tokens]
    word_labels = []
    for sentence in sentences:
        tags = spans_to_tags(sentence.spans, len(sentence.tokens))
        unknown = sorted({t for t in tags if t not in label2id})
        if unknown:
            types = sorted({t[2:] for t in unknown})
            known = sorted({label[2:] for label in labels if label != OUTSIDE})
            raise DataFormatError(f"{where}sentence {sentence.id!r} has entity type(s) {types} outside the "
                                  f"label set of its scheme {known}")
        word_labels.append([label2id[t] for t in tags])
    encoding = tokenizer([s.tokens for s in sentences], is_split_into_words=True, truncation=True,
                         max_length=max_length)
    aligned = [align_labels(encoding.word_ids(i), wl) for i, wl in enumerate(word_labels)]
    cut = [s.id for i, s in enumerate(sentences) if _last_word(encoding.word_ids(i)) < len(s.tokens) - 1
           and len(encoding["input_ids"][i]) >= max_length]
    if cut:
        warnings.warn(f"{where}{len(cut)} sentence(s) longer than max_length={max_length} sub-tokens (first: "
                      f"{cut[0]!r}): their words past it are not trained on", stacklevel=2)
    return {**encoding, "labels": aligned}


def _last_word(word_ids: Sequence[int | None]) -> int:
    return max((w for w in word_ids if w is not None), default=-1)


@dataclass(frozen=True)
class TaggedEntity:
    """One predicted entity: pipeline-style fields plus its word range ``[token_start, token_end)``."""

    entity_group: str
    score: float
    word: str
    start: int
    end: int
    token_start: int
    token_end: int

    @property
    def span(self) -> Span:
        return Span(self.token_start, self.token_end, self.entity_group)

    def as_dict(self) -> dict:
        """The keys of transformers' token-classification pipeline (``aggregation_strategy="simple"``)."""
        return {"entity_group": self.entity_group, "score": self.score, "word": self.word, "start": self.start,
                "end": self.end}


Forward = Callable[[dict], torch.Tensor]


def predict_word_labels(
    forward: Forward, tokenizer, word_lists: Sequence[Sequence[str]], max_length: int, batch_size: int = 32
) -> list[tuple[list[int], list[float | None]]]:
    """Label id and probability of each word (its first sub-token); ``O`` (id 0) for words without sub-tokens.

    Sentences are batched by length so padding stays small; ``forward`` maps a tokenized batch to logits. A
    sentence longer than ``max_length`` sub-tokens is tagged window by window (:func:`word_windows`), each word
    read from the window that owns it (:func:`stitch_windows`). The token-classification pipeline reads its
    windows with the same functions.
    """
    check_fast(tokenizer)
    results, truncated = _predict_rows(forward, tokenizer, word_lists, max_length, batch_size)
    windows: list[tuple[int, int, int]] = []  # (sentence, first word, end word)
    for index in truncated:
        windows += [(index, a, b) for a, b in word_windows(tokenizer, word_lists[index], max_length)]
    if windows:
        pieces, _ = _predict_rows(forward, tokenizer, [list(word_lists[i][a:b]) for i, a, b in windows], max_length,
                                  batch_size)
        rows: dict[int, list[int]] = {}  # sentence -> its rows in ``windows``
        for row, (index, _, _) in enumerate(windows):
            rows.setdefault(index, []).append(row)
        for index, sentence_rows in rows.items():
            spans = [windows[row][1:] for row in sentence_rows]
            per_window = [{a + offset: (label, score) for offset, (label, score) in enumerate(zip(*pieces[row]))}
                          for row, (a, _) in zip(sentence_rows, spans)]
            target_ids, target_scores = results[index]
            for word, (label, score) in stitch_windows(spans, per_window).items():
                target_ids[word], target_scores[word] = label, score
    return results


WORD_STRATEGIES = ("first", "average", "max")


def word_distributions(word_ids: Sequence[int | None], probabilities: torch.Tensor,
                       strategy: str = "first") -> dict[int, torch.Tensor]:
    """Each word's distribution over the labels, read from its sub-tokens' rows of ``probabilities``.

    ``first``: the first sub-token's (how the model is trained: later sub-tokens carry no label); ``average``:
    the mean over the word's sub-tokens; ``max``: the sub-token with the most confident label. Words without a
    sub-token (dropped by the tokenizer) are absent.
    """
    if strategy not in WORD_STRATEGIES:
        raise ValueError(f"unknown word strategy {strategy!r}; one of {list(WORD_STRATEGIES)}")
    positions: dict[int, list[int]] = {}
    for position, word in enumerate(word_ids):
        if word is not None:
            positions.setdefault(word, []).append(position)
    if strategy == "first":
        return {word: probabilities[rows[0]] for word, rows in positions.items()}
    if strategy == "average":
        return {word: probabilities[rows].mean(dim=0) for word, rows in positions.items()}
    return {word: max((probabilities[p] for p in rows), key=lambda d: float(d.max())) for word, rows in positions.items()}


def lost_words(word_ids: Sequence[int | None], n_words: int, n_tokens: int, max_length: int) -> bool:
    """Whether truncation at ``max_length`` cut words off the end of a sentence of ``n_words`` (then it is read in
    windows); ``n_tokens`` is the length of its encoding without padding."""
    return n_tokens >= max_length and _last_word(word_ids) < n_words - 1


def stitch_windows(windows: Sequence[tuple[int, int]], per_window: Sequence[dict[int, object]]) -> dict[int, object]:
    """Sentence word -> its value from the window that owns it (:func:`window_owners`); ``per_window[i]`` maps
    sentence word indices to values for window ``i``. Words a window has no value for (dropped sub-tokens) are
    absent."""
    return {word: per_window[owner][word] for word, owner in window_owners(windows).items()
            if word in per_window[owner]}


def window_owners(windows: Sequence[tuple[int, int]]) -> dict[int, int]:
    """Word -> index of the window that labels it: the one where it sits most centrally (the later on ties)."""
    best: dict[int, tuple[int, int]] = {}  # word -> (distance to the window's nearer edge, window)
    for number, (a, b) in enumerate(windows):
        for word in range(a, b):
            margin = min(word - a, b - 1 - word)
            if margin >= best.get(word, (-1, 0))[0]:
                best[word] = (margin, number)
    return {word: number for word, (_, number) in best.items()}


def word_windows(tokenizer, words: Sequence[str], max_length: int) -> list[tuple[int, int]]:
    """Word ranges ``[a, b)`` whose sub-tokens fit in ``max_length`` with the special tokens, each starting a
    third of a window before the previous one ends, so every word is read with context around it."""
    budget = max(1, max_length - tokenizer.num_special_tokens_to_add(pair=False))
    counts = [0] * len(words)
    for word_id in tokenizer(list(words), is_split_into_words=True, add_special_tokens=False).word_ids():
        if word_id is not None:
            counts[word_id] += 1
    windows, first = [], 0
    while first < len(words):
        end, used = first, 0
        while end < len(words) and (end == first or used + counts[end] <= budget):
            used, end = used + counts[end], end + 1
        windows.append((first, end))
        if end >= len(words):
            break
        start, back = end, 0
        while start > first + 1 and back + counts[start - 1] <= budget // 3:
            start, back = start - 1, back + counts[start - 1]
        first = start
    return windows


def _predict_rows(forward, tokenizer, word_lists, max_length, batch_size):
    """One forward per batch; also returns the sentences whose sub-tokens did not all fit in ``max_length``."""
    results: list[tuple[list[int], list[float | None]]] = [([0] * len(w), [None] * len(w)) for w in word_lists]
    order = sorted((i for i, w in enumerate(word_lists) if w), key=lambda i: len(word_lists[i]))
    truncated = []
    for lo in range(0, len(order), batch_size):
        chunk = order[lo : lo + batch_size]
        encoding = tokenizer([list(word_lists[i]) for i in chunk], is_split_into_words=True, truncation=True,
                             max_length=max_length, padding=True, return_tensors="pt")
        probabilities = torch.softmax(forward(dict(encoding)).float(), dim=-1)
        for row, index in enumerate(chunk):
            label_ids, scores = results[index]
            word_ids = encoding.word_ids(row)
            for word, distribution in word_distributions(word_ids, probabilities[row]).items():
                score, label = distribution.max(dim=-1)
                label_ids[word], scores[word] = int(label), float(score)
            if lost_words(word_ids, len(word_lists[index]), int(encoding["attention_mask"][row].sum()), max_length):
                truncated.append(index)
    return results, truncated


def entities_from_labels(
    words: Words, label_ids: Sequence[int], scores: Sequence[float | None], labels: Sequence[str]
) -> list[TaggedEntity]:
    """Entities from per-word labels (an ``I-`` without its ``B-`` starts an entity, as conlleval reads it)."""
    tags = [labels[i] for i in label_ids]
    spans = tags_to_spans(tags, "IOB2", mode="repair", on_repair=lambda position: None)
    entities = []
    for span in spans:
        start, end = words.offsets[span.start][0], words.offsets[span.end - 1][1]
        known = [s for s in scores[span.start : span.end] if s is not None]
        entities.append(TaggedEntity(span.type, sum(known) / len(known) if known else 0.0, words.text[start:end],
                                     start, end, span.start, span.end))
    return entities


def tag(
    forward: Forward,
    tokenizer,
    inputs: Sequence[SentenceInput],
    labels: Sequence[str],
    max_length: int,
    batch_size: int = 32,
) -> list[list[TaggedEntity]]:
    """Tag sentences with any token-classification forward whose label ids index ``labels``."""
    if isinstance(inputs, (str, Words)):
        raise TypeError("pass a list of sentences (strings or token lists), not a single sentence")
    if labels[0] != OUTSIDE:
        raise ValueError(f"label 0 must be {OUTSIDE!r} (the project's label order), got {labels[0]!r}")
    items = [as_words(item) for item in inputs]
    predicted = predict_word_labels(forward, tokenizer, [w.words for w in items], max_length, batch_size)
    return [entities_from_labels(w, ids, scores, labels) for w, (ids, scores) in zip(items, predicted)]


__all__ = ["IGNORE_INDEX", "WORD_STRATEGIES", "SentenceInput", "TaggedEntity", "Words", "align_labels", "as_words",
           "check_fast", "encode_tagging", "entities_from_labels", "lost_words", "predict_word_labels",
           "stitch_windows", "tag", "window_owners", "word_distributions", "word_windows"]
