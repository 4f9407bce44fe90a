"""Metric-learning few-shot baselines on a frozen encoder: ProtoBERT-style prototypes and NNShot.

Each word is embedded by a BERT-family encoder (the mean of its sub-tokens' last hidden states) and
labelled with an IO tag (the entity type, or ``O``) by its nearest support prototype (the mean of a
tag's support words; ProtoBERT, Snell et al.) or its nearest support word (NNShot, Yang and Katiyar),
under squared Euclidean distance, as in Few-NERD's implementations. Runs of words with the same type
become spans. The encoder is frozen: in an INTRA episode there is nothing else to train on.

:meth:`PrototypeTagger.type_spans` only types spans found by something else (CLLMFS's ``span_typing:
prototype``): an LLM finds entity boundaries well and confuses their types, where the prototypes type well and
find boundaries poorly (docs/results.md, release 17).

Any encoder folder or Hub id works (``encoder=``): MiniLM (uncased WordPiece) or the multilingual e5 (a BERT
with XLM-R's SentencePiece vocabulary, trained with mean pooling, which is what the word vectors are). A
SentencePiece tokenizer writes a word boundary as its own piece ``"▁"`` before words it has no ``"▁word"``
piece for (``"▁" "," ``, ``"▁" "🏆"``, ``"▁" "山" "田"``); that piece says nothing about the word, so it is left
out of the word's mean whenever the word has other pieces. e5's ``"query: "`` / ``"passage: "`` prefixes are a
retrieval convention for sentence vectors and are not added: the prototypes compare words.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from transformers import AutoModel, AutoTokenizer

from ..data.schema import Sentence
from ..models import MINILM, resolve_model
from ..spans import OUTSIDE, Span


class PrototypeTagger:
    """Nearest-prototype (``"proto"``) or nearest-neighbour (``"nnshot"``) word tagger."""

    def __init__(self, encoder: str = MINILM, method: Literal["proto", "nnshot"] = "proto", batch_size: int = 32,
                 max_length: int = 256):
        if method not in ("proto", "nnshot"):
            raise ValueError(f"method must be 'proto' or 'nnshot', got {method!r}")
        path = resolve_model(encoder)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        self.model = AutoModel.from_pretrained(path, trust_remote_code=False).eval()
        vocabulary = self.tokenizer.get_vocab()
        #: The piece that only marks a word boundary, see the module doc: SentencePiece's "▁", else byte-level BPE's
        #: "Ġ" (in a SentencePiece vocabulary "Ġ" is a letter like any other, so only one of them counts).
        marker = next((piece for piece in ("\u2581", "\u0120") if piece in vocabulary), None)
        self.boundary_ids = {vocabulary[marker]} if marker is not None else set()
        self.method = method
        self.batch_size = batch_size
        self.max_length = max_length
        self.labels: list[str] = []
        self.support: torch.Tensor | None = None
        self.support_labels: torch.Tensor | None = None

    @torch.no_grad()
    def embed(self, sentences: Sequence[Sentence]) -> list[torch.Tensor]:
        """One ``(words, hidden)`` tensor per sentence; words cut off by ``max_length`` get zero vectors."""
        out = []
        for i in range(0, len(sentences), self.batch_size):
            chunk = sentences[i : i + self.batch_size]
            enc = self.tokenizer([s.tokens for s in chunk], is_split_into_words=True, truncation=True,
                                 max_length=self.max_length, padding=True, return_tensors="pt")
            hidden = self.model(**enc).last_hidden_state
            for row, sentence in enumerate(chunk):
                ids = enc["input_ids"][row].tolist()
                pieces: dict[int, list[int]] = {}
                for position, word in enumerate(enc.word_ids(row)):
                    if word is not None:
                        pieces.setdefault(word, []).append(position)
                vectors = torch.zeros(len(sentence.tokens), hidden.shape[-1])
                for word, positions in pieces.items():
                    content = [p for p in positions if ids[p] not in self.boundary_ids] or positions
                    vectors[word] = hidden[row, content].mean(0)
                out.append(vectors)
        return out

    def fit(self, support: Sequence[Sentence], types: Sequence[str]) -> "PrototypeTagger":
        """Prototypes (or the stored words) of the support set's IO tags."""
        self.labels = [OUTSIDE, *types]
        index = {label: i for i, label in enumerate(self.labels)}
        vectors, labels = [], []
        for sentence, embedding in zip(support, self.embed(support)):
            tags = [OUTSIDE] * len(sentence.tokens)
            for span in sentence.spans:
                if span.type in index:
                    tags[span.start : span.end] = [span.type] * (span.end - span.start)
            vectors.append(embedding)
            labels += [index[t] for t in tags]
        words = torch.cat(vectors)
        targets = torch.tensor(labels)
        if self.method == "proto":
            present = sorted(set(labels))
            self.support = torch.stack([words[targets == i].mean(0) for i in present])
            self.support_labels = torch.tensor(present)
        else:
            self.support, self.support_labels = words, targets
        return self

    def type_spans(self, sentences: Sequence[Sentence], spans: Sequence[Sequence[Span]]) -> list[list[Span]]:
        """The same spans, each typed by its words: every word votes for its nearest support vector among the
        entity types (``O`` left out: the span is an entity already), the majority wins, and a tie goes to the
        type nearest in summed distance."""
        if self.support is None:
            raise RuntimeError("call fit() with a support set first")
        if len(sentences) != len(spans):
            raise ValueError(f"{len(sentences)} sentences but {len(spans)} lists of spans")
        entity_rows = [i for i, label in enumerate(self.support_labels.tolist()) if self.labels[label] != OUTSIDE]
        if not entity_rows:
            raise ValueError("the support set has no entity of the types given to fit(): nothing to type spans by")
        vectors_of_types = self.support[entity_rows]
        types = [self.labels[int(self.support_labels[i])] for i in entity_rows]
        order = list(dict.fromkeys(types))  # the types' first appearance: a deterministic tie order
        rows_of = {t: [j for j, u in enumerate(types) if u == t] for t in order}  # once, not per span
        typed = []
        for sentence, row, embedding in zip(sentences, spans, self.embed(sentences)):
            out = []
            for span in row:
                if not 0 <= span.start < span.end <= len(sentence.tokens):
                    raise ValueError(f"sentence {sentence.id!r}: span {span} is outside its {len(sentence.tokens)} words")
                distances = torch.cdist(embedding[span.start:span.end], vectors_of_types)  # (words, support rows)
                nearest = distances.argmin(dim=1).tolist()
                votes = {t: sum(types[j] == t for j in nearest) for t in order}
                closeness = {t: -float(distances[:, rows_of[t]].min(dim=1).values.sum()) for t in order}
                best = max(order, key=lambda t: (votes[t], closeness[t]))
                out.append(Span(span.start, span.end, best))
            typed.append(out)
        return typed

    def predict(self, sentences: Sequence[Sentence]) -> list[list[Span]]:
        if self.support is None:
            raise RuntimeError("call fit() with a support set first")
        predictions = []
        for sentence, embedding in zip(sentences, self.embed(sentences)):
            nearest = torch.cdist(embedding, self.support).argmin(dim=1)
            tags = [self.labels[int(self.support_labels[j])] for j in nearest]
            spans, start = [], None
            for i, tag in enumerate([*tags, OUTSIDE]):
                if start is not None and (i == len(tags) or tag != tags[start]):
                    spans.append(Span(start, i, tags[start]))
                    start = None
                if i < len(tags) and tag != OUTSIDE and start is None:
                    start = i
            predictions.append(spans)
        return predictions
