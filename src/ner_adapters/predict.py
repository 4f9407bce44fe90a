"""``ner-adapters predict``: tag a corpus with any trained artifact, resumably, on one or many processes.

Input documents come from plain text (one document per line, its id the line number), JSONL (``text``, optional
``id``; or ``tokens``), a CoNLL file, or any dataset :func:`ner_adapters.data.load_ner_dataset` reads (a split of
it). The model is anything :func:`ner_adapters.pipeline` loads: a CLLMFS adapter (with its or other entity
types), a saved Multi-BERT set or router (routed), one domain adapter, a Hub id or a folder. The pipeline keeps
offsets over long documents (Multi-BERT tags each sentence, in overlapping windows when longer than the core's
``max_length``; CLLMFS reads overlapping chunks), so nothing is truncated.

Output is JSONL, one line per document in input order::

    {"id": "3", "text": "...", "entities": [{"type": "PER", "start": 0, "end": 4, "word": "Mary", "score": 0.93}],
     "domain": "email", "domain_score": 0.82}          # domain fields only when a router chose the adapter

or CoNLL (``# id = ...`` then one ``token TAB tag`` line per token, IOB2). Lines are appended and flushed batch by
batch: a run that was interrupted, run again with the same output, cuts the torn last line (if any), checks that
the lines it keeps are this input's first documents, and tags only the rest.

Under ``accelerate launch`` with N processes, the documents left to tag are cut into N contiguous shards; each
rank writes its shard to ``OUTPUT.partR-of-N`` (resumable the same way), and after a barrier the main process
appends the parts in rank order to the output, which is then what a single process writes with the same
``--batch-size``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .data.readers import json_lines, read_conll, read_ner_jsonl, read_text, tokenize_with_offsets
from .data.schema import DataFormatError
from .spans import char_span_to_tokens, flatten_outermost, spans_to_tags, token_char_offsets, token_span_to_char

INPUT_FORMATS = ("text", "jsonl", "conll", "dataset")
OUTPUT_FORMATS = ("jsonl", "conll")
_TAG = ("O", "B-", "I-", "E-", "S-", "L-", "U-")
_ID_COMMENT = "# id = "


@dataclass
class Document:
    """One unit to tag: its id, its text, and its tokens when the input had them (CoNLL, datasets)."""

    id: str
    text: str
    tokens: list[str] | None = None


# --- input -----------------------------------------------------------------------------------------------------


def _looks_like_conll(path: Path) -> bool:
    """A ``.txt`` file is CoNLL when its first lines are ``token ... TAG`` lines (blank lines between sentences)."""
    text = read_text(path)
    lines = [line for line in text.splitlines()[:200] if line.strip()][:50]
    if not lines:
        return False
    return all(len(line.split()) >= 2 and line.split()[-1].startswith(_TAG) for line in lines)


def detect_input_format(source: str | os.PathLike) -> str:
    """``jsonl``, ``conll`` or ``text`` for a file (suffix, then content), ``dataset`` for anything else."""
    path = Path(source)
    if not path.is_file():
        return "dataset"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith((".conll", ".conllx", ".iob", ".iob2", ".bio", ".tsv")):
        return "conll"
    return "conll" if _looks_like_conll(path) else "text"


def read_documents(source: str | os.PathLike, *, input_format: str | None = None, split: str = "test",
                   data_dir: str | os.PathLike | None = None) -> list[Document]:
    """The documents of ``source`` in order (see the module docstring for the formats and their ids)."""
    input_format = input_format or detect_input_format(source)
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input format must be one of {', '.join(INPUT_FORMATS)}, got {input_format!r}")
    path = Path(source)
    if input_format == "dataset":
        from .data.registry import load_sentences

        return [Document(s.id, s.text, list(s.tokens)) for s in load_sentences(os.fspath(source), split=split,
                                                                              data_dir=data_dir)]
    if not path.is_file():
        from .paths import missing_path_error

        raise missing_path_error(path, "input file")
    if input_format == "conll":
        return [Document(s.id, s.text, list(s.tokens)) for s in read_conll(path)]
    text = read_text(path)
    documents: list[Document] = []
    seen: set[str] = set()
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        if input_format == "text":
            documents.append(Document(str(number), line))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(f"invalid JSON ({err.msg})", path, number) from None
        if not isinstance(row, dict) or not (isinstance(row.get("text"), str) or isinstance(row.get("tokens"), list)):
            raise DataFormatError("expected an object with a 'text' string (or a 'tokens' list)", path, number)
        tokens = [str(t) for t in row["tokens"]] if isinstance(row.get("tokens"), list) else None
        document = Document(str(row.get("id", number)), row["text"] if "text" in row else " ".join(tokens), tokens)
        if tokens is not None and document.text != " ".join(tokens):
            tokens = document.tokens = None  # the text is what is tagged; its own tokens are found again
        if document.id in seen:
            raise DataFormatError(f"duplicate id {document.id!r}", path, number)
        seen.add(document.id)
        documents.append(document)
    return documents


# --- the model --------------------------------------------------------------------------------------------------


def load_tagger(model: str, *, base: str | None = None, entity_types: Sequence[str] | Mapping[str, str] | None = None,
                device: Any = None, **kwargs):
    """:func:`ner_adapters.pipeline` for ``model`` (an adapter, a Multi-BERT set or router; folder or Hub id)."""
    from .pipelines import pipeline

    return pipeline("token-classification", model=base, adapter=model, entity_types=entity_types, device=device,
                    **kwargs)


def _is_routed(tagger, domain: str | None) -> bool:
    return bool(getattr(tagger, "has_router", False)) and domain in (None, "auto")


def tag_documents(tagger, documents: Sequence[Document], *, domain: str | None = None,
                  batch_size: int = 8) -> list[dict]:
    """The output records of ``documents`` (one pipeline call for the whole batch)."""
    if not documents:
        return []
    kwargs: dict[str, Any] = {"batch_size": batch_size}
    routed = _is_routed(tagger, domain)
    if domain is not None:
        kwargs["domain"] = domain
    if routed:
        kwargs["return_domain"] = True
    outputs = tagger([d.text for d in documents], **kwargs)
    records = []
    for document, output in zip(documents, outputs):
        entities = output["entities"] if routed else output
        record = {"id": document.id, "text": document.text, "entities": [
            {"type": e["entity_group"], "start": int(e["start"]), "end": int(e["end"]), "word": e["word"],
             "score": round(float(e["score"]), 4)} for e in entities]}
        if routed:
            record["domain"], record["domain_score"] = output["domain"], round(float(output["domain_score"]), 4)
        records.append(record)
    return records


# --- output -----------------------------------------------------------------------------------------------------


def _conll_block(record: dict, document: Document) -> str:
    if document.tokens is not None:
        tokens, offsets = document.tokens, token_char_offsets(document.tokens)
    else:
        tokens, offsets = tokenize_with_offsets(document.text)
    from .spans import Span

    spans = []
    for entity in record["entities"]:
        token_range = char_span_to_tokens(offsets, entity["start"], entity["end"])
        if token_range is not None:
            spans.append(Span(token_range[0], token_range[1], entity["type"]))
    tags = spans_to_tags(flatten_outermost(spans), len(tokens))
    return _ID_COMMENT + record["id"] + "\n" + "".join(f"{t}\t{g}\n" for t, g in zip(tokens, tags)) + "\n"


def _render(record: dict, document: Document, output_format: str) -> str:
    if output_format == "conll":
        return _conll_block(record, document)
    return json.dumps(record, ensure_ascii=False) + "\n"


def written_ids(path: Path, output_format: str) -> list[str]:
    """Ids of the complete records in ``path``, after cutting a torn tail (an interrupted write) off the file."""
    if not path.exists():
        return []
    data = path.read_bytes()
    if output_format == "conll":
        end = data.rfind(b"\n\n") + 2 if data.rfind(b"\n\n") >= 0 else 0
        if data[:end] and not data.startswith(_ID_COMMENT.encode()):
            raise DataFormatError("not a predict CoNLL output (no '# id = ' line first); choose another output",
                                  path)
    else:
        end = data.rfind(b"\n") + 1
    if end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
    text = data[:end].decode("utf-8")
    ids = []
    if output_format == "conll":
        ids = [line[len(_ID_COMMENT):] for line in text.split("\n") if line.startswith(_ID_COMMENT)]
    else:
        for number, line in enumerate(text.split("\n"), start=1):
            if not line:
                continue
            try:
                ids.append(str(json.loads(line)["id"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataFormatError("not a predict output line (no JSON object with 'id'); choose another output",
                                      path, number) from None
    return ids


def _resume_point(path: Path, output_format: str, documents: Sequence[Document], *, discard_foreign: bool) -> int:
    """How many of ``documents`` ``path`` already holds; a file holding other documents raises (or, for our own
    part files, ``discard_foreign``, is started again)."""
    ids = written_ids(path, output_format)
    expected = [d.id for d in documents[: len(ids)]]
    if ids != expected:
        if discard_foreign:
            path.unlink()
            return 0
        first = next(i for i, (a, b) in enumerate(zip(ids + [None], expected + [None])) if a != b)
        raise DataFormatError(
            f"holds predictions of other documents than this input's first {len(ids)} (record {first + 1}: id "
            f"{(ids + [None])[first]!r}, input id {(expected + [None])[first]!r}); use another --output or delete it",
            path)
    return len(ids)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class PredictReport:
    """What a run did: documents in the input, already written before, tagged now, and the speed."""

    output: Path
    documents: int
    skipped: int
    tagged: int
    sentences: int
    seconds: float
    processes: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def documents_per_second(self) -> float:
        return self.tagged / self.seconds if self.seconds else 0.0


def _count_sentences(documents: Iterable[Document]) -> int:
    from .multibert.router import split_sentences

    return sum(1 if d.tokens is not None else max(1, len(split_sentences(d.text))) for d in documents)


def _tag_to(path: Path, tagger, documents: Sequence[Document], *, output_format: str, domain: str | None,
            batch_size: int, progress: bool, position: int = 0) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(documents), unit="doc", desc=f"tagging {path.name}", disable=not progress,
               position=position, dynamic_ncols=True)
    try:
        for start in range(0, len(documents), batch_size):
            batch = documents[start:start + batch_size]
            records = tag_documents(tagger, batch, domain=domain, batch_size=batch_size)
            _append(path, "".join(_render(r, d, output_format) for r, d in zip(records, batch)))
            bar.update(len(batch))
    finally:
        bar.close()


def process_state():
    """accelerate's ``PartialState``, on CPU when no GPU is there (or ``ACCELERATE_USE_CPU`` says so).

    ``PartialState()`` alone only joins a CPU process group when told ``cpu=True`` (``AcceleratorState`` reads the
    launcher's ``ACCELERATE_USE_CPU``, ``PartialState`` does not), so the ranks of a CPU launch would each believe
    they are alone and all write every document.
    """
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def predict(documents: Sequence[Document], tagger, output: str | os.PathLike, *, output_format: str = "jsonl",
            domain: str | None = None, batch_size: int = 8, progress: bool = True) -> PredictReport:
    """Tag ``documents`` into ``output`` (see the module docstring: resumable, sharded under accelerate)."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"output format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    state = process_state()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if state.num_processes == 1:
        done = _resume_point(output, output_format, documents, discard_foreign=False)
        remaining = documents[done:]
        _tag_to(output, tagger, remaining, output_format=output_format, domain=domain, batch_size=batch_size,
                progress=progress)
        return PredictReport(output, len(documents), done, len(remaining), _count_sentences(remaining),
                             time.perf_counter() - started)
    # several processes: every rank reads the same output prefix (before anyone writes), then tags its shard
    if state.is_main_process:
        written_ids(output, output_format)  # cut a torn tail before any rank reads the file
    state.wait_for_everyone()
    done = _resume_point(output, output_format, documents, discard_foreign=False)
    remaining = documents[done:]
    world, rank = state.num_processes, state.process_index
    bounds = [len(remaining) * r // world for r in range(world + 1)]
    parts = [output.with_name(f"{output.name}.part{r}-of-{world}") for r in range(world)]
    shard = remaining[bounds[rank]:bounds[rank + 1]]
    resumed = _resume_point(parts[rank], output_format, shard, discard_foreign=True)
    _tag_to(parts[rank], tagger, shard[resumed:], output_format=output_format, domain=domain, batch_size=batch_size,
            progress=progress and state.is_main_process)
    state.wait_for_everyone()
    if state.is_main_process:
        for part in parts:  # parts are complete (the barrier): append them in input order, then remove them
            if part.exists():
                _append(output, part.read_text(encoding="utf-8"))
        for part in parts:
            part.unlink(missing_ok=True)
    state.wait_for_everyone()
    # all ranks together (parts resumed from an earlier run count as tagged now: they were not in the output)
    return PredictReport(output, len(documents), done, len(remaining), _count_sentences(remaining),
                         time.perf_counter() - started, processes=world)


# --- reading predictions and gold for evaluate --------------------------------------------------------------------


@dataclass
class Scored:
    """One document's spans for scoring: character offsets over ``text``, or token offsets when ``text`` is None
    (the span-only JSONL of earlier versions)."""

    text: str | None
    spans: list[tuple[int, int, str]]  # (start, end, type), as span_scores reads tuples


def _from_sentences(sentences) -> dict[str, Scored]:
    out = {}
    for s in sentences:
        out[s.id] = Scored(s.text, [(*token_span_to_char(s.tokens, sp.start, sp.end), sp.type) for sp in s.spans])
    return out


def _conll_ids(path: Path) -> list[str | None]:
    """The ``# id = `` of each block that has tokens (what predict's CoNLL output writes), ``None`` where absent."""
    ids: list[str | None] = []
    for block in read_text(path).replace("\r\n", "\n").split("\n\n"):
        lines = [line for line in block.split("\n") if line.strip()]
        if any(not line.startswith(_ID_COMMENT) for line in lines):
            ids.append(next((line[len(_ID_COMMENT):] for line in lines if line.startswith(_ID_COMMENT)), None))
    return ids


def read_scored(path: str | os.PathLike, *, split: str = "test", data_dir: str | os.PathLike | None = None
                ) -> dict[str, Scored]:
    """Gold or predictions for ``ner-adapters evaluate``, keyed by id, from any of:

    - ``predict``'s JSONL (``text`` + ``entities`` with character offsets) or any JSONL of ``text`` + character
      ``spans``/``entities``;
    - JSONL of ``tokens`` + ``ner_tags`` (or token ``spans``): scored in characters over the space-joined tokens,
      which is the text ``predict`` tags for token input;
    - CoNLL (gold files, or ``predict --output-format conll``; its ``# id = `` lines give the ids);
    - the span-only JSONL ``{"id", "spans": [{type, start, end}]}`` (token offsets, no text);
    - any other dataset (a registered name, a folder, a Hub id): its ``split``, with the ids and texts ``predict``
      gives the same dataset's documents.
    """
    from .data.readers import _jsonl_char_spans, read_span_jsonl

    path = Path(path)
    if not path.is_file():
        from .data.registry import load_sentences

        return _from_sentences(load_sentences(os.fspath(path), split=split, data_dir=data_dir))
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith((".jsonl", ".json", ".ndjson")):
        sentences = read_conll(path, comment_prefix=_ID_COMMENT)
        ids = _conll_ids(path)
        if len(ids) == len(sentences) and all(ids):
            for sentence, sentence_id in zip(sentences, ids):
                sentence.id = sentence_id
        return _from_sentences(sentences)
    rows = list(json_lines(path))
    shapes = {"text" if isinstance(r, dict) and "text" in r else "tokens" if isinstance(r, dict) and "tokens" in r
              else "spans" for _, r in rows}
    if len(shapes) > 1:
        raise DataFormatError(f"mixes lines with {', '.join(sorted(shapes))}; use one shape per file", path)
    shape = shapes.pop() if shapes else "spans"
    if shape == "tokens":
        return _from_sentences(read_ner_jsonl(path))
    if shape == "spans":
        return {key: Scored(None, [(int(s["start"]), int(s["end"]), str(s.get("type", s.get("entity_group"))))
                                   for s in spans]) for key, spans in read_span_jsonl(path).items()}
    out: dict[str, Scored] = {}
    for number, row in rows:
        text = row["text"]
        if not isinstance(text, str):
            raise DataFormatError("field 'text' must be a string", path, number)
        field_name = next((f for f in ("entities", "spans", "labels") if f in row), None)
        spans = _jsonl_char_spans(row[field_name], field_name, path, number, text) if field_name else []
        key = str(row.get("id", number))
        if key in out:
            raise DataFormatError(f"duplicate id {key!r}", path, number)
        out[key] = Scored(text, spans)
    return out


def score_files(gold_path: str | os.PathLike, pred_path: str | os.PathLike, *, types: Sequence[str] | None = None,
                gold_split: str = "test", data_dir: str | os.PathLike | None = None):
    """``(NERScores, missing ids)`` of predictions against gold (any pair :func:`read_scored` reads; a gold
    dataset is read at ``gold_split``).

    Documents are matched by id; a predicted id the gold lacks, a document whose two texts differ, or a token-offset
    file scored against a character-offset one raises, naming the file and id. CoNLL predictions without ids are
    matched to the gold by position.
    """
    from .metrics import span_scores

    gold = read_scored(gold_path, split=gold_split, data_dir=data_dir)
    if not Path(pred_path).is_file():
        from .paths import missing_path_error

        raise missing_path_error(pred_path, "predictions file")
    pred = read_scored(pred_path)
    if set(pred) - set(gold) and len(pred) == len(gold) and all(p.text is not None for p in pred.values()) \
            and not Path(pred_path).name.lower().endswith((".jsonl", ".json")):
        pred = dict(zip(gold, pred.values()))  # CoNLL predictions of the same file, in its order
    unknown = [key for key in pred if key not in gold]
    if unknown:
        raise DataFormatError(f"{len(unknown)} predicted id(s) are not in the gold file {gold_path}, e.g. "
                              f"{unknown[:3]}", pred_path)
    for key, predicted in pred.items():
        reference = gold[key]
        if (reference.text is None) != (predicted.text is None):
            raise DataFormatError(f"id {key!r}: one file has character offsets over a text and the other token "
                                  "offsets without one; score predict's output against CoNLL, tokens + tags JSONL "
                                  "or text + spans JSONL gold", pred_path)
        if reference.text is not None and reference.text != predicted.text:
            raise DataFormatError(f"id {key!r}: the predicted text differs from the gold text ({predicted.text[:40]!r}"
                                  f" vs {reference.text[:40]!r}); were they made from the same input?", pred_path)
    missing = [key for key in gold if key not in pred]
    keys = list(gold)
    scores = span_scores([gold[k].spans for k in keys], [pred[k].spans if k in pred else [] for k in keys],
                         types=types)
    return scores, missing


__all__ = ["Document", "INPUT_FORMATS", "OUTPUT_FORMATS", "PredictReport", "Scored", "detect_input_format",
           "load_tagger", "predict", "read_documents", "read_scored", "score_files", "tag_documents", "written_ids"]
