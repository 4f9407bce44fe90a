"""Counts that describe a dataset split: sentences, tokens and entities per type."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from .schema import Sentence


def dataset_stats(sentences: Iterable[Sentence]) -> dict:
    """``{"sentences", "tokens", "entities", "per_type": {type: count}, "domains": {domain: sentences}}``."""
    per_type: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    n_sentences = n_tokens = 0
    for sentence in sentences:
        n_sentences += 1
        n_tokens += len(sentence.tokens)
        per_type.update(span.type for span in sentence.spans)
        if sentence.domain:
            domains[sentence.domain] += 1
    return {
        "sentences": n_sentences,
        "tokens": n_tokens,
        "entities": sum(per_type.values()),
        "per_type": dict(sorted(per_type.items())),
        "domains": dict(sorted(domains.items())),
    }
