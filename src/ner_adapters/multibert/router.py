"""The document-level domain router (paper, section 5).

Training data: the sentences of each domain, in corpus order, packed into groups of ``group_size``
(8) sentences joined with spaces, fewer when the next sentence would not fit in ``max_length`` (512)
tokens; a single longer sentence is cut at 512. Groups are shuffled across domains and a classification
adapter and head (on the same frozen core) learn the domain.

At inference the router reads the first 512 tokens of a document (or of its sentences joined), takes the
most probable domain, and tags every sentence with that domain's adapter and head; below
``threshold`` it uses the general adapter of that domain's scheme instead (the label set follows the
predicted scheme either way). Batches of documents are grouped by the adapter they need, so each
adapter is activated once per group.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..data import Sentence
from ..data.readers import tokenize_with_offsets
from ..resume import CheckpointOnSignal
from .config import RouterArguments, MultiBertTrainingArguments
from .model import ROUTER_ADAPTER, ROUTER_HEAD, MultiBertError, MultiBertModel
from .tokenization import TaggedEntity, Words, as_words
from .training import (RunResult, adapter_trainer_class, early_stopping_callback, finish_run, resume_point,
                       trainer_arguments)

Document = Union[str, Sequence[str], Sequence[Sequence[str]]]
_SENTENCE = re.compile(r"[^\n.!?؟…]*(?:[.!?؟…]+|\n|$)")


@dataclass(frozen=True)
class Group:
    """Consecutive sentences of one domain, joined: one router example."""

    text: str
    domain: str
    sentences: tuple[Sentence, ...]


def make_groups(
    sentences_by_domain: dict[str, Sequence[Sentence]],
    tokenizer,
    *,
    group_size: int = 8,
    max_length: int = 512,
    seed: int | None = None,
    stride: int | None = None,
) -> list[Group]:
    """Pack each domain's sentences into groups (see the module docstring); ``seed`` shuffles the groups.

    ``stride`` (training only): a group starts every ``stride`` sentences, so groups overlap and a small
    corpus gives the router ``group_size / stride`` times as many distinct examples of consecutive text; a
    window that would end where the previous one ends is dropped. ``None`` packs disjoint groups, each starting
    where the last one stopped.
    """
    if stride is not None and not 0 < stride:
        raise ValueError(f"stride must be a positive number of sentences (or None), got {stride}")
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    groups: list[Group] = []
    for domain, sentences in sentences_by_domain.items():
        sentences = [s for s in sentences if s.tokens]
        lengths = [len(ids) for ids in tokenizer([s.text for s in sentences], add_special_tokens=False)["input_ids"]]
        start, last_end = 0, 0
        while start < len(sentences):
            end, used = start, 0
            while end < len(sentences) and (end == start or (end - start < group_size
                                                            and used + lengths[end] <= budget)):
                used += lengths[end]
                end += 1
            if end > last_end:
                window = tuple(sentences[start:end])
                groups.append(Group(" ".join(s.text for s in window), domain, window))
                last_end = end
            start = end if stride is None else min(start + stride, end)  # a short window never skips a sentence
    if seed is not None:
        random.Random(seed).shuffle(groups)
    return groups


def _classification_dataset(tokenizer, groups: Sequence[Group], domains: Sequence[str], max_length: int):
    from datasets import Dataset

    index = {d: i for i, d in enumerate(domains)}
    unknown = sorted({g.domain for g in groups} - set(index))
    if unknown:
        raise MultiBertError(f"groups of domain(s) {unknown} that the router does not know ({list(domains)})")
    encoding = tokenizer([g.text for g in groups], truncation=True, max_length=max_length)
    return Dataset.from_dict({**encoding, "labels": [index[g.domain] for g in groups]})


def _accuracy(prediction) -> dict[str, float]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return {"accuracy": float((np.asarray(logits).argmax(-1) == prediction.label_ids).mean())}


def train_router(
    mbert: MultiBertModel,
    train_groups: Sequence[Group],
    dev_groups: Sequence[Group],
    router_args: RouterArguments,
    args: MultiBertTrainingArguments,
    *,
    run_name: str = "router",
) -> RunResult:
    """Train the router's adapter and head on groups; the best epoch by dev accuracy is kept."""
    from transformers import DataCollatorWithPadding

    run_dir = Path(args.output_dir) / "runs" / run_name
    train_set = _classification_dataset(mbert.tokenizer, train_groups, mbert.router_domains, mbert.router_max_length)
    dev_set = _classification_dataset(mbert.tokenizer, dev_groups, mbert.router_domains, mbert.router_max_length)
    started = time.time()
    stop_on_signal = CheckpointOnSignal()
    with mbert.training(ROUTER_ADAPTER, train_head=True) as trainable:
        trainer = adapter_trainer_class()(
            model=mbert.model,
            args=trainer_arguments(run_dir, args, epochs=router_args.router_epochs,
                                   learning_rate=router_args.router_learning_rate, metric="accuracy", full_state=True),
            data_collator=DataCollatorWithPadding(mbert.tokenizer),
            train_dataset=train_set,
            eval_dataset=dev_set,
            compute_metrics=_accuracy,
            callbacks=[early_stopping_callback(args.early_stopping_patience, args.early_stopping_min_epochs),
                       stop_on_signal],
            adapter_name=ROUTER_ADAPTER,
            head_name=ROUTER_HEAD,
            train_head=True,
            safetensors=mbert.adapter_specs[ROUTER_ADAPTER].kind == "lora",
        )
        trainer.train(resume_from_checkpoint=resume_point(run_dir, args))
    stop_on_signal.raise_if_received()
    return finish_run(trainer, run_dir, args, run_name, "router adapter + head", len(train_groups), trainable, started,
                      unit="groups")


def router_accuracy(mbert: MultiBertModel, groups: Sequence[Group]) -> dict:
    """Accuracy on held-out groups, overall and per true domain, with the confusion counts."""
    predictions = mbert.classify([g.text for g in groups])
    confusion: dict[str, dict[str, int]] = {}
    for group, probabilities in zip(groups, predictions):
        predicted = max(probabilities, key=probabilities.get)
        row = confusion.setdefault(group.domain, {})
        row[predicted] = row.get(predicted, 0) + 1
    correct = sum(row.get(domain, 0) for domain, row in confusion.items())
    return {
        "accuracy": correct / len(groups) if groups else 0.0,
        "groups": len(groups),
        "per_domain": {d: row.get(d, 0) / sum(row.values()) for d, row in confusion.items()},
        "confusion": confusion,
    }


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character ranges of a document's sentences: ends at ``. ! ? ؟ …`` runs and at line breaks."""
    ranges = []
    for match in _SENTENCE.finditer(text):
        start, end = match.span()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end:
            ranges.append((start, end))
    return ranges


def document_sentences(document: Document) -> tuple[str, list[tuple[Words, int, int]]]:
    """The router's text and the sentences to tag, each with its character range.

    A string is a document: it is split into sentences, and entity offsets and ranges refer to the whole
    string. A list holds sentences (strings or token lists): offsets refer to each sentence.
    """
    if isinstance(document, str):
        sentences = []
        for start, end in split_sentences(document):
            words, offsets = tokenize_with_offsets(document[start:end])
            sentences.append((Words(document, words, [(s + start, e + start) for s, e in offsets]), start, end))
        return document, sentences
    sentences = [(w, 0, len(w.text)) for w in map(as_words, document)]
    return " ".join(w.text for w, _, _ in sentences), sentences


@dataclass(frozen=True)
class RouteDecision:
    """The router's answer for one document."""

    domain: str
    probability: float
    adapter: str
    fallback: bool
    probabilities: dict[str, float] = field(repr=False)


@dataclass(frozen=True)
class TaggedSentence:
    """One tagged sentence; ``start``/``end`` place it in a document string (0 and its length in a list)."""

    text: str
    start: int
    end: int
    entities: list[TaggedEntity]


@dataclass(frozen=True)
class RoutedDocument:
    """A document's routing decision and its tagged sentences."""

    decision: RouteDecision
    sentences: list[TaggedSentence]

    def as_dict(self) -> dict:
        return {"domain": self.decision.domain, "probability": self.decision.probability,
                "adapter": self.decision.adapter, "fallback": self.decision.fallback,
                "sentences": [{"text": s.text, "start": s.start, "end": s.end,
                               "entities": [e.as_dict() for e in s.entities]} for s in self.sentences]}


class DomainRouter:
    """Route documents to their domain's adapter, falling back to the general adapter when unsure.

    The domain classifier reads the first 512 tokens of a document (the paper's groups of sentences) and gives a
    probability per domain; below `threshold` the scheme's general adapter tags instead. Documents of one domain
    are tagged together, so each adapter runs once per batch.

    Args:
        mbert (`MultiBertModel`): a set with a trained domain classifier (`add_router`, the recipe's `router`).
        threshold (`float`, *optional*): the fallback probability (default: the one saved with the router).

    Raises:
        `ner_adapters.errors.MultiBertError`: the set has no domain classifier.

    Example:

    ```python
    >>> from ner_adapters.multibert import DomainRouter, MultiBertModel
    >>> router = DomainRouter(MultiBertModel.load("outputs/multibert/default/model"))
    >>> routed = router.tag("Mary flew to Paris. She loved it.")
    >>> routed.decision.domain, routed.decision.probability, routed.sentences[0].entities
    ('email', 0.82, [...])
    ```
    """

    def __init__(self, mbert: MultiBertModel, threshold: float | None = None):
        if not mbert.router_domains:
            raise MultiBertError("this model has no router (train one with train_router)")
        self.mbert = mbert
        self.threshold = mbert.router_threshold if threshold is None else threshold
        if self.threshold > 0:  # every fallback must exist before the first document, not at the unlucky one
            for domain in mbert.router_domains:
                mbert.fallback_domain(mbert.scheme_of(domain))

    def _decide(self, probabilities: dict[str, float]) -> RouteDecision:
        domain = max(probabilities, key=probabilities.get)
        probability = probabilities[domain]
        fallback = probability < self.threshold
        adapter = self.mbert.fallback_domain(self.mbert.scheme_of(domain)) if fallback else domain
        return RouteDecision(domain, probability, adapter, fallback, probabilities)

    def route(self, document: Document) -> RouteDecision:
        return self.route_many([document])[0]

    def route_many(self, documents: Sequence[Document]) -> list[RouteDecision]:
        if isinstance(documents, str):
            raise TypeError("pass a list of documents")
        texts = [document_sentences(d)[0] for d in documents]
        return [self._decide(p) for p in self.mbert.classify(texts)]

    def tag(self, document: Document) -> RoutedDocument:
        return self.tag_many([document])[0]

    def tag_many(self, documents: Sequence[Document], *, batch_size: int = 32) -> list[RoutedDocument]:
        """Route every document, then tag all sentences grouped by the adapter each needs."""
        if isinstance(documents, str):
            raise TypeError("pass a list of documents")
        prepared = [document_sentences(d) for d in documents]
        decisions = [self._decide(p) for p in self.mbert.classify([text for text, _ in prepared])]
        flat = [(i, sentence) for i, (_, sentences) in enumerate(prepared) for sentence in sentences]
        entities = self.mbert.predict_mixed([words for _, (words, _, _) in flat],
                                            [decisions[i].adapter for i, _ in flat], batch_size=batch_size)
        out = [RoutedDocument(decision, []) for decision in decisions]
        for (i, (words, start, end)), found in zip(flat, entities):
            out[i].sentences.append(TaggedSentence(words.text[start:end], start, end, found))
        return out


__all__ = ["DomainRouter", "Group", "RouteDecision", "RoutedDocument", "TaggedSentence", "document_sentences",
           "make_groups", "router_accuracy", "split_sentences", "train_router"]
