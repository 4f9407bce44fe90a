"""Configuration of a Multi-BERT run: core and adapters, data, training, router.

Four dataclasses parsed by ``transformers.HfArgumentParser``. :func:`parse_config` reads a YAML file and
turns it into command-line arguments placed *before* the real ones, so the CLI overrides the file
(``recipes/train_multibert.py cfg.yaml --num_train_epochs 2``) and both go through the same type checks
and choices. A YAML key that no dataclass knows raises :class:`ConfigError` naming the key and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from ..models import MINILM
from ..errors import ConfigError  # noqa: F401  (re-exported: raised here)

AdapterKind = Literal["lora", "prefix"]
VARIANTS = ("multibert", "multibert_scratch", "general_adapter", "general_bert", "spec_bert", "routed", "router")
# The variants that need the domain adapters trained; "router" alone trains only the domain classifier.
ADAPTER_VARIANTS = ("multibert", "general_adapter", "routed")


@dataclass
class ModelArguments:
    """The frozen core and the per-domain adapters (paper defaults: LoRA r=3, alpha=1; prefix length 22)."""

    core_model: str = field(default=MINILM, metadata={"help": "Hub id or folder of any BERT-family encoder"})
    adapter_kind: AdapterKind = field(default="lora", metadata={"help": "per-domain adapter: lora or prefix"})
    lora_r: int = 3
    lora_alpha: int = field(default=1, metadata={"help": "LoRA's update is scaled by lora_alpha / lora_r"})
    lora_dropout: float = 0.0
    lora_attn_matrices: list[str] = field(
        default_factory=lambda: ["q", "v"],
        metadata={"help": "self-attention matrices LoRA adapts: any of q, k, v (the attention output projection "
                          "is not wrapped by adapters' BERT LoRA)"})
    lora_intermediate: bool = field(default=False, metadata={"help": "LoRA on the feed-forward up projection too"})
    lora_output: bool = field(default=False, metadata={"help": "LoRA on the feed-forward down projection too"})
    prefix_length: int = 22
    prefix_bottleneck_size: int = field(
        default=512, metadata={"help": "hidden size of the prefix reparametrization MLP (training only)"}
    )
    prefix_flat: bool = field(default=False, metadata={
        "help": "train the prefix directly, without the MLP (measured: through the MLP nothing was learned at "
                "5e-3 or 5e-4 on Persian; flat at 2e-2 learns as fast as LoRA at 5e-3)"})
    eject_prefix: bool = field(
        default=True, metadata={"help": "after training, keep only the prefix itself (drops the MLP)"}
    )
    max_length: int = field(
        default=128, metadata={"help": "sub-tokens per forward pass; longer sentences are tagged in overlapping windows"}
    )

    def __post_init__(self) -> None:
        _check_choice("adapter_kind", self.adapter_kind, ("lora", "prefix"))
        for matrix in self.lora_attn_matrices:
            _check_choice("lora_attn_matrices", matrix, ("q", "k", "v"))
        _check_positive(self, "lora_r", "prefix_length", "prefix_bottleneck_size", "max_length")


@dataclass
class DataArguments:
    """Which domains to train, how they map to label schemes, and how much of each to use."""

    domains: list[str] = field(
        default_factory=lambda: ["uner_en_ewt:*"],
        metadata={"help": "DATASET[:CONFIG][=NAME]; CONFIG '*' expands to every config (genre/domain). DATASET is a "
                          "registered name, your own file or folder (CoNLL, JSONL, split files, save_to_disk) or a Hub "
                          "id; or an entry {name: NAME, data: PATH, scheme: SCHEME} (YAML mapping or JSON)"},
    )
    schemes: list[str] = field(
        default_factory=list,
        metadata={"help": "DATASET=SCHEME to put datasets in one label scheme (default: one scheme per dataset)"},
    )
    type_map: list[str] = field(
        default_factory=list, metadata={"help": "DATASET:SOURCE_TYPE=TARGET_TYPE entity type renames"}
    )
    reader_options: list[str] = field(
        default_factory=list, metadata={"help": "DATASET:KEY=VALUE options for the dataset reader"}
    )
    data_dir: Optional[str] = None
    split_seed: int = field(default=42, metadata={"help": "seed of the train/dev carving for datasets lacking one"})
    dev_fraction: float = field(default=0.15, metadata={"help": "share held out as dev where a dataset has none"})
    max_train_sentences: Optional[int] = field(default=None, metadata={"help": "cap per domain (seeded sample)"})
    max_dev_sentences: Optional[int] = None
    max_test_sentences: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.domains:
            raise ConfigError("domains: at least one domain is needed")
        if not 0 < self.dev_fraction < 1:
            raise ConfigError(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")


@dataclass
class MultiBertTrainingArguments:
    """The two-step procedure and the baselines (paper: batch 16, lr 1e-4, up to 30 epochs; adapters here: lr 5e-3).

    The paper's lr 1e-4 does not train a LoRA adapter scaled by alpha/r = 1/3 in any epoch budget seen here
    (MiniLM, UNER email, adapter + head: dev F1 0.079 after 5 epochs at 1e-4, dev loss 1.74; at 5e-3: 0.42 after
    one epoch and 0.78 at the 8th). Full fine-tuning keeps 1e-4 (``full_learning_rate``).
    """

    output_dir: str = "outputs/multibert/run"
    variants: list[str] = field(
        default_factory=lambda: ["multibert", "multibert_scratch", "general_adapter", "general_bert", "spec_bert",
                                 "routed"],
        metadata={"help": "what to train and evaluate: " + ", ".join(VARIANTS)},
    )
    pretrain_mode: Literal["leave_one_out", "shared"] = field(
        default="leave_one_out",
        metadata={"help": "step 1: one adapter per domain on the scheme's other domains (leave_one_out), or one "
                          "adapter on all of them copied into every domain (shared)"},
    )
    per_device_train_batch_size: int = 16
    per_device_eval_batch_size: int = 32
    learning_rate: float = field(default=5e-3, metadata={"help": "adapters (and the step-1 head); see the class doc"})
    step2_learning_rate: Optional[float] = field(
        default=None, metadata={"help": "step 2 (each domain's adapter on its own data, the head frozen); null: "
                                        "learning_rate. The adapter starts pre-trained, so a small domain can be "
                                        "past its best dev F1 after one epoch at the pre-training rate"})
    num_train_epochs: float = field(default=30, metadata={"help": "step 2 / single-step cap (early stopping)"})
    pretrain_epochs: float = field(default=2, metadata={"help": "step 1 epochs ('a couple' in the paper)"})
    head_epochs: Optional[float] = field(
        default=None, metadata={"help": "epochs of the step-1 run that trains the scheme's shared head (leave_one_out: "
                                        "with the general adapter; shared: the one step-1 run); null: "
                                        "pretrain_epochs. The head is frozen from then on, so it may deserve more "
                                        "epochs than each step-1 adapter"})
    general_epochs: float = field(default=5, metadata={"help": "general adapter cap (early stopping)"})
    step2_keeps_pretrained: bool = field(
        default=False, metadata={"help": "step 2 scores the pre-trained adapter on the domain's dev set first and "
                                         "keeps it when no fine-tuning epoch beats it (the paper fine-tunes 'until "
                                         "convergence and before over fitting': on a small domain the first epoch "
                                         "can already be past that point)"})
    early_stopping_patience: int = field(
        default=3, metadata={"help": "stop after this many epochs without a better dev epoch (higher dev F1, or "
                                     "equal dev F1 and lower dev loss)"})
    early_stopping_min_epochs: float = field(
        default=3, metadata={"help": "never stop early before this many epochs (a tagger can predict no entity, "
                                     "dev F1 0, for its first epochs while its dev loss falls)"})
    full_learning_rate: float = field(default=1e-4, metadata={"help": "General-/Spec-BERT full fine-tuning"})
    full_num_train_epochs: float = 3
    full_warmup_ratio: Optional[float] = field(
        default=None, metadata={"help": "warm-up share of the General-/Spec-BERT runs (null: warmup_ratio). Full "
                                        "fine-tuning at a higher lr needs warm-up that the adapters do not"})
    spec_from_general: bool = field(
        default=True, metadata={"help": "Spec-BERT starts from General-BERT (the paper) instead of the core"}
    )
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    logging_steps: int = 50
    seed: int = 42
    torch_threads: Optional[int] = field(default=None, metadata={"help": "torch.set_num_threads (None: torch's)"})
    keep_checkpoints: bool = False
    resume_from_checkpoint: bool = field(
        default=False,
        metadata={"help": "resume an interrupted run from its last complete checkpoint (in output_dir/runs); runs "
                          "that had finished are trained again, to the same weights"},
    )
    save_model: bool = True

    def __post_init__(self) -> None:
        _check_choice("pretrain_mode", self.pretrain_mode, ("leave_one_out", "shared"))
        for variant in self.variants:
            _check_choice("variants", variant, VARIANTS)
        if "routed" in self.variants and "multibert" not in self.variants:
            raise ConfigError("variants: 'routed' tags through the multibert adapters; add 'multibert'")
        if not self.variants:
            raise ConfigError("variants: name at least one of " + ", ".join(VARIANTS))
        _check_positive(self, "per_device_train_batch_size", "per_device_eval_batch_size", "learning_rate",
                        "num_train_epochs", "full_learning_rate", "full_num_train_epochs", "general_epochs")
        if self.early_stopping_min_epochs < 0:
            raise ConfigError(f"early_stopping_min_epochs must be >= 0, got {self.early_stopping_min_epochs}")
        for name in ("warmup_ratio", "full_warmup_ratio"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < 1:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if self.head_epochs is not None and not self.head_epochs > 0:
            raise ConfigError(f"head_epochs must be > 0 (or null: pretrain_epochs), got {self.head_epochs}")
        if self.step2_learning_rate is not None and not self.step2_learning_rate > 0:
            raise ConfigError(
                f"step2_learning_rate must be > 0 (or null: learning_rate), got {self.step2_learning_rate}")


@dataclass
class RouterArguments:
    """The domain classifier: its own adapter and head, trained on groups of sentences of one domain."""

    train_router: bool = True
    group_size: int = field(default=8, metadata={"help": "sentences per group (fewer when 512 tokens are full)"})
    router_max_length: int = 512
    router_learning_rate: float = 1e-3
    router_epochs: float = 3
    router_train_stride: int | None = field(
        default=None, metadata={"help": "a training group starts every this many sentences (overlapping groups: "
                                        "group_size / stride times the examples from the same text); null: disjoint "
                                        "groups. Dev and test groups are always disjoint."})
    router_pooling: Literal["cls", "mean"] = field(
        default="mean", metadata={"help": "what the domain classifier reads: the mean of the token states (how the "
                                          "packaged cores were trained as sentence encoders) or [CLS]"})
    confidence_threshold: float = field(
        default=0.5, metadata={"help": "below this probability the general adapter tags instead"}
    )

    def __post_init__(self) -> None:
        _check_positive(self, "group_size", "router_max_length", "router_learning_rate", "router_epochs")
        _check_choice("router_pooling", self.router_pooling, ("cls", "mean"))
        if self.router_train_stride is not None and not 0 < self.router_train_stride <= self.group_size:
            raise ConfigError(f"router_train_stride must be between 1 and group_size ({self.group_size}) sentences, "
                              f"or null, got {self.router_train_stride}")
        if not 0 <= self.confidence_threshold <= 1:
            raise ConfigError(f"confidence_threshold must be in [0, 1], got {self.confidence_threshold}")


@dataclass
class MultiBertConfig:
    model: ModelArguments
    data: DataArguments
    training: MultiBertTrainingArguments
    router: RouterArguments
    source: str | None = None

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in ("model", "data", "training", "router")}


SECTIONS = (ModelArguments, DataArguments, MultiBertTrainingArguments, RouterArguments)


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(choices)}")


def _check_positive(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{name} must be positive, got {getattr(obj, name)}")


def _parser():
    from transformers import HfArgumentParser

    return HfArgumentParser(SECTIONS)


def parse_config(argv: Sequence[str] | None = None, *, yaml_file: str | Path | None = None) -> MultiBertConfig:
    """Parse ``--config FILE [--config FILE ...] [--key value ...]``, the calling convention of every recipe:
    later files override earlier ones and the command line overrides them all. Each file is checked key by key
    first (:func:`ner_adapters.yaml_config.check_config_file`), so an error names its file, line and key. A first
    positional file is read as ``--config FILE``."""
    from ..yaml_config import parse_recipe_args, split_config_args

    files, rest = split_config_args(list(argv or []))
    if yaml_file is not None:
        files.insert(0, str(yaml_file))
    model, data_args, training, router = parse_recipe_args(
        _parser(), [arg for name in files for arg in ("--config", name)] + rest)
    return MultiBertConfig(model, data_args, training, router, source=", ".join(files) or None)


__all__ = ["ConfigError", "DataArguments", "ModelArguments", "MultiBertConfig", "RouterArguments",
           "MultiBertTrainingArguments", "VARIANTS", "parse_config"]
