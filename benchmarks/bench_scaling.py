"""Scaling: how time and memory grow with sentences and entity types (CLLMFS) and with domains (Multi-BERT).

- CLLMFS extraction (SmolLM2-135M + the dev adapter when present, batched, constrained): seconds and peak RSS
  growth vs the number of sentences (2 types), and vs the number of entity types (per-type prompts and one
  all-types prompt per sentence).
- Multi-BERT (MiniLM): with 2, 10 and 50 domain adapters (fresh, untrained: speed does not depend on the
  weights) saved and loaded in a fresh process each: load time, RSS, saved size, and tagging throughput on
  512 UNER EN-EWT sentences spread over all the domains (one switch per domain) vs all in one domain; and the
  routed pipeline's time vs the number of sentences.

Points are interleaved (order rotated each repeat); figures are medians. Writes
``benchmarks/results/scaling.json`` and the plots ``docs/perf_scaling_cllmfs.png`` and
``docs/perf_scaling_multibert.png``.

    python benchmarks/bench_scaling.py
    python benchmarks/bench_scaling.py --quick        # tiny models, smaller sweeps, no plots unless --plots
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import (REPO_ROOT, SMOLLM2, TINY_DIR, PeakMemory, base_parser, machine_info, max_rss_bytes, median, mib,
                     resolve_llm, rotations, rss_bytes, setup, table, timer, write_results)

DOCS = REPO_ROOT / "docs"


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- CLLMFS ----------------------------------------------------------------------------------------------


def cllmfs_scaling(args, device: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bench_cllmfs_extract import DEFAULT_ADAPTER, DEFAULT_ALL_TYPES_ADAPTER, DEFAULT_EPISODES
    from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig
    from ner_adapters.cllmfs.experiment import episode_types
    from ner_adapters.episodes import load_episodes, sample_episodes

    episode = load_episodes(DEFAULT_EPISODES)[0] if DEFAULT_EPISODES.is_file() else \
        sample_episodes("wnut17", k_shot=5, seed=0, query_size=100)[0]
    _, types = episode_types(episode)
    path = resolve_llm("tiny" if args.quick else SMOLLM2)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    adapter = None if args.quick or not DEFAULT_ADAPTER.is_dir() else DEFAULT_ADAPTER
    all_types_adapter = DEFAULT_ALL_TYPES_ADAPTER if adapter and DEFAULT_ALL_TYPES_ADAPTER.is_dir() else None
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        if all_types_adapter:
            model.load_adapter(str(all_types_adapter), adapter_name="all_types", is_trainable=False)
            model.set_adapter("default")
    model = model.to(device).eval()
    max_new = 12 if args.quick else 48

    def run(n_sentences: int, n_types: int, mode: str) -> None:
        decoding = DecodingConfig(batch_size=32, max_new_tokens=max_new * (2 if mode == "all_types" else 1))
        if all_types_adapter:
            model.set_adapter("all_types" if mode == "all_types" else "default")
        extractor = CLLMFSExtractor(model, tokenizer, types[:n_types], prompt_mode=mode, decoding=decoding,
                                    format_hint=adapter is None)
        extractor.predict_sentences(episode.query[:n_sentences])

    sentence_points = [2, 4] if args.quick else args.cllmfs_sentences
    type_points = [1, 2] if args.quick else args.cllmfs_types
    fixed_sentences = 2 if args.quick else args.cllmfs_types_sentences
    points = [("sentences", n, 2, "per_type") for n in sentence_points]
    modes = ("per_type", "all_types") if all_types_adapter or args.quick else ("per_type",)
    points += [("types", t, fixed_sentences, mode) for mode in modes for t in type_points]
    run(1, 1, "per_type")  # warm-up (vocabulary trie, first allocations)
    measured: dict[str, list[dict]] = {}
    keys = [f"{axis}={value}/{n}/{mode}" for axis, value, n, mode in points]
    for repeat, key in rotations(keys, args.repeats):
        axis, value, n, mode = points[keys.index(key)]
        n_sentences, n_types = (value, n) if axis == "sentences" else (n, value)
        with PeakMemory(device) as memory, timer(device) as t:
            run(n_sentences, n_types, mode)
        measured.setdefault(key, []).append({"seconds": t["seconds"], "cpu_seconds": t["cpu_seconds"],
                                             "peak_rss_delta": memory.delta_rss, "peak_gpu": memory.peak_gpu})
        print(f"  cllmfs repeat {repeat + 1} {key}: {t['seconds']:.1f} s wall, {t['cpu_seconds']:.1f} s cpu",
              flush=True)
    rows = []
    for (axis, value, n, mode), key in zip(points, keys):
        n_sentences, n_types = (value, n) if axis == "sentences" else (n, value)
        seconds = median([r["seconds"] for r in measured[key]])
        cpu = median([r["cpu_seconds"] for r in measured[key]])
        rows.append({"axis": axis, "mode": mode, "sentences": n_sentences, "types": n_types,
                     "prompts": n_sentences * (n_types if mode == "per_type" else 1), "seconds": seconds,
                     "cpu_seconds": cpu, "cpu_seconds_per_sentence": cpu / n_sentences,
                     "peak_rss_delta_mib": mib(median([r["peak_rss_delta"] for r in measured[key]])),
                     "peak_gpu_mib": mib(median([r["peak_gpu"] for r in measured[key]]))
                     if measured[key][0]["peak_gpu"] is not None else None})
    return {"model": "tiny" if args.quick else SMOLLM2, "adapter": str(adapter) if adapter else None,
            "all_types_adapter": str(all_types_adapter) if all_types_adapter else None, "rows": rows}


# --- Multi-BERT ------------------------------------------------------------------------------------------


def multibert_worker(args) -> dict:
    """In a fresh process: load a saved model with N domain adapters, then tag sentences with them."""
    import torch

    from bench_multibert import mixed_documents
    from ner_adapters.multibert import MultiBertModel

    device = setup(args)
    rss_start = rss_bytes()
    started = time.perf_counter()
    mbert = MultiBertModel.load(args.worker_folder)
    load_seconds = time.perf_counter() - started
    rss_loaded = rss_bytes()
    mbert.model.to(device)
    sentences = [s.tokens for _, doc in mixed_documents(args.multibert_sentences) for s in doc]
    domains = mbert.domain_names()
    spread = [domains[i % len(domains)] for i in range(len(sentences))]
    mbert.predict(sentences[:8], domains[0])  # warm-up
    results = {}
    for name, assign in (("one_domain", [domains[0]] * len(sentences)), ("all_domains", spread)) * args.repeats:
        with timer(device) as t:
            mbert.predict_mixed(sentences, assign)
        results.setdefault(name, []).append(t["cpu_seconds" if device == "cpu" else "seconds"])
    return {"domains": len(domains), "load_seconds": load_seconds, "rss_start": rss_start, "rss_loaded": rss_loaded,
            "peak_rss": max_rss_bytes(), "sentences": len(sentences),
            "one_domain_seconds": results["one_domain"], "all_domains_seconds": results["all_domains"],
            "torch_threads": torch.get_num_threads()}


def multibert_scaling(args, device: str) -> dict:
    from bench_multibert import GENRES, build_model, mixed_documents, tiny_core
    from ner_adapters.models import MINILM, resolve_model
    from ner_adapters.multibert import DomainRouter

    core = str(tiny_core(TINY_DIR / "tiny-bert")) if args.quick else str(resolve_model(MINILM))
    counts = [2, 4] if args.quick else args.domains
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    built = {}
    try:
        build_model(core, ["warmup"], router=False)  # first-call costs out of the timings
        for count in counts:
            started = time.perf_counter()
            mbert = build_model(core, [f"d{i:02d}" for i in range(count)], router=False)
            build_seconds = time.perf_counter() - started  # core load + N fresh adapters, head, general adapter
            folder = mbert.save(workdir / f"domains-{count}")
            built[count] = {"build_seconds": build_seconds, "saved_bytes": folder_bytes(folder), "folder": str(folder)}
            del mbert
        runs: dict[int, list[dict]] = {c: [] for c in counts}
        keys = [str(c) for c in counts]
        for repeat, key in rotations(keys, 1 if args.quick else args.repeats):
            count = int(key)
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                out = f.name
            command = [sys.executable, __file__, "--worker-folder", built[count]["folder"], "--worker-out", out,
                       "--threads", str(args.threads), "--device", args.device, "--repeats", "1",
                       "--multibert-sentences", str(args.multibert_sentences)]
            done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
                raise SystemExit(f"worker for {count} domains failed")
            runs[count].append(json.loads(Path(out).read_text()))
            os.unlink(out)
            print(f"  multibert repeat {repeat + 1} {count} domains: load {runs[count][-1]['load_seconds']:.2f} s",
                  flush=True)
        rows = []
        for count in counts:
            rs = runs[count]
            one = median([median(r["one_domain_seconds"]) for r in rs])
            spread = median([median(r["all_domains_seconds"]) for r in rs])
            rows.append({
                "domains": count, "build_seconds": built[count]["build_seconds"],
                "saved_mib": mib(built[count]["saved_bytes"]),
                "load_seconds": median([r["load_seconds"] for r in rs]),
                "rss_loaded_mib": mib(median([r["rss_loaded"] for r in rs])),
                "rss_growth_load_mib": mib(median([r["rss_loaded"] - r["rss_start"] for r in rs])),
                "peak_rss_mib": mib(median([r["peak_rss"] for r in rs])),
                "sentences": rs[0]["sentences"],
                "one_domain_sent_per_s": rs[0]["sentences"] / one,  # per CPU second on a CPU
                "all_domains_sent_per_s": rs[0]["sentences"] / spread,
                "all_vs_one": median([median(r["one_domain_seconds"]) / median(r["all_domains_seconds"]) for r in rs]),
            })
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    # Routed pipeline vs number of sentences (5 genres, fresh router when no trained model is around).
    from bench_multibert import DEFAULT_MODEL
    from ner_adapters.multibert import MultiBertModel

    if not args.quick and DEFAULT_MODEL.is_dir():
        mbert = MultiBertModel.load(DEFAULT_MODEL)
    else:
        mbert = build_model(core, GENRES)
    mbert.model.to(device)
    router = DomainRouter(mbert)
    sizes = [32, 64] if args.quick else args.multibert_sizes
    documents = mixed_documents(max(sizes))
    router.tag_many([[s.tokens for s in doc] for _, doc in documents[:2]])  # warm-up
    measured: dict[str, list[dict]] = {}
    for repeat, key in rotations([str(s) for s in sizes], args.repeats):
        docs = [[s.tokens for s in doc] for _, doc in mixed_documents(int(key))]
        with PeakMemory(device) as memory, timer(device) as t:
            router.tag_many(docs)
        measured.setdefault(key, []).append({"seconds": t["seconds"], "cpu_seconds": t["cpu_seconds"],
                                             "peak_rss_delta": memory.delta_rss, "documents": len(docs)})
    size_rows = [{"sentences": s, "documents": measured[str(s)][0]["documents"],
                  "seconds": median([r["seconds"] for r in measured[str(s)]]),
                  "cpu_seconds": median([r["cpu_seconds"] for r in measured[str(s)]]),
                  "sentences_per_cpu_s": s / median([r["cpu_seconds"] for r in measured[str(s)]]),
                  "peak_rss_delta_mib": mib(median([r["peak_rss_delta"] for r in measured[str(s)]]))} for s in sizes]
    return {"core": "tiny" if args.quick else MINILM, "domain_rows": rows, "size_rows": size_rows}


def plots(result: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if "cllmfs" in result:
        written.append(plot_cllmfs(plt, result["cllmfs"]["rows"]))
    if "multibert" in result:
        written.append(plot_multibert(plt, result["multibert"]))
    return written


def _save(plt, fig, title: str, name: str) -> str:
    """Title, lay out and write a figure to ``docs/``; returns its path relative to the repository."""
    fig.suptitle(title)
    fig.tight_layout()
    path = DOCS / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path.relative_to(REPO_ROOT))


def plot_cllmfs(plt, rows) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sent = [r for r in rows if r["axis"] == "sentences"]
    axes[0].plot([r["sentences"] for r in sent], [r["cpu_seconds"] for r in sent], "o-", label="CPU seconds")
    axes[0].set_xlabel("sentences (2 types, per-type prompts)")
    axes[0].set_ylabel("CPU seconds")
    twin = axes[0].twinx()
    twin.plot([r["sentences"] for r in sent], [r["peak_rss_delta_mib"] for r in sent], "s--", color="tab:red")
    twin.set_ylabel("peak RSS growth (MiB)", color="tab:red")
    for mode, style in (("per_type", "o-"), ("all_types", "s-")):
        pts = [r for r in rows if r["axis"] == "types" and r["mode"] == mode]
        if pts:
            axes[1].plot([r["types"] for r in pts], [r["cpu_seconds"] for r in pts], style, label=mode)
    axes[1].set_xlabel(f"entity types ({next((r['sentences'] for r in rows if r['axis'] == 'types'), '?')} sentences)")
    axes[1].set_ylabel("CPU seconds")
    axes[1].legend()
    for ax in (axes[0], twin, axes[1]):
        ax.set_ylim(bottom=0)
    return _save(plt, fig, "CLLMFS extraction scaling (SmolLM2-135M, batched, constrained)", "perf_scaling_cllmfs.png")


def plot_multibert(plt, mb) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    d = mb["domain_rows"]
    xs = [r["domains"] for r in d]
    axes[0].plot(xs, [r["load_seconds"] for r in d], "o-")
    axes[0].set_xlabel("domain adapters")
    axes[0].set_ylabel("load seconds")
    twin = axes[0].twinx()
    twin.plot(xs, [r["rss_loaded_mib"] for r in d], "s--", color="tab:red")
    twin.set_ylabel("RSS after load (MiB)", color="tab:red")
    axes[1].plot(xs, [r["one_domain_sent_per_s"] for r in d], "o-", label="all sentences, one domain")
    axes[1].plot(xs, [r["all_domains_sent_per_s"] for r in d], "s-", label="spread over every domain")
    axes[1].set_xlabel("domain adapters")
    axes[1].set_ylabel("sentences / CPU s")
    axes[1].legend(fontsize=8)
    s = mb["size_rows"]
    axes[2].plot([r["sentences"] for r in s], [r["cpu_seconds"] for r in s], "o-")
    axes[2].set_xlabel("sentences (routed pipeline)")
    axes[2].set_ylabel("CPU seconds")
    for ax in (axes[0], twin, axes[1], axes[2]):
        ax.set_ylim(bottom=0)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for ax, ticks in ((axes[0], xs), (axes[1], xs), (axes[2], [r["sentences"] for r in s])):
        ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    return _save(plt, fig, "Multi-BERT scaling (MiniLM core)", "perf_scaling_multibert.png")


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--parts", nargs="+", default=["cllmfs", "multibert"], choices=["cllmfs", "multibert"])
    parser.add_argument("--cllmfs-sentences", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--cllmfs-types", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--cllmfs-types-sentences", type=int, default=4)
    parser.add_argument("--domains", type=int, nargs="+", default=[2, 10, 50])
    parser.add_argument("--multibert-sentences", type=int, default=512)
    parser.add_argument("--multibert-sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--plots", action="store_true", help="write the PNGs in --quick mode too")
    parser.add_argument("--worker-folder", help=argparse_suppress())
    parser.add_argument("--worker-out", help=argparse_suppress())
    parser.add_argument("--replot", action="store_true", help="only redraw the PNGs from the saved results")
    args = parser.parse_args()
    if args.replot:
        saved: dict = {}
        for name in ("scaling", "scaling_cllmfs", "scaling_multibert"):
            path = _common.RESULTS_DIR / f"{name}.json"
            if path.is_file():
                saved.update({k: v for k, v in json.loads(path.read_text()).items() if k in ("cllmfs", "multibert")})
        print(f"plots: {plots(saved)}")
        return
    if args.worker_folder:
        Path(args.worker_out).write_text(json.dumps(multibert_worker(args)))
        return
    if args.quick:
        args.repeats, args.multibert_sentences = 1, 32
    device = setup(args)
    machine = machine_info(device)
    result: dict = {}
    if "cllmfs" in args.parts:
        print("CLLMFS extraction scaling", flush=True)
        result["cllmfs"] = cllmfs_scaling(args, device)
        print(table(result["cllmfs"]["rows"], ["axis", "mode", "sentences", "types", "prompts", "seconds",
                                               "cpu_seconds", "cpu_seconds_per_sentence", "peak_rss_delta_mib"]))
    if "multibert" in args.parts:
        print("Multi-BERT scaling", flush=True)
        result["multibert"] = multibert_scaling(args, device)
        print(table(result["multibert"]["domain_rows"], ["domains", "build_seconds", "saved_mib", "load_seconds",
                                                         "rss_loaded_mib", "rss_growth_load_mib", "peak_rss_mib",
                                                         "one_domain_sent_per_s", "all_domains_sent_per_s",
                                                         "all_vs_one"]))
        print()
        print(table(result["multibert"]["size_rows"], ["sentences", "documents", "seconds", "cpu_seconds",
                                                       "sentences_per_cpu_s", "peak_rss_delta_mib"]))
    if not args.quick or args.plots:
        result["plots"] = plots(result)
        print(f"plots: {result['plots']}")
    name = "scaling" if len(args.parts) == 2 else f"scaling_{args.parts[0]}"
    write_results(name, args, device, result, machine)


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
