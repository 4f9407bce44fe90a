"""Would the LLM type its own spans better if it scored every type for them? A probe on a finished CLLMFS episode.

    python benchmarks/profiling/retype_probe.py outputs/cllmfs/conll2003_intra_q500/cllmfs_smollm2 --episode 0 --queries 200

For the first ``--queries`` query sentences of the episode it extracts as the run did (one prompt per type, overlaps
resolved by score), then re-types every predicted span: the answer " <<< span >>>" is scored under each type's
prompt (teacher-forced log-probability of its tokens after the answer opening) and the span takes the type whose
prompt makes it most likely. Prints micro-F1 and the error kinds (ner_adapters.metrics.span_errors) of both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml

from ner_adapters.cllmfs.extraction import CLLMFSExtractor, DecodingConfig
from ner_adapters.cllmfs.prompts import CLOSE, OPEN
from ner_adapters.data.schema import Sentence
from ner_adapters.metrics import span_errors, span_scores
from ner_adapters.spans import Span, token_char_offsets


def answer_logprobs(extractor: CLLMFSExtractor, prompts: list[str], answers: list[str], batch: int = 16) -> list[float]:
    """Sum of log P(answer tokens | prompt + answer opening), one per (prompt, answer) pair."""
    tok, model = extractor.tokenizer, extractor.model
    out = []
    for i in range(0, len(prompts), batch):
        rows, starts = [], []
        for prompt, answer in zip(prompts[i:i + batch], answers[i:i + batch]):
            head = tok(prompt, add_special_tokens=False)["input_ids"]
            full = tok(prompt + answer, add_special_tokens=False)["input_ids"]
            assert full[:len(head)] == head, "the answer does not start on a token boundary"
            rows.append(full)
            starts.append(len(head))
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tok.pad_token_id)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):  # right padding: positions stay those of the unpadded text
            ids[r, :len(row)] = torch.tensor(row)
            mask[r, :len(row)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        for r, row in enumerate(rows):
            positions = torch.arange(starts[r], len(row))
            out.append(float(logits[r, positions - 1, torch.tensor(row[starts[r]:])].sum()))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--episode", type=int, default=0)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    model_id = config["model"]["model_name_or_path"]
    episode = [json.loads(line) for line in (args.run / "episodes.jsonl").read_text().splitlines() if line.strip()]
    episode = episode[args.episode]
    sentences = [Sentence(tokens=q["tokens"], spans=[Span(s["start"], s["end"], s["type"]) for s in q["spans"]], id=q["id"])
                 for q in episode["query"][:args.queries]]
    extractor = CLLMFSExtractor.from_pretrained(model_id, adapter=args.run / f"episode-{args.episode}" / "adapter",
                                                decoding=DecodingConfig(resolve_overlaps="score"))
    types = extractor.entity_types
    predicted = extractor.predict_sentences(sentences, show_progress=True)
    # re-type: every predicted span under every type's prompt
    prompts, answers, keys = [], [], []
    for index, (sentence, spans) in enumerate(zip(sentences, predicted)):
        offsets = token_char_offsets(sentence.tokens)
        text = sentence.text
        for span in spans:
            word = text[offsets[span.start][0]:offsets[span.end - 1][1]]
            for t in types:
                prompt = extractor.format.build(text, [t]).text + extractor.format.answer_prefix
                prompts.append(prompt)
                answers.append(OPEN + word + CLOSE)
                keys.append((index, span, t.label))
    scores = answer_logprobs(extractor, prompts, answers)
    best: dict = {}
    for (index, span, label), score in zip(keys, scores):
        key = (index, span.start, span.end)
        if key not in best or score > best[key][0]:
            best[key] = (score, label)
    retyped = [[Span(s.start, s.end, best[(i, s.start, s.end)][1]) for s in spans] for i, spans in enumerate(predicted)]
    gold = [s.spans for s in sentences]
    for name, spans in (("as extracted (resolve_overlaps: score)", predicted), ("re-typed by teacher-forced score", retyped)):
        scores_ = span_scores(gold, spans)
        print(f"{name}: micro-F1 {100 * scores_.micro.f1:.1f} (P {100 * scores_.micro.precision:.1f}, "
              f"R {100 * scores_.micro.recall:.1f}); {span_errors(gold, spans)}")
    changed = sum(a.type != b.type for x, y in zip(predicted, retyped) for a, b in zip(x, y))
    print(f"{len(sentences)} sentences, {sum(map(len, predicted))} spans, {changed} re-typed, "
          f"{len(prompts)} scored answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
