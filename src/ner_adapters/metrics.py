"""Span-level NER scores: exact type and boundaries, micro / macro / per type.

One implementation for every method in the project (CLLMFS, Multi-BERT, the baselines), on spans or on
IOB2 tag sequences. On tag sequences ``mode="drop"`` (the default) scores exactly like
``seqeval.metrics.classification_report(..., mode="strict", scheme=IOB2)``; ``mode="repair"`` like
seqeval's default (conlleval) mode.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

from .spans import Span, tags_to_spans

METRIC_MODULE = Path(__file__).parent / "metrics_module" / "span_f1"


@dataclass(frozen=True)
class PRF:
    """Precision, recall and F1 with the counts they come from."""

    precision: float
    recall: float
    f1: float
    tp: int
    predicted: int
    gold: int

    @classmethod
    def from_counts(cls, tp: int, predicted: int, gold: int) -> "PRF":
        precision = tp / predicted if predicted else 0.0
        recall = tp / gold if gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return cls(precision, recall, f1, tp, predicted, gold)


@dataclass(frozen=True)
class NERScores:
    """Micro scores over all spans, macro-F1 over types, and per-type scores."""

    micro: PRF
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_type: dict[str, PRF]

    def to_dict(self) -> dict:
        return {
            "micro": asdict(self.micro),
            "macro": {"precision": self.macro_precision, "recall": self.macro_recall, "f1": self.macro_f1},
            "per_type": {t: asdict(s) for t, s in self.per_type.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "NERScores":
        """The inverse of :meth:`to_dict` (scores read back from a results JSON)."""
        return cls(
            micro=PRF(**data["micro"]), macro_precision=data["macro"]["precision"], macro_recall=data["macro"]["recall"],
            macro_f1=data["macro"]["f1"], per_type={t: PRF(**s) for t, s in data["per_type"].items()},
        )

    def table(self, digits: int = 4) -> str:
        """A plain-text report in the style of seqeval's ``classification_report``."""
        width = max([len(t) for t in self.per_type] + [9])
        lines = [f"{'':>{width}}  precision    recall        f1   support"]
        for name, s in sorted(self.per_type.items()):
            lines.append(f"{name:>{width}}  {s.precision:9.{digits}f} {s.recall:9.{digits}f} {s.f1:9.{digits}f} {s.gold:9d}")
        m = self.micro
        lines.append("")
        lines.append(f"{'micro avg':>{width}}  {m.precision:9.{digits}f} {m.recall:9.{digits}f} {m.f1:9.{digits}f} {m.gold:9d}")
        lines.append(f"{'macro avg':>{width}}  {self.macro_precision:9.{digits}f} {self.macro_recall:9.{digits}f} "
                     f"{self.macro_f1:9.{digits}f} {m.gold:9d}")
        return "\n".join(lines)


def _as_key(span: Any) -> tuple[str, int, int]:
    """``(type, start, end)`` from a :class:`Span`, a dict (``type`` or ``entity_group``) or a tuple."""
    if isinstance(span, Span):
        return span.type, span.start, span.end
    if isinstance(span, dict):
        entity_type = span.get("type", span.get("entity_group", span.get("entity")))
        if entity_type is None:
            raise ValueError(f"span {span} has no 'type' or 'entity_group'")
        return str(entity_type), int(span["start"]), int(span["end"])
    start, end, entity_type = span
    return str(entity_type), int(start), int(end)


def span_scores(
    gold: Sequence[Iterable[Any]], predicted: Sequence[Iterable[Any]], types: Sequence[str] | None = None
) -> NERScores:
    """Scores of predicted against gold spans, sentence by sentence.

    ``gold[i]`` and ``predicted[i]`` are the spans of sentence ``i`` (any mix of :class:`Span`, dicts with
    ``type``/``entity_group``, ``start`` and ``end``, or ``(start, end, type)`` tuples; token or character
    offsets, as long as both sides use the same). A span counts when type and both boundaries match.
    ``types`` restricts scoring to those types (also giving zero rows for types never seen); by default
    the types are those in gold or predictions, as seqeval does.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for gold_spans, pred_spans in zip(gold, predicted):
        g = {_as_key(s) for s in gold_spans}
        p = {_as_key(s) for s in pred_spans}
        n_gold.update(k[0] for k in g)
        n_pred.update(k[0] for k in p)
        tp.update(k[0] for k in g & p)
    scored = list(types) if types is not None else sorted(set(n_gold) | set(n_pred))
    per_type = {t: PRF.from_counts(tp[t], n_pred[t], n_gold[t]) for t in scored}
    micro = PRF.from_counts(sum(tp[t] for t in scored), sum(n_pred[t] for t in scored), sum(n_gold[t] for t in scored))
    count = len(per_type) or 1
    return NERScores(
        micro=micro,
        macro_precision=sum(s.precision for s in per_type.values()) / count,
        macro_recall=sum(s.recall for s in per_type.values()) / count,
        macro_f1=sum(s.f1 for s in per_type.values()) / count,
        per_type=per_type,
    )


#: What :func:`span_errors` counts, in this order: every predicted span falls in one of the first four kinds,
#: and ``missed`` counts gold spans that no prediction even overlaps.
ERROR_KINDS = ("correct", "wrong_type", "boundary", "spurious", "missed")


def span_errors(gold: Sequence[Iterable[Any]], predicted: Sequence[Iterable[Any]]) -> dict[str, int]:
    """Where predictions go wrong, sentence by sentence (the same span forms as :func:`span_scores`).

    A predicted span is ``correct`` (type and boundaries), ``wrong_type`` (a gold span's exact boundaries under
    another type), ``boundary`` (overlaps a gold span, other boundaries) or ``spurious`` (overlaps none);
    ``missed`` counts gold spans that no predicted span overlaps. F1 alone cannot tell a model that finds the
    entities but names them wrongly from one that does not find them.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted ones")
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for gold_spans, pred_spans in zip(gold, predicted):
        g = {_as_key(s) for s in gold_spans}
        p = {_as_key(s) for s in pred_spans}
        bounds = {(start, end) for _, start, end in g}
        overlaps = lambda a, b: a[1] < b[2] and b[1] < a[2]  # noqa: E731  (half-open [start, end))
        for key in p:
            if key in g:
                counts["correct"] += 1
            elif key[1:] in bounds:
                counts["wrong_type"] += 1
            elif any(overlaps(key, other) for other in g):
                counts["boundary"] += 1
            else:
                counts["spurious"] += 1
        counts["missed"] += sum(1 for key in g if not any(overlaps(key, other) for other in p))
    return counts


def sequence_scores(
    gold_tags: Sequence[Sequence[str]],
    predicted_tags: Sequence[Sequence[str]],
    *,
    scheme: str = "IOB2",
    mode: Literal["drop", "repair"] = "drop",
    types: Sequence[str] | None = None,
) -> NERScores:
    """Scores of tag sequences (see the module docstring for how ``mode`` matches seqeval)."""
    if len(gold_tags) != len(predicted_tags):
        raise ValueError(f"{len(gold_tags)} gold sequences but {len(predicted_tags)} predicted ones")
    for i, (g, p) in enumerate(zip(gold_tags, predicted_tags)):
        if len(g) != len(p):
            raise ValueError(f"sequence {i}: {len(g)} gold tags but {len(p)} predicted tags")
    ignore = lambda position: None  # noqa: E731  (repairs are the point of mode="repair", not news)
    gold = [tags_to_spans(t, scheme, mode, on_repair=ignore) for t in gold_tags]
    pred = [tags_to_spans(t, scheme, mode, on_repair=ignore) for t in predicted_tags]
    return span_scores(gold, pred, types)


def summarize(runs: Sequence[NERScores]) -> dict:
    """Mean and (sample) standard deviation of several runs' scores (episodes, seeds or domains)."""
    import statistics

    def stats(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}

    if not runs:
        raise ValueError("no runs to summarize")
    types = sorted({t for run in runs for t in run.per_type})
    return {
        "runs": len(runs),
        "micro_precision": stats([r.micro.precision for r in runs]),
        "micro_recall": stats([r.micro.recall for r in runs]),
        "micro_f1": stats([r.micro.f1 for r in runs]),
        "macro_f1": stats([r.macro_f1 for r in runs]),
        "per_type_f1": {t: stats([r.per_type[t].f1 for r in runs if t in r.per_type]) for t in types},
    }


def load_metric():
    """The ``evaluate`` metric module of these scores, loaded from its local folder (works offline)."""
    import evaluate

    return evaluate.load(str(METRIC_MODULE))


__all__ = ["METRIC_MODULE", "NERScores", "PRF", "load_metric", "sequence_scores", "span_scores", "summarize"]
