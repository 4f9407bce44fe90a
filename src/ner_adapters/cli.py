"""The ``ner-adapters`` command: dataset statistics, episode sampling, tagging a corpus and span-level evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data.schema import DataFormatError
from .data.sources import FORMATS as FORMAT_CHOICES


def _cmd_data_list(args: argparse.Namespace) -> int:
    from .data.registry import REGISTRY, dataset_folder

    for name, spec in sorted(REGISTRY.items()):
        try:
            where = str(dataset_folder(name, args.data_dir))
        except FileNotFoundError:
            where = "(not found)"
        configs = f" {spec.config_kind}s: {', '.join(spec.configs)}" if spec.configs else ""
        print(f"{name:15} {spec.language}  {spec.domain}; types: {', '.join(spec.types)}; splits: "
              f"{', '.join(spec.splits)};{configs}\n{'':15} licence: {spec.licence}; files: {where}")
    return 0


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from .data.registry import load_sentences, resolve_spec
    from .data.stats import dataset_stats

    options = {"format": args.format} if args.format else {}
    spec = resolve_spec(args.name, args.config, **options)
    splits = [args.split] if args.split else list(spec.splits)
    report = {split: dataset_stats(load_sentences(args.name, args.config, split=split, data_dir=args.data_dir,
                                                  **options))
              for split in splits}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for split, stats in report.items():
        title = f"{args.name}{'/' + args.config if args.config else ''} [{split}]"
        print(f"{title}: {stats['sentences']} sentences, {stats['tokens']} tokens, {stats['entities']} entities")
        for entity_type in spec.types:
            print(f"  {entity_type:20} {stats['per_type'].get(entity_type, 0):7d}")
        for domain, count in stats["domains"].items():
            print(f"  {spec.config_kind} {domain:15} {count:7d} sentences")
    return 0


def _cmd_episodes(args: argparse.Namespace) -> int:
    from .episodes import sample_episodes, save_episodes

    episodes = sample_episodes(
        args.name, target=args.target, n_way=args.n_way, k_shot=args.k_shot, n_episodes=args.n_episodes,
        seed=args.seed, query_size=args.query_size, query_k_shot=args.query_k_shot, source_config=args.config,
        target_config=args.target_config, data_dir=args.data_dir, source_format=args.format,
        target_format=args.target_format,
    )
    save_episodes(episodes, args.out)
    for episode in episodes:
        counts = ", ".join(f"{t}={n}" for t, n in episode.type_counts("support").items())
        print(f"{episode.id}: {len(episode.support)} support sentences ({counts}); {len(episode.query)} query sentences")
    print(f"wrote {len(episodes)} episode(s) to {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .predict import score_files

    scores, missing = score_files(args.gold, args.pred, types=args.types, gold_split=args.split,
                                  data_dir=args.data_dir)
    if missing:
        print(f"warning: {len(missing)} gold sentence(s) have no prediction line; scored as predicting nothing",
              file=sys.stderr)
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        print(scores.table())
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import yaml

    from .predict import load_tagger, predict, read_documents

    documents = read_documents(args.input, input_format=args.input_format, split=args.split, data_dir=args.data_dir)
    entity_types = None
    if args.types_file:
        loaded = yaml.safe_load(Path(args.types_file).read_text(encoding="utf-8"))
        if not isinstance(loaded, dict) or not all(isinstance(v, str) and v.strip() for v in loaded.values()):
            raise DataFormatError("expected a mapping of entity type to a non-empty description", args.types_file)
        entity_types = loaded
    elif args.entity_types:
        entity_types = [t.strip() for t in args.entity_types.split(",") if t.strip()]
    from .predict import process_state

    state = process_state()  # under accelerate launch: this rank's device (CPU processes keep the default)
    device = args.device or (state.device if state.device.type != "cpu" else None)
    tagger = load_tagger(args.model, base=args.base, entity_types=entity_types, device=device)
    report = predict(documents, tagger, args.output, output_format=args.output_format, domain=args.domain,
                     batch_size=args.batch_size, progress=not args.no_progress)
    if state.is_main_process:
        rate = f"{report.documents_per_second:.2f} documents/s, {report.sentences / report.seconds:.2f} sentences/s" \
            if report.tagged and report.seconds else "nothing left to tag"
        on = f" on {report.processes} processes" if report.processes > 1 else ""
        print(f"tagged {report.tagged} of {report.documents} document(s){on} ({report.skipped} already in the output; "
              f"{rate}) -> {report.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ner-adapters", description=__doc__)
    parser.add_argument("--data-dir", help="folder holding the dataset folders (default: $NER_ADAPTERS_DATA_DIR, "
                        "../shared/datasets, then the bundled data)")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="registered datasets").add_subparsers(dest="data_command", required=True)
    data.add_parser("list", help="list the registered datasets").set_defaults(func=_cmd_data_list)
    stats = data.add_parser("stats", help="sentences, tokens and entities per type")
    stats.add_argument("name", help="a registered name, a CoNLL/JSONL file, a folder of split files or a "
                       "save_to_disk folder, or a Hub dataset id")
    stats.add_argument("--format", choices=FORMAT_CHOICES,
                       help="the format of NAME (default: detected)")
    stats.add_argument("--config", help="genre / domain / fold")
    stats.add_argument("--split")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=_cmd_data_stats)

    episodes = commands.add_parser("episodes", help="sample N-way K-shot episodes to JSONL")
    episodes.add_argument("name", help="source dataset (support set): a registered name, a file or folder of your "
                          "own, or a Hub dataset id")
    episodes.add_argument("--target", help="target dataset for INTER episodes (default: INTRA on NAME)")
    episodes.add_argument("--config")
    episodes.add_argument("--target-config")
    episodes.add_argument("--n-way", type=int, help="number of types (default: all)")
    episodes.add_argument("--k-shot", type=int, default=5)
    episodes.add_argument("--n-episodes", type=int, default=1)
    episodes.add_argument("--seed", type=int, default=0)
    episodes.add_argument("--query-size", type=int, help="random query sentences (default: the whole test split)")
    episodes.add_argument("--query-k-shot", type=int, help="sample the query greedily with this K instead")
    episodes.add_argument("--format", choices=FORMAT_CHOICES, help="the format of NAME (default: detected)")
    episodes.add_argument("--target-format", choices=FORMAT_CHOICES, help="the format of --target (default: detected)")
    episodes.add_argument("--out", required=True)
    episodes.set_defaults(func=_cmd_episodes)

    predict = commands.add_parser("predict", help="tag a corpus with a trained adapter, Multi-BERT set or router")
    predict.add_argument("input", help="plain text (one document per line), JSONL (text, optional id), CoNLL, or a "
                         "dataset (registered name, file or folder, Hub id; see --split)")
    predict.add_argument("--model", required=True, help="what ner_adapters.pipeline loads: a CLLMFS adapter, a saved "
                         "Multi-BERT folder or router, a domain adapter (folder or Hub id)")
    predict.add_argument("--output", required=True, help="JSONL (or CoNLL) file; re-running with the same output "
                         "tags only the documents not yet in it")
    predict.add_argument("--output-format", choices=("jsonl", "conll"), default="jsonl")
    predict.add_argument("--input-format", choices=("text", "jsonl", "conll", "dataset"),
                         help="default: from the file name and content; 'dataset' for anything load_ner_dataset reads")
    predict.add_argument("--split", default="test", help="the split to tag when INPUT is a dataset (default: test)")
    predict.add_argument("--base", help="the core (Multi-BERT) or base LLM (CLLMFS); default: the one the model "
                         "records")
    predict.add_argument("--entity-types", help="CLLMFS: comma-separated types to extract (default: the adapter's)")
    predict.add_argument("--types-file", help="CLLMFS: YAML {type: description} of the types to extract")
    predict.add_argument("--domain", help="Multi-BERT: the domain adapter to use (default: routed when the model has "
                         "a router)")
    predict.add_argument("--batch-size", type=int, default=8, help="documents per pipeline call (default 8)")
    predict.add_argument("--device", help="torch device (default: CPU, or the accelerate process's device)")
    predict.add_argument("--no-progress", action="store_true", help="no progress bar")
    predict.set_defaults(func=_cmd_predict)

    evaluate = commands.add_parser("evaluate", help="span-level P/R/F1 of predictions against gold")
    evaluate.add_argument("--gold", required=True, help="CoNLL, JSONL (tokens + ner_tags, or text + character "
                          "spans), span-only JSONL {id, spans}, or a dataset (registered name, folder, Hub id)")
    evaluate.add_argument("--split", default="test", help="the split of a --gold dataset (default: test)")
    evaluate.add_argument("--pred", required=True, help="ner-adapters predict output (JSONL or CoNLL), or span-only "
                          "JSONL matching a span-only gold")
    evaluate.add_argument("--types", nargs="+", help="score only these types")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataFormatError, FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"ner-adapters: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
