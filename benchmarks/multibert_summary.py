"""Add a finished Multi-BERT run's summary to ``docs/results/multibert.json`` (one entry per table and core).

    python benchmarks/multibert_summary.py outputs/multibert/formal_informal/results.json
    python benchmarks/multibert_summary.py outputs/multibert/fi_router/results.json --merge   # a second run, same table
    python benchmarks/multibert_summary.py outputs/multibert/stopped/results.json --merge --partial  # a stopped run

Why a script: the issue's targets are checked by reading that file, so every table must be written in one shape,
from the run's own ``results.json`` (never re-typed):

    {"tables": [{"name": "formal_informal", "core": "<model id>", "command": "...", "trainable_percent": 0.4,
                 "trainable_percent_body": 1.9, "router_accuracy": 0.99, "router_pooling": "mean",
                 "router_accuracy_by_pooling": {"mean": 0.99, "cls": 0.96},
                 "f1": {"multibert": {"arman": 61.0, ...}, "spec_bert": {...}, ...}}, ...]}

F1 is in % (results.json holds fractions), router accuracy a fraction. ``trainable_percent`` is the largest number
of parameters a Multi-BERT domain trains (its step-2 adapter; the adapter and head for a single-domain scheme) in %
of all core parameters; ``trainable_percent_body`` the same in % of the core outside its embedding layer (a
multilingual core is mostly word embeddings, which no adapter touches).

The table name comes from the run's domains (``uner_genres``, ``gum_genres``, ``formal_informal``, ``parsner``) or
``--name``; the core from the run's ``core_model`` or ``--core``. An entry with the same name and core is replaced,
or with ``--merge`` updated: the run's variants replace those of the entry, the others stay, commands are joined.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ner_adapters.atomic import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "results" / "multibert.json"
TABLES = ("uner_genres", "gum_genres", "formal_informal", "parsner")
VARIANTS = ("multibert", "spec_bert", "general_bert", "general_adapter", "multibert_scratch", "routed")


class SummaryError(ValueError):
    """A results file that cannot be summarised; the message says why."""


def table_name(results: dict) -> str:
    """The table a run belongs to, from the datasets of its domains."""
    datasets = {spec.split("=")[0].split(":")[0] for spec in results["config"]["data"]["domains"]}
    if datasets == {"uner_en_ewt"}:
        return "uner_genres"
    if datasets == {"gum"}:
        return "gum_genres"
    if datasets == {"arman", "parstwiner"}:
        return "formal_informal"
    if datasets == {"parsner"}:
        return "parsner"
    raise SummaryError(f"domains of datasets {sorted(datasets)} are none of the tables {list(TABLES)}; pass --name")


def trainable_per_domain(results: dict) -> int | None:
    """The most parameters one Multi-BERT domain trains (step 2), over the run's schemes."""
    rows = [r for r in results.get("parameters", []) if r["variant"].startswith("multibert [")]
    if not rows:
        rows = [r for r in results.get("parameters", []) if r["variant"] == "multibert_scratch"]
    return max((r["trainable"] for r in rows), default=None)


def summarize(results: dict, *, name: str | None = None, core: str | None = None, partial: bool = False) -> dict:
    """One table entry from a run's ``results.json`` content (a stopped run's only with ``partial``)."""
    if results.get("complete") is False and not partial:  # files from before the flag are complete runs
        raise SummaryError("the run had not finished (results.json says complete: false); pass --partial to "
                           "summarise the variants it scored")
    name = name or table_name(results)
    if name not in TABLES:
        raise SummaryError(f"table name {name!r} is not one of {list(TABLES)}")
    core = core or results["config"]["model"]["core_model"]
    if Path(core).is_absolute() or core.startswith("."):
        raise SummaryError(f"core {core!r} is a local folder; pass --core with the model id it holds")
    f1 = {variant: {domain: round(100 * value, 2) for domain, value in results["f1"][variant].items()}
          for variant in VARIANTS if results.get("f1", {}).get(variant)}
    router = results.get("router") or {}
    pooling = router.get("pooling", "cls") if router else None  # runs before router_pooling existed read [CLS]
    entry = {"name": name, "core": core, "command": results.get("command", ""), "f1": f1,
             "router_accuracy": router.get("accuracy"), "router_pooling": pooling,
             "router_accuracy_by_pooling": {pooling: router["accuracy"]} if router else {},
             "trainable_percent": None, "trainable_percent_body": None,
             "adapter_kind": results.get("adapter_kind"),
             "wall_minutes": round(results.get("wall_seconds", 0) / 60, 1)}
    trainable, total = trainable_per_domain(results), results.get("core_parameters") or 0
    if trainable is not None and total:
        entry["trainable_percent"] = round(100 * trainable / total, 4)
        embeddings = results.get("core_embedding_parameters") or 0
        if embeddings:
            entry["trainable_percent_body"] = round(100 * trainable / (total - embeddings), 4)
    if not f1 and entry["router_accuracy"] is None:
        raise SummaryError("the run measured no variant and no router")
    return entry


def merge(old: dict, new: dict) -> dict:
    """``new``'s measurements over ``old``'s: variants it has replace old ones, fields it lacks stay.

    A router measured with another pooling than the entry's is added to ``router_accuracy_by_pooling`` only:
    ``router_accuracy`` stays the one of the entry's pooling (the run that tagged ``routed``)."""
    skip = {"f1", "command", "router_accuracy_by_pooling", "wall_minutes"}
    if "multibert" not in new.get("f1", {}) and old.get("trainable_percent") is not None:
        # without Multi-BERT the run's count is the scratch adapter's (adapter + own head), not a Multi-BERT domain's
        skip |= {"trainable_percent", "trainable_percent_body"}
    if old.get("router_pooling") and new.get("router_pooling") not in (None, old["router_pooling"]):
        skip |= {"router_accuracy", "router_pooling"}
    merged = {**old, **{k: v for k, v in new.items() if v is not None and k not in skip}}
    merged["f1"] = {**old.get("f1", {}), **new["f1"]}
    merged["router_accuracy_by_pooling"] = {**old.get("router_accuracy_by_pooling", {}),
                                            **new.get("router_accuracy_by_pooling", {})}
    commands = [c for c in (old.get("command"), new.get("command")) if c]
    merged["command"] = " ; ".join(dict.fromkeys(commands))
    if new.get("command") not in (old.get("command") or "").split(" ; "):  # the runs' wall times add up
        merged["wall_minutes"] = round((old.get("wall_minutes") or 0) + (new.get("wall_minutes") or 0), 1)
    return merged


def update(path: Path, entry: dict, *, merge_entry: bool = False) -> dict:
    """Add ``entry`` to the summary file at ``path`` (replacing, or merging into, the one of its table and core)."""
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"tables": []}
    tables = data.setdefault("tables", [])
    key = (entry["name"], entry["core"])
    for i, existing in enumerate(tables):
        if (existing["name"], existing["core"]) == key:
            tables[i] = merge(existing, entry) if merge_entry else entry
            break
    else:
        tables.append(entry)
    tables.sort(key=lambda t: (TABLES.index(t["name"]) if t["name"] in TABLES else len(TABLES), t["core"]))
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="a finished run's results.json")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", choices=TABLES, help="the table (default: from the run's domains)")
    parser.add_argument("--core", help="the core's model id (default: the run's core_model)")
    parser.add_argument("--merge", action="store_true", help="update the entry of this table and core")
    parser.add_argument("--partial", action="store_true",
                        help="accept a stopped run's results.json (the variants it finished before it stopped)")
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
        entry = summarize(results, name=args.name, core=args.core, partial=args.partial)
    except (OSError, ValueError, KeyError) as err:
        print(f"{args.results}: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    update(args.out, entry, merge_entry=args.merge)
    print(json.dumps(entry, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
