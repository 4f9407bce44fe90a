"""Re-extract the first episode of a finished CLLMFS run with the current extractor and compare with the saved
predictions: a decoder change must give the same spans (and so the same micro-F1).

    python benchmarks/profiling/reextract_episode.py outputs/cllmfs/wnut17_intra_5shot
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import _common  # noqa: E402,F401  (threads before torch)

from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig  # noqa: E402
from ner_adapters.cllmfs.artifact import CLLMFSAdapterConfig  # noqa: E402
from ner_adapters.episodes import load_episodes  # noqa: E402
from ner_adapters.metrics import span_scores  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a recipe output_dir (episodes.jsonl, episode-0/)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (read by _common before torch loads)")
    args = parser.parse_args()
    episode = load_episodes(args.run / "episodes.jsonl")[0]
    adapter = args.run / "episode-0" / "adapter"
    extractor = CLLMFSExtractor.from_pretrained(CLLMFSAdapterConfig.load(adapter).base_model, adapter=adapter,
                                                decoding=DecodingConfig(max_new_tokens=args.max_new_tokens))
    started_cpu, started = time.process_time(), time.perf_counter()
    predicted = extractor.predict_sentences(episode.query)
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    saved = [json.loads(line) for line in (args.run / "episode-0" / "predictions.jsonl").read_text().splitlines()]
    same = sum(sorted((s.start, s.end, s.type) for s in new) == sorted((d["start"], d["end"], d["type"])
                                                                           for d in old["spans"])
               for new, old in zip(predicted, saved))
    before = json.loads((args.run / "episode-0" / "results.json").read_text())["scores"]["micro"]["f1"]
    after = span_scores([s.spans for s in episode.query], predicted).micro.f1
    print(json.dumps({"run": str(args.run), "sentences": len(saved), "same_spans": same, "micro_f1_saved": before,
                      "micro_f1_now": after, "cpu_seconds": round(cpu, 1), "wall_seconds": round(wall, 1)}))


if __name__ == "__main__":
    main()
