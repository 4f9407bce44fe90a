"""Test F1 of a saved Multi-BERT set on its recipe's test splits, without training again.

    python benchmarks/multibert_evaluate.py outputs/multibert/formal_informal_full/model \
        --config recipes/multibert/formal_informal.yaml

For a saved set whose run wrote no scores for it (runs since release 13 rewrite results.json after every variant;
older runs wrote it only at the end), or to score a set again: each domain is tagged with its own adapter (``multibert``) and with its scheme's general adapter
(``general_adapter``), on the same test sentences the recipe scores, with the recipe's own scorer. Writes
``test_scores.json`` beside the model folder (micro precision, recall, F1 per variant and domain).
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    from ner_adapters.multibert import MultiBertModel
    from ner_adapters.multibert.config import parse_config
    from ner_adapters.multibert.domains import load_domains
    from ner_adapters.multibert.evaluation import score_tagger

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a saved Multi-BERT folder (<output_dir>/model)")
    parser.add_argument("--config", action="append", required=True, help="the recipe config(s) it was trained with")
    args = parser.parse_args(argv)
    config = parse_config([arg for name in args.config for arg in ("--config", name)])
    _, domains = load_domains(config.data)
    mbert = MultiBertModel.load(args.model)
    scores: dict = {}
    for d in domains:
        adapters = {"multibert": d.name}
        if d.scheme in mbert.general:
            adapters["general_adapter"] = mbert.general[d.scheme]
        for variant, adapter in adapters.items():
            started = time.time()
            micro = score_tagger(lambda x, adapter=adapter: mbert.predict(x, adapter), d.test)["micro"]
            scores.setdefault(variant, {})[d.name] = micro
            print(f"{variant:16} {d.name:12} {len(d.test):6} sentences  P {100 * micro['precision']:.1f}  "
                  f"R {100 * micro['recall']:.1f}  F1 {100 * micro['f1']:.1f}  ({time.time() - started:.0f} s)", flush=True)
    out = args.model.parent / "test_scores.json"
    out.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return scores


if __name__ == "__main__":
    main()
