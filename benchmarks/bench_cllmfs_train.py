"""CLLMFS training: step time, tokens/s and peak memory of LoRA alone vs LoRA + CL vs LoRA + CL + noise.

Data and model are the recipe's: the WNUT-17 6-way 5-shot support set as per-type SFT examples
(none_ratio 1.0), SmolLM2-135M-Instruct in float32, LoRA r 16 on q/k/v/gate/up, batch 8, ``CLLMFSTrainer``.

Time (one process): the same batches are trained under every variant back to back (order rotated from one
batch to the next), so a variant's ratio to LoRA alone compares the same tokens within seconds of each other;
the figures are medians over the batches. One step is ``Trainer.training_step`` (forward, the loss with the
contrastive term, backward) plus the optimizer step, as inside ``Trainer.train``. Variants switch by setting
``cl_weight`` / ``cl_noise_scale`` on the trainer's arguments (LoRA alone: ``cl_weight = 0``, no hook capture).

Memory (a fresh process per variant): the real ``trainer.train()`` for a few steps; peak RSS is the
process's ``ru_maxrss`` (model loading included), peak GPU memory ``torch.cuda.max_memory_allocated``. With
``group_by_length`` the longest batch comes first, so a few steps reach the run's peak.

    python benchmarks/bench_cllmfs_train.py                 # SmolLM2-135M, batch 8
    python benchmarks/bench_cllmfs_train.py --variants lora lora_cl_noise lora_cl_noise_unoptimised lora_cl_noise_gc
    python benchmarks/bench_cllmfs_train.py --variants lora_cl_noise lora_cl_noise_bf16 --model Qwen/Qwen2.5-Coder-0.5B-Instruct
    python benchmarks/bench_cllmfs_train.py --quick         # tiny random Llama, smoke test
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (REPO_ROOT, SMOLLM2, PeakMemory, base_parser, gib, machine_info, max_rss_bytes, median, resolve_llm,
                     setup, table, timer, write_results)

VARIANTS = {
    "lora": dict(cl_weight=0.0, cl_noise_scale=0.0),
    "lora_cl": dict(cl_weight=0.001, cl_noise_scale=0.0),
    "lora_cl_noise": dict(cl_weight=0.001, cl_noise_scale=0.1),
    # lora_cl_noise with this two training optimisations undone (the code before them): TRL's fused LM
    # head scoring every position on CPU, and torch's float32-noise dropout in the LoRA layers.
    "lora_cl_noise_unoptimised": dict(cl_weight=0.001, cl_noise_scale=0.1, compact_lm_head=False, mask_dropout=False),
    # ... and each of the two undone alone.
    "lora_cl_noise_full_head": dict(cl_weight=0.001, cl_noise_scale=0.1, compact_lm_head=False),
    "lora_cl_noise_float_dropout": dict(cl_weight=0.001, cl_noise_scale=0.1, mask_dropout=False),
    # lora_cl_noise with (non-reentrant) gradient checkpointing: the memory floor, for a second forward.
    "lora_cl_noise_gc": dict(cl_weight=0.001, cl_noise_scale=0.1, gradient_checkpointing=True),
    # lora_cl_noise under bfloat16 autocast (`--bf16 true`): faster where the device computes bfloat16 natively
    # (GPUs; CPUs with AMX / AVX512-BF16), slower elsewhere. LoRA weights and optimizer stay float32.
    "lora_cl_noise_bf16": dict(cl_weight=0.001, cl_noise_scale=0.1, bf16=True),
}
DEFAULT_VARIANTS = ["lora", "lora_cl", "lora_cl_noise"]
DEFAULT_EPISODES = REPO_ROOT / "outputs" / "cllmfs" / "dev_lr1e-3_nr1_e5" / "episodes.jsonl"
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
            target_modules=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"])


def load_episode(path: Path | None):
    from ner_adapters.episodes import load_episodes, sample_episodes

    if path is not None and path.is_file():
        return load_episodes(path)[0]
    return sample_episodes("wnut17", k_shot=5, seed=0, query_size=100)[0]


def make_trainer(args, device: str, settings: dict, max_steps: int, callbacks=()):
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSConfig, CLLMFSTrainer, PromptFormat, build_sft_dataset
    from ner_adapters.cllmfs.experiment import episode_types

    torch.manual_seed(0)
    episode = load_episode(args.episodes)
    support_types, _ = episode_types(episode)
    path = resolve_llm(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    dataset = build_sft_dataset(episode.support, support_types, PromptFormat(tokenizer, args.prompt_mode),
                                none_ratio=args.none_ratio, seed=42)
    config = CLLMFSConfig(
        output_dir=tempfile.mkdtemp(prefix="bench-train-"), max_steps=max_steps,
        per_device_train_batch_size=args.batch_size, learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05,
        group_by_length=True, max_length=512, logging_steps=10_000, save_strategy="no", report_to=[],
        disable_tqdm=True, seed=42, use_cpu=device == "cpu", **settings,
    )
    trainer = CLLMFSTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                            peft_config=LoraConfig(**LORA), callbacks=list(callbacks))
    return trainer, dataset


def set_mask_dropout(model, enabled: bool) -> None:
    """Switch the LoRA dropouts between :class:`MaskDropout` and plain ``nn.Dropout`` (same p)."""
    from torch import nn

    from ner_adapters.cllmfs.cllmfs_trainer import MaskDropout

    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if isinstance(dropout, nn.Dropout) and dropout.p > 0:
                    new = MaskDropout(dropout.p) if enabled else nn.Dropout(dropout.p)
                    new.train(dropout.training)
                    dropouts[name] = new


def apply_variant(trainer, variant: str) -> None:
    settings = VARIANTS[variant]
    trainer.args.cl_weight = settings["cl_weight"]
    trainer.args.cl_noise_scale = settings["cl_noise_scale"]
    trainer.args.compact_lm_head = settings.get("compact_lm_head", True)
    set_mask_dropout(trainer.model, settings.get("mask_dropout", True))
    base = trainer.model.get_base_model()
    if settings.get("gradient_checkpointing"):
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif base.is_gradient_checkpointing:
        base.gradient_checkpointing_disable()


def time_variants(args, device: str, variants: list[str]) -> dict:
    """Every timed batch under every variant, back to back, order rotated per batch."""
    import torch

    n_batches = args.warmup + args.steps
    trainer, dataset = make_trainer(args, device, {}, max_steps=n_batches)
    trainer.create_optimizer_and_scheduler(num_training_steps=n_batches * len(variants))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() otherwise
    model = trainer.model
    model.train()
    loader = trainer.get_train_dataloader()
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu_times: dict[str, list[float]] = {v: [] for v in variants}
    tokens: list[int] = []
    for index, batch in enumerate(loader):
        if index >= n_batches:
            break
        order = variants[index % len(variants):] + variants[: index % len(variants)]
        for variant in order:
            apply_variant(trainer, variant)
            inputs = {k: v for k, v in batch.items()}
            precision = (torch.autocast(device_type=device, dtype=torch.bfloat16) if VARIANTS[variant].get("bf16")
                         else contextlib.nullcontext())  # what the Trainer's bf16 mixed precision does
            with timer(device) as t:
                with precision:
                    trainer.training_step(model, inputs)
                trainer.optimizer.step()
                trainer.optimizer.zero_grad(set_to_none=True)
            if index >= args.warmup:
                times[variant].append(t["seconds"])
                cpu_times[variant].append(t["cpu_seconds"])
        if index >= args.warmup:
            tokens.append(int(batch["attention_mask"].sum()))
        print(f"  batch {index + 1}/{n_batches} ({int(batch['attention_mask'].sum())} tokens, load "
              f"{os.getloadavg()[0]:.1f}): " + ", ".join(f"{v} {times[v][-1]:.2f} s ({cpu_times[v][-1]:.2f} cpu)"
                                                         for v in variants if index >= args.warmup), flush=True)
    return {"step_seconds": times, "step_cpu_seconds": cpu_times, "tokens": tokens, "examples": len(dataset)}


def memory_worker(args) -> dict:
    """One variant's short real training run in this fresh process: its peak memory."""
    from ner_adapters.cllmfs import cllmfs_trainer

    device = setup(args)
    settings = dict(VARIANTS[args.variant])
    if not settings.pop("mask_dropout", True):
        cllmfs_trainer.use_mask_dropout = lambda model: 0
    trainer, _ = make_trainer(args, device, settings, max_steps=args.memory_steps)
    rss_before = max_rss_bytes()
    started = time.perf_counter()
    with PeakMemory(device) as memory:
        trainer.train()
    return {"variant": args.variant, "peak_rss_process": max_rss_bytes(), "peak_rss_before_train": rss_before,
            "peak_rss_train_sampled": memory.peak_rss, "peak_gpu_allocated": memory.peak_gpu,
            "steps": args.memory_steps, "train_seconds": time.perf_counter() - started}


def run_memory_worker(args, variant: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    command = [sys.executable, __file__, "--worker", variant, "--worker-out", out, "--model", args.model,
               "--batch-size", str(args.batch_size), "--memory-steps", str(args.memory_steps),
               "--threads", str(args.threads), "--device", args.device, "--prompt-mode", args.prompt_mode,
               "--none-ratio", str(args.none_ratio), "--episodes", str(args.episodes)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-5000:] + done.stderr[-5000:])
        raise SystemExit(f"memory worker {variant} failed with exit code {done.returncode}")
    result = json.loads(Path(out).read_text())
    os.unlink(out)
    return result


def memory_only(args, device: str, machine: dict) -> None:
    """Re-measure peak memory and merge it into the results file (its timing stays as measured)."""
    path = args.out or _common.RESULTS_DIR / f"cllmfs_train{'_quick' if args.quick else ''}.json"
    previous = json.loads(path.read_text()) if path.is_file() else None
    memory = {}
    for variant in args.variants:
        memory[variant] = run_memory_worker(args, variant)
        print(f"  memory {variant}: peak RSS {gib(memory[variant]['peak_rss_process'])} GiB", flush=True)
    rows = [{"variant": v, "peak_rss_gib": gib(m["peak_rss_process"]), "peak_gpu_gib": gib(m["peak_gpu_allocated"])}
            for v, m in memory.items()]
    print(table(rows, ["variant", "peak_rss_gib"] + (["peak_gpu_gib"] if device == "cuda" else [])))
    if previous is None or previous["settings"]["batch_size"] != args.batch_size \
            or previous["settings"]["model"] != args.model:
        print(f"no results file with these settings at {path}: writing the memory runs alone")
        write_results("cllmfs_train_memory", args, device, {
            "settings": {"model": args.model, "batch_size": args.batch_size, "memory_steps": args.memory_steps,
                         "prompt_mode": args.prompt_mode, "none_ratio": args.none_ratio, "lora": LORA},
            "columns": ["variant", "peak_rss_gib"], "rows": rows, "memory": memory}, machine)
        return
    known = {row["variant"] for row in previous["rows"]}
    previous["rows"] += [{"variant": v} for v in memory if v not in known]  # memory-only rows
    for row in previous["rows"]:
        if row["variant"] in memory:
            row["peak_rss_gib"] = gib(memory[row["variant"]]["peak_rss_process"])
            row["peak_gpu_gib"] = gib(memory[row["variant"]]["peak_gpu_allocated"])
    previous["memory"].update(memory)
    rss = [r["peak_rss_gib"] for r in previous["rows"] if r["variant"] in DEFAULT_VARIANTS and r.get("peak_rss_gib")]
    previous["targets"]["lora_batch8_peak_rss_lt_4gib"] = max(rss) < 4.0 if rss and args.batch_size == 8 else None
    command = "python " + " ".join([os.path.relpath(sys.argv[0], REPO_ROOT)] + sys.argv[1:])
    previous.setdefault("memory_runs", []).append({"command": command, "variants": list(memory),
                                                   "machine": {**machine, "loadavg_end": list(os.getloadavg())}})
    if "peak_rss_gib" not in previous["columns"]:
        previous["columns"].append("peak_rss_gib")
    path.write_text(json.dumps(previous, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"merged into {path}; targets: {previous['targets']}")


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--model", default=SMOLLM2, help="model name or folder; 'tiny' for a random 5-layer Llama")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed batches (each run under every variant)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first batches")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps of each fresh-process memory run")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS),
                        help="the first is the baseline of the time ratios")
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-process memory runs")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the memory runs, merged into an existing results file of the same settings")
    parser.add_argument("--prompt-mode", default="per_type", choices=["per_type", "all_types"])
    parser.add_argument("--none-ratio", type=float, default=1.0)
    parser.add_argument("--episodes", type=Path, default=DEFAULT_EPISODES,
                        help="episodes JSONL (first episode's support set); sampled from WNUT-17 when missing")
    parser.add_argument("--worker", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.variant = args.worker
        Path(args.worker_out).write_text(json.dumps(memory_worker(args)))
        return
    if args.quick:
        args.model, args.steps, args.batch_size, args.memory_steps = "tiny", 2, 4, 1
    device = setup(args)
    machine = machine_info(device)
    if args.memory_only:
        return memory_only(args, device, machine)
    print(f"timing {args.variants} on the same {args.steps} batches (+{args.warmup} warm-up)", flush=True)
    timing = time_variants(args, device, args.variants)
    memory: dict[str, dict] = {}
    if not args.no_memory:
        for variant in args.variants[:1] if args.quick else args.variants:  # --quick: one, to stay under a minute
            memory[variant] = run_memory_worker(args, variant)
            print(f"  memory {variant}: peak RSS {gib(memory[variant]['peak_rss_process'])} GiB", flush=True)
    base = args.variants[0]
    times, cpu, tokens = timing["step_seconds"], timing["step_cpu_seconds"], timing["tokens"]
    rows = []
    for variant in args.variants:
        row = {
            "variant": variant,
            "step_s": median(times[variant]),
            "step_cpu_s": median(cpu[variant]),
            "tokens_per_step": median(tokens),
            "tokens_per_s": median([n / t for n, t in zip(tokens, times[variant])]),
            "tokens_per_cpu_s": median([n / t for n, t in zip(tokens, cpu[variant])]),
            f"wall_vs_{base}": median([t / b for t, b in zip(times[variant], times[base])]),
            f"cpu_vs_{base}": median([t / b for t, b in zip(cpu[variant], cpu[base])]),
        }
        if variant in memory:
            row["peak_rss_gib"] = gib(memory[variant]["peak_rss_process"])
            row["peak_gpu_gib"] = gib(memory[variant]["peak_gpu_allocated"])
        rows.append(row)
    columns = ["variant", "step_s", "step_cpu_s", "tokens_per_step", "tokens_per_s", "tokens_per_cpu_s",
               f"wall_vs_{base}", f"cpu_vs_{base}"]
    columns += (["peak_rss_gib"] if memory else []) + (["peak_gpu_gib"] if memory and device == "cuda" else [])
    print(f"\nCLLMFS training, {args.model}, batch {args.batch_size}, {args.steps} timed batches x "
          f"{len(args.variants)} variants, {machine['torch_threads']} thread(s), device {device}\n")
    print(table(rows, columns))
    clock = "cpu" if device == "cpu" else "wall"  # CPU time: steady under contention; on a GPU, wall time
    overheads = [r[f"{clock}_vs_{base}"] for r in rows if r["variant"] in ("lora_cl", "lora_cl_noise")]
    rss = [r.get("peak_rss_gib") for r in rows if r["variant"] in DEFAULT_VARIANTS and r.get("peak_rss_gib")]
    targets = {
        "cl_noise_overhead_le_10pct": max(overheads) <= 1.10 if overheads and base == "lora" else None,
        "lora_batch8_peak_rss_lt_4gib": max(rss) < 4.0 if rss and args.batch_size == 8 else None,
    }
    if args.quick:  # tiny random models: the targets are about the real ones
        targets = {key: None for key in targets}
    print(f"\ntargets ({clock} time ratios): {targets}")
    write_results("cllmfs_train", args, device, {
        "settings": {"model": args.model, "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
                     "memory_steps": args.memory_steps, "prompt_mode": args.prompt_mode,
                     "none_ratio": args.none_ratio, "lora": LORA},
        "columns": columns, "rows": rows, "targets": targets, "target_clock": clock, "timing": timing,
        "memory": memory}, machine)


if __name__ == "__main__":
    main()
