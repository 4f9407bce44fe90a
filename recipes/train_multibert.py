"""Train and evaluate Multi-BERT from a YAML config, with command-line overrides.

    python recipes/train_multibert.py --config recipes/multibert/default.yaml [--config overlay.yaml] [--num_train_epochs 2 ...]

The calling convention of every recipe: ``--config FILE`` (repeatable, later files override earlier ones), then
``--key value`` overrides; an error names the file, line and key. A first positional file is one ``--config``.

Trains the variants listed in the config (Multi-BERT two-step adapters, no-pre-training adapters, the
general adapter, General-/Spec-BERT baselines, the router), prints the per-domain F1 table, the parameter
counts and the router's accuracy, and writes ``results.json``, ``results.md`` and the saved Multi-BERT
model (``model/``) under ``output_dir``.
"""

from __future__ import annotations

import logging
import shlex
import sys


def main(argv: list[str] | None = None) -> int:
    from ner_adapters.multibert.config import parse_config
    from ner_adapters.multibert.evaluation import run_experiment

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        handlers=[logging.StreamHandler(sys.stdout)])
    for noisy in ("adapters", "transformers", "datasets", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = parse_config(argv)
    command = "python recipes/train_multibert.py " + " ".join(shlex.quote(a) for a in argv)
    result = run_experiment(config, command=command)
    print(result.markdown())
    print(f"\nresults: {config.training.output_dir}/results.json, results.md")
    return 0


if __name__ == "__main__":
    from ner_adapters.data import DataFormatError
    from ner_adapters.multibert.config import ConfigError
    from ner_adapters.resume import TrainingInterrupted

    try:
        sys.exit(main())
    except (ConfigError, DataFormatError) as err:  # the user's file is wrong: say where, without a traceback
        sys.exit(f"error: {err}")
    except TrainingInterrupted as err:  # SIGTERM: the current run wrote a checkpoint; resume_from_checkpoint: true
        print(str(err), file=sys.stderr)
        sys.exit(err.exit_code)
