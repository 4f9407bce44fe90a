#!/usr/bin/env python
"""Push trained artifacts to the Hugging Face Hub, one repo each, with generated model cards.

    python recipes/push_to_hub.py --config recipes/push/default.yaml
    python recipes/push_to_hub.py --config recipes/push/default.yaml --namespace my-org --private true
    python recipes/push_to_hub.py --config recipes/push/default.yaml --dry_run true   # export + cards only
    python recipes/push_to_hub.py --config recipes/push/default.yaml --push_space true  # then the demo Space

Multi-BERT: every domain adapter of ``multibert_dir`` (adapter + head + label map + core fingerprint) goes to
``<namespace>/<repo_prefix>-<domain>``, then the domain classifier to ``<namespace>/<repo_prefix>-router``
(it pins the revisions of the adapters it routes to). CLLMFS: the LoRA adapter of each episode of each run in
``cllmfs_runs`` goes to ``<namespace>/<repo_prefix>-cllmfs-<run>[-episode-<i>]``. Cards come from the
templates in ``ner_adapters/hub/card_templates/`` (linked from ``model_cards/``) with the scores of the run's ``results.json``.

Re-running with unchanged artifacts makes no commit; a push that failed midway is finished by running the
same command again. The token comes from HF_TOKEN or ``huggingface-cli login`` and is never printed. The
list of pushed repos (ids, commits, what changed) goes to ``report_file``; ``recipes/push_space.py`` reads it.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PushArguments:
    """What to push and where."""

    multibert_dir: str | None = field(default=None, metadata={
        "help": "A saved Multi-BERT model folder (recipes/train_multibert.py writes <output_dir>/model)."})
    multibert_results: str | None = field(default=None, metadata={
        "help": "The run's results.json (default: next to the model folder)."})
    multibert_domains: list[str] | None = field(default=None, metadata={
        "help": "Only these domain adapters (default: all, general adapters included)."})
    push_router: bool = field(default=True, metadata={"help": "Push the domain classifier too."})
    core_model: str | None = field(default=None, metadata={
        "help": "Hub id of the Multi-BERT core, when it was trained from a local folder."})
    cllmfs_base_model: str | None = field(default=None, metadata={
        "help": "Hub id of the CLLMFS base LLM, when it was trained from a local folder."})
    cllmfs_runs: list[str] = field(default_factory=list, metadata={
        "help": "CLLMFS run folders (recipes/sft_cllmfs.py's output_dir)."})
    cllmfs_episodes: list[int] | None = field(default=None, metadata={
        "help": "Only these episodes of each run (default: every episode with an adapter)."})
    namespace: str | None = field(default=None, metadata={"help": "User or organisation (default: the token's user)."})
    repo_prefix: str = field(default="ner-adapters", metadata={"help": "Start of every repo name."})
    private: bool = field(default=False, metadata={"help": "Create the repos as private."})
    template_dir: str | None = field(default=None, metadata={
        "help": "Model card templates (default: the ones shipped in the package, linked from model_cards/)."})
    example: str | None = field(default=None, metadata={"help": "The example sentence of the usage snippets."})
    license: str | None = field(default=None, metadata={
        "help": "Licence id for the cards (default: the training data's, or 'other')."})
    export_dir: str = field(default="outputs/hub/export", metadata={"help": "Where each repo's folder is exported."})
    report_file: str = field(default="outputs/hub/push_report.json", metadata={"help": "JSON list of pushed repos."})
    dry_run: bool = field(default=False, metadata={"help": "Export folders and cards only; no network."})
    push_space: bool = field(default=False, metadata={"help": "Then push the demo Space loading these models."})
    space_id: str | None = field(default=None, metadata={"help": "The Space (default: <namespace>/<repo_prefix>-demo)."})
    space_dir: str = field(default="spaces", metadata={"help": "The Space's source folder."})


def run(args: PushArguments) -> list[dict]:
    from ner_adapters.hub.push import push_cllmfs_run, push_multibert, push_space, space_models

    if not args.multibert_dir and not args.cllmfs_runs:
        raise SystemExit("nothing to push: set multibert_dir and/or cllmfs_runs")
    api = None
    namespace = args.namespace
    if not args.dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
        namespace = namespace or api.whoami()["name"]
    namespace = namespace or "local"
    export_dir = Path(args.export_dir)
    common = dict(namespace=namespace, prefix=args.repo_prefix, export_dir=export_dir, api=api, private=args.private,
                  template_dir=args.template_dir, example=args.example, licence=args.license, dry_run=args.dry_run)
    results = []
    if args.multibert_dir:
        model_dir = Path(args.multibert_dir)
        results_file = Path(args.multibert_results) if args.multibert_results else model_dir.parent / "results.json"
        run_results = json.loads(results_file.read_text(encoding="utf-8")) if results_file.is_file() else None
        if run_results is None:
            logging.warning("no results.json at %s: the cards will have no scores", results_file)
        results += push_multibert(model_dir, results=run_results, domains=args.multibert_domains,
                                  push_router=args.push_router, core_model=args.core_model, **common)
    for run_dir in args.cllmfs_runs:
        results += push_cllmfs_run(run_dir, episodes=args.cllmfs_episodes, base_model=args.cllmfs_base_model, **common)
    if args.push_space:
        space_id = args.space_id or f"{namespace}/{args.repo_prefix}-demo"
        results.append(push_space(args.space_dir, space_id, models=space_models(results), export_dir=export_dir,
                                  api=api, private=args.private, dry_run=args.dry_run))
    report = [r.to_dict() for r in results]
    Path(args.report_file).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report_file).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for r in results:
        state = "dry run" if r.commit is None else ("committed " if r.committed else "unchanged ") + r.commit[:10]
        print(f"{r.kind:17} {r.repo_id:60} {state}")
    print(f"report: {args.report_file}")
    return report


def main(argv: list[str] | None = None) -> list[dict]:
    from transformers import HfArgumentParser

    from ner_adapters.yaml_config import parse_recipe_args

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    (args,) = parse_recipe_args(HfArgumentParser((PushArguments,)), list(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    from ner_adapters.errors import ConfigError

    try:
        main()
    except ConfigError as err:  # the user's file or flags are wrong: say where, without a traceback
        sys.exit(f"error: {err}")
