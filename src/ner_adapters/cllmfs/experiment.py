"""The CLLMFS experiment harness: one method over few-shot episodes, scored with the shared span metric.

``recipes/sft_cllmfs.py`` parses its configuration and calls :func:`run_experiment`. Methods share the
episodes (the same support and query sentences) and the metric, so their numbers compare:

- ``cllmfs``: LoRA SFT (+ the contrastive term when ``cl_weight > 0``), then constrained extraction;
- ``zero_shot``: the same LLM and decoding without training (the answer format spelt out in the prompt);
- ``proto`` / ``nnshot``: nearest-prototype / nearest-neighbour tagging on a frozen encoder (MiniLM).

Training data follows the paper (:mod:`.support_sets`): ``n_support_sets`` seeded support sets per episode (INTRA:
the baselines get exactly those sentences too), and INTER from one or several ``source_datasets``, tested on the
target's test set with the target's types and descriptions only. There the zero-shot baseline prompts with the
target's types, and the prototype baselines get a K-shot support set of the target's training split (its
validation split where it has none; more target information than CLLMFS gets). ``none_threshold: auto`` holds
back ``none_threshold_holdout`` of the support sentences from training and chooses the none/entity threshold on
them; ``results.json`` and the adapter record it. ``adapters_from`` decodes again: each episode's adapter is taken
from an earlier run of the same training and only the decode-time settings (``decoding``, ``span_typing``) change,
so they are compared on the same adapters without training again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
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
from .artifact import CLLMFSAdapterConfig, architecture_fingerprint, save_adapter, update_metrics, write_card
from .cllmfs_config import CLLMFSConfig
from .entity_types import EntityType
from .extraction import CLLMFSExtractor, DecodingConfig
from .support_sets import parse_source, support_parts, with_support_sets

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
    n_support_sets: int = field(
        default=1, metadata={"help": "Support sets per episode and source, each a seeded K-shot sample of the training "
                                     "split, disjoint while the data allows; CLLMFS trains on all, the baselines get "
                                     "the same sentences (1: the plain episode)."}
    )
    source_datasets: list[str] | None = field(
        default=None, metadata={"help": "INTER from several sources: source datasets ('name' or 'name/subset'), each "
                                        "giving n_support_sets sets of its own types; overrides dataset/dataset_config "
                                        "(the first is the episode's own source)."}
    )
    run_episodes: list[int] | None = field(
        default=None, metadata={"help": "Run only these episodes (0-based indices), e.g. to share one experiment "
                                        "between processes or machines writing to the same output_dir; the others are "
                                        "reused when finished, and results.json is written once all are (None: all)."}
    )

    def __post_init__(self):
        if isinstance(self.run_episodes, int):
            self.run_episodes = [self.run_episodes]
        if self.run_episodes is not None:
            if not self.run_episodes or any(i < 0 for i in self.run_episodes):
                raise ValueError(f"run_episodes must list episode indices >= 0 (or be null), got {self.run_episodes}")
            if self.episodes_file is None and max(self.run_episodes) >= self.n_episodes:
                raise ValueError(f"run_episodes {self.run_episodes} names an episode past n_episodes "
                                 f"{self.n_episodes} (indices start at 0)")
        if self.n_support_sets < 1:
            raise ValueError(f"n_support_sets must be >= 1, got {self.n_support_sets}")
        if isinstance(self.source_datasets, str):
            self.source_datasets = [self.source_datasets]
        if self.source_datasets is not None:
            if not self.source_datasets:
                raise ValueError("source_datasets is empty: list at least one source dataset, or leave it null")
            if self.target_dataset is None:
                raise ValueError("source_datasets is for INTER: set target_dataset too")
            self.dataset, self.dataset_config = parse_source(self.source_datasets[0])
        if self.episodes_file and (self.n_support_sets > 1 or self.source_datasets):
            raise ValueError("episodes_file holds its episodes' support sets already: n_support_sets and "
                             "source_datasets cannot be combined with it")


SPAN_TYPING = ("llm", "prototype")
# Keys added to the recorded config after runs were made, with the value those runs had: a run recorded without
# them is the same experiment as one with them at these values (its finished episodes are reused).
_ADDED_KEYS = {"method": {"span_typing": "llm", "typing_encoder": MINILM, "adapters_from": None},
               "decoding": {"split_max_threshold": None}}
# Method settings read only after training: a run that changes just these (and ``decoding``) can reuse the
# adapters of one that trained (``adapters_from``).
_DECODE_TIME_METHOD = ("span_typing", "typing_encoder", "adapters_from")


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
    none_sampling: str = field(
        default="pooled", metadata={"help": "Where none_ratio holds: 'pooled' (over all prompts together) or "
                                            "'per_type' (for each type's prompts, so no type learns a bias toward "
                                            "answering or not from the sampling)."}
    )
    loss_on_answer_prefix: bool = field(
        default=True, metadata={"help": "Score the answer's fixed opening in the loss (the paper's output)."}
    )
    none_threshold_holdout: float = field(
        default=0.2, metadata={"help": "With none_threshold: auto, the fraction of the episode's support sentences (of its "
                                       "first source) held back from training to choose the threshold on (at least one)."}
    )
    init_adapter: str | None = field(
        default=None, metadata={"help": "Start CLLMFS training from this CLLMFS adapter (a folder or Hub id, e.g. the "
                                        "zero-shot adapter) instead of a fresh LoRA; its LoRA shape replaces the lora_* "
                                        "settings. It must not have been trained on the episode's test data."}
    )
    span_typing: str = field(
        default="llm", metadata={"help": "Who types CLLMFS's spans: 'llm' (the type whose prompt found the span, the "
                                         "paper) or 'prototype' (the span's words vote for their nearest support "
                                         "prototype of typing_encoder; INTRA only: the support must hold the query's types)."}
    )
    typing_encoder: str = field(default=MINILM, metadata={"help": "Encoder of span_typing: prototype."})
    adapters_from: str | None = field(
        default=None, metadata={"help": "Decode again without training: each episode's adapter is read from this "
                                        "earlier CLLMFS run (its episode-<i>/adapter), whose training settings and "
                                        "episodes must be this run's; only decoding and span_typing may differ."}
    )

    def __post_init__(self):
        if self.span_typing not in SPAN_TYPING:
            raise ValueError(f"span_typing must be one of {SPAN_TYPING}, got {self.span_typing!r}")
        if self.span_typing != "llm" and self.method != "cllmfs":
            raise ValueError(f"span_typing: {self.span_typing} re-types CLLMFS's spans; method {self.method!r} "
                             f"types its own (use span_typing: llm)")
        if not 0.0 < self.none_threshold_holdout < 1.0:
            raise ValueError(f"none_threshold_holdout must be in (0, 1), got {self.none_threshold_holdout}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.adapters_from and self.method != "cllmfs":
            raise ValueError(f"adapters_from reuses trained CLLMFS adapters; method {self.method!r} has none")
        if self.adapters_from and self.init_adapter:
            raise ValueError("adapters_from trains nothing, so init_adapter (where training starts) has no use: "
                             "drop one of them")
        if self.init_adapter and self.method != "cllmfs":
            raise ValueError(f"init_adapter starts CLLMFS training; method {self.method!r} trains no adapter")
        if self.prompt_mode not in ("per_type", "all_types"):
            raise ValueError(f"prompt_mode must be 'per_type' or 'all_types', got {self.prompt_mode!r}")
        from .sft_data import NONE_SAMPLING

        if self.none_sampling not in NONE_SAMPLING:
            raise ValueError(f"none_sampling must be one of {NONE_SAMPLING}, got {self.none_sampling!r}")


def get_episodes(args: EpisodeArguments) -> list[Episode]:
    if args.episodes_file:
        return load_episodes(args.episodes_file)
    episodes = sample_episodes(
        args.dataset, target=args.target_dataset, n_way=args.n_way, k_shot=args.k_shot, n_episodes=args.n_episodes,
        seed=args.episode_seed, query_size=args.query_size, source_config=args.dataset_config,
        target_config=args.target_config, data_dir=args.data_dir,
    )
    if args.n_support_sets == 1 and not args.source_datasets:
        return episodes
    from ..data.registry import load_sentences, resolve_spec

    pools: dict = {}

    def load_pool(name, config):
        if (name, config) not in pools:
            pools[name, config] = load_sentences(name, config, split="train", data_dir=args.data_dir)
        return pools[name, config]

    sources = None
    if args.source_datasets:  # the first is the sampled episode's own source, labelled as sample_episodes does
        sources = [episodes[0].support_dataset, *args.source_datasets[1:]]
    return [with_support_sets(e, n_support_sets=args.n_support_sets, sources=sources, n_way=args.n_way,
                              load_pool=load_pool, source_types=lambda name: resolve_spec(name).types)
            for e in episodes]


def target_support(episode: Episode, data_dir: str | None = None) -> tuple[list, str]:
    """A K-shot support set of an INTER episode's target (its types) and the split it was drawn from: what the
    prototype baselines get there (more target information than CLLMFS, which sees only the target's type
    descriptions). The train split; a target that publishes none (UNER's English-EWT) lends its validation split,
    never the test split its queries come from."""
    import random

    from ..data.registry import load_sentences, resolve_spec
    from ..episodes import greedy_kshot_sample

    name, config = parse_source(episode.query_dataset)
    needed = (f"the INTER prototype baselines need a {episode.k_shot}-shot support set of the target "
              f"{episode.query_dataset!r}")
    try:
        splits = resolve_spec(name, config).splits
        split = next((s for s in ("train", "validation") if s in splits), None)
        if split is None:
            raise ValueError(f"it has no train or validation split, only {', '.join(splits)}")
        pool = load_sentences(name, config, split=split, data_dir=data_dir)
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{needed}: {err}") from None
    rng = random.Random(f"{episode.query_dataset}|target-support|seed{episode.seed}")
    return greedy_kshot_sample(pool, episode.query_types, episode.k_shot, rng), split


def support_type_parts(episode: Episode, types_file: str | None = None
                       ) -> tuple[list[tuple[list, list[EntityType]]], list[EntityType]]:
    """``(sentences, described types)`` per source of the episode's support (one pair for one source), and the
    described query types: each source's sentences are asked only for its own types, with its own descriptions."""
    parts = support_parts(episode)
    if len(parts) == 1:
        support, query = episode_types(episode, types_file)
        return [(parts[0][1], support)], query
    from .entity_types import describe_labels, load_types_file, warn_undescribed

    labels = list(dict.fromkeys([*episode.support_types, *episode.query_types]))
    overrides = load_types_file(types_file, labels) if types_file else {}
    described = [(sentences, describe_labels(types, source, overrides, warn=False))
                 for source, sentences, types in parts]
    query = describe_labels(episode.query_types, episode.query_dataset, overrides, warn=False)
    warn_undescribed({t.label: t for t in [*(t for _, types in described for t in types), *query]}.values())
    return described, query


def recorded_episode_args(args: EpisodeArguments, episodes: list[Episode]) -> dict:
    """The episode settings as ``config.yaml`` records them: with ``episodes_file``, what the file's episodes
    are (their datasets, N, K, first seed, count), not the sampling defaults that were never used."""
    recorded = dataclasses.asdict(args)
    del recorded["run_episodes"]  # which process runs what, not what the experiment is
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
                 model_args, output_dir: Path, parts: list[tuple[list, list[EntityType]]] | None = None):
    """LoRA (+ contrastive) SFT on the episode's support set; returns the trainer.

    ``parts``: ``(sentences, types)`` per source (:func:`support_type_parts`); by default the whole support set
    with ``types``. Each part's SFT examples ask only for its own types."""
    from datasets import concatenate_datasets

    from .cllmfs_trainer import CLLMFSTrainer
    from .prompts import PromptFormat
    from .sft_data import build_sft_dataset

    model, tokenizer = _load_base(model_args)
    fmt = PromptFormat(tokenizer, method_args.prompt_mode)
    datasets = [build_sft_dataset(
        sentences, part_types, fmt, max_negatives=training_args.cl_max_negatives, none_ratio=method_args.none_ratio,
        none_sampling=method_args.none_sampling, loss_on_answer_prefix=method_args.loss_on_answer_prefix,
        seed=training_args.seed + index,
    ) for index, (sentences, part_types) in enumerate(parts or [(episode.support, types)])]
    train_dataset = datasets[0] if len(datasets) == 1 else concatenate_datasets(datasets)
    args = dataclasses.replace(training_args, output_dir=str(output_dir))
    peft_config = lora_config(model_args)
    if method_args.init_adapter:
        model, peft_config = warm_start(model, method_args.init_adapter), None
    stop_on_signal = CheckpointOnSignal()
    trainer = CLLMFSTrainer(model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
                            peft_config=peft_config, callbacks=[stop_on_signal])
    trainer.resumed_from = _resume_point(args)  # its train time is then only the part after the checkpoint
    trainer.train(resume_from_checkpoint=trainer.resumed_from)
    stop_on_signal.raise_if_received()  # SIGTERM: a checkpoint was written; this episode is not finished
    return trainer, tokenizer


def warm_start(model, adapter: str):
    """``model`` wrapped with a saved CLLMFS adapter's LoRA weights, trainable: training continues from what the
    adapter learnt (say, on other datasets) instead of a fresh LoRA. The adapter must fit the base model."""
    from .extraction import attach_adapter

    logger.info("CLLMFS training starts from the adapter %s", adapter)
    return attach_adapter(model, adapter, trainable=True)[0]


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


def _prototype_typed(episode: Episode, query_types: list[EntityType], predictions: list[list[Span]],
                     encoder: str) -> list[list[Span]]:
    """``span_typing: prototype``: CLLMFS's spans re-typed from the episode's own support set."""
    from ..baselines import PrototypeTagger

    labels = _check_prototype_typing(episode, query_types)
    return PrototypeTagger(encoder, method="proto").fit(episode.support, labels).type_spans(episode.query, predictions)


def _check_prototype_typing(episode: Episode, query_types: list[EntityType]) -> list[str]:
    """The query labels, when the support holds examples of each (INTRA); before any training, else an error."""
    labels = [t.label for t in query_types]
    missing = [label for label in labels if not any(s.type == label for x in episode.support for s in x.spans)]
    if episode.protocol == "inter" or missing:
        raise ValueError(f"span_typing: prototype types spans by the support set's examples of each query type; "
                         f"episode {episode.id!r} ({episode.protocol}) has none of {missing or labels} in its support "
                         f"(use span_typing: llm)")
    return labels


def _save_predictions(path: Path, episode: Episode, predictions: list[list[Span]]) -> None:
    def spans_json(spans):
        return [{"type": s.type, "start": s.start, "end": s.end} for s in spans]

    atomic_write_text(path, "".join(
        json.dumps({"id": sentence.id, "tokens": sentence.tokens, "gold": spans_json(sentence.spans),
                    "spans": spans_json(spans)}, ensure_ascii=False) + "\n"
        for sentence, spans in zip(episode.query, predictions)))


def _save_forced_pass(path: Path, episode: Episode, rows: list[list[dict]]) -> None:
    """``none_threshold: split``'s one pass with every list open, per query sentence: every type's answer with its
    ``_p_entity``. ``benchmarks/cllmfs_decision_rules.py`` scores greedy, the split and the capped split on it, so
    the three are compared on the same adapter without decoding the queries again."""
    atomic_write_text(path, "".join(json.dumps({"id": s.id, "entities": row}, ensure_ascii=False) + "\n"
                                    for s, row in zip(episode.query, rows)))


def run_episode(episode: Episode, episode_args: EpisodeArguments, method_args: MethodArguments, decoding: DecodingConfig,
                training_args: CLLMFSConfig, model_args, output_dir: Path) -> dict | None:
    """Train (if the method trains) and evaluate one episode. Returns its results on the main process."""
    from accelerate import PartialState

    state = PartialState()
    parts, query_types = support_type_parts(episode, episode_args.types_file)
    support_types: list[EntityType] = []  # every source's types, a label shared by two sources described once
    for _, types in parts:
        support_types += [t for t in types if t.label not in {u.label for u in support_types}]
    if method_args.span_typing == "prototype":  # refused before training, not after it
        _check_prototype_typing(episode, query_types)
    timings: dict[str, float] = {}
    extra: dict = {}
    held_back = None
    if decoding.none_threshold == "auto":
        if method_args.method != "cllmfs":
            raise ValueError(f"none_threshold: auto is chosen on support sentences held back from CLLMFS training; "
                             f"method {method_args.method!r} trains nothing (give a number or null)")
        parts, held_back = _hold_back(parts, method_args.none_threshold_holdout, training_args.seed)
    started = time.perf_counter()
    adapter_dir = None
    if method_args.adapters_from:  # decoded again: the adapter an earlier run of this training saved
        from .extraction import attach_adapter

        model, tokenizer = _load_base(model_args)
        reused = Path(method_args.adapters_from) / output_dir.name / "adapter"
        model = attach_adapter(model, str(reused))[0]
        extra["adapter_from"] = str(reused)
    elif method_args.method == "cllmfs":
        trainer, tokenizer = train_cllmfs(episode, support_types, method_args, training_args, model_args, output_dir,
                                          parts=parts)
        timings["train_seconds"] = time.perf_counter() - started
        if trainer.resumed_from:  # the steps before it were timed by the process that was stopped, not here
            extra["resumed_from_checkpoint"] = Path(trainer.resumed_from).name
        model = trainer.model
        if held_back is not None:  # every process chooses the same threshold (same model, same sentences)
            started = time.perf_counter()
            sentences, types = held_back
            calibrating = CLLMFSExtractor(model, tokenizer, types, prompt_mode=method_args.prompt_mode,
                                          decoding=decoding)
            decoding = dataclasses.replace(decoding, none_threshold=calibrating.calibrate_none_threshold(sentences))
            extra["none_threshold"] = decoding.none_threshold
            extra["none_threshold_f1"] = calibrating.stats["none_threshold_f1"]
            extra["held_back_sentences"] = [s.id for s in sentences]
            timings["calibrate_seconds"] = time.perf_counter() - started
        if state.is_main_process:
            adapter_dir = output_dir / "adapter"
            base_config = model.get_base_model().config
            save_adapter(model, tokenizer, adapter_dir, CLLMFSAdapterConfig(
                base_model=model_args.model_name_or_path, base_fingerprint=architecture_fingerprint(base_config),
                entity_types=[dataclasses.asdict(t) for t in support_types], prompt_mode=method_args.prompt_mode,
                cl_layer=trainer.cl_layer, none_threshold=extra.get("none_threshold")))
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    output_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    forced_pass = None  # with none_threshold: split, the extraction's pass with every list open
    if method_args.method in ("proto", "nnshot"):
        from ..baselines import PrototypeTagger

        tagger = PrototypeTagger(method_args.encoder, method=method_args.method)
        support, labels = episode.support, episode.support_types  # INTRA: every support set, as CLLMFS trains on
        if episode.protocol == "inter":  # the source's types are not the target's: a K-shot set of the target
            (support, split), labels = target_support(episode, episode_args.data_dir), episode.query_types
            extra["target_support"] = [s.id for s in support]
            extra["target_support_split"] = split
        predictions = tagger.fit(support, labels).predict(episode.query)
    else:
        if method_args.method == "zero_shot":
            model, tokenizer = _load_base(model_args)
        extractor = CLLMFSExtractor(model, tokenizer, query_types, prompt_mode=method_args.prompt_mode,
                                    decoding=decoding, format_hint=method_args.method == "zero_shot")
        predictions = extractor.predict_sentences(episode.query, show_progress=True)
        forced_pass = extractor.last_forced_pass
        if method_args.span_typing == "prototype":
            predictions = _prototype_typed(episode, query_types, predictions, method_args.typing_encoder)
    timings["predict_seconds"] = time.perf_counter() - started
    timings["query_sentences_per_second"] = len(episode.query) / max(timings["predict_seconds"], 1e-9)
    timings.update(_peak_memory())
    scores: NERScores = span_scores([s.spans for s in episode.query], predictions, types=[t.label for t in query_types])
    _save_predictions(output_dir / "predictions.jsonl", episode, predictions)
    if forced_pass is not None:
        _save_forced_pass(output_dir / "forced_pass.jsonl", episode, forced_pass)
    result = {"episode": episode.id, "scores": scores.to_dict(), **timings, **extra}
    _write_json(output_dir / "results.json", result)
    if adapter_dir is not None:
        update_metrics(adapter_dir, {"episode": episode.id, "micro_f1": scores.micro.f1,
                                     "per_type_f1": {t: s.f1 for t, s in scores.per_type.items()}})
        write_card(adapter_dir, name=f"{output_dir.parent.name}-{output_dir.name}", episode_results=result,
                   support_sentences=len(episode.support))
    if not training_args.keep_checkpoints:  # the episode is finished: its resume points have served
        for checkpoint in output_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint, ignore_errors=True)
    print(f"\n{episode.id} [{method_args.method}] micro-F1 {scores.micro.f1:.4f}\n{scores.table()}\n", flush=True)
    return result


def _peak_memory() -> dict[str, float]:
    """The process's peak resident memory so far (MiB; over every episode run in this process, so the largest
    episode's), and on a GPU the peak allocated by torch: beside F1 when models are compared."""
    import resource
    import sys

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak = {"peak_rss_mib": rss / (1024 * 1024 if sys.platform == "darwin" else 1024)}
    if torch.cuda.is_available():
        peak["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def _hold_back(parts, fraction: float, seed: int):
    """Training parts with ``fraction`` of the first part's sentences taken out, and ``(those sentences, the first
    part's types)``: the first part is the episode's own source, whose types INTRA queries; the other sources of a
    multi-source INTER episode keep all their sentences, since the threshold is chosen on the first alone."""
    import random

    sentences, types = parts[0]
    count = max(1, round(fraction * len(sentences)))
    if len(sentences) - count < 1:
        raise ValueError(f"none_threshold: auto holds back {count} of {len(sentences)} support sentences, leaving "
                         "none to train on: lower none_threshold_holdout or sample more support sets")
    chosen = set(random.Random(f"none-threshold|{seed}").sample(range(len(sentences)), count))
    kept = [s for i, s in enumerate(sentences) if i not in chosen]
    held = [s for i, s in enumerate(sentences) if i in chosen]
    return [(kept, types), *parts[1:]], (held, types)


_SPEED_ONLY_DECODING = ("batch_size", "prefill_tokens")
_RUN_ONLY_TRAINING = ("logging_dir", "resume_from_checkpoint", "keep_checkpoints")


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
        c = {**c, **{section: {k: v for k, v in c.get(section, {}).items() if added.get(k, object()) != v}
                     for section, added in _ADDED_KEYS.items()}}
        return {**c, "episodes": {k: v for k, v in c.get("episodes", {}).items() if k != "n_episodes"},
                "decoding": {k: v for k, v in c.get("decoding", {}).items() if k not in _SPEED_ONLY_DECODING},
                "training": {k: v for k, v in c.get("training", {}).items() if k not in _RUN_ONLY_TRAINING}}

    return isinstance(previous, dict) and without_count(previous) == without_count(config)


# Training settings that name where a run writes, not what it trains.
_RUN_PLACE_TRAINING = ("output_dir", "run_name", "logging_dir")


def check_adapters_from(source: Path, root: Path, config: dict, episodes: list[Episode], selected: set[int]) -> None:
    """Refuse ``adapters_from`` unless ``source`` trained exactly what this run would (episodes, method, model and
    training settings; only decoding and the decode-time method settings differ) and holds the adapter of every
    episode this run decodes: otherwise the comparison would not be of decodings of the same adapters."""
    if source.resolve() == root.resolve():
        raise ValueError(f"adapters_from {source} is this run's output_dir: decode into another folder")
    path = source / "config.yaml"
    try:
        previous = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"adapters_from {source}: cannot read its config.yaml ({err})") from None
    if not isinstance(previous, dict) or previous.get("method", {}).get("method") != "cllmfs":
        raise ValueError(f"adapters_from {source}: {path} is not the config of a CLLMFS run")

    def trained(c: dict) -> dict:
        method = {k: v for k, v in c.get("method", {}).items() if k not in _DECODE_TIME_METHOD}
        training = {k: v for k, v in c.get("training", {}).items()
                    if k not in _RUN_ONLY_TRAINING + _RUN_PLACE_TRAINING}
        # the episodes themselves are compared below by id, wherever they were read from
        return {"episodes": {k: v for k, v in c.get("episodes", {}).items() if k not in ("n_episodes", "episodes_file")},
                "method": method, "model": c.get("model", {}), "training": training}

    ours, theirs = trained(config), trained(previous)
    differing = [f"{section}.{key}" for section in ours for key in sorted(set(ours[section]) | set(theirs[section]))
                 if ours[section].get(key, "<unset>") != theirs[section].get(key, "<unset>")]
    if differing:
        raise ValueError(f"adapters_from {source} trained with other settings than this run's: "
                         f"{', '.join(differing[:8])}{' ...' if len(differing) > 8 else ''} differ (only decoding, "
                         f"span_typing and typing_encoder may)")
    if config["decoding"].get("none_threshold") == "auto":
        raise ValueError("none_threshold: auto holds support sentences back from training, and adapters_from trains "
                         "nothing: decode again with a number, 'split' or null")
    if previous.get("decoding", {}).get("none_threshold") == "auto":
        raise ValueError(f"adapters_from {source} chose none_threshold: auto, so its adapters were trained without "
                         "held-back support sentences; a run without auto would have trained on them")
    for index in sorted(selected):
        episode_dir = source / f"episode-{index}"
        if _finished_episode(episode_dir, episodes[index]) is None or not (episode_dir / "adapter").is_dir():
            raise ValueError(f"adapters_from {source}: episode {index} ({episodes[index].id}) has no finished "
                             f"adapter in {episode_dir} (run it there first, or choose run_episodes)")


def _finished_episode(episode_dir: Path, episode: Episode) -> dict | None:
    """The saved result of ``episode`` when its folder holds one (``results.json`` is written last)."""
    try:
        result = json.loads((episode_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and result.get("episode") == episode.id else None


def _processes(training_args: CLLMFSConfig) -> int:
    """How many processes ran the experiment (data-parallel training under ``accelerate launch``)."""
    from accelerate import PartialState

    return PartialState(cpu=bool(training_args.use_cpu)).num_processes


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
    selected = set(range(len(episodes)) if episode_args.run_episodes is None else episode_args.run_episodes)
    if max(selected) >= len(episodes):
        raise ValueError(f"run_episodes {sorted(selected)} names an episode past the {len(episodes)} of "
                         f"{episode_args.episodes_file or 'this experiment'} (indices start at 0)")
    if method_args.adapters_from:  # before any model loads: every adapter it names must be there and fit
        check_adapters_from(Path(method_args.adapters_from), root, config, episodes, selected)
    reusable = _same_experiment(root / "config.yaml", config)
    if episode_args.run_episodes is not None and not reusable:
        stale = sorted(str(p.parent.name) for p in root.glob("episode-*/results.json"))
        if stale:  # the episodes this process does not run would be taken from another experiment
            raise ValueError(f"{root} holds finished episodes ({', '.join(stale)}) of a different experiment "
                             f"(its config.yaml differs or is missing): with run_episodes they would be mixed into "
                             f"this one's results; use a fresh output_dir")
    state.wait_for_everyone()
    if state.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        save_episodes(episodes, root / "episodes.jsonl")
        atomic_write_text(root / "config.yaml", yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    by_index: dict[int, dict] = {}
    for index, episode in enumerate(episodes):
        # another process's episodes of this experiment count once finished (stale ones were refused above)
        done = _finished_episode(root / f"episode-{index}", episode) if reusable or index not in selected else None
        if done is not None:  # an earlier, interrupted run (or another process) of this experiment finished it
            print(f"{episode.id}: reusing {root / f'episode-{index}' / 'results.json'}", flush=True)
            by_index[index] = done
        elif index in selected:
            result = run_episode(episode, episode_args, method_args, decoding, training_args, model_args,
                                 root / f"episode-{index}")
            if result is not None:
                by_index[index] = result
    if not state.is_main_process:
        return None
    waiting = []
    for index, episode in enumerate(episodes):  # looked at again: other processes may have finished meanwhile
        if index not in by_index:
            done = _finished_episode(root / f"episode-{index}", episode)
            if done is None:
                waiting.append(index)
            else:
                by_index[index] = done
    results = [by_index[index] for index in sorted(by_index)]
    if waiting:
        print(f"episodes {sorted(selected)} of {root} are finished; results.json waits for episode(s) {waiting} "
              f"(run them with --run_episodes, or rerun without it)", flush=True)
        return None
    runs = [NERScores.from_dict(r["scores"]) for r in results]
    summary = {"method": method_args.method, "source": episodes[0].support_dataset, "target": episodes[0].query_dataset,
               "protocol": episodes[0].protocol, "k_shot": episodes[0].k_shot, "n_way": episodes[0].n_way,
               "query_sentences": [len(e.query) for e in episodes], **summarize(runs), "episodes": results,
               "processes": _processes(training_args)}
    _write_json(root / "results.json", summary)
    f1 = summary["micro_f1"]
    print(f"{method_args.method} on {summary['source']} -> {summary['target']} ({summary['protocol']}, "
          f"{summary['n_way']}-way {summary['k_shot']}-shot, {len(runs)} episode(s)): "
          f"micro-F1 {f1['mean']:.4f} +- {f1['std']:.4f}", flush=True)
    return summary

