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
overriding earlier ones; command-line flags override the files; an unknown key is an error. Without
--config the default config below is used.
"""

import sys
import tempfile
from pathlib import Path

import yaml
from trl import ModelConfig, TrlParser

from ner_adapters.cllmfs.cllmfs_config import CLLMFSConfig
from ner_adapters.cllmfs.entity_types import EntityTypeError
from ner_adapters.cllmfs.experiment import EpisodeArguments, MethodArguments, run_experiment
from ner_adapters.cllmfs.extraction import DecodingConfig
from ner_adapters.data import DataFormatError
from ner_adapters.resume import TrainingInterrupted
from ner_adapters.yaml_config import ConfigFileError, check_config_file, load_mapping

DEFAULT_CONFIG = Path(__file__).parent / "cllmfs" / "wnut17_intra_5shot.yaml"


def merge_configs(argv: list[str], parser=None) -> list[str]:
    """Replace several ``--config FILE`` pairs by one merged file (TrlParser reads a single one).

    With ``parser``, every file is first checked against it (:func:`ner_adapters.yaml_config.check_config_file`):
    an unknown key or a value of the wrong type raises an error naming the file, line and key.
    """
    files, rest, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--config":
            if i + 1 >= len(argv):
                raise SystemExit("--config needs a file")
            files.append(argv[i + 1])
            i += 2
        else:
            rest.append(argv[i])
            i += 1
    if not files:
        files = [str(DEFAULT_CONFIG)]
    merged: dict = {}
    for name in files:
        loaded = check_config_file(name, parser) if parser is not None else load_mapping(name)[0]
        merged.update(loaded)
    if len(files) == 1:
        return ["--config", files[0], *rest]
    handle = tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="cllmfs-config-", delete=False)
    with handle:
        yaml.safe_dump(merged, handle)
    return ["--config", handle.name, *rest]


def main(argv: list[str] | None = None):
    parser = TrlParser((EpisodeArguments, MethodArguments, DecodingConfig, CLLMFSConfig, ModelConfig))
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)
    files = [argv[i + 1] for i, flag in enumerate(argv[:-1]) if flag == "--config"] or [str(DEFAULT_CONFIG)]
    argv = merge_configs(argv, parser)
    try:
        episode_args, method_args, decoding, training_args, model_args = parser.parse_args_and_config(argv)
    except ValueError as err:  # a dataclass refusing a value: name the files it came from (not the merged copy)
        raise ConfigFileError(f"{', '.join(files)}: {err}") from None
    record_command(training_args.output_dir, given)
    summary = run_experiment(episode_args, method_args, decoding, training_args, model_args)
    if summary is not None:  # the main process: say where everything went
        print(where_outputs_went(Path(training_args.output_dir), len(summary["episodes"])), flush=True)
    return summary


def record_command(output_dir: str, argv: list[str]) -> None:
    """``command.txt`` in the run folder: how the run was started (``benchmarks/cllmfs_summary.py`` reads it)."""
    import shlex

    from accelerate import PartialState

    from ner_adapters.atomic import atomic_write_text

    if PartialState().is_main_process:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(output_dir) / "command.txt",
                          "accelerate launch recipes/sft_cllmfs.py " + shlex.join(argv) + "\n")


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
    return 0


if __name__ == "__main__":
    sys.exit(cli())
