#!/usr/bin/env python
"""Collect finished CLLMFS harness runs into ``docs/results/cllmfs.json``, the summary a script can check.

    python benchmarks/cllmfs_summary.py outputs/cllmfs/wnut17_intra outputs/cllmfs/wnut17_intra_proto \\
        outputs/cllmfs/wnut17_intra_nnshot outputs/cllmfs/wnut17_intra_zero_shot
    python benchmarks/cllmfs_summary.py outputs/cllmfs/gum_to_wnut17_* --out docs/results/cllmfs.json

Each argument is a run folder of ``recipes/sft_cllmfs.py`` (its ``config.yaml``, its summary ``results.json``
and one ``episode-<i>/results.json`` per episode). Runs are grouped into settings by protocol, source and target;
a setting holds one run per method, all on the same episodes (same ids, same order, the same number of query
sentences) and, for every method that learns from them (all but zero-shot prompting), the same labelled support
sentences (the ids in each run's ``episodes.jsonl``), or the script stops and says which run differs. Zero-shot
prompting reads no support, so its run may come from episodes with other support sets (another ``n_support_sets``)
as long as its query sentences are the same ones, in the same order (their ids in ``episodes.jsonl``); for the
same reason an INTER zero-shot run joins every given pair into its target whose queries it scored (one run of
``wnut17 -> conll2003`` serves ``gum -> conll2003``), and forms its own setting only where none matches. Each
setting becomes one entry::

    {"name": "wnut17_intra", "kind": "intra", "source": "wnut17", "target": "wnut17", "model": "<LLM id>",
     "query_size": 500, "command": "...", "f1": {"cllmfs": [...], "proto": [...], "nnshot": [...],
     "zero_shot": [...]}, "episodes": [...], "runs": {"cllmfs": "<folder>", ...}}

and ``"support_sentences"`` (per episode: how many labelled sentences every method was given: one 5-shot
set is about 30 for 6 types, ``n_support_sets: 5`` about five times that) and ``"costs"`` (per method, per
episode: training seconds, query sentences/s, peak memory, where recorded),
with micro-F1 in % per episode (names ``<source>_intra`` and ``<source>_to_<target>_inter``). The file is
updated in place: a setting of the same name is replaced, the others are kept. ``command`` is ``--command``
when given (one setting only), else the ``command.txt`` each run folder holds (the recipe writes it), one line
per method.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "results" / "cllmfs.json"
METHODS = ("cllmfs", "proto", "nnshot", "zero_shot")
#: Per-episode costs the harness records, copied beside F1 (``"costs": {method: {key: [per episode]}}``).
COSTS = ("train_seconds", "predict_seconds", "query_sentences_per_second", "peak_rss_mib", "peak_gpu_mib")


class SummaryError(ValueError):
    """Runs that cannot be summarised as asked (missing files, mismatched episodes, two runs of one method)."""


def read_run(folder: Path) -> dict:
    """One finished run: its method, setting, model, episode ids and per-episode micro-F1 (in %)."""
    try:
        summary = json.loads((folder / "results.json").read_text(encoding="utf-8"))
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise SummaryError(f"{folder}: not a finished CLLMFS run ({err})") from None
    episodes, f1, costs = [], [], {}
    for index in range(len(summary.get("episodes", []))):
        path = folder / f"episode-{index}" / "results.json"
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise SummaryError(f"{path}: missing or unreadable ({err})") from None
        episodes.append(result["episode"])
        f1.append(round(100 * result["scores"]["micro"]["f1"], 2))
        for key in COSTS:
            if key in result:  # a resumed episode's train time misses the steps before its checkpoint: unknown
                unknown = key == "train_seconds" and result.get("resumed_from_checkpoint")
                costs.setdefault(key, []).append(None if unknown else round(result[key], 2))
    if not episodes:
        raise SummaryError(f"{folder}: its results.json lists no episodes")
    command = folder / "command.txt"
    support, queries = read_sentence_ids(folder, episodes)
    return {
        "folder": str(folder), "method": summary["method"], "kind": summary["protocol"], "source": summary["source"],
        "target": summary["target"], "query_sentences": summary.get("query_sentences", []),
        "model": (config.get("model") or {}).get("model_name_or_path"), "episodes": episodes, "f1": f1, "costs": costs,
        "support": support, "queries": queries,
        "command": command.read_text(encoding="utf-8").strip() if command.is_file() else None,
    }


def read_sentence_ids(folder: Path, episodes: list[str]) -> tuple[list[list[str]] | None, list[list[str]] | None]:
    """The support and the query sentence ids of each episode the run scored, from its ``episodes.jsonl``
    (``None, None``: no file; queries ``None`` when the file does not list them)."""
    path = folder / "episodes.jsonl"
    if not path.is_file():
        return None, None
    by_id = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                episode = json.loads(line)
                by_id[episode["id"]] = ([sentence["id"] for sentence in episode["support"]],
                                        [sentence["id"] for sentence in episode["query"]] if "query" in episode else None)
            except (ValueError, KeyError, TypeError) as err:
                raise SummaryError(f"{path}, line {number}: not an episode ({err})") from None
    missing = [episode for episode in episodes if episode not in by_id]
    if missing:
        raise SummaryError(f"{path}: no episode {missing[0]!r}, which the run scored")
    queries = [by_id[episode][1] for episode in episodes]
    return [by_id[episode][0] for episode in episodes], None if None in queries else queries


def same_queries(run: dict, reference: dict) -> bool:
    """Whether ``run`` scored exactly ``reference``'s query sentences, episode by episode (ids, order)."""
    return run["queries"] is not None and run["queries"] == reference["queries"]


def setting_name(kind: str, source: str, target: str) -> str:
    clean = lambda label: label.replace("/", "-")  # noqa: E731  (gum/news -> gum-news)
    return f"{clean(source)}_intra" if kind == "intra" else f"{clean(source)}_to_{clean(target)}_inter"


def build_settings(runs: list[dict], command: str | None = None, name: str | None = None) -> list[dict]:
    """Group runs into settings and check that their methods ran on the same episodes."""
    grouped: dict[tuple, list[dict]] = {}
    floating = []  # INTER zero-shot prompting reads nothing of its source: it may serve every pair into its target
    for run in runs:
        if run["method"] == "zero_shot" and run["kind"] == "inter":
            floating.append(run)
        else:
            grouped.setdefault((run["kind"], run["source"], run["target"]), []).append(run)
    for run in floating:
        homes = [key for key, members in grouped.items()
                 if key[0] == "inter" and key[2] == run["target"] and any(same_queries(run, m) for m in members)]
        for key in homes or [(run["kind"], run["source"], run["target"])]:
            grouped.setdefault(key, []).append(run)
    if (command or name) and len(grouped) != 1:
        raise SummaryError(f"--command/--name name one setting, but the runs form {len(grouped)}: "
                           f"{', '.join(setting_name(*key) for key in grouped)}")
    settings = []
    for (kind, source, target), members in grouped.items():
        by_method: dict[str, dict] = {}
        for run in members:
            if run["method"] in by_method:
                raise SummaryError(f"two {run['method']} runs for {setting_name(kind, source, target)}: "
                                   f"{by_method[run['method']]['folder']} and {run['folder']}; summarise one")
            by_method[run["method"]] = run
        first = next((run for m, run in by_method.items() if m != "zero_shot"), next(iter(by_method.values())))
        for method, run in by_method.items():
            if method == "zero_shot" and run is not first and same_queries(run, first):
                continue  # no support read: the same queries are the same comparison, whatever the support sets
            if run["episodes"] != first["episodes"] or run["query_sentences"] != first["query_sentences"]:
                raise SummaryError(f"{run['folder']} ran on other episodes than {first['folder']} "
                                   f"({run['episodes']} vs {first['episodes']}): every method needs the same ones")
        learners = [run for m, run in by_method.items() if m != "zero_shot" and run["support"] is not None]
        for run in learners[1:]:
            if run["support"] != learners[0]["support"]:
                raise SummaryError(f"{run['folder']} was given other support sentences than {learners[0]['folder']}: "
                                   "every method needs the same labelled sentences")
        llm_runs = [run for m, run in by_method.items() if m in ("cllmfs", "zero_shot")]
        models = {run["model"] for run in llm_runs}
        if len(models) > 1:
            raise SummaryError(f"{setting_name(kind, source, target)}: the LLM runs use different models {sorted(models)}")
        if command is None:
            missing = [run["folder"] for run in by_method.values() if not run["command"]]
            if missing:
                raise SummaryError(f"no command.txt in {', '.join(missing)}: pass --command")
        sizes = set(first["query_sentences"])
        settings.append({
            "name": name or setting_name(kind, source, target), "kind": kind, "source": source, "target": target,
            "model": models.pop() if models else None,
            "query_size": sizes.pop() if len(sizes) == 1 else sorted(sizes),
            "command": command or "\n".join(by_method[m]["command"] for m in METHODS if m in by_method),
            "f1": {m: by_method[m]["f1"] for m in METHODS if m in by_method},
            "episodes": first["episodes"],
            "support_sentences": [len(ids) for ids in learners[0]["support"]] if learners else None,
            "runs": {m: by_method[m]["folder"] for m in METHODS if m in by_method},
            "costs": {m: by_method[m]["costs"] for m in METHODS if m in by_method and by_method[m]["costs"]},
        })
    return settings


def update_file(path: Path, settings: list[dict]) -> dict:
    """Replace settings of the same name in ``path`` (created if absent), keep the others, in their order."""
    data = {"settings": []}
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("settings"), list):
            raise SummaryError(f"{path}: expected {{\"settings\": [...]}}")
    index = {s["name"]: i for i, s in enumerate(data["settings"])}
    for setting in settings:
        if setting["name"] in index:
            data["settings"][index[setting["name"]]] = setting
        else:
            data["settings"].append(setting)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of recipes/sft_cllmfs.py")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"summary file (default {DEFAULT_OUT})")
    parser.add_argument("--command", help="the command(s) of the setting, when the runs hold no command.txt")
    parser.add_argument("--name", help="the setting's name (default <source>_intra / <source>_to_<target>_inter)")
    args = parser.parse_args(argv)
    try:
        settings = build_settings([read_run(folder) for folder in args.runs], args.command, args.name)
        update_file(args.out, settings)
    except SummaryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for setting in settings:
        means = {m: round(sum(v) / len(v), 2) for m, v in setting["f1"].items()}
        print(f"{setting['name']}: {len(setting['episodes'])} episode(s), mean micro-F1 {means} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
