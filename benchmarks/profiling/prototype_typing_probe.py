"""Would CLLMFS's spans score higher typed by the support set's prototypes? A probe on finished episodes.

    python benchmarks/profiling/prototype_typing_probe.py outputs/cllmfs/conll2003_intra_q500/cllmfs_qwen05b_5sets_2ep

On CoNLL-2003 the LLM finds entity boundaries well but gives a third of its spans the wrong type, where the frozen
encoder's prototypes type well and find boundaries poorly (``python -m ner_adapters.cllmfs.report --errors``). This
probe keeps every span the run predicted (``episode-<i>/predictions.jsonl``) and only re-types it from the same
episode's support set (``episodes.jsonl``), with the encoder of the ProtoBERT baseline:

- ``span``: the span's vector is the mean of its words' vectors; each type's prototype is the mean of its support
  spans' vectors; the nearest prototype (squared Euclidean, as ProtoBERT) gives the type;
- ``words``: each word of the span takes its nearest *entity-type* word prototype (``O`` left out: the LLM already
  said it is an entity), and the span takes the majority (ties: the nearer summed distance). This is
  ``PrototypeTagger.type_spans``, what the harness's ``span_typing: prototype`` runs.

Prints micro-F1 and the error kinds of the run as saved and of each re-typing, per episode and over all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from ner_adapters.baselines import PrototypeTagger
from ner_adapters.data.schema import Sentence
from ner_adapters.episodes import load_episodes
from ner_adapters.metrics import span_errors, span_scores
from ner_adapters.spans import Span


def read_predictions(path: Path) -> dict[str, list[Span]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["id"]: [Span(s["start"], s["end"], s["type"]) for s in row["spans"]] for row in rows}


def span_vectors(tagger: PrototypeTagger, sentences: list[Sentence], spans: list[list[Span]]) -> list[list[torch.Tensor]]:
    return [[vectors[s.start:s.end].mean(0) for s in row] for vectors, row in zip(tagger.embed(sentences), spans)]


def retype(tagger: PrototypeTagger, support: list[Sentence], types: list[str], query: list[Sentence],
           predicted: list[list[Span]], mode: str) -> list[list[Span]]:
    if mode == "span":
        support_spans = [[s for s in sentence.spans if s.type in types] for sentence in support]
        by_type: dict[str, list[torch.Tensor]] = {}
        for row, vectors in zip(support_spans, span_vectors(tagger, support, support_spans)):
            for span, vector in zip(row, vectors):
                by_type.setdefault(span.type, []).append(vector)
        labels = [t for t in types if t in by_type]
        prototypes = torch.stack([torch.stack(by_type[t]).mean(0) for t in labels])
        out = []
        for row, vectors in zip(predicted, span_vectors(tagger, query, predicted)):
            out.append([Span(s.start, s.end, labels[int(torch.cdist(v[None], prototypes).argmin())])
                        for s, v in zip(row, vectors)])
        return out
    return tagger.fit(support, types).type_spans(query, predicted)  # what span_typing: prototype runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tagger = PrototypeTagger(args.encoder, method="proto")
    episodes = load_episodes(args.run / "episodes.jsonl")
    table: dict[str, list[float]] = {}
    scored = []  # the indices of the episodes whose predictions were saved
    for index, episode in enumerate(episodes):
        path = args.run / f"episode-{index}" / "predictions.jsonl"
        if not path.exists():
            continue
        scored.append(index)
        saved = read_predictions(path)
        query = episode.query
        predicted = [saved[s.id] for s in query]
        gold = [s.spans for s in query]
        types = list(episode.query_types)
        variants = {"as saved": predicted}
        for mode in ("span", "words"):
            variants[f"re-typed ({mode})"] = retype(tagger, episode.support, types, query, predicted, mode)
        for name, spans in variants.items():
            scores = span_scores(gold, spans, types=types)
            table.setdefault(name, []).append(100 * scores.micro.f1)
            print(f"episode {index} {name}: micro-F1 {100 * scores.micro.f1:.1f} (P {100 * scores.micro.precision:.1f}, "
                  f"R {100 * scores.micro.recall:.1f}); {span_errors(gold, spans)}", flush=True)
    if not scored:
        print(f"{args.run}: no episode-<i>/predictions.jsonl to re-type", file=sys.stderr)
        return 1
    print(f"\n| typing | {' | '.join(f'episode {i}' for i in scored)} | mean |")
    print("|---|" + "---|" * (len(scored) + 1))
    for name, values in table.items():
        print(f"| {name} | {' | '.join(f'{v:.1f}' for v in values)} | {statistics.mean(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
