"""How fast each adapter kind learns at a given rate: a tagging adapter and head fitted to a few sentences of one
domain, the training loss printed every 10 steps, one row per (kind, learning rate).

    python benchmarks/adapter_lr_probe.py --runs lora:5e-3 prefix:5e-3 prefix:5e-4 prefix:1e-3 flat:5e-3 flat:2e-2

Why: a full Multi-BERT run takes half an hour here, and an adapter that learns too slowly shows only as a dev
F1 of 0 at the end. Fitting 64 sentences for 60 steps (about a minute per row on one thread) tells in advance
whether a kind and a rate can learn at all. ``lora`` is the adapter of ``parsner_lora.yaml`` (r=3, alpha=1 on q,
k, v and both feed-forward projections); ``prefix`` is prefix tuning through its reparametrization MLP
(bottleneck 512), ``flat`` the prefix trained directly; both of length 22. The same batches, in the same order,
for every row; the loss of a batch is printed, so compare a column across rows, not along a row.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ner_adapters.data.registry import load_sentences
from ner_adapters.models import resolve_model
from ner_adapters.multibert.model import AdapterSpec
from ner_adapters.multibert.tokenization import encode_tagging
from ner_adapters.spans import label_names

SPECS = {
    "lora": AdapterSpec("lora", lora_attn_matrices=("q", "k", "v"), lora_intermediate=True, lora_output=True),
    "prefix": AdapterSpec("prefix", prefix_length=22, prefix_flat=False),
    "flat": AdapterSpec("prefix", prefix_length=22, prefix_flat=True),
}


def probe(core: str, sentences, kind: str, lr: float, steps: int, batch_size: int, seed: int) -> list[float]:
    """Training losses every 10 steps of a fresh ``kind`` adapter and tagging head at rate ``lr``."""
    from adapters import AutoAdapterModel
    from transformers import AutoTokenizer, DataCollatorForTokenClassification

    torch.manual_seed(seed)
    path = resolve_model(core)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoAdapterModel.from_pretrained(path)
    labels = label_names(sorted({s.type for x in sentences for s in x.spans}))
    model.add_adapter("probe", config=SPECS[kind].to_config())
    model.add_tagging_head("probe", num_labels=len(labels))
    model.train_adapter("probe")
    rows = encode_tagging(tokenizer, sentences, labels, 64, "probe")
    collate = DataCollatorForTokenClassification(tokenizer)
    keys = ("input_ids", "attention_mask", "labels")
    features = [{k: rows[k][i] for k in keys} for i in range(len(rows["input_ids"]))]
    batches = [collate(features[i : i + batch_size]) for i in range(0, len(features) - batch_size + 1, batch_size)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 10 == 9:
            losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=["lora:5e-3", "prefix:5e-3", "flat:2e-2"],
                        help="kind:rate pairs; kinds: " + ", ".join(SPECS))
    parser.add_argument("--core", default="intfloat/multilingual-e5-small")
    parser.add_argument("--domain", default="parsner:health", help="dataset[:config], as in a recipe's domains")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--sentences", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for run in args.runs:
        kind, _, rate = run.partition(":")
        if kind not in SPECS or not rate:
            parser.error(f"--runs {run!r}: expected kind:rate with kind one of {', '.join(SPECS)}")
        runs.append((kind, float(rate)))
    dataset, _, config = args.domain.partition(":")
    sentences = [s for s in load_sentences(dataset, config or None, split="train", data_dir=args.data_dir)
                 if s.spans][: args.sentences]
    if len(sentences) < args.batch_size:
        parser.error(f"--domain {args.domain}: {len(sentences)} train sentences with entities, fewer than a batch")
    header = [f"step {10 * (i + 1)}" for i in range(args.steps // 10)]
    print(f"{args.domain}, {len(sentences)} train sentences with entities, batch {args.batch_size}, "
          f"{args.core}, one thread; training loss of the step's batch\n")
    print("| adapter | rate | " + " | ".join(header) + " | seconds |")
    print("|---" * (len(header) + 3) + "|")
    for kind, rate in runs:
        started = time.perf_counter()
        losses = probe(args.core, sentences, kind, rate, args.steps, args.batch_size, args.seed)
        print(f"| {kind} | {rate:g} | " + " | ".join(f"{x:.3f}" for x in losses)
              + f" | {time.perf_counter() - started:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
