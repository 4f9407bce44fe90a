"""Markdown tables of finished CLLMFS runs, read from their summary ``results.json``.

Tables in ``docs/results.md`` are pasted from this, never typed by hand::

    python -m ner_adapters.cllmfs.report outputs/cllmfs/wnut17_intra_5shot outputs/cllmfs/wnut17_proto
    python -m ner_adapters.cllmfs.report --errors outputs/cllmfs/wnut17_intra_5shot outputs/cllmfs/wnut17_proto

``--errors`` reads every episode's ``predictions.jsonl`` and sorts the predicted spans into right, right
boundaries under a wrong type, wrong boundaries and spurious, and counts the gold spans nothing overlaps
(:func:`ner_adapters.metrics.span_errors`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

from ..metrics import ERROR_KINDS, span_errors


def load_summary(run_dir: str | os.PathLike) -> dict:
    """The summary ``results.json`` of a run folder written by ``recipes/sft_cllmfs.py``."""
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no summary results.json (is {run_dir} a finished run folder?)")
    summary = json.loads(path.read_text(encoding="utf-8"))
    for key in ("method", "micro_f1", "per_type_f1", "runs"):
        if key not in summary:
            raise ValueError(f"{path}: field {key!r} is missing; not a CLLMFS run summary")
    return summary


def _cell(stat: dict | None, runs: int) -> str:
    if stat is None:
        return "–"
    text = f"{100 * stat['mean']:.1f}"
    return f"{text} ± {100 * stat['std']:.1f}" if runs > 1 else text


def results_table(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> str:
    """One row per run (micro-F1, macro-F1, then per-type F1, in %; mean ± std over episodes when several)."""
    summaries = [load_summary(d) for d in run_dirs]
    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(summaries):
        raise ValueError(f"{len(labels)} labels for {len(summaries)} runs")
    types = sorted({t for s in summaries for t in s["per_type_f1"]})
    header = ["run", "method", "episodes", "micro-F1", "macro-F1", *types]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, s in zip(labels, summaries):
        runs = int(s["runs"])
        cells = [label, s["method"], str(runs), _cell(s["micro_f1"], runs), _cell(s.get("macro_f1"), runs)]
        cells += [_cell(s["per_type_f1"].get(t), runs) for t in types]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_errors(run_dir: str | os.PathLike) -> tuple[dict[str, int], int]:
    """:func:`span_errors` summed over a run's episodes (its ``episode-*/predictions.jsonl``), and their number."""
    files = sorted(Path(run_dir).glob("episode-*/predictions.jsonl"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no episode-*/predictions.jsonl (is it a finished run folder?)")
    total = dict.fromkeys(ERROR_KINDS, 0)
    for path in files:
        gold, predicted = [], []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                gold.append(record["gold"])
                predicted.append(record["spans"])
            except (ValueError, KeyError) as err:
                raise ValueError(f"{path}, line {number}: not a prediction record ({err})") from None
        for kind, count in span_errors(gold, predicted).items():
            total[kind] += count
    return total, len(files)


def errors_table(run_dirs: Sequence[str | os.PathLike], labels: Sequence[str] | None = None) -> str:
    """One row per run: predicted spans by kind (count and % of the predicted), and gold spans nothing overlaps."""
    labels = list(labels) if labels else [Path(d).name for d in run_dirs]
    if len(labels) != len(run_dirs):
        raise ValueError(f"{len(labels)} labels for {len(run_dirs)} runs")
    header = ["run", "episodes", "predicted", "correct", "wrong type", "wrong boundaries", "spurious",
              "gold missed (no overlap)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, run_dir in zip(labels, run_dirs):
        counts, episodes = run_errors(run_dir)
        predicted = sum(counts[k] for k in ERROR_KINDS[:4])
        share = lambda n: f"{n} ({100 * n / predicted:.0f}%)" if predicted else str(n)  # noqa: E731
        lines.append("| " + " | ".join([label, str(episodes), str(predicted), *(share(counts[k]) for k in ERROR_KINDS[:4]),
                                        str(counts["missed"])]) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders (each with a summary results.json)")
    parser.add_argument("--labels", nargs="*", help="row labels (default: the folder names)")
    parser.add_argument("--errors", action="store_true",
                        help="where the predictions go wrong (from each episode's predictions.jsonl) instead of F1")
    args = parser.parse_args(argv)
    print(errors_table(args.runs, args.labels) if args.errors else results_table(args.runs, args.labels))


if __name__ == "__main__":
    main()
