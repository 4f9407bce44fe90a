"""CLLMFS extraction: sentences/s and F1 of the decoding modes on a fixed WNUT-17 test subset.

Modes (each with and without constrained decoding):

- ``naive``: one sentence and one type per ``generate`` call (batch size 1, no prefix cache);
- ``per_type``: per-type prompts, batched (prompts of one type share the prefix KV cache);
- ``per_type_nocache``: the same without the prefix KV cache;
- ``all_types``: one prompt per sentence listing every type, batched.

The sentences are the first ``--sentences`` query sentences of the adapter's episode
(``outputs/cllmfs/dev_lr1e-3_nr1_e5/episodes.jsonl`` when present, else the seed-0 WNUT-17 6-way 5-shot
episode); the naive loop runs on the first ``--naive-sentences`` of them (it is slow), and F1 is reported on
both subsets so every mode is scored on the same sentences as the naive loop. The modes are interleaved
(order rotated each repeat); speed ratios are taken within a repeat, then the median. The time spent inside
the constraint's logits processor is measured separately.

    python benchmarks/bench_cllmfs_extract.py        # SmolLM2-135M + the dev adapter when present
    python benchmarks/bench_cllmfs_extract.py --quick
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import os
import time
from pathlib import Path

from _common import (REPO_ROOT, SMOLLM2, PeakMemory, base_parser, machine_info, median, mib, resolve_llm, rotations,
                     setup, table, timer, write_results)

DEFAULT_ADAPTER = REPO_ROOT / "outputs" / "cllmfs" / "dev_lr1e-3_nr1_e5" / "episode-0" / "adapter"
DEFAULT_EPISODES = REPO_ROOT / "outputs" / "cllmfs" / "dev_lr1e-3_nr1_e5" / "episodes.jsonl"
# An adapter trained on all-types prompts (same episode, same recipe otherwise); see benchmarks/README.md.
DEFAULT_ALL_TYPES_ADAPTER = REPO_ROOT / "outputs" / "cllmfs" / "bench_all_types" / "episode-0" / "adapter"

# mode -> (prompt mode, batch size (None: --batch-size), prefix cache)
MODES = {
    "naive": ("per_type", 1, False),
    "per_type": ("per_type", None, True),
    "per_type_nocache": ("per_type", None, False),
    "all_types": ("all_types", None, True),
    "per_type_before": ("per_type", None, True),  # the batching and prefix cache as before this issue (--before)
}
DEFAULT_MODES = ["naive", "per_type", "per_type_nocache", "all_types"]


def previous_extractor_class():
    """``CLLMFSExtractor`` with the batching and prefix cache it had before this issue, for side-by-side timing:
    batches sorted by type group, one prefix per batch (the tokens all its rows share, so a batch mixing two types
    shares little more than the system message), the cache kept for one prefix at a time."""
    import copy

    import torch

    from ner_adapters.cllmfs.extraction import CLLMFSExtractor, _common_prefix_length

    class PreviousExtractor(CLLMFSExtractor):
        def _batches(self, jobs):
            order = sorted(range(len(jobs)), key=lambda j: ([t.label for t in jobs[j].types], len(jobs[j].prompt)))
            size = self.decoding.batch_size
            return [order[i : i + size] for i in range(0, len(order), size)]

        @torch.no_grad()
        def _encode_batch(self, jobs):
            tokenizer = self.tokenizer
            rows = [tokenizer(job.prompt, add_special_tokens=False)["input_ids"] for job in jobs]
            shared = _common_prefix_length(rows)
            if not self.decoding.prefix_cache or shared < 2:
                batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
                return {k: v.to(self.model.device) for k, v in batch.items()}
            prefix = tuple(rows[0][:shared])
            cache = self._prefix_caches.get(prefix)
            if cache is None:
                cache = self.model(input_ids=torch.tensor([prefix], device=self.model.device),
                                   use_cache=True).past_key_values
                self._prefix_caches = {prefix: cache}
            longest = max(len(row) for row in rows)
            pad = tokenizer.pad_token_id
            input_ids = [list(prefix) + [pad] * (longest - len(row)) + row[shared:] for row in rows]
            attention = [[1] * shared + [0] * (longest - len(row)) + [1] * (len(row) - shared) for row in rows]
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(rows))
            device = self.model.device
            return {"input_ids": torch.tensor(input_ids, device=device),
                    "attention_mask": torch.tensor(attention, device=device), "past_key_values": past}

    return PreviousExtractor


class ConstraintClock:
    """Adds up the seconds spent in ``SubstringConstraint.__call__`` (patched for the benchmark's duration)."""

    def __init__(self):
        from ner_adapters.cllmfs import constrained

        self.seconds = 0.0  # CPU time (the whole process) spent inside the processor
        self.calls = 0
        cls = constrained.SubstringConstraint
        original = cls.__call__
        clock = self

        def timed(self, input_ids, scores):
            started = time.process_time()
            try:
                return original(self, input_ids, scores)
            finally:
                clock.seconds += time.process_time() - started
                clock.calls += 1

        cls.__call__ = timed

    def take(self) -> tuple[float, int]:
        seconds, calls = self.seconds, self.calls
        self.seconds, self.calls = 0.0, 0
        return seconds, calls


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--model", default=SMOLLM2, help="base model; 'tiny' for a random 5-layer Llama")
    parser.add_argument("--adapter", default=str(DEFAULT_ADAPTER),
                        help="CLLMFS adapter folder; 'none' (or a missing folder) runs the base model zero-shot")
    parser.add_argument("--all-types-adapter", default=str(DEFAULT_ALL_TYPES_ADAPTER),
                        help="adapter trained on all-types prompts, used by the all_types mode when present "
                             "(else that mode uses --adapter, which was not trained on its format)")
    parser.add_argument("--episodes", type=Path, default=DEFAULT_EPISODES)
    parser.add_argument("--sentences", type=int, default=8, help="test sentences for the batched modes")
    parser.add_argument("--naive-sentences", type=int, default=2, help="the first N of them for the naive loop")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=48, help="per-type answers (all-types: x2)")
    parser.add_argument("--modes", nargs="+", default=DEFAULT_MODES, choices=list(MODES))
    parser.add_argument("--before", action="store_true",
                        help="add per_type_before: batching and prefix cache as before this issue")
    parser.add_argument("--constrained", nargs="+", default=["on", "off"], choices=["on", "off"])
    parser.add_argument("--name", default="cllmfs_extract", help="results file name")
    args = parser.parse_args()
    if args.quick:
        args.model, args.adapter, args.repeats, args.sentences, args.naive_sentences = "tiny", "none", 1, 4, 2
        args.max_new_tokens = 12
    device = setup(args)
    machine = machine_info(device)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig
    from ner_adapters.cllmfs.experiment import episode_types
    from ner_adapters.episodes import load_episodes, sample_episodes
    from ner_adapters.metrics import span_scores

    episode = load_episodes(args.episodes)[0] if args.episodes.is_file() else \
        sample_episodes("wnut17", k_shot=5, seed=0, query_size=100)[0]
    _, types = episode_types(episode)
    sentences = episode.query[: args.sentences]
    naive_n = min(args.naive_sentences, len(sentences))
    path = resolve_llm(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    adapter = None if args.adapter in ("none", "") or not Path(args.adapter).is_dir() else args.adapter
    all_types_adapter = args.all_types_adapter if adapter and Path(args.all_types_adapter).is_dir() else None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        if all_types_adapter:
            model.load_adapter(all_types_adapter, adapter_name="all_types", is_trainable=False)
            model.set_adapter("default")
    model = model.to(device).eval()
    clock = ConstraintClock()

    def extractor(mode: str, constrained: bool) -> CLLMFSExtractor:
        prompt_mode, batch_size, cache = MODES[mode]
        decoding = DecodingConfig(constrained=constrained, batch_size=batch_size or args.batch_size, prefix_cache=cache,
                                  max_new_tokens=args.max_new_tokens * (2 if prompt_mode == "all_types" else 1))
        if all_types_adapter:
            model.set_adapter("all_types" if prompt_mode == "all_types" else "default")
        cls = previous_extractor_class() if mode == "per_type_before" else CLLMFSExtractor
        return cls(model, tokenizer, types, prompt_mode=prompt_mode, decoding=decoding, format_hint=adapter is None)

    if args.before and "per_type_before" not in args.modes:
        args.modes.append("per_type_before")
    variants = [f"{mode}/{'constrained' if c == 'on' else 'free'}" for mode in args.modes for c in args.constrained]
    # Warm-up: the vocabulary trie, first-call allocations.
    extractor("per_type", True).predict_sentences(sentences[:1])
    clock.take()
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    predictions: dict[str, list] = {}
    for repeat, variant in rotations(variants, args.repeats):
        mode, kind = variant.split("/")
        subset = sentences[:naive_n] if mode == "naive" else sentences
        ex = extractor(mode, kind == "constrained")
        with PeakMemory(device) as memory, timer(device) as t:
            predicted = ex.predict_sentences(subset)
        constraint_seconds, constraint_calls = clock.take()
        runs[variant].append({"seconds": t["seconds"], "cpu_seconds": t["cpu_seconds"], "sentences": len(subset),
                              "prompts": ex.stats["prompts"], "generated_tokens": ex.stats.get("generated_tokens"),
                              "constraint_seconds": constraint_seconds, "constraint_calls": constraint_calls,
                              "peak_rss_delta": memory.delta_rss, "peak_gpu": memory.peak_gpu})
        predictions[variant] = predicted
        print(f"repeat {repeat + 1}/{args.repeats} {variant}: {len(subset) / t['seconds']:.3f} sentences/s "
              f"({t['seconds']:.1f} s wall, {t['cpu_seconds']:.1f} s cpu, constraint {constraint_seconds:.1f} s cpu, "
              f"load {os.getloadavg()[0]:.1f})", flush=True)

    labels = [t.label for t in types]

    def f1(variant: str, n: int) -> float:
        return span_scores([s.spans for s in sentences[:n]], predictions[variant][:n], types=labels).micro.f1

    clock = "cpu_seconds" if device == "cpu" else "seconds"  # CPU time is steady under contention

    def rate(run: dict, key: str = clock) -> float:
        return run["sentences"] / run[key]

    rows = []
    for variant in variants:
        mode, kind = variant.split("/")
        rs = runs[variant]
        row = {
            "mode": mode, "decoding": kind, "sentences": rs[0]["sentences"], "prompts": rs[0]["prompts"],
            "sentences_per_s": median([rate(r, "seconds") for r in rs]),
            "sentences_per_cpu_s": median([rate(r, "cpu_seconds") for r in rs]),
            "seconds": median([r["seconds"] for r in rs]),
            "cpu_seconds": median([r["cpu_seconds"] for r in rs]),
            "constraint_share": median([r["constraint_seconds"] / r["cpu_seconds"] for r in rs]),
            "f1_naive_subset": f1(variant, naive_n),
            "f1": f1(variant, len(sentences)) if mode != "naive" else None,
            "peak_rss_delta_mib": mib(median([r["peak_rss_delta"] for r in rs])),
            "peak_gpu_mib": mib(median([r["peak_gpu"] for r in rs])) if rs[0]["peak_gpu"] is not None else None,
        }
        rows.append(row)

    def ratio(a: str, b: str) -> float | None:
        """Median over repeats of rate(a) / rate(b) (CPU time on a CPU), each repeat's pair measured near each other."""
        if a not in runs or b not in runs:
            return None
        return median([rate(x) / rate(y) for x, y in zip(runs[a], runs[b])])

    ratios = {}
    for kind in ("constrained", "free"):
        for mode in ("per_type", "per_type_nocache", "all_types"):
            ratios[f"{mode}/{kind} vs naive/{kind}"] = ratio(f"{mode}/{kind}", f"naive/{kind}")
        ratios[f"per_type/{kind} vs per_type_nocache/{kind} (prefix cache)"] = \
            ratio(f"per_type/{kind}", f"per_type_nocache/{kind}")
        ratios[f"per_type/{kind} vs per_type_before/{kind} (this issue's batching)"] = \
            ratio(f"per_type/{kind}", f"per_type_before/{kind}")
    for mode in args.modes:  # how much slower constrained decoding is, same batch size
        value = ratio(f"{mode}/free", f"{mode}/constrained")
        ratios[f"{mode}: constrained time / free time"] = value
    ratios = {k: v for k, v in ratios.items() if v is not None}
    columns = ["mode", "decoding", "sentences", "prompts", "sentences_per_s", "sentences_per_cpu_s", "cpu_seconds",
               "constraint_share",
               "f1_naive_subset", "f1", "peak_rss_delta_mib"] + (["peak_gpu_mib"] if device == "cuda" else [])
    print(f"\nCLLMFS extraction, {args.model} + {'adapter ' + str(adapter) if adapter else 'no adapter (zero-shot)'}"
          f"{' (all_types: ' + str(all_types_adapter) + ')' if all_types_adapter else ''}, "
          f"{len(sentences)} WNUT-17 test sentences x {len(types)} types (naive: {naive_n}), batch {args.batch_size}, "
          f"{args.repeats} repeats, {machine['torch_threads']} thread(s), device {device}\n")
    print(table(rows, columns))
    print(f"\n| ratio (median of per-repeat ratios, {clock.replace('_', ' ')}) | value |\n|---|---|")
    for key, value in ratios.items():
        print(f"| {key} | {value:.3f} |")
    batched = [v for k, v in ratios.items() if k.startswith(("per_type/", "all_types/")) and "vs naive" in k]
    slowdown = [v for k, v in ratios.items() if "constrained time / free time" in k and not k.startswith("naive")]
    targets = {
        "batched_ge_5x_naive": min(batched) >= 5 if batched else None,
        "best_batched_ge_5x_naive": max(batched) >= 5 if batched else None,
        "constrained_le_15pct_slower_batched": max(slowdown) <= 1.15 if slowdown else None,
    }
    if args.quick:  # tiny random models: the targets are about the real ones
        targets = {key: None for key in targets}
    print(f"\ntargets: {targets}")
    write_results(args.name, args, device, {
        "settings": {"model": args.model, "adapter": adapter, "all_types_adapter": all_types_adapter,
                     "sentences": len(sentences), "naive_sentences": naive_n,
                     "types": [t.label for t in types], "batch_size": args.batch_size,
                     "max_new_tokens": args.max_new_tokens, "episode": episode.id},
        "columns": columns, "rows": rows, "ratios": ratios, "ratio_clock": clock, "targets": targets, "runs": runs},
        machine)


if __name__ == "__main__":
    main()
