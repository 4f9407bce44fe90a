"""Print the Markdown tables of the saved benchmark results (``benchmarks/results/*.json``), as pasted in the README.

    python benchmarks/report.py                 # every results file
    python benchmarks/report.py cllmfs_train    # one of them
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import RESULTS_DIR, table


def header(data: dict) -> str:
    m = data["machine"]
    load = " -> ".join(f"{m[k][0]:.1f}" for k in ("loadavg_start", "loadavg_end") if k in m)
    return (f"`{data['command']}` ({data['timestamp']}; {m['cpu_model']}, {m['logical_cores']} cores, "
            f"{m['torch_threads']} torch thread(s), device {m['device']}, 1-min load average {load})")


def report(path: Path) -> str:
    data = json.loads(path.read_text())
    name = data["benchmark"]
    out = [f"### {name}", "", header(data), ""]
    for run in data.get("memory_runs", []):
        mm = run["machine"]
        out += [f"Peak RSS of {', '.join(run['variants'])} (re-)measured by `{run['command']}` (1-min load average "
                f"{mm['loadavg_start'][0]:.1f} -> {mm['loadavg_end'][0]:.1f}).", ""]
    if "rows" in data and "columns" in data:
        out.append(table(data["rows"], data["columns"]))
    if "ratios" in data:
        out += ["", f"| ratio ({data.get('ratio_clock', 'seconds').replace('_', ' ')}) | value |", "|---|---|"]
        out += [f"| {k} | {v:.3f} |" for k, v in data["ratios"].items()]
    if "costs" in data:
        out += ["", "| cost | value |", "|---|---|"]
        out += [f"| {k} | {v:.4g} |" for k, v in data["costs"].items()]
    if name.startswith("scaling"):
        if "cllmfs" in data:
            out.append(table(data["cllmfs"]["rows"], ["axis", "mode", "sentences", "types", "prompts", "seconds",
                                                     "cpu_seconds", "cpu_seconds_per_sentence", "peak_rss_delta_mib"]))
        if "multibert" in data:
            out += ["", table(data["multibert"]["domain_rows"], [
                "domains", "build_seconds", "saved_mib", "load_seconds", "rss_loaded_mib", "rss_growth_load_mib",
                "peak_rss_mib", "one_domain_sent_per_s", "all_domains_sent_per_s", "all_vs_one"])]
            out += ["", table(data["multibert"]["size_rows"], ["sentences", "documents", "seconds", "cpu_seconds",
                                                               "sentences_per_cpu_s", "peak_rss_delta_mib"])]
    if "targets" in data:
        out += ["", f"targets: `{json.dumps(data['targets'])}`"]
    return "\n".join(out) + "\n"


MINE = ("cllmfs_train", "cllmfs_extract", "cllmfs_extract_all_types", "multibert", "scaling", "scaling_cllmfs",
        "scaling_multibert")


def main():
    names = sys.argv[1:] or [n for n in MINE if (RESULTS_DIR / f"{n}.json").is_file()]
    for name in names:
        print(report(RESULTS_DIR / f"{name}.json"))


if __name__ == "__main__":
    main()
