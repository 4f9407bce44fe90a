"""The CLLMFS experiment harness: one method over few-shot episodes, scored with the shared span metric.

``recipes/sft_cllmfs.py`` parses its configuration and calls :func:`run_experiment`. Methods share the
episodes (the same support and query sentences) and the metric, so their numbers compare:

- ``cllmfs``: LoRA SFT (+ the contrastive term when ``cl_weight > 0``), then constrained extraction;
- ``zero_shot``: the same LLM and decoding without training (the answer format spelt out in the prompt);
- ``proto`` / ``nnshot``: nearest-prototype / nearest-neighbour tagging on a frozen encoder (MiniLM).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..atomic import atomic_write_text
from ..episodes import Episode, load_episodes, sample_episodes, save_episodes
from ..metrics import NERScores, span_scores, summarize
from ..models import MINILM, resolve_model
from ..resume import CheckpointOnSignal, last_complete_checkpoint
from ..spans import Span
from .artifact import CLLMFSAdapterConfig, architecture_fingerprint, save_adapter, update_metrics
from .cllmfs_config import CLLMFSConfig
from .entity_types import EntityType
from .extraction import CLLMFSExtractor, DecodingConfig

logger = logging.getLogger(__name__)

METHODS = ("cllmfs", "zero_shot", "proto", "nnshot")


@dataclass
class EpisodeArguments:
    """Which few-shot episodes to run (sampled from the registry, or read from a JSONL file)."""

    dataset: str = field(default="wnut17", metadata={"help": "Source dataset (support set): a registered name, a CoNLL/JSONL file, a folder of split files, "
                                     "a save_to_disk folder or a Hub dataset id."})
    dataset_config: str | None = field(default=None, metadata={"help": "Source subset (genre, domain, fold)."})
    target_dataset: str | None = field(default=None, metadata={"help": "Target dataset for INTER episodes (any of the "
                                                                              "forms dataset takes)."})
    target_config: str | None = field(default=None, metadata={"help": "Target subset."})
    n_way: int | None = field(default=None, metadata={"help": "Types per episode (default: all of the dataset)."})
    k_shot: int = field(default=5, metadata={"help": "K of N-way K-shot."})
    n_episodes: int = field(default=1, metadata={"help": "Episodes (seeds episode_seed, episode_seed + 1, ...)."})
    episode_seed: int = field(default=0, metadata={"help": "Seed of the first episode."})
    query_size: int | None = field(default=200, metadata={"help": "Fixed random test subset per episode (None: all)."})
    episodes_file: str | None = field(default=None, metadata={"help": "Read episodes from this JSONL instead."})
    types_file: str | None = field(default=None, metadata={"help": "YAML {label: description} overriding descriptions."})
    data_dir: str | None = field(default=None, metadata={"help": "Data folder (default: registry resolution)."})


@dataclass
class MethodArguments:
    """Which method runs on the episodes."""

    method: str = field(default="cllmfs", metadata={"help": f"One of {', '.join(METHODS)}."})
    prompt_mode: str = field(default="per_type", metadata={"help": "'per_type' (the paper) or 'all_types'."})
    encoder: str = field(default=MINILM, metadata={"help": "Encoder of the proto/nnshot baselines."})
    none_ratio: float | None = field(
        default=None, metadata={"help": "Keep at most this many 'none' SFT examples per example with entities "
                                        "(None: all, as in the paper)."}
    )
    loss_on_answer_prefix: bool = field(
        default=True, metadata={"help": "Score the answer's fixed opening in the loss (the paper's output)."}
    )

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.prompt_mode not in ("per_type", "all_types"):
            raise ValueError(f"prompt_mode must be 'per_type' or 'all_types', got {self.prompt_mode!r}")


def get_episodes(args: EpisodeArguments) -> list[Episode]:
    if args.episodes_file:
        return load_episodes(args.episodes_file)
    return sample_episodes(
        args.dataset, target=args.target_dataset, n_way=args.n_way, k_shot=args.k_shot, n_episodes=args.n_episodes,
        seed=args.episode_seed, query_size=args.query_size, source_config=args.dataset_config,
        target_config=args.target_config, data_dir=args.data_dir,
    )


def recorded_episode_args(args: EpisodeArguments, episodes: list[Episode]) -> dict:
    """The episode settings as ``config.yaml`` records them: with ``episodes_file``, what the file's episodes
    are (their datasets, N, K, first seed, count), not the sampling defaults that were never used."""
    recorded = dataclasses.asdict(args)
    if args.episodes_file and episodes:
        first = episodes[0]
        support, _, support_config = first.support_dataset.partition("/") if not Path(
            first.support_dataset).exists() else (first.support_dataset, "", "")
        query, _, query_config = first.query_dataset.partition("/") if not Path(
            first.query_dataset).exists() else (first.query_dataset, "", "")
        recorded.update(dataset=support, dataset_config=support_config or None,
                        target_dataset=query if first.protocol == "inter" else None,
                        target_config=(query_config or None) if first.protocol == "inter" else None,
                        n_way=first.n_way, k_shot=first.k_shot, n_episodes=len(episodes), episode_seed=first.seed,
                        query_size=len(first.query))
    return recorded


def episode_types(episode: Episode, types_file: str | None = None) -> tuple[list[EntityType], list[EntityType]]:
    """The described support and query types of an episode (the file's, then the registry's descriptions).

    A ``types_file`` key that is no type of the episode, or an empty description, raises (naming the closest
    labels); types left with a generic description are named in one warning (:func:`describe_labels`).
    """
    from .entity_types import describe_labels, load_types_file, warn_undescribed

    labels = list(dict.fromkeys([*episode.support_types, *episode.query_types]))
    overrides = load_types_file(types_file, labels) if types_file else {}
    support = describe_labels(episode.support_types, episode.support_dataset, overrides, warn=False)
    query = describe_labels(episode.query_types, episode.query_dataset, overrides, warn=False)
    warn_undescribed({t.label: t for t in support + query}.values())
    return support, query


def _load_base(model_args, tokenizer_only: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model_args.model_name_or_path, revision=model_args.model_revision)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=model_args.model_revision, trust_remote_code=False)
    if tokenizer_only:
        return tokenizer
    model = AutoModelForCausalLM.from_pretrained(
        path, revision=model_args.model_revision, dtype=model_args.dtype or "float32",
        attn_implementation=model_args.attn_implementation, trust_remote_code=False,
    )
    return model, tokenizer


def lora_config(model_args):
    """TRL's ``get_peft_config``, with one module name kept a name.

    ``trl.ModelConfig`` turns a one-item ``lora_target_modules`` list into its string (for "all-linear"), and
    PEFT reads a string as a regular expression over whole module paths: ``[q_proj]`` would match no module.
    """
    from trl import get_peft_config

    config = get_peft_config(model_args)
    targets = getattr(config, "target_modules", None)
    if isinstance(targets, str) and targets != "all-linear" and re.fullmatch(r"[\w.]+", targets):
        config.target_modules = {targets}
    return config


def train_cllmfs(episode: Episode, types: list[EntityType], method_args: MethodArguments, training_args: CLLMFSConfig,
                 model_args, output_dir: Path):
    """LoRA (+ contrastive) SFT on the episode's support set; returns the trainer."""
    from .cllmfs_trainer import CLLMFSTrainer
    from .prompts import PromptFormat
    from .sft_data import build_sft_dataset

    model, tokenizer = _load_base(model_args)
    fmt = PromptFormat(tokenizer, method_args.prompt_mode)
    train_dataset = build_sft_dataset(
        episode.support, types, fmt, max_negatives=training_args.cl_max_negatives, none_ratio=method_args.none_ratio,
        loss_on_answer_prefix=method_args.loss_on_answer_prefix, seed=training_args.seed,
    )
    args = dataclasses.replace(training_args, output_dir=str(output_dir))
    stop_on_signal = CheckpointOnSignal()
    trainer = CLLMFSTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                            peft_config=lora_config(model_args), callbacks=[stop_on_signal])
    trainer.train(resume_from_checkpoint=_resume_point(args))
    stop_on_signal.raise_if_received()  # SIGTERM: a checkpoint was written; this episode is not finished
    return trainer, tokenizer


def _resume_point(args: CLLMFSConfig):
    """``resume_from_checkpoint``: a path, or true to take the last checkpoint of this episode if there is one."""
    value = args.resume_from_checkpoint
    if value in (None, False, "", "false", "False"):
        return None
    if value in (True, "true", "True"):  # the last checkpoint a kill did not cut short
        return last_complete_checkpoint(args.output_dir)
    return value


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False))


def _save_predictions(path: Path, episode: Episode, predictions: list[list[Span]]) -> None:
    def spans_json(spans):
        return [{"type": s.type, "start": s.start, "end": s.end} for s in spans]

    atomic_write_text(path, "".join(
        json.dumps({"id": sentence.id, "tokens": sentence.tokens, "gold": spans_json(sentence.spans),
                    "spans": spans_json(spans)}, ensure_ascii=False) + "\n"
        for sentence, spans in zip(episode.query, predictions)))


def run_episode(episode: Episode, episode_args: EpisodeArguments, method_args: MethodArguments, decoding: DecodingConfig,
                training_args: CLLMFSConfig, model_args, output_dir: Path) -> dict | None:
    """Train (if the method trains) and evaluate one episode. Returns its results on the main process."""
    from accelerate import PartialState

    state = PartialState()
    support_types, query_types = episode_types(episode, episode_args.types_file)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    adapter_dir = None
    if method_args.method == "cllmfs":
        trainer, tokenizer = train_cllmfs(episode, support_types, method_args, training_args, model_args, output_dir)
        timings["train_seconds"] = time.perf_counter() - started
        model = trainer.model
        if state.is_main_process:
            adapter_dir = output_dir / "adapter"
            base_config = model.get_base_model().config
            save_adapter(model, tokenizer, adapter_dir, CLLMFSAdapterConfig(
                base_model=model_args.model_name_or_path, base_fingerprint=architecture_fingerprint(base_config),
                entity_types=[dataclasses.asdict(t) for t in support_types], prompt_mode=method_args.prompt_mode,
                cl_layer=trainer.cl_layer))
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if method_args.method in ("proto", "nnshot"):
        from ..baselines import PrototypeTagger

        tagger = PrototypeTagger(method_args.encoder, method=method_args.method)
        predictions = tagger.fit(episode.support, episode.support_types).predict(episode.query)
    else:
        if method_args.method == "zero_shot":
            model, tokenizer = _load_base(model_args)
        extractor = CLLMFSExtractor(model, tokenizer, query_types, prompt_mode=method_args.prompt_mode,
                                    decoding=decoding, format_hint=method_args.method == "zero_shot")
        predictions = extractor.predict_sentences(episode.query, show_progress=True)
    timings["predict_seconds"] = time.perf_counter() - started
    timings["query_sentences_per_second"] = len(episode.query) / max(timings["predict_seconds"], 1e-9)
    scores: NERScores = span_scores([s.spans for s in episode.query], predictions, types=[t.label for t in query_types])
    _save_predictions(output_dir / "predictions.jsonl", episode, predictions)
    result = {"episode": episode.id, "scores": scores.to_dict(), **timings}
    _write_json(output_dir / "results.json", result)
    if adapter_dir is not None:
        update_metrics(adapter_dir, {"episode": episode.id, "micro_f1": scores.micro.f1,
                                     "per_type_f1": {t: s.f1 for t, s in scores.per_type.items()}})
    print(f"\n{episode.id} [{method_args.method}] micro-F1 {scores.micro.f1:.4f}\n{scores.table()}\n", flush=True)
    return result


_SPEED_ONLY_DECODING = ("batch_size", "prefill_tokens")
_RUN_ONLY_TRAINING = ("logging_dir", "resume_from_checkpoint")


def _same_experiment(config_path: Path, config: dict) -> bool:
    """Whether ``output_dir`` holds an earlier run of this experiment (same settings; more episodes are fine)."""
    if not config_path.is_file():
        return False
    try:
        previous = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False

    def without_count(c: dict) -> dict:
        # logging_dir defaults to a fresh timestamp on every run, resuming continues the same run, and the
        # decoding batch shapes change speed and memory, not the spans (benchmarks/profiling/reextract_episode.py):
        # none of them makes a new experiment.
        return {**c, "episodes": {k: v for k, v in c.get("episodes", {}).items() if k != "n_episodes"},
                "decoding": {k: v for k, v in c.get("decoding", {}).items() if k not in _SPEED_ONLY_DECODING},
                "training": {k: v for k, v in c.get("training", {}).items() if k not in _RUN_ONLY_TRAINING}}

    return isinstance(previous, dict) and without_count(previous) == without_count(config)


def _finished_episode(episode_dir: Path, episode: Episode) -> dict | None:
    """The saved result of ``episode`` when its folder holds one (``results.json`` is written last)."""
    try:
        result = json.loads((episode_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("episode") == episode.id else None


def run_experiment(episode_args: EpisodeArguments, method_args: MethodArguments, decoding: DecodingConfig,
                   training_args: CLLMFSConfig, model_args) -> dict | None:
    """Every episode in turn; writes ``episodes.jsonl``, per-episode folders and a summary ``results.json``."""
    from accelerate import PartialState

    state = PartialState()
    root = Path(training_args.output_dir)
    episodes = get_episodes(episode_args)
    config = {"episodes": recorded_episode_args(episode_args, episodes), "method": dataclasses.asdict(method_args),
              "decoding": dataclasses.asdict(decoding), "model": dataclasses.asdict(model_args),
              "training": {k: v for k, v in training_args.to_dict().items() if "token" not in k}}
    config = yaml.safe_load(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))  # as it reads back
    reusable = _same_experiment(root / "config.yaml", config)
    state.wait_for_everyone()
    if state.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        save_episodes(episodes, root / "episodes.jsonl")
        atomic_write_text(root / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    results = []
    for index, episode in enumerate(episodes):
        done = _finished_episode(root / f"episode-{index}", episode) if reusable else None
        if done is not None:  # an earlier, interrupted run of this same experiment finished this episode
            print(f"{episode.id}: reusing {root / f'episode-{index}' / 'results.json'}", flush=True)
            results.append(done)
            continue
        result = run_episode(episode, episode_args, method_args, decoding, training_args, model_args,
                             root / f"episode-{index}")
        if result is not None:
            results.append(result)
    if not state.is_main_process:
        return None
    runs = [NERScores.from_dict(r["scores"]) for r in results]
    summary = {"method": method_args.method, "source": episodes[0].support_dataset, "target": episodes[0].query_dataset,
               "protocol": episodes[0].protocol, "k_shot": episodes[0].k_shot, "n_way": episodes[0].n_way,
               "query_sentences": [len(e.query) for e in episodes], **summarize(runs), "episodes": results}
    _write_json(root / "results.json", summary)
    f1 = summary["micro_f1"]
    print(f"{method_args.method} on {summary['source']} -> {summary['target']} ({summary['protocol']}, "
          f"{summary['n_way']}-way {summary['k_shot']}-shot, {len(runs)} episode(s)): "
          f"micro-F1 {f1['mean']:.4f} +- {f1['std']:.4f}", flush=True)
    return summary

