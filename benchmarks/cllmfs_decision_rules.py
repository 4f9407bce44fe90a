#!/usr/bin/env python
"""How much of a CLLMFS episode's F1 is lost to the none/entity decision alone: a diagnostic, not a method.

    python benchmarks/cllmfs_decision_rules.py outputs/cllmfs/conll2003_to_uner_en_ewt_q500/cllmfs_qwen05b_5sets_2ep \\
        --episodes 0 2 3

For each finished episode of a harness run it loads the episode's saved adapter, answers every (query sentence,
type) prompt once with the entity list forced open (recording the model's probability ``p`` of listing an
entity rather than answering "none", as ``none_threshold: auto`` does on held-back support sentences), and
scores decision rules on that one pass, without generating again:

- ``greedy_0.5``: list the entities when ``p >= 0.5`` (greedy decoding's choice, up to tokens that could begin
  both answers);
- ``per_type_otsu``: what ``none_threshold: split`` keeps (``ner_adapters.cllmfs.extraction.split_decisions``):
  per type, the cut that best splits that type's ``log p/(1-p)`` over the queries into two groups (Otsu; no
  labels: it reads only the unlabelled queries being tagged);
- ``per_type_otsu_le_half``: the same split with every cut capped at ``p`` 0.5, so it only adds answers to
  ``greedy_0.5``'s (``split_decisions(..., max_threshold=0.5)``);
- ``content_free``: per type, ``p`` must exceed what the model gives a content-free sentence ("N/A"), the
  contextual calibration of Zhao et al. (2021);
- ``keep_all``: every forced list kept; its recall (``recall_ceiling``) is the most any none/entity rule can
  reach with this adapter, since a rule only chooses which of these lists to keep;
- ``per_type``: for each type, the share of its forced answers greedy keeps, its split's cut and the F1 change
  from that type's split alone (greedy's 0.5 for the others): where the split gains (a type greedy under-answers,
  or floods on data that rarely holds it) and where it loses;
- ``oracle_global`` / ``oracle_per_type``: the thresholds (a grid of 0.01; per type by coordinate ascent from
  the global one) that score best on the queries' own gold labels: about the most a threshold can do, chosen on
  the test queries, so never a result.

The forced pass is cached as ``decision_rules/episode-<i>.jsonl`` in the run folder; a second call re-scores it.
A run decoded with ``none_threshold: split`` saved that pass as ``episode-<i>/forced_pass.jsonl``: it is read
from there (only the content-free prompt is answered), so such a run gives greedy, the split and the capped split
on the same adapter without decoding its queries again.
Every rule's answers go through the same overlap resolution as the run's extraction (``resolve_overlaps`` in its
``config.yaml``, so ``per_type_otsu`` is what the harness's ``split`` scores on the same adapter); the recall
ceiling keeps every answer. Prints one table (micro-F1 in %) and writes ``decision_rules/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

CONTENT_FREE = "N/A"


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def forced_pass(run: Path, index: int, episode, cache: Path) -> tuple[list[list[dict]], dict[str, float]]:
    """Every query prompt answered with its list forced open (cached): rows of entities with ``_p_entity``."""
    if cache.exists():
        data = [json.loads(line) for line in cache.read_text().splitlines()]
        return data[0]["rows"], data[0]["content_free"]
    import dataclasses

    import yaml

    from ner_adapters.cllmfs import CLLMFSExtractor
    from ner_adapters.cllmfs.extraction import DecodingConfig
    from ner_adapters.cllmfs.experiment import support_type_parts
    from ner_adapters.spans import token_char_offsets

    config = yaml.safe_load((run / "config.yaml").read_text())
    _, query_types = support_type_parts(episode, config["episodes"].get("types_file"))
    decoding = DecodingConfig(**{k: v for k, v in config["decoding"].items()
                                 if k not in ("none_threshold", "split_max_threshold")})
    extractor = CLLMFSExtractor.from_pretrained(config["model"]["model_name_or_path"], run / f"episode-{index}" / "adapter",
                                                entity_types=query_types, prompt_mode=config["method"]["prompt_mode"],
                                                decoding=dataclasses.replace(decoding, none_threshold=0.0,
                                                                             resolve_overlaps="none"))
    extractor._call.record = True
    harness_pass = run / f"episode-{index}" / "forced_pass.jsonl"
    if harness_pass.exists():  # a `none_threshold: split` run already answered every prompt with its list open
        lines = [json.loads(line) for line in harness_pass.read_text().splitlines()][:len(episode.query)]
        ids = [line["id"] for line in lines]
        if ids != [s.id for s in episode.query]:
            raise SystemExit(f"{harness_pass}: its sentences are not episode {index}'s queries "
                             f"(first ids {ids[:3]} vs {[s.id for s in episode.query[:3]]})")
        rows = [line["entities"] for line in lines]
    else:
        offsets = [token_char_offsets(s.tokens) for s in episode.query]
        rows = extractor.extract([s.text for s in episode.query], boundaries=offsets, show_progress=True)
    free = extractor.extract([CONTENT_FREE])[0]
    extractor._call.record = False
    content_free = {e["entity_group"]: e["_p_entity"] for e in free if "_p_entity" in e}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"rows": rows, "content_free": content_free}) + "\n")
    return rows, content_free


def score(episode, rows, keep, measure: str = "f1", overlaps: str = "none") -> float:
    """Micro ``measure`` (%) of the answers ``keep`` accepts, overlaps across types settled by ``overlaps``."""
    from ner_adapters.cllmfs.extraction import _token_spans, finalise_entities
    from ner_adapters.metrics import span_scores
    from ner_adapters.spans import token_char_offsets

    predictions = []
    for sentence, row in zip(episode.query, rows):
        kept = finalise_entities([e for e in row if keep(e)], overlaps)
        predictions.append(_token_spans(token_char_offsets(sentence.tokens), kept))  # finalise_entities deduplicated
    gold = [s.spans for s in episode.query[:len(rows)]]
    return 100 * getattr(span_scores(gold, predictions, types=list(episode.query_types)).micro, measure)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--episodes", type=int, nargs="*", default=None)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N queries (a quick check; not cached).")
    parser.add_argument("--resolve_overlaps", choices=("score", "none"), default=None,
                        help="How answers of several types on one span are settled before scoring (default: as "
                             "the run's config.yaml decoded; the forced pass itself keeps them all).")
    args = parser.parse_args(argv)
    import functools

    import yaml

    decoding = yaml.safe_load((args.run / "config.yaml").read_text()).get("decoding", {})
    overlaps = args.resolve_overlaps or decoding.get("resolve_overlaps", "score")
    rate = functools.partial(score, overlaps=overlaps)
    from ner_adapters.episodes import load_episodes

    episodes = load_episodes(args.run / "episodes.jsonl")
    indices = args.episodes if args.episodes is not None else range(len(episodes))
    table = {}
    for index in indices:
        episode = episodes[index]
        cache = args.run / "decision_rules" / f"episode-{index}.jsonl"
        if args.limit is not None:
            import dataclasses

            episode = dataclasses.replace(episode, query=episode.query[:args.limit])
            cache = cache.with_suffix(f".first{args.limit}.jsonl")
        rows, content_free = forced_pass(args.run, index, episode, cache)
        by_type: dict[str, list[float]] = {}
        for row in rows:
            for e in row:
                if "_p_entity" in e:
                    by_type.setdefault(e["entity_group"], []).append(_logit(e["_p_entity"]))
        from ner_adapters.cllmfs.extraction import SPLIT_MIN_ANSWERS, otsu_cut, split_decisions

        cuts = {t: otsu_cut(v) for t, v in by_type.items()}
        split = split_decisions(rows)
        result = {
            "greedy_0.5": rate(episode, rows, lambda e: e["_p_entity"] >= 0.5),
            "per_type_otsu": rate(episode, split, lambda e: True),  # what none_threshold: split keeps
            "per_type_otsu_le_half": rate(episode, split_decisions(rows, max_threshold=0.5), lambda e: True),
            "content_free": rate(episode, rows, lambda e: e["_p_entity"] > content_free.get(e["entity_group"], 0.5)),
            "keep_all": rate(episode, rows, lambda e: True),
            # every answer kept, none settled: no none/entity rule can list more of the gold mentions
            "recall_ceiling": score(episode, rows, lambda e: True, measure="recall"),
        }
        grid = [i / 100 for i in range(1, 100)]
        global_best = max(grid, key=lambda t: rate(episode, rows, lambda e: e["_p_entity"] >= t))
        result["oracle_global"] = rate(episode, rows, lambda e: e["_p_entity"] >= global_best)
        best = {label: global_best for label in by_type}  # per type by coordinate ascent from the global best
        for _ in range(2):
            for label in by_type:
                best[label] = max(grid, key=lambda t, label=label: rate(
                    episode, rows, lambda e: e["_p_entity"] >= (t if e["entity_group"] == label else best[e["entity_group"]])))
        result["oracle_per_type"] = rate(episode, rows, lambda e: e["_p_entity"] >= best[e["entity_group"]])
        # Each type's split applied alone (0.5 for the others): where the split gains or loses, and whether greedy
        # under-answered (kept few of the type's forced answers) or flooded (kept nearly all) that type.
        greedy = result["greedy_0.5"]
        result["per_type"] = {}
        for label, values in sorted(by_type.items()):
            cut = cuts[label] if len(values) >= SPLIT_MIN_ANSWERS else 0.0
            alone = rate(episode, rows, lambda e, label=label, cut=cut: _logit(e["_p_entity"]) >= (
                cut if e["entity_group"] == label else 0.0))
            result["per_type"][label] = {"greedy_kept_share": round(sum(v >= 0.0 for v in values) / len(values), 3),
                                         "split_cut_p": round(1 / (1 + math.exp(-cut)), 3),
                                         "split_alone_gain": round(alone - greedy, 2)}
        result["resolve_overlaps"] = overlaps
        result["p_quartiles"] = {t: [round(1 / (1 + math.exp(-sorted(v)[int(q * (len(v) - 1))])), 3)
                                     for q in (0.1, 0.5, 0.9)] for t, v in by_type.items()}
        result["otsu_cuts_p"] = {t: round(1 / (1 + math.exp(-c)), 3) for t, c in cuts.items()}
        result["content_free_p"] = {t: round(p, 3) for t, p in content_free.items()}
        table[index] = result
        print(index, json.dumps(result), flush=True)
    out = args.run / "decision_rules" / "summary.json"
    if args.limit is None:  # merged with earlier calls' episodes, so runs on separate episodes add up
        kept = json.loads(out.read_text()) if out.exists() else {}
        kept.update({str(i): r for i, r in table.items()})
        out.parent.mkdir(parents=True, exist_ok=True)
        temporary = out.with_name(out.name + ".tmp")
        temporary.write_text(json.dumps(dict(sorted(kept.items(), key=lambda kv: int(kv[0]))), indent=2) + "\n")
        temporary.replace(out)
    names = ["greedy_0.5", "per_type_otsu", "per_type_otsu_le_half", "content_free", "keep_all", "oracle_global",
             "oracle_per_type", "recall_ceiling"]
    print("| episode | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for index, result in table.items():
        print(f"| {index} | " + " | ".join(f"{result[n]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
