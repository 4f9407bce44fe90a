"""Constrained decoding: the answer may only hold substrings of the input between ``<<<`` and ``>>>``.

The answer grammar (see :mod:`.prompts`) is a sequence of literals (the answer prefix, slot labels, the
markers) and entity lists whose entities are word-aligned substrings of the input. It is run as a
nondeterministic automaton over UTF-8 bytes, so it works with any byte-level BPE or SentencePiece
vocabulary, for Persian, emoji and mixed scripts alike. At every step, a depth-first walk of a byte trie
of the vocabulary, pruned as soon as the automaton has no live state, finds every token that keeps the
answer valid; all others get ``-inf``. The end-of-turn token is allowed only when the answer is complete.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field
from typing import Sequence

import torch
from transformers import LogitsProcessor

from .prompts import CLOSE, NONE, OPEN

# --- token bytes -------------------------------------------------------------------------------------


def _byte_level_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes-to-unicode table (byte-level BPE tokens are written in it)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def token_bytes(tokenizer) -> list[bytes | None]:
    """The bytes each token id adds to a text (``None`` for special tokens)."""
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    kinds = {d.get("type") for d in decoder.get("decoders", [decoder])}
    result: list[bytes | None] = []
    if "ByteLevel" in kinds:
        table = _byte_level_decoder()
        for i, piece in enumerate(pieces):
            try:
                result.append(None if i in special else bytes(table[c] for c in piece))
            except KeyError:  # an added token written in plain text
                result.append(piece.encode("utf-8"))
        return result
    for i, piece in enumerate(pieces):  # SentencePiece: "▁" is a space, <0xNN> a raw byte
        if i in special or piece is None:
            result.append(None)
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            result.append(bytes([int(piece[3:5], 16)]))
        else:
            result.append(piece.replace("\u2581", " ").encode("utf-8"))
    return result


@dataclass
class VocabularyTrie:
    """A byte trie of the vocabulary: ``children[node][byte] -> node`` and ``ids[node]`` ending there."""

    children: list[dict[int, int]] = field(default_factory=lambda: [{}])
    ids: list[list[int]] = field(default_factory=lambda: [[]])
    token_bytes: list[bytes | None] = field(default_factory=list)

    @classmethod
    def build(cls, pieces: Sequence[bytes | None]) -> "VocabularyTrie":
        trie = cls(token_bytes=list(pieces))
        for token_id, piece in enumerate(pieces):
            if not piece:
                continue
            node = 0
            for byte in piece:
                nxt = trie.children[node].get(byte)
                if nxt is None:
                    nxt = len(trie.children)
                    trie.children[node][byte] = nxt
                    trie.children.append({})
                    trie.ids.append([])
                node = nxt
            trie.ids[node].append(token_id)
        return trie


_TRIES_BY_TOKENIZER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_TRIES_BY_VOCABULARY: dict[str, VocabularyTrie] = {}


def vocabulary_trie(tokenizer) -> VocabularyTrie:
    """The trie of a tokenizer's vocabulary, built once per vocabulary (about a second) and cached."""
    trie = _TRIES_BY_TOKENIZER.get(tokenizer)
    if trie is None:
        key = hashlib.sha1(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()
        trie = _TRIES_BY_VOCABULARY.get(key)
        if trie is None:
            trie = _TRIES_BY_VOCABULARY[key] = VocabularyTrie.build(token_bytes(tokenizer))
        _TRIES_BY_TOKENIZER[tokenizer] = trie
    return trie


# --- the answer automaton ------------------------------------------------------------------------------

# States are tuples:
#   ("lit", step, offset)          inside literal `step`: a program step index, or one of the entity list's
#                                  own literals ("none" | "open" | "close", step, floor)
#   ("start", step, floor)         at the first byte of an entity, which must start at or after `floor`
#   ("ent", step, position)        inside an entity, `position` = next input byte to match
#   ("done",)                      the answer is complete (the end-of-turn token may follow)
# A program step is ("literal", bytes) or ("entities", b""). Entities are listed in reading order: each
# starts at or after the previous one's end (`floor`), as in the training answers. That pins every listing
# to its own occurrence and lets a looping model run out of input instead of tokens.


@dataclass(frozen=True)
class AnswerGrammar:
    """The answer of one prompt: literals and entity lists over one input text."""

    steps: tuple[tuple[str, bytes], ...]
    text: bytes
    starts: frozenset[int]
    ends: frozenset[int]
    #: Entity start positions by their first byte, so the first byte of an entity is a dict lookup.
    starts_by_byte: dict[int, tuple[int, ...]] = field(default_factory=dict, compare=False)

    @classmethod
    def build(
        cls, prefix: str, slot_labels: Sequence[str | None], text: str, boundaries: Sequence[tuple[int, int]], stop: str | None = None
    ) -> "AnswerGrammar":
        """``boundaries`` are the character spans of the input's words: entities start and end on them."""
        encoded = text.encode("utf-8")
        char_to_byte = _char_to_byte(text)
        steps: list[tuple[str, bytes]] = [("literal", prefix.encode("utf-8"))]
        for label in slot_labels:
            if label:
                steps.append(("literal", label.encode("utf-8")))
            steps.append(("entities", b""))
        if stop:
            steps.append(("literal", stop.encode("utf-8")))
        starts = frozenset(char_to_byte[s] for s, _ in boundaries)
        by_byte: dict[int, list[int]] = {}
        for position in sorted(starts):
            if position < len(encoded):
                by_byte.setdefault(encoded[position], []).append(position)
        return cls(
            tuple(steps), encoded, starts, frozenset(char_to_byte[e] for _, e in boundaries),
            {byte: tuple(positions) for byte, positions in by_byte.items()},
        )

    # The entity-list sub-grammar: NONE | (OPEN entity CLOSE)+, written with literal pseudo-steps.
    _NONE, _OPEN, _CLOSE = NONE.encode(), OPEN.encode(), CLOSE.encode()

    def initial(self) -> frozenset:
        return self._closure({("lit", 0, 0)})

    def _closure(self, states) -> frozenset:
        """Follow the empty moves: finished literals lead to the next step, and so on."""
        out: set = set()
        stack = list(states)
        while stack:
            state = stack.pop()
            if state in out:
                continue
            out.add(state)
            kind = state[0]
            if kind == "lit":
                _, step, offset = state
                literal = self._literal(step)
                if offset == len(literal):
                    stack.extend(self._after(step))
            elif kind == "ent":
                _, step, position = state
                if position in self.ends:
                    stack.append(("lit", ("close", step, position), 0))
        return frozenset(out)

    def _literal(self, step) -> bytes:
        if isinstance(step, tuple):  # the entity list's own literals
            return {"none": self._NONE, "open": self._OPEN, "close": self._CLOSE}[step[0]]
        return self.steps[step][1]

    def _after(self, step) -> list:
        """States reached when literal ``step`` is complete."""
        if isinstance(step, tuple):
            kind, index, floor = step
            if kind == "open":
                return [("start", index, floor)]
            if kind == "close":  # another entity after this one (if a word starts after it), or the next step
                more = [("lit", ("open", index, floor), 0)] if self.starts and max(self.starts) >= floor else []
                return [*more, *self._enter(index + 1)]
            return self._enter(index + 1)  # after " none"
        return self._enter(step + 1)

    def _enter(self, step: int) -> list:
        if step >= len(self.steps):
            return [("done",)]
        if self.steps[step][0] == "entities":
            return [("lit", ("none", step, 0), 0), ("lit", ("open", step, 0), 0)]
        return [("lit", step, 0)]

    def advance(self, states: frozenset, byte: int) -> frozenset:
        """The states after reading one byte (empty: the byte is not allowed)."""
        nxt: set = set()
        for state in states:
            kind = state[0]
            if kind == "lit":
                _, step, offset = state
                literal = self._literal(step)
                if offset < len(literal) and literal[offset] == byte:
                    nxt.add(("lit", step, offset + 1))
            elif kind == "start":
                _, step, floor = state
                for position in self.starts_by_byte.get(byte, ()):
                    if position >= floor:
                        nxt.add(("ent", step, position + 1))
            elif kind == "ent":
                _, step, position = state
                if position < len(self.text) and self.text[position] == byte:
                    nxt.add(("ent", step, position + 1))
        return self._closure(nxt) if nxt else frozenset()

    def advance_bytes(self, states: frozenset, data: bytes) -> frozenset:
        for byte in data:
            states = self.advance(states, byte)
            if not states:
                break
        return states

    @staticmethod
    def accepts(states: frozenset) -> bool:
        return ("done",) in states

    def complete(self, states: frozenset) -> bool:
        """Accepted, and no byte can follow: only the stop may come next."""
        if not self.accepts(states):
            return False
        for state in states:
            kind = state[0]
            if kind == "start" or (kind == "ent" and state[2] < len(self.text)):
                return False
            if kind == "lit" and state[2] < len(self._literal(state[1])):
                return False
        return True


def _char_to_byte(text: str) -> list[int]:
    """Byte offset of every character offset (one past the end included)."""
    offsets, position = [], 0
    for char in text:
        offsets.append(position)
        position += len(char.encode("utf-8"))
    offsets.append(position)
    return offsets


def allowed_tokens(grammar: AnswerGrammar, states: frozenset, trie: VocabularyTrie) -> list[int]:
    """Every token whose bytes keep the answer valid from ``states`` (a pruned walk of the trie)."""
    allowed: list[int] = []
    stack = [(0, states)]
    while stack:
        node, node_states = stack.pop()
        for byte, child in trie.children[node].items():
            child_states = grammar.advance(node_states, byte)
            if child_states:
                allowed.extend(trie.ids[child])
                stack.append((child, child_states))
    return allowed


class SubstringConstraint(LogitsProcessor):
    """Masks every token that would leave the answer grammar, row by row of a (left-padded) batch.

    ``grammars[i]`` is row ``i``'s grammar; ``stop_ids`` the end-of-turn token(s), allowed only once the
    answer is complete. Finished rows (after a stop token) are left alone; a decoder that takes them out of
    the batch says so with ``keep``.
    """

    def __init__(self, grammars: Sequence[AnswerGrammar], tokenizer, stop_ids: Sequence[int]):
        self.grammars = list(grammars)
        self.trie = vocabulary_trie(tokenizer)
        self.stop_ids = list(stop_ids)
        self.states: list[frozenset | None] = [g.initial() for g in self.grammars]
        self.prompt_length: int | None = None
        self.consumed = 0

    def keep(self, rows: Sequence[int]) -> None:
        """Only follow ``rows`` (in this order) from now on: the decoder took the other rows out of the batch."""
        self.grammars = [self.grammars[row] for row in rows]
        self.states = [self.states[row] for row in rows]

    def ends_after(self, row: int, token: int) -> bool:
        """Whether the grammar leaves row ``row`` nothing but a stop token once ``token`` is appended: a decoder
        can end the row there without computing the next step."""
        states = self.states[row]
        if not states or token in self.stop_ids:
            return False
        piece = self.trie.token_bytes[token] if token < len(self.trie.token_bytes) else None
        grammar = self.grammars[row]
        return grammar.complete(grammar.advance_bytes(states, piece or b""))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self.grammars):
            raise ValueError(f"{input_ids.shape[0]} rows but {len(self.grammars)} grammars (beam search is not supported)")
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        new = input_ids[:, self.prompt_length + self.consumed :].tolist()
        self.consumed = input_ids.shape[1] - self.prompt_length
        mask = torch.full_like(scores, float("-inf"))
        for row, grammar in enumerate(self.grammars):
            states = self.states[row]
            for token in new[row]:
                if states is None:
                    break
                if token in self.stop_ids:
                    states = None  # finished
                    break
                piece = self.trie.token_bytes[token] if token < len(self.trie.token_bytes) else None
                states = grammar.advance_bytes(states, piece or b"")
            self.states[row] = states
            if states is None:
                mask[row] = 0  # finished row: whatever comes is replaced by padding
                continue
            allowed = allowed_tokens(grammar, states, self.trie) if states else []
            if grammar.accepts(states) or not states:
                allowed = allowed + self.stop_ids  # a dead end (cannot happen under the mask) stops
            mask[row, allowed] = 0
        return scores + mask


def _could_begin(piece: bytes, literal: bytes) -> bool:
    """Whether a token spelling ``piece`` can start ``literal`` (or start with it)."""
    return piece.startswith(literal) or literal.startswith(piece)


def _at_list_start(states: frozenset) -> bool:
    """Whether an entity list starts here: " none" and the first " <<< " are both still open (only there does the
    ``none`` literal sit at offset 0)."""
    return any(s[0] == "lit" and isinstance(s[1], tuple) and s[1][0] == "none" and s[2] == 0 for s in states)


class NoneThreshold(LogitsProcessor):
    """The none/entity choice by a probability threshold instead of greedily.

    Where an entity list starts (the first answer token in per-type mode, each slot in all-types mode), the
    allowed tokens split into those that begin " <<< " (list an entity) and those that begin " none";
    ``p = P(entity) / (P(entity) + P(none))`` under the scores this processor receives (the model restricted to
    what the grammar allows). The row lists an entity when ``p >= threshold`` (its best entity-opening token
    stays), else answers none. Tokens that could begin both (a lone space) are masked so the choice is made at
    this step. A small model trained on few sentences answers "none" for nearly everything, or for nothing;
    the threshold moves that decision without retraining, and 0.0 forces every list open (used to calibrate:
    ``decisions`` records each row's ``p``).

    Runs after :class:`SubstringConstraint`, whose grammar states it reads (the same step's).
    """

    def __init__(self, constraint: SubstringConstraint, threshold: float):
        self.constraint = constraint
        self.threshold = float(threshold)
        self.rows = list(range(len(constraint.grammars)))  # original row of each batch row
        self.decisions: list[list[float]] = [[] for _ in self.rows]
        self._none, self._open = NONE.encode(), OPEN.encode()

    def keep(self, rows: Sequence[int]) -> None:
        self.rows = [self.rows[row] for row in rows]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        pieces = self.constraint.trie.token_bytes
        probabilities = None
        for position, states in enumerate(self.constraint.states):
            if not states or not _at_list_start(states):
                continue
            if probabilities is None:
                probabilities = torch.softmax(scores.float(), dim=-1)
                scores = scores.clone()  # the caller's tensor stays as it was
            opening, closing = [], []
            for token in torch.isfinite(scores[position]).nonzero().flatten().tolist():
                piece = pieces[token] if token < len(pieces) else None
                if not piece:
                    continue
                to_open, to_none = _could_begin(piece, self._open), _could_begin(piece, self._none)
                if to_open != to_none:
                    (opening if to_open else closing).append(token)
            p_open = float(probabilities[position, opening].sum()) if opening else 0.0
            p_none = float(probabilities[position, closing].sum()) if closing else 0.0
            p = p_open / (p_open + p_none) if p_open + p_none > 0 else 0.0
            self.decisions[self.rows[position]].append(p)
            chosen = opening if (p >= self.threshold and opening) or not closing else closing
            if not chosen:
                continue
            row = torch.full_like(scores[position], float("-inf"))
            row[chosen] = scores[position, chosen]
            scores[position] = row
        return scores
