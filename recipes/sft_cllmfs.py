#!/usr/bin/env python
"""CLLMFS: contrastive LoRA fine-tuning of an LLM for few-shot NER, evaluated on N-way K-shot episodes.

    accelerate launch recipes/sft_cllmfs.py                                        # default: WNUT-17 5-shot INTRA
    accelerate launch recipes/sft_cllmfs.py --config recipes/cllmfs/conll2003_intra_5shot.yaml
    accelerate launch recipes/sft_cllmfs.py --config recipes/cllmfs/wnut17_intra_5shot.yaml --num_train_epochs 5
    accelerate launch --config_file recipes/accelerate_configs/ddp.yaml recipes/sft_cllmfs.py --config ...

    # an ablation: the base config, then a file with only what changes
    accelerate launch recipes/sft_cllmfs.py --config recipes/cllmfs/wnut17_intra_5shot.yaml \
        --config recipes/cllmfs/ablations/lora_only.yaml

``dataset`` and ``target_dataset`` take a registered name, your own CoNLL/JSONL file, a folder of split files
(train/dev/test by name), a ``save_to_disk`` folder or a Hub dataset id; the types are then read from the data
(describe them with ``--types_file``).

Options come from five dataclasses: EpisodeArguments and MethodArguments (ner_adapters.cllmfs.experiment),
DecodingConfig (ner_adapters.cllmfs.extraction), CLLMFSConfig (TRL's SFTConfig plus the contrastive
settings) and TRL's ModelConfig (model and LoRA). YAML files given with --config set them, later files
overriding earlier ones; command-line flags override the files; an error names the file, line and key
(ner_adapters.yaml_config.parse_recipe_args, the loader of every recipe). Without --config the default config
below is used.
"""

import sys
from pathlib import Path

from trl import ModelConfig, TrlParser

from ner_adapters.cllmfs.cllmfs_config import CLLMFSConfig
from ner_adapters.cllmfs.entity_types import EntityTypeError
from ner_adapters.cllmfs.experiment import EpisodeArguments, MethodArguments, run_experiment
from ner_adapters.cllmfs.extraction import DecodingConfig
from ner_adapters.data import DataFormatError
from ner_adapters.resume import TrainingInterrupted
from ner_adapters.yaml_config import ConfigFileError, parse_recipe_args

DEFAULT_CONFIG = Path(__file__).parent / "cllmfs" / "wnut17_intra_5shot.yaml"


def main(argv: list[str] | None = None):
    parser = TrlParser((EpisodeArguments, MethodArguments, DecodingConfig, CLLMFSConfig, ModelConfig))
    argv = list(sys.argv[1:] if argv is None else argv)
    episode_args, method_args, decoding, training_args, model_args = parse_recipe_args(
        parser, argv, default_files=[DEFAULT_CONFIG])
    record_command(training_args.output_dir, argv)
    summary = run_experiment(episode_args, method_args, decoding, training_args, model_args)
    if summary is not None:  # the main process: say where everything went
        print(where_outputs_went(Path(training_args.output_dir), len(summary["episodes"])), flush=True)
    return summary


def record_command(output_dir: str, argv: list[str]) -> None:
    """``command.txt`` in the run folder: the command of the experiment (``benchmarks/cllmfs_summary.py`` reads
    it), without ``--run_episodes``, which only says what this one process runs of it."""
    import shlex

    from accelerate import PartialState

    from ner_adapters.atomic import atomic_write_text

    if PartialState().is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(output_dir) / "command.txt",
                          "accelerate launch recipes/sft_cllmfs.py " + shlex.join(_without_run_episodes(argv)) + "\n")


def _without_run_episodes(argv: list[str]) -> list[str]:
    """``argv`` less ``--run_episodes i j ...`` (or ``--run_episodes=i``) and its values."""
    kept, skipping = [], False
    for arg in argv:
        if arg == "--run_episodes":
            skipping = True
        elif arg.startswith("--run_episodes="):
            continue
        elif skipping and not arg.startswith("-"):
            continue
        else:
            skipping = False
            kept.append(arg)
    return kept


def where_outputs_went(root: Path, n_episodes: int) -> str:
    """The run's files, one per line: per episode its adapter (when the method trains one), predictions and
    results, then the run's summary, episodes and config."""
    lines = ["outputs:"]
    for index in range(n_episodes):
        episode = root / f"episode-{index}"
        for name, label in (("adapter", "adapter"), ("predictions.jsonl", "predictions"), ("results.json", "results")):
            if (episode / name).exists():
                lines.append(f"  episode {index} {label + ':':13} {episode / name}")
    for name, label in (("results.json", "summary"), ("episodes.jsonl", "episodes"), ("config.yaml", "config")):
        lines.append(f"  {label + ':':23} {root / name}")
    return "\n".join(lines)


def cli(argv: list[str] | None = None) -> int:
    """``main`` for the command line: a wrong file is one line on stderr, SIGTERM exits 143 after a checkpoint."""
    try:
        main(argv)
    except (ConfigFileError, DataFormatError, EntityTypeError, FileNotFoundError) as err:  # the user's input is
        # wrong (a config or types file, a dataset path or name): say where, without a traceback
        print(f"error: {err}", file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    finally:
        end_distributed()
    return 0


def end_distributed() -> None:
    """Tear the process group down before the interpreter exits (``accelerate launch`` with several processes).

    The other processes finish before the main one, which extracts alone; exiting with the gloo group still up
    let its threads be destroyed mid-flight, and a process aborted ("terminate called without an active
    exception", SIGABRT) at a moment that depended on the load.
    """
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(cli())
