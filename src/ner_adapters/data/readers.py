"""Readers for the file formats NER data comes in, each returning :class:`Sentence` lists.

Formats: token-per-line CoNLL (any number of columns, tab or space separated, any IOB scheme),
CoNLL-U with GUM's nested ``Entity=`` mentions, UNER ``.iob2`` and Presidio's character-span JSON.
Errors name the file and line; repaired tags warn with the file and line.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from pathlib import Path
from typing import Iterator, Literal

from ..spans import (
    Span,
    TagError,
    TagRepairWarning,
    canonical_scheme,
    char_span_to_tokens,
    flatten_outermost,
    tags_to_spans,
)
from .schema import DataFormatError, Sentence

Mode = Literal["repair", "strict", "drop"]


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """A whole text file (``.gz`` too), with a decoding error turned into a file:line error."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError("no such file", path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(
            f"cannot decode byte {raw[err.start]:#04x} as {encoding} ({err.reason}); "
            "pass encoding=... if the file is not UTF-8",
            path,
            line,
        ) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataFormatError("file is empty", path)
    return text


_NEWLINE = re.compile(r"\r\n|\r|\n")
_COLUMN_SPACES = re.compile(r" +")


def json_lines(path: str | Path, encoding: str = "utf-8") -> Iterator[tuple[int, object]]:
    """``(line number, value)`` of each non-blank line of a JSON Lines file (``.gz`` too); a line that is not JSON
    raises :class:`DataFormatError` naming the file and line. Every JSONL reader of the project reads through it."""
    for number, line in enumerate(_lines(read_text(path, encoding)), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"invalid JSON ({err.msg})", path, number) from None


def _lines(text: str) -> list[str]:
    """Lines split on CR LF, CR or LF only: ``str.splitlines`` would also split on U+2028, U+0085, U+001C...,
    characters that can sit inside a token (web text), and shift every later token and line number."""
    return _NEWLINE.split(text)


def _blocks(text: str, comment_prefix: str | None) -> Iterator[tuple[list[tuple[int, str]], list[str]]]:
    """Blank-line separated blocks as ``(numbered data lines, comment lines)``."""
    lines: list[tuple[int, str]] = []
    comments: list[str] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            if lines:
                yield lines, comments
            lines, comments = [], []
            continue
        if comment_prefix and line.startswith(comment_prefix):
            if lines:  # a comment after data starts a new sentence
                yield lines, comments
                lines, comments = [], []
            comments.append(line)
            continue
        lines.append((number, line))
    if lines:
        yield lines, comments


def _split_line(line: str, delimiter: str | None) -> list[str]:
    if delimiter is not None:
        return line.split(delimiter)
    if "\t" in line:
        return line.split("\t")
    # Runs of ASCII spaces only: str.split() would also split on U+00A0, U+3000 and other Unicode spaces
    # inside a token, silently cutting the token ("New\u00a0York B-LOC" read as "New").
    return _COLUMN_SPACES.split(line.strip(" "))


def _read_spans(
    tags: list[str], line_numbers: list[int], path: Path, scheme: str, mode: Mode, repaired: list[int]
) -> list[Span]:
    """Spans of one sentence; tag errors name their file line, repaired lines are added to ``repaired``."""
    try:
        return tags_to_spans(tags, scheme, mode, on_repair=lambda position: repaired.append(line_numbers[position]))
    except TagError as err:
        line = line_numbers[err.position] if err.position is not None else None
        raise DataFormatError(str(err), path, line) from None


def _warn_repaired(path: Path, repaired: list[int]) -> None:
    """One warning per file for all ``I-`` tags read as entity starts, naming their lines."""
    if repaired:
        shown = ", ".join(map(str, repaired[:10])) + (", ..." if len(repaired) > 10 else "")
        warnings.warn(
            f"{path}: {len(repaired)} I- tag(s) with no entity of their type before them were read as entity "
            f"starts (lines {shown}); pass mode='strict' to reject them",
            TagRepairWarning,
            stacklevel=3,
        )


def read_conll(
    path: str | Path,
    *,
    token_column: int = 0,
    tag_column: int = -1,
    min_columns: int = 2,
    delimiter: str | None = None,
    scheme: str = "IOB2",
    mode: Mode = "repair",
    comment_prefix: str | None = None,
    encoding: str = "utf-8",
    id_prefix: str | None = None,
) -> list[Sentence]:
    """Token-per-line CoNLL: one token per line, a blank line between sentences.

    Columns are split on tabs when the line has one, else on runs of spaces (or on ``delimiter``).
    ``-DOCSTART-`` lines start a new document (``document_id``) and are not sentences.
    """
    path = Path(path)
    scheme = canonical_scheme(scheme)
    text = read_text(path, encoding)
    sentences: list[Sentence] = []
    repaired: list[int] = []
    document = 0
    for lines, _ in _blocks(text, comment_prefix):
        tokens: list[str] = []
        tags: list[str] = []
        numbers: list[int] = []
        for number, line in lines:
            columns = _split_line(line, delimiter)
            if columns[0].startswith("-DOCSTART-"):
                document += 1
                continue
            if len(columns) < min_columns:
                raise DataFormatError(
                    f"expected at least {min_columns} columns (token and tag), found {len(columns)}: {line!r}",
                    path,
                    number,
                )
            try:
                token, tag = columns[token_column], columns[tag_column].strip()
            except IndexError:
                raise DataFormatError(
                    f"no column {token_column} (token) or {tag_column} (tag) in {line!r}", path, number
                ) from None
            if not token:
                raise DataFormatError("empty token", path, number)
            tokens.append(token)
            tags.append(tag)
            numbers.append(number)
        if not tokens:
            continue
        spans = _read_spans(tags, numbers, path, scheme, mode, repaired)
        sentence_id = f"{id_prefix or path.stem}-{len(sentences)}"
        sentences.append(
            Sentence(tokens, spans, id=sentence_id, document_id=f"{path.stem}-doc{document}" if document else None)
        )
    if not sentences:
        raise DataFormatError("no sentences found", path)
    _warn_repaired(path, repaired)
    return sentences


def read_uner_iob2(path: str | Path, *, mode: Mode = "repair", encoding: str = "utf-8") -> list[Sentence]:
    """UNER ``.iob2``: ``#`` comments, then ``id TAB token TAB tag TAB - TAB annotator`` lines.

    ``# sent_id`` gives the sentence id, and its prefix (``answers``, ``email``...) the genre;
    ``# newdoc id`` the document.
    """
    path = Path(path)
    text = read_text(path, encoding)
    sentences: list[Sentence] = []
    repaired: list[int] = []
    document: str | None = None
    for lines, comments in _blocks(text, "#"):
        meta = {}
        for comment in comments:
            key, sep, value = comment.lstrip("#").partition("=")
            if sep:
                meta[key.strip()] = value.strip()
        if "newdoc id" in meta:
            document = meta["newdoc id"]
        tokens, tags, numbers = [], [], []
        for number, line in lines:
            columns = line.split("\t")
            if len(columns) < 3:
                raise DataFormatError(f"expected id, token and tag columns, found {len(columns)}: {line!r}", path, number)
            tokens.append(columns[1])
            tags.append(columns[2].strip())
            numbers.append(number)
        sentence_id = meta.get("sent_id", f"{path.stem}-{len(sentences)}")
        genre = sentence_id.split("-", 1)[0] if "sent_id" in meta else None
        spans = _read_spans(tags, numbers, path, "IOB2", mode, repaired)
        sentences.append(Sentence(tokens, spans, id=sentence_id, domain=genre, document_id=document))
    if not sentences:
        raise DataFormatError("no sentences found", path)
    _warn_repaired(path, repaired)
    return sentences


def _parse_entity_field(value: str) -> list[tuple[str, str]]:
    """Events of a CoNLL-U ``Entity=`` value in order: ``("open"|"single", body)`` or ``("close", group)``."""
    events = []
    i = 0
    while i < len(value):
        if value[i] == "(":
            j = i + 1
            while j < len(value) and value[j] not in "()":
                j += 1
            if j < len(value) and value[j] == ")":
                events.append(("single", value[i + 1 : j]))
                i = j + 1
            else:
                events.append(("open", value[i + 1 : j]))
                i = j
        else:
            j = i
            while j < len(value) and value[j] != ")":
                j += 1
            if j >= len(value):
                raise ValueError(f"cannot parse Entity={value!r} near {value[i:]!r}")
            events.append(("close", value[i:j]))
            i = j + 1
    return events


def read_conllu_entities(
    path: str | Path,
    *,
    entities: Literal["outermost", "named"] = "outermost",
    types: set[str] | None = None,
    encoding: str = "utf-8",
) -> list[Sentence]:
    """CoNLL-U with GUM/CorefUD ``Entity=`` mentions in the MISC column, flattened to non-nested spans.

    ``entities="outermost"`` keeps the outermost mention of every nest (pronouns and common nouns
    included, as annotated); ``"named"`` first keeps only Wikipedia-linked mentions (those with an
    ``identity``), which are the named entities, then flattens them. The field order comes from the
    file's ``# global.Entity`` header (GUM: ``GRP-etype-infstat-salience-centering-minspan-link-identity``).
    """
    path = Path(path)
    text = read_text(path, encoding)
    field_names = ["GRP", "etype", "infstat", "minspan", "link", "identity"]
    document = path.stem
    genre = None
    sentences: list[Sentence] = []
    for lines, comments in _blocks(text, "#"):
        sentence_id = None
        for comment in comments:
            key, _, value = comment.lstrip("#").partition("=")
            key, value = key.strip(), value.strip()
            if key == "global.Entity":
                field_names = value.split("-")
            elif key == "newdoc id":
                document = value
            elif key == "meta::genre":
                genre = value
            elif key == "sent_id":
                sentence_id = value
        tokens: list[str] = []
        mentions: list[tuple[int, int, str, bool]] = []
        open_stack: dict[str, list[tuple[int, str, bool]]] = {}
        for number, line in lines:
            columns = line.split("\t")
            if len(columns) != 10:
                raise DataFormatError(f"CoNLL-U needs 10 tab-separated columns, found {len(columns)}", path, number)
            if "-" in columns[0] or "." in columns[0]:
                continue  # multiword-token ranges and empty nodes carry no surface token of their own
            index = len(tokens)
            tokens.append(columns[1])
            misc = columns[9]
            entity_value = next((f[7:] for f in misc.split("|") if f.startswith("Entity=")), None)
            if entity_value is None:
                continue
            try:
                events = _parse_entity_field(entity_value)
            except ValueError as err:
                raise DataFormatError(str(err), path, number) from None
            for kind, body in events:
                if kind == "close":
                    stack = open_stack.get(body)
                    if not stack:
                        raise DataFormatError(f"entity {body} closed but never opened in this sentence", path, number)
                    start, etype, named = stack.pop()
                    mentions.append((start, index + 1, etype, named))
                    continue
                fields = dict(zip(field_names, body.split("-", len(field_names) - 1)))
                etype = fields.get("etype")
                if not etype:
                    raise DataFormatError(f"entity {body!r} has no entity type", path, number)
                identity = fields.get("identity", "")
                named = bool(identity) and identity != "_"
                if kind == "single":
                    mentions.append((index, index + 1, etype, named))
                else:
                    open_stack.setdefault(fields.get("GRP", body), []).append((index, etype, named))
        unclosed = [grp for grp, stack in open_stack.items() if stack]
        if unclosed:
            raise DataFormatError(f"entities {unclosed} opened but not closed in sentence {sentence_id}", path, lines[-1][0])
        if not tokens:
            continue
        spans = [
            Span(start, end, etype)
            for start, end, etype, named in mentions
            if (entities == "outermost" or named) and (types is None or etype in types)
        ]
        sentences.append(
            Sentence(tokens, flatten_outermost(spans), id=sentence_id or f"{document}-{len(sentences) + 1}",
                     domain=genre, document_id=document)
        )
    if not sentences:
        raise DataFormatError("no sentences found", path)
    return sentences


_WORD = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]", re.UNICODE)


def tokenize_with_offsets(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words and punctuation with their character offsets (used to tokenise raw text, e.g. Presidio)."""
    matches = list(_WORD.finditer(text))
    return [m.group() for m in matches], [m.span() for m in matches]


def read_presidio_json(path: str | Path, *, encoding: str = "utf-8") -> list[Sentence]:
    """Presidio-research JSON: ``full_text`` with ``spans`` of ``entity_type`` and character offsets.

    The text is tokenised into words and punctuation; a span that cuts a word takes the whole word.
    """
    path = Path(path)
    try:
        records = json.loads(read_text(path, encoding))
    except json.JSONDecodeError as err:
        raise DataFormatError(f"invalid JSON: {err.msg}", path, err.lineno) from None
    if not isinstance(records, list):
        raise DataFormatError("expected a JSON list of records", path)
    sentences = []
    for index, record in enumerate(records):
        where = f"record {index}"
        if not isinstance(record, dict) or "full_text" not in record:
            raise DataFormatError(f"{where} has no 'full_text' field", path)
        text = record["full_text"]
        tokens, offsets = tokenize_with_offsets(text)
        spans = []
        for span in record.get("spans") or []:
            try:
                start, end, etype = int(span["start_position"]), int(span["end_position"]), str(span["entity_type"])
            except (KeyError, TypeError, ValueError):
                raise DataFormatError(f"{where} has a span without start_position/end_position/entity_type: {span}", path) from None
            if not 0 <= start < end <= len(text):
                raise DataFormatError(f"{where}: span [{start}, {end}) is outside its {len(text)}-character text", path)
            token_range = char_span_to_tokens(offsets, start, end)
            if token_range is not None:
                spans.append(Span(token_range[0], token_range[1], etype))
        if tokens:
            sentences.append(Sentence(tokens, flatten_outermost(spans), id=f"{path.stem}-{index}"))
    if not sentences:
        raise DataFormatError("no records with text", path)
    return sentences


_TAG_FIELDS = ("ner_tags", "tags", "labels")
_SPAN_FIELDS = ("spans", "entities", "labels")


def _jsonl_char_spans(value, where: str, path: Path, number: int, text: str) -> list[tuple[int, int, str]]:
    """``[{start, end, type|label|entity_group}]`` or ``[[start, end, label]]`` (doccano) as character spans."""
    if not isinstance(value, list):
        raise DataFormatError(f"field {where!r} must be a list of spans", path, number)
    spans = []
    for span in value:
        try:
            if isinstance(span, dict):
                label = next(span[k] for k in ("type", "label", "entity_group", "entity_type") if k in span)
                start, end = int(span["start"]), int(span["end"])
            else:
                start, end, label = int(span[0]), int(span[1]), span[2]
        except (StopIteration, KeyError, IndexError, TypeError, ValueError):
            raise DataFormatError(f"field {where!r}: span {span!r} needs start, end and type (or label)",
                                  path, number) from None
        if not 0 <= start < end <= len(text):
            raise DataFormatError(f"field {where!r}: span [{start}, {end}) is outside its {len(text)}-character text",
                                  path, number)
        spans.append((start, end, str(label)))
    return spans


def read_span_jsonl(path: str | Path) -> dict[str, list[dict]]:
    """``{id: spans}`` from JSONL lines ``{"id": ..., "spans": [{"type", "start", "end"}]}``.

    ``entities`` with transformers pipeline keys (``entity_group``, ``start``, ``end``) are read too; a
    line without ``id`` is keyed by its line number.
    """
    path = Path(path)
    rows: dict[str, list[dict]] = {}
    for number, row in json_lines(path):
        spans = row.get("spans", row.get("entities")) if isinstance(row, dict) else None
        if not isinstance(spans, list):
            raise DataFormatError("expected an object with a 'spans' (or 'entities') list", path, number)
        for span in spans:
            if not isinstance(span, dict) or "start" not in span or "end" not in span or not (
                "type" in span or "entity_group" in span
            ):
                raise DataFormatError(f"span {span!r} needs 'type' (or 'entity_group'), 'start' and 'end'", path, number)
        key = str(row.get("id", number))
        if key in rows:
            raise DataFormatError(f"duplicate id {key!r}", path, number)
        rows[key] = spans
    return rows


def read_ner_jsonl(path: str | Path, *, scheme: str = "IOB2", mode: Mode = "repair",
                   encoding: str = "utf-8") -> list[Sentence]:
    """JSON Lines, one sentence (or document) per line, in one of three shapes:

    - ``{"tokens": [...], "ner_tags": [...]}`` (or ``tags`` / ``labels``): string tags in ``scheme``;
    - ``{"tokens": [...], "spans": [{"type", "start", "end"}]}``: token offsets, end exclusive (the
      episodes' and ``ner-adapters evaluate``'s shape);
    - ``{"text": "...", "spans": [{"start", "end", "type"}]}`` (or ``entities`` / ``labels``, ``label`` for
      ``type``, doccano's ``[start, end, label]`` lists): character offsets; the text is tokenised into
      words and punctuation and a span that cuts a word takes the whole word (as Presidio's reader does).

    Optional ``id``, ``domain`` and ``document_id`` fields are kept. Errors name the file and line.
    """
    path = Path(path)
    scheme = canonical_scheme(scheme)
    sentences: list[Sentence] = []
    repaired: list[int] = []
    for number, row in json_lines(path, encoding):
        if not isinstance(row, dict):
            raise DataFormatError("expected a JSON object per line", path, number)
        if "tokens" in row:
            tokens = row["tokens"]
            if not isinstance(tokens, list) or not all(isinstance(t, str) and t for t in tokens):
                raise DataFormatError("field 'tokens' must be a list of non-empty strings", path, number)
            tag_field = next((f for f in _TAG_FIELDS if f in row and isinstance(row[f], list)
                              and all(isinstance(t, str) for t in row[f]) and len(row[f]) == len(tokens)
                              and (f != "labels" or not row[f] or not isinstance(row[f][0], dict))), None)
            if tag_field is not None:
                spans = _read_spans([t.strip() for t in row[tag_field]], [number] * len(tokens), path, scheme, mode,
                                    repaired)
            elif isinstance(row.get("spans"), list):
                try:
                    spans = sorted(Span(int(s["start"]), int(s["end"]), str(s["type"])) for s in row["spans"])
                except (KeyError, TypeError, ValueError):
                    raise DataFormatError(f"field 'spans': each span needs type, start and end: {row['spans']!r}",
                                          path, number) from None
                bad = [s for s in spans if s.end > len(tokens)]
                if bad:
                    raise DataFormatError(f"field 'spans': {bad[0]} is outside the {len(tokens)} tokens", path, number)
            else:
                present = [f for f in _TAG_FIELDS if f in row]
                detail = (f"field {present[0]!r} must hold one string tag per token ({len(tokens)})" if present
                          else "a line with 'tokens' needs 'ner_tags' (or 'tags') or token 'spans'")
                raise DataFormatError(detail, path, number)
        elif "text" in row:
            raw = row["text"]
            if not isinstance(raw, str):
                raise DataFormatError("field 'text' must be a string", path, number)
            field = next((f for f in _SPAN_FIELDS if f in row), None)
            char_spans = _jsonl_char_spans(row[field], field, path, number, raw) if field else []
            tokens, offsets = tokenize_with_offsets(raw)
            spans = []
            for start, end, label in char_spans:
                token_range = char_span_to_tokens(offsets, start, end)
                if token_range is not None:
                    spans.append(Span(token_range[0], token_range[1], label))
            spans = flatten_outermost(spans)
        else:
            raise DataFormatError("a line needs 'tokens' (with 'ner_tags' or 'spans') or 'text' (with 'spans')",
                                  path, number)
        if not tokens:
            continue
        sentences.append(Sentence(list(tokens), spans, id=str(row.get("id", f"{path.stem}-{len(sentences)}")),
                                  domain=row.get("domain"), document_id=row.get("document_id")))
    if not sentences:
        raise DataFormatError("no sentences found", path)
    _warn_repaired(path, repaired)
    return sentences
