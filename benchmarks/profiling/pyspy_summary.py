"""Shares of a py-spy raw profile (``--format raw``) by phase, for the two profiling targets in this folder.

    python benchmarks/profiling/pyspy_summary.py extract.txt      # CLLMFS extraction phases
    python benchmarks/profiling/pyspy_summary.py multibert.txt    # Multi-BERT routed pipeline phases
"""

import collections
import sys

# (label, substring or tuple of substrings): a sample counts for a label when its stack holds all of them.
EXTRACT = [
    ("prefill: generate's first forward", "generation/utils.py:2786"),
    ("decode steps: generate's later forwards", "generation/utils.py:2789"),
    ("prefix KV caches: computing them", ("_encode_batch", "LlamaModel.forward")),
    ("constraint processor: SubstringConstraint.__call__", "SubstringConstraint.__call__"),
    ("constraint set-up: grammar, vocabulary trie", "SubstringConstraint.__init__"),
    ("log-prob recorder", "_TokenLogProbs"),
    ("reading answers", "_read_answer"),
]
MULTIBERT = [
    ("model forward (any)", "MultiBertModel._forward"),
    ("tagging: predict_mixed", "predict_mixed"),
    ("router: classify", "MultiBertModel.classify"),
    ("tokenizer calls", "_batch_encode_plus"),
    ("entities from labels", "entities_from_labels"),
    ("adapter switching", "_set_active"),
]


def main():
    path = sys.argv[1]
    lines = open(path, encoding="utf-8").read().splitlines()
    multibert = any("tag_many" in line for line in lines)
    root = "tag_many" if multibert else "predict_sentences"
    rules = MULTIBERT if multibert else EXTRACT
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if root not in stack:
            continue
        total += int(n)
        for label, needles in rules:
            if all(needle in stack for needle in ((needles,) if isinstance(needles, str) else needles)):
                counts[label] += int(n)
    print(f"{total} samples under {root} (the warm-up call included)")
    for label, _ in rules:
        print(f"{100 * counts[label] / max(total, 1):5.1f}%  {label}")


if __name__ == "__main__":
    main()
