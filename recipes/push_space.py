#!/usr/bin/env python
"""Push the Gradio demo Space (``spaces/``), configured to load what ``recipes/push_to_hub.py`` published.

    python recipes/push_space.py --config recipes/push/space.yaml
    python recipes/push_space.py --space_id my-org/ner-adapters-demo --multibert my-org/ner-adapters-router

The Space repo gets ``spaces/app.py``, ``requirements.txt``, the README with its YAML header (``models:``
filled in), ``space_config.json`` naming the repos to load (pinned revisions from the push report; the
``NER_SPACE_*`` variables of the Space override it) and a copy of the ``ner_adapters`` package. Unchanged
files make no commit; the token comes from HF_TOKEN or ``huggingface-cli login``.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SpaceArguments:
    """Which Space, and which models it loads."""

    space_id: str | None = field(default=None, metadata={"help": "namespace/name (default: <user>/<repo_prefix>-demo)."})
    repo_prefix: str = field(default="ner-adapters", metadata={"help": "Used for the default space_id."})
    report_file: str | None = field(default="outputs/hub/push_report.json", metadata={
        "help": "push_to_hub.py's report: the models to load (pinned revisions)."})
    multibert: list[str] | None = field(default=None, metadata={
        "help": "Multi-BERT adapters to load instead: a router repo, or domain adapter repos."})
    cllmfs: str | None = field(default=None, metadata={"help": "A CLLMFS adapter repo to load instead."})
    space_dir: str = field(default="spaces", metadata={"help": "The Space's source folder."})
    export_dir: str = field(default="outputs/hub/export", metadata={"help": "Where the Space folder is exported."})
    private: bool = field(default=False, metadata={"help": "Create the Space as private."})
    dry_run: bool = field(default=False, metadata={"help": "Export only; no network."})


def run(args: SpaceArguments):
    from ner_adapters.hub.push import PushResult, push_space, space_models

    models: dict = {"multibert": [], "cllmfs": None}
    if args.report_file and Path(args.report_file).is_file():
        report = json.loads(Path(args.report_file).read_text(encoding="utf-8"))
        models = space_models(PushResult(**entry) for entry in report)
    if args.multibert:
        models["multibert"] = list(args.multibert)
    if args.cllmfs:
        models["cllmfs"] = args.cllmfs
    if not models["multibert"] and not models["cllmfs"]:
        raise SystemExit("no models for the Space: run recipes/push_to_hub.py first, or pass --multibert/--cllmfs")
    api = None
    space_id = args.space_id
    if not args.dry_run:
        from huggingface_hub import HfApi

        api = HfApi()
        space_id = space_id or f"{api.whoami()['name']}/{args.repo_prefix}-demo"
    space_id = space_id or f"local/{args.repo_prefix}-demo"
    result = push_space(args.space_dir, space_id, models=models, export_dir=args.export_dir, api=api,
                        private=args.private, dry_run=args.dry_run)
    state = "dry run" if result.commit is None else ("committed " if result.committed else "unchanged ") + result.commit[:10]
    print(f"space {result.repo_id} {state} (folder {result.folder})")
    return result


def main(argv: list[str] | None = None):
    from transformers import HfArgumentParser

    from ner_adapters.yaml_config import parse_recipe_args

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    (args,) = parse_recipe_args(HfArgumentParser((SpaceArguments,)), list(sys.argv[1:] if argv is None else argv))
    return run(args)


if __name__ == "__main__":
    from ner_adapters.errors import ConfigError

    try:
        main()
    except ConfigError as err:  # the user's file or flags are wrong: say where, without a traceback
        sys.exit(f"error: {err}")
