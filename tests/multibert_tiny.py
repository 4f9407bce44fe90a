"""A tiny BERT core and synthetic multi-domain data for the Multi-BERT unit tests (no downloads, seconds).

The vocabulary is built from the sentences, so every word is one WordPiece (plus a few sub-word pieces
for the alignment tests).
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Sequence

from ner_adapters.data import Sentence
from ner_adapters.multibert.domains import DomainData
from ner_adapters.spans import Span

PEOPLE = ["mary", "john", "ali", "sara", "omid"]
PLACES = ["paris", "london", "tehran", "shiraz", "berlin"]
TEAMS = ["arsenal", "persepolis", "bayern"]
TEMPLATES = {
    # domain: (words, (start, end, type) spans) templates; {p} person, {l} place, {t} team
    "news": [("{p} visited {l} today .", [(0, 1, "PER"), (2, 3, "LOC")]),
             ("the minister met {p} in {l} .", [(3, 4, "PER"), (5, 6, "LOC")])],
    "sports": [("{t} beat {t2} in {l} .", [(0, 1, "ORG"), (2, 3, "ORG"), (4, 5, "LOC")]),
               ("{p} scored twice for {t} .", [(0, 1, "PER"), (4, 5, "ORG")])],
    "travel": [("we flew from {l} to {l2} .", [(3, 4, "LOC"), (5, 6, "LOC")]),
               ("{p} loved the food in {l} .", [(0, 1, "PER"), (5, 6, "LOC")])],
}
TYPES = ("PER", "LOC", "ORG")
EXTRA_PIECES = ["##s", "##ing", "##ed", "visit", "play", "jump"]


def make_sentences(domain: str, n: int, seed: int) -> list[Sentence]:
    rng = random.Random(f"{domain}-{seed}")
    out = []
    for i in range(n):
        template, spans = rng.choice(TEMPLATES[domain])
        words = template.format(p=rng.choice(PEOPLE), l=rng.choice(PLACES), l2=rng.choice(PLACES),
                                t=rng.choice(TEAMS), t2=rng.choice(TEAMS)).split()
        out.append(Sentence(words, [Span(s, e, t) for s, e, t in spans], id=f"{domain}-{seed}-{i}", domain=domain))
    return out


def make_domain(name: str, scheme: str, n_train: int = 24, n_dev: int = 8, n_test: int = 8) -> DomainData:
    return DomainData(name, scheme, make_sentences(name, n_train, 0), make_sentences(name, n_dev, 1),
                      make_sentences(name, n_test, 2))


def vocabulary(sentences: Iterable[Sequence[str]]) -> list[str]:
    words = sorted({w.lower() for s in sentences for w in s})
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + EXTRA_PIECES


def build_tiny_core(folder: Path, extra_words: Iterable[str] = (), seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the synthetic sentences, saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    sentences = [s.tokens for d in TEMPLATES for s in make_sentences(d, 60, 0)] + [list(extra_words)]
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocabulary(sentences)) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocabulary(sentences)), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


def randomize(mbert, seed: int = 1) -> None:
    """Untrained LoRA is a no-op (B = 0) and fresh heads are near-uniform: give adapters and heads real weights."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in mbert.model.named_parameters():
            if "loras" in name or "prefix" in name or name.startswith("heads."):
                parameter.normal_(0, 0.5)


@contextmanager
def one_torch_thread():
    """Tiny models on a shared 2-core machine: more threads only spin (measured 17x slower under load)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
