"""Entity spans, tag schemes and character offsets: the one place where IOB tags become spans and back.

Every other module (readers, episodes, metrics, the CLLMFS prompts, the Multi-BERT heads) works on
:class:`Span` objects; conversions between tag sequences, token spans and character offsets over the
space-joined sentence live here so they are written (and tested) once.

Conventions: token ``end`` and character ``char_end`` are exclusive; character offsets refer to
``" ".join(tokens)``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence
from .errors import TagError, TagRepairWarning  # noqa: F401  (re-exported: raised here)

OUTSIDE = "O"

#: Tag-scheme names accepted by :func:`normalize_tags`, mapped to their canonical name.
SCHEMES = {
    "IOB2": "IOB2",
    "BIO": "IOB2",
    "IOB1": "IOB1",
    "IOB": "IOB1",
    "IOBES": "IOBES",
    "BIOES": "IOBES",
    "BILOU": "BILOU",
}

_PREFIXES = {
    "IOB2": ("B", "I"),
    "IOB1": ("B", "I"),
    "IOBES": ("B", "I", "E", "S"),
    "BILOU": ("B", "I", "L", "U"),
}


@dataclass(frozen=True, order=True)
class Span:
    """One entity mention: its type and token range ``[start, end)``."""

    start: int
    end: int
    type: str

    def __post_init__(self) -> None:
        if self.start < 0 or self.end <= self.start:
            raise ValueError(f"invalid span [{self.start}, {self.end}) for type {self.type!r}")

    def text(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens[self.start : self.end])

    def to_dict(self, tokens: Sequence[str]) -> dict:
        """The row format of the ``spans`` dataset column (token and character offsets)."""
        char_start, char_end = token_span_to_char(tokens, self.start, self.end)
        return {"type": self.type, "start": self.start, "end": self.end, "char_start": char_start, "char_end": char_end}

    @classmethod
    def from_dict(cls, row: dict) -> "Span":
        return cls(start=int(row["start"]), end=int(row["end"]), type=str(row["type"]))


def split_tag(tag: str, scheme: str = "IOB2") -> tuple[str, str | None]:
    """Split ``"B-creative-work"`` into ``("B", "creative-work")`` on the first ``-`` only."""
    if tag == OUTSIDE:
        return OUTSIDE, None
    prefix, sep, entity_type = tag.partition("-")
    if not sep or not entity_type or prefix not in _PREFIXES[scheme]:
        raise TagError(f"tag {tag!r} is not valid in the {scheme} scheme (expected O or one of "
                       f"{', '.join(p + '-TYPE' for p in _PREFIXES[scheme])})")
    return prefix, entity_type


def canonical_scheme(scheme: str) -> str:
    try:
        return SCHEMES[scheme.upper()]
    except KeyError:
        raise TagError(f"unknown tag scheme {scheme!r}; known schemes: {', '.join(sorted(SCHEMES))}") from None


def tags_to_spans(
    tags: Sequence[str],
    scheme: str = "IOB2",
    mode: Literal["repair", "strict", "drop"] = "repair",
    on_repair: Callable[[int], None] | None = None,
) -> list[Span]:
    """Read entity spans from a tag sequence.

    ``mode`` decides what happens to an entity-internal tag with no entity of its type open before it
    (``O I-PER`` or ``B-LOC I-PER`` in IOB2):

    - ``"repair"`` reads it as the start of a new entity and warns (seqeval's default, conlleval's rule);
    - ``"strict"`` raises :class:`TagError`;
    - ``"drop"`` ignores it, which is what ``seqeval`` does with ``mode="strict", scheme=IOB2``.

    With ``on_repair``, ``"repair"`` calls it with the tag's position instead of warning: callers that
    collect or silence repairs need no ``warnings.catch_warnings``, which slows a per-sentence loop and
    resets Python's once-per-location registry (so a file's one repair warning was shown again on every read).
    """
    scheme = canonical_scheme(scheme)
    spans: list[Span] = []
    start: int | None = None
    current: str | None = None

    def close(end: int) -> None:
        nonlocal start, current
        if current is not None and start is not None:
            spans.append(Span(start, end, current))
        start, current = None, None

    for i, tag in enumerate(tags):
        try:
            prefix, entity_type = split_tag(tag, scheme)
        except TagError as err:
            raise TagError(str(err), position=i) from None
        if prefix == OUTSIDE:
            close(i)
            continue
        continues = current == entity_type and start is not None
        if scheme == "IOB1":
            # IOB1: I- opens an entity or continues one of its type; B- always opens one (it is only
            # required between two adjacent entities of the same type, and harmless elsewhere).
            if not (prefix == "I" and continues):
                close(i)
                start, current = i, entity_type
            continue
        if prefix in ("B", "S", "U"):
            close(i)
            start, current = i, entity_type
            if prefix in ("S", "U"):
                close(i + 1)
            continue
        # I / E / L: inside or end of an entity.
        if not continues:
            _invalid(tag, i, mode, scheme, on_repair)
            close(i)
            if mode == "drop":
                continue
            start, current = i, entity_type
        if prefix in ("E", "L"):
            close(i + 1)
    close(len(tags))
    return spans


def _invalid(tag: str, position: int, mode: str, scheme: str, on_repair: Callable[[int], None] | None) -> None:
    message = f"tag {tag!r} at position {position} does not continue an entity of its type ({scheme})"
    if mode == "strict":
        raise TagError(message, position=position)
    if mode == "repair" and on_repair is not None:
        on_repair(position)
    elif mode == "repair":
        warnings.warn(message + "; read as the start of a new entity", TagRepairWarning, stacklevel=3)


def spans_to_tags(spans: Iterable[Span], length: int, scheme: str = "IOB2") -> list[str]:
    """Write spans as a tag sequence of ``length`` tokens. Overlapping spans raise ``ValueError``."""
    scheme = canonical_scheme(scheme)
    tags = [OUTSIDE] * length
    previous_end, previous_type = -1, None
    for span in sorted(spans):
        if span.end > length:
            raise ValueError(f"span {span} goes past the end of a {length}-token sentence")
        if any(tag != OUTSIDE for tag in tags[span.start : span.end]):
            raise ValueError(f"span {span} overlaps another span; flatten nested spans first")
        n = span.end - span.start
        if scheme == "IOB2":
            prefixes = ["B"] + ["I"] * (n - 1)
        elif scheme == "IOB1":
            adjacent = previous_end == span.start and previous_type == span.type
            prefixes = ["B" if adjacent else "I"] + ["I"] * (n - 1)
        elif scheme == "IOBES":
            prefixes = ["S"] if n == 1 else ["B"] + ["I"] * (n - 2) + ["E"]
        else:  # BILOU
            prefixes = ["U"] if n == 1 else ["B"] + ["I"] * (n - 2) + ["L"]
        for offset, prefix in enumerate(prefixes):
            tags[span.start + offset] = f"{prefix}-{span.type}"
        previous_end, previous_type = span.end, span.type
    return tags


def normalize_tags(
    tags: Sequence[str], scheme: str = "IOB2", mode: Literal["repair", "strict", "drop"] = "repair"
) -> list[str]:
    """Rewrite a tag sequence of any supported scheme as valid IOB2."""
    return spans_to_tags(tags_to_spans(tags, scheme, mode), len(tags), "IOB2")


def token_char_offsets(tokens: Sequence[str]) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of each token in ``" ".join(tokens)``."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return offsets


def token_span_to_char(tokens: Sequence[str], start: int, end: int) -> tuple[int, int]:
    """Character offsets of tokens ``[start, end)`` in the space-joined sentence."""
    if not 0 <= start < end <= len(tokens):
        raise ValueError(f"token span [{start}, {end}) is outside a {len(tokens)}-token sentence")
    char_start = sum(len(t) + 1 for t in tokens[:start])
    char_end = char_start + sum(len(t) + 1 for t in tokens[start:end]) - 1
    return char_start, char_end


def char_span_to_tokens(
    offsets: Sequence[tuple[int, int]], char_start: int, char_end: int, *, expand: bool = True
) -> tuple[int, int] | None:
    """Token range ``[start, end)`` covering characters ``[char_start, char_end)``.

    ``offsets`` are the tokens' character ranges in the text. With ``expand`` a span that cuts a token
    takes the whole token; without it, such a span gives ``None``. A span touching no token gives ``None``.
    """
    covered = [i for i, (s, e) in enumerate(offsets) if s < char_end and e > char_start]
    if not covered:
        return None
    start, end = covered[0], covered[-1] + 1
    if not expand and (offsets[start][0] < char_start or offsets[end - 1][1] > char_end):
        return None
    return start, end


def spans_to_dicts(spans: Iterable[Span], tokens: Sequence[str]) -> list[dict]:
    return [span.to_dict(tokens) for span in sorted(spans)]


def spans_from_dicts(rows: Iterable[dict]) -> list[Span]:
    return sorted(Span.from_dict(row) for row in rows)


def flatten_outermost(spans: Iterable[Span]) -> list[Span]:
    """Keep the outermost of nested or overlapping spans (longest first, then leftmost)."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (-(s.end - s.start), s.start, s.type)):
        if all(span.end <= other.start or span.start >= other.end for other in kept):
            kept.append(span)
    return sorted(kept)


def label_names(types: Iterable[str]) -> list[str]:
    """The IOB2 label list of a type set: ``O`` then ``B-t, I-t`` for each type in the given order."""
    names = [OUTSIDE]
    for entity_type in types:
        names += [f"B-{entity_type}", f"I-{entity_type}"]
    return names


__all__ = [
    "OUTSIDE",
    "SCHEMES",
    "Span",
    "TagError",
    "TagRepairWarning",
    "canonical_scheme",
    "char_span_to_tokens",
    "flatten_outermost",
    "label_names",
    "normalize_tags",
    "spans_from_dicts",
    "spans_to_dicts",
    "spans_to_tags",
    "split_tag",
    "tags_to_spans",
    "token_char_offsets",
    "token_span_to_char",
]
