"""Average a Multi-BERT table over training seeds: per-domain mean, std and per-seed F1, and the issue's two
tagging comparisons counted on every seed and on the means.

    python benchmarks/multibert_seeds.py outputs/multibert/parsner_e5_keep/results.json \
        outputs/multibert/parsner_e5_baselines/results.json outputs/multibert/parsner_e5_seed1/results.json \
        outputs/multibert/parsner_e5_seed2/results.json --out docs/results/multibert_seeds.json

Why: a domain's test set of ~200 entities moves F1 by about 3 points from sampling alone, so "Multi-BERT above
General-BERT on most domains" read off one seed can flip on the next. Each ``results.json`` is one run (its seed is
``config.training.seed``); runs may hold different variants (the adapters in one run, the baselines in another) but
must score the same table: the same core and the same data settings (domains, splits, caps), checked. Training
settings that differ from the first run's are listed, not refused (a baseline does not read the adapters'
settings). A (variant, seed) pair given twice is an error. ``--out`` writes one JSON entry per table and core:

    {"tables": [{"name": "parsner", "core": "...", "seeds": [1, 2, 42], "runs": [...],
                 "f1": {"multibert": {"academic": {"mean": 47.1, "std": 0.9, "per_seed": {"42": 46.6, ...}}}},
                 "comparisons": {"multibert_above_general_bert": {"per_seed": {"42": 5}, "on_means": 6,
                                                                   "domains": 10, "seeds": [1, 2, 42]}, ...}}]}
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
from pathlib import Path

from ner_adapters.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "results" / "multibert_seeds.json"
# Settings that name, place or schedule a run rather than change what it learns.
_RUN_ONLY = {"output_dir", "variants", "seed", "save_model", "keep_checkpoints", "resume_from_checkpoint",
             "torch_threads", "logging_steps", "train_router"}


def _summary_module():
    spec = importlib.util.spec_from_file_location("multibert_summary", Path(__file__).with_name("multibert_summary.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SeedsError(ValueError):
    """Runs that cannot be averaged together; the message names the file."""


def _settings(results: dict) -> dict:
    config = results["config"]
    flat = {f"training.{k}": v for k, v in config.get("training", {}).items() if k not in _RUN_ONLY}
    flat.update({f"router.{k}": v for k, v in config.get("router", {}).items() if k not in _RUN_ONLY})
    flat.update({f"model.{k}": v for k, v in config["model"].items() if k != "core_model"})
    return flat


def collect(runs: list[tuple[str, dict]]) -> dict:
    """One table entry from ``(path, results)`` pairs of runs that differ in seed (and variants)."""
    if not runs:
        raise SeedsError("no runs given")
    summary = _summary_module()
    first_path, first = runs[0]
    name, core, data = summary.table_name(first), first["config"]["model"]["core_model"], first["config"]["data"]
    scores: dict[str, dict[int, dict[str, float]]] = {}
    described, base = [], _settings(first)
    for path, results in runs:
        if results.get("complete") is False:
            raise SeedsError(f"{path}: the run had not finished (complete: false)")
        if summary.table_name(results) != name or results["config"]["model"]["core_model"] != core:
            raise SeedsError(f"{path}: table {summary.table_name(results)} / core "
                             f"{results['config']['model']['core_model']}, not {name} / {core} as {first_path}")
        if results["config"]["data"] != data:
            keys = sorted(k for k in set(data) | set(results["config"]["data"])
                          if data.get(k) != results["config"]["data"].get(k))
            raise SeedsError(f"{path}: data settings {keys} differ from {first_path}'s: not the same test sets")
        seed = int(results["config"]["training"]["seed"])
        variants = sorted(v for v in results.get("f1", {}) if results["f1"][v])
        for variant in variants:
            if seed in scores.setdefault(variant, {}):
                raise SeedsError(f"{path}: {variant} at seed {seed} is given twice")
            scores[variant][seed] = {d: 100 * f for d, f in results["f1"][variant].items()}
        own = _settings(results)
        differs = sorted(k for k in set(base) | set(own) if base.get(k) != own.get(k))
        described.append({"results": str(path), "seed": seed, "variants": variants, "command": results.get("command"),
                          "settings_differing_from_first": {k: own.get(k) for k in differs}})
    f1 = {}
    for variant, by_seed in scores.items():
        domains = sorted({d for per in by_seed.values() for d in per})
        f1[variant] = {}
        for domain in domains:
            values = {seed: per[domain] for seed, per in sorted(by_seed.items()) if domain in per}
            f1[variant][domain] = {"mean": statistics.fmean(values.values()),
                                   "std": statistics.stdev(values.values()) if len(values) > 1 else None,
                                   "per_seed": {str(s): v for s, v in values.items()}}
    comparisons = {}
    for key, other, test in (("multibert_above_general_bert", "general_bert", lambda a, b: a > b),
                             ("multibert_within_2_of_spec_bert", "spec_bert", lambda a, b: a >= b - 2)):
        if "multibert" in scores and other in scores:
            comparisons[key] = compare(scores["multibert"], scores[other], test)
    return {"name": name, "core": core, "seeds": sorted({r["seed"] for r in described}), "runs": described,
            "f1": f1, "comparisons": comparisons}


def compare(ours: dict[int, dict[str, float]], theirs: dict[int, dict[str, float]], test) -> dict:
    """Domains where ``test(ours, theirs)`` holds: on each seed both have, and on the means over those seeds.

    A baseline trained at a single seed is compared with every seed of Multi-BERT, and its means are that value."""
    if len(theirs) == 1:
        only = next(iter(theirs))
        pairs = [(s, only) for s in sorted(ours)]
    else:
        pairs = [(s, s) for s in sorted(set(ours) & set(theirs))]
        if not pairs:
            raise SeedsError("the two variants share no seed, and the baseline has more than one run")
    domains = sorted(set.intersection(*(set(ours[a]) & set(theirs[b]) for a, b in pairs)))
    per_seed = {str(a) if a == b else f"{a} vs {b}": sum(test(ours[a][d], theirs[b][d]) for d in domains)
                for a, b in pairs}
    mean = lambda side, seeds, d: statistics.fmean(side[s][d] for s in seeds)  # noqa: E731
    ours_seeds, theirs_seeds = sorted({a for a, _ in pairs}), sorted({b for _, b in pairs})
    on_means = sum(test(mean(ours, ours_seeds, d), mean(theirs, theirs_seeds, d)) for d in domains)
    return {"per_seed": per_seed, "on_means": on_means, "domains": len(domains),
            "seeds": {"multibert": ours_seeds, "baseline": theirs_seeds}}


def markdown(entry: dict) -> str:
    """The entry as a table: one row per variant, per-domain mean ± std, then the comparisons."""
    variants = list(entry["f1"])
    domains = sorted({d for v in variants for d in entry["f1"][v]})
    lines = [f"{entry['name']} / {entry['core']}, test F1 %, mean ± std over seeds {entry['seeds']}", "",
             "| variant (seeds) | " + " | ".join(domains) + " | mean |", "|---" * (len(domains) + 2) + "|"]
    for v in variants:
        cells, means = [], []
        for d in domains:
            cell = entry["f1"][v].get(d)
            if cell is None:
                cells.append("")
                continue
            means.append(cell["mean"])
            cells.append(f"{cell['mean']:.1f}" + (f" ± {cell['std']:.1f}" if cell["std"] is not None else ""))
        seeds = sorted({s for d in entry["f1"][v].values() for s in d["per_seed"]}, key=int)
        lines.append(f"| {v} ({', '.join(seeds)}) | " + " | ".join(cells)
                     + f" | {statistics.fmean(means):.1f} |")
    for key, c in entry["comparisons"].items():
        per = ", ".join(f"seed {s}: {n}" for s, n in c["per_seed"].items())
        lines.append(f"\n{key.replace('_', ' ')}: {per}; on the means {c['on_means']} of {c['domains']} domains")
    return "\n".join(lines)


def rounded(value):
    """``value`` with every float rounded to 2 decimals, for the JSON file only: the table and the comparisons
    use full precision (rounding to 2 and then to 1 decimal printed 76.948 as 77.0)."""
    if isinstance(value, float):
        return round(value, 2)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def update(path: Path, entry: dict) -> None:
    """Write ``entry`` into the file at ``path``, replacing the entry of its table and core (atomic)."""
    entry = rounded(entry)
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"tables": []}
    tables = [t for t in data.get("tables", []) if (t["name"], t["core"]) != (entry["name"], entry["core"])]
    data["tables"] = sorted([*tables, entry], key=lambda t: (t["name"], t["core"]))
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, nargs="+", help="finished runs' results.json, one seed each")
    parser.add_argument("--out", type=Path, help=f"JSON file to write the entry into (e.g. {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    runs = []
    for path in args.results:
        try:
            runs.append((str(path), json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError) as err:
            print(f"{path}: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
    try:
        entry = collect(runs)
    except (SeedsError, KeyError) as err:
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        return 1
    if args.out:
        update(args.out, entry)
    print(markdown(entry))
    return 0


if __name__ == "__main__":
    sys.exit(main())
