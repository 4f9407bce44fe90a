"""Keep the finished part of long runs in git, and put it back, so a stopped session loses no episode.

``outputs/`` is not tracked: a fresh checkout starts without it. A CLLMFS experiment reuses every episode whose
``episode-<i>/results.json`` is present when its ``config.yaml`` matches (``ner_adapters.cllmfs.experiment``),
and a Multi-BERT run's ``results.json`` is what ``benchmarks/multibert_summary.py`` reads. Those small files
(no weights, no predictions) are copied under ``docs/results/runs/`` mirroring their place under ``outputs/``:

    python benchmarks/keep_runs.py save outputs/cllmfs/conll2003_intra_q500/cllmfs_qwen05b_5sets_2ep
    python benchmarks/keep_runs.py restore docs/results/runs/cllmfs/conll2003_intra_q500/cllmfs_qwen05b_5sets_2ep

then the run's own command, unchanged, continues with the episodes that are missing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
OUTPUTS = REPO_ROOT / "outputs"
KEPT = REPO_ROOT / "docs" / "results" / "runs"
# What a run needs to be continued or summarised (``command.txt``: the command ``cllmfs_summary.py`` records),
# and the decision-rules diagnostic's summary behind docs/results.md's tables; everything else (adapters,
# checkpoints, predictions, the diagnostic's forced passes) is rebuilt.
PATTERNS = ("config.yaml", "command.txt", "results.json", "episode-*/results.json", "decision_rules/summary.json")


def _relative(folder: Path, root: Path) -> Path:
    try:
        return folder.resolve().relative_to(root.resolve())
    except ValueError:
        raise SystemExit(f"{folder}: not under {root}") from None


def copy_run(source: Path, destination: Path) -> list[Path]:
    """Copy the kept files of one run folder; returns the files written (relative to ``destination``)."""
    if not source.is_dir():
        raise SystemExit(f"{source}: no such run folder")
    written = []
    for pattern in PATTERNS:
        for path in sorted(source.glob(pattern)):
            relative = path.relative_to(source)
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary = target.with_name(target.name + ".tmp")
            shutil.copyfile(path, temporary)
            temporary.replace(target)  # atomic: a stopped copy leaves the previous file, never half of one
            written.append(relative)
    if not written:
        raise SystemExit(f"{source}: no config.yaml or results.json to keep")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("save", "restore"))
    parser.add_argument("runs", nargs="+", type=Path,
                        help="run folders: under outputs/ to save, under docs/results/runs/ to restore")
    args = parser.parse_args(argv)
    for run in args.runs:
        if args.action == "save":
            destination = KEPT / _relative(run, OUTPUTS)
        else:
            destination = OUTPUTS / _relative(run, KEPT)
        written = copy_run(run, destination)
        print(f"{run} -> {destination}: {len(written)} file(s)", file=sys.stderr)


if __name__ == "__main__":
    main()
