"""Support sentences -> tokenized SFT examples carrying the token positions of the contrastive pairs.

Each (sentence, type) pair (or each sentence, in all-types mode) becomes one example: ``input_ids``,
``labels`` (``-100`` on the prompt: completion-only loss) and, for every gold entity, where the anchor
(the type name in the instruction), the positive (the entity in the sentence) and the negatives (its
neighbouring spans) are, as token ranges. The ranges come from the tokenizer's offset mapping, so they
are right for any BPE or WordPiece tokenizer; the collator carries them into the batch.
"""

from __future__ import annotations

import random
from bisect import bisect_left, bisect_right
from typing import Sequence

from datasets import Dataset, Features, List, Value

from ..data.schema import Sentence
from ..spans import Span, token_span_to_char
from .entity_types import EntityType
from .prompts import PromptFormat

FEATURES = Features(
    {
        "input_ids": List(Value("int32")),
        "labels": List(Value("int32")),
        "cl_anchor": List(List(Value("int32"))),
        "cl_positive": List(List(Value("int32"))),
        "cl_negatives": List(List(List(Value("int32")))),
        "sentence_id": Value("string"),
        "types": List(Value("string")),
    }
)


def neighbour_spans(span: Span, length: int, gold: Sequence[Span]) -> list[Span]:
    """The hard negatives of an entity: the spans that get its boundary wrong, and its context words.

    Over-extensions by one word on either or both sides, under-extensions by one word on either side
    (multi-word entities), and the up-to-two words just before and just after it. Spans equal to a gold
    entity of the same type are not negatives.
    """
    s, e = span.start, span.end
    candidates = [(s - 1, e), (s, e + 1), (s - 1, e + 1), (s + 1, e), (s, e - 1), (max(0, s - 2), s), (e, min(length, e + 2))]
    taken = {(g.start, g.end) for g in gold if g.type == span.type}
    result, seen = [], set()
    for start, end in candidates:
        if 0 <= start < end <= length and (start, end) not in taken and (start, end) not in seen:
            seen.add((start, end))
            result.append(Span(start, end, span.type))
    return result


class _TokenLocator:
    """Maps character ranges of a text to the token ranges that cover them (offset mapping)."""

    def __init__(self, offsets: Sequence[tuple[int, int]]):
        self.starts = [s for s, _ in offsets]
        self.ends = [e for _, e in offsets]

    def __call__(self, char_start: int, char_end: int) -> tuple[int, int]:
        first = bisect_right(self.ends, char_start)  # first token ending after char_start
        last = bisect_left(self.starts, char_end)  # first token starting at or after char_end
        if first >= last:
            raise ValueError(f"no token covers characters [{char_start}, {char_end})")
        return first, last


def build_example(
    sentence: Sentence, group: Sequence[EntityType], fmt: PromptFormat, max_negatives: int = 8,
    loss_on_answer_prefix: bool = True,
) -> dict:
    """One tokenized SFT example for ``sentence`` and the types of ``group``.

    With ``loss_on_answer_prefix=False`` the answer's fixed opening ("I can extract entities for you, the
    extracted entities are") stays in the sequence but out of the loss, so the loss is not dominated by a
    dozen tokens the model predicts trivially (extraction primes that opening instead of generating it).
    """
    tokenizer = fmt.tokenizer
    text = sentence.text
    prompt = fmt.build(text, group)
    per_type = [[s for s in sentence.spans if s.type == t.label] for t in group]
    completion = fmt.answer([[s.text(sentence.tokens) for s in spans] for spans in per_type], group)
    full = prompt.text + completion
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = encoded["input_ids"]
    unscored = prompt.text if loss_on_answer_prefix else prompt.text + fmt.answer_prefix
    prompt_ids = tokenizer(unscored, add_special_tokens=False)["input_ids"]
    prompt_len = next((i for i, (a, b) in enumerate(zip(prompt_ids, input_ids)) if a != b), len(prompt_ids))
    labels = [-100] * prompt_len + input_ids[prompt_len:]
    locate = _TokenLocator(encoded["offset_mapping"])

    def token_range(span: Span) -> list[int]:
        char_start, char_end = token_span_to_char(sentence.tokens, span.start, span.end)
        return list(locate(prompt.sentence_offset + char_start, prompt.sentence_offset + char_end))

    anchors, positives, negatives = [], [], []
    for type_span, spans in zip(prompt.type_spans, per_type):
        anchor = list(locate(*type_span))
        for span in spans:
            positive = token_range(span)
            negs = [token_range(n) for n in neighbour_spans(span, len(sentence.tokens), sentence.spans)]
            negs = [n for n in negs if n != positive][:max_negatives]
            if negs:  # InfoNCE needs at least one negative
                anchors.append(anchor)
                positives.append(positive)
                negatives.append(negs)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "cl_anchor": anchors,
        "cl_positive": positives,
        "cl_negatives": negatives,
        "sentence_id": sentence.id,
        "types": [t.label for t in group],
    }


NONE_SAMPLING = ("pooled", "per_type")


def build_sft_dataset(
    sentences: Sequence[Sentence], types: Sequence[EntityType], fmt: PromptFormat, *, max_negatives: int = 8,
    loss_on_answer_prefix: bool = True, none_ratio: float | None = None, none_sampling: str = "pooled",
    seed: int = 0,
) -> Dataset:
    """The SFT dataset of a support set: one example per (sentence, type), or per sentence in all-types mode.

    Entities of types outside ``types`` are ignored (they are ``O`` in an N-way episode). ``none_ratio``
    keeps at most that many "none" examples (no entity of the prompt's types) per example with entities,
    drawn with ``seed``: in per-type mode most pairs have no entity, and a small model learns to answer
    "none" to everything before it learns to find entities. ``None`` keeps them all (the paper).
    ``none_sampling`` says where the ratio holds: ``"pooled"`` over all prompts together (a type may then get
    many more or fewer "none" answers than answers, and the model learns that type's bias), ``"per_type"`` for
    each type's prompts (each prompt group in all-types mode: there, one group, the same as pooled).
    """
    if not sentences:
        raise ValueError("the support set is empty")
    if none_sampling not in NONE_SAMPLING:
        raise ValueError(f"none_sampling must be one of {NONE_SAMPLING}, got {none_sampling!r}")
    pairs = [(s, group) for s in sentences for group in fmt.groups(types)]
    if none_ratio is not None:
        labels = lambda group: {t.label for t in group}  # noqa: E731
        rng = random.Random(seed)
        strata = [pairs] if none_sampling == "pooled" else \
            [[p for p in pairs if p[1] == group] for group in fmt.groups(types)]
        pairs = []
        for stratum in strata:
            positive = [p for p in stratum if any(span.type in labels(p[1]) for span in p[0].spans)]
            negative = [p for p in stratum if not any(span.type in labels(p[1]) for span in p[0].spans)]
            keep = min(len(negative), round(none_ratio * len(positive)))
            chosen = set(rng.sample(range(len(negative)), keep))
            pairs += positive + [p for i, p in enumerate(negative) if i in chosen]
    rows = [build_example(s, group, fmt, max_negatives, loss_on_answer_prefix) for s, group in pairs]
    return Dataset.from_list(rows, features=FEATURES)
