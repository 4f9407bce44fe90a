"""Word-level labels on sub-word models: alignment for training, first-sub-token decoding for prediction.

Training: the first sub-token of each word carries the word's label, later sub-tokens and special tokens
get -100 (ignored by the loss). Prediction reads the label of each word's first sub-token, so one word
gets one label, and entities come back with character offsets into the text the caller gave:
``text[start:end] == word``, the convention of transformers' token-classification pipeline. Words past
``max_length`` sub-tokens, and words the tokenizer drops entirely (a lone zero-width non-joiner), are
tagged ``O``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, Union

import torch

from ..data import DataFormatError, Sentence
from ..data.readers import tokenize_with_offsets
from ..spans import OUTSIDE, Span, TagRepairWarning, spans_to_tags, tags_to_spans, token_char_offsets

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
    return {**encoding, "labels": aligned}


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
    """Label id and probability of each word (its first sub-token); ``O`` (id 0) for untagged words.

    Sentences are batched by length so padding stays small; ``forward`` maps a tokenized batch to logits.
    """
    check_fast(tokenizer)
    results: list[tuple[list[int], list[float | None]]] = [([], []) for _ in word_lists]
    order = sorted((i for i, w in enumerate(word_lists) if w), key=lambda i: len(word_lists[i]))
    truncated = 0
    for lo in range(0, len(order), batch_size):
        chunk = order[lo : lo + batch_size]
        encoding = tokenizer([list(word_lists[i]) for i in chunk], is_split_into_words=True, truncation=True,
                             max_length=max_length, padding=True, return_tensors="pt")
        probabilities = torch.softmax(forward(dict(encoding)).float(), dim=-1)
        best_probability, best_label = probabilities.max(dim=-1)
        for row, index in enumerate(chunk):
            n_words = len(word_lists[index])
            label_ids, scores = [0] * n_words, [None] * n_words
            seen = set()
            for position, word_id in enumerate(encoding.word_ids(row)):
                if word_id is None or word_id in seen:
                    continue
                seen.add(word_id)
                label_ids[word_id] = int(best_label[row, position])
                scores[word_id] = float(best_probability[row, position])
            if seen and max(seen) < n_words - 1 and encoding["attention_mask"][row].sum() >= max_length:
                truncated += 1
            results[index] = (label_ids, scores)
    if truncated:
        warnings.warn(f"{truncated} sentence(s) longer than max_length={max_length} sub-tokens: their last words "
                      "were tagged O", stacklevel=2)
    return results


def entities_from_labels(
    words: Words, label_ids: Sequence[int], scores: Sequence[float | None], labels: Sequence[str]
) -> list[TaggedEntity]:
    """Entities from per-word labels (an ``I-`` without its ``B-`` starts an entity, as conlleval reads it)."""
    tags = [labels[i] for i in label_ids]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TagRepairWarning)
        spans = tags_to_spans(tags, "IOB2", mode="repair")
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


__all__ = ["IGNORE_INDEX", "SentenceInput", "TaggedEntity", "Words", "align_labels", "as_words", "check_fast",
           "encode_tagging", "entities_from_labels", "predict_word_labels", "tag"]
