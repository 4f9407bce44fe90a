"""``MultiBertModel``: one frozen core, one AdapterHub adapter per domain, one tagging head per label scheme.

Built on ``adapters.AutoAdapterModel``. Adapters are named ``ad_<domain>``, tagging heads ``head_<scheme>``
and the domain classifier ``router`` / ``router_head``, so domains, schemes and the router never collide
(adapters activates a head with the adapter's name on its own; distinct names keep that from happening).

The library's silent traps (``../shared/reference/stack_notes.md``) are guarded here:

- every activation sets the adapter *and* the head (``train_adapter``/``set_active_adapters`` leave the
  previous head and its ``config.id2label`` in place) and checks the label map afterwards;
- an unknown domain, scheme or saved adapter raises :class:`MultiBertError`: nothing ever runs on the
  bare core or on a head of another label set;
- switching adapters mutates the shared model, so activation plus forward (and training) hold a lock;
- prefix tuning cannot be saved with safetensors (its tensors are shared between layers): it is saved
  with ``torch.save`` and read back by the library with ``torch.load(weights_only=True)``; LoRA adapters
  and heads use safetensors;
- a saved set records a fingerprint of its core, and loading it onto another core raises.
"""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Literal, Sequence

import torch

from ..artifacts import MULTIBERT_FORMAT as FORMAT, MULTIBERT_FORMAT_VERSION as FORMAT_VERSION
from ..artifacts import MULTIBERT_MANIFEST as MANIFEST, core_fingerprint, read_multibert_manifest
from ..atomic import atomic_directory
from ..compute import COMPUTE_DTYPES, compute_dtype, native_bfloat16  # noqa: F401  (native_bfloat16: re-exported)
from ..internals.adapters import eject_prefix_tuning, mean_pooled_head_class
from ..models import MINILM, resolve_model
from ..spans import label_names
from .domains import check_name
from .tokenization import SentenceInput, TaggedEntity, check_fast, tag
from ..errors import CoreMismatchError, MultiBertError  # noqa: F401  (re-exported: raised here)


ADAPTER_PREFIX = "ad_"
HEAD_PREFIX = "head_"
ROUTER_ADAPTER = "router"
ROUTER_HEAD = "router_head"
GENERAL_PREFIX = "general-"
ROUTER_POOLINGS = ("cls", "mean")
MEAN_POOLED_HEAD = "ner_adapters_mean_pooled_classification"  # the head type written in head_config.json


def mean_pooled_classification_head():
    """An AdapterHub classification head that reads the mean of the token states instead of ``[CLS]``.

    The cores packaged here (all-MiniLM-L6-v2, multilingual-e5-small) were trained as mean-pooled sentence
    encoders; their ``[CLS]`` state is not what they learned to make informative (measured on Persian domains:
    cosine 0.970 between domains vs 0.975 within one). The pooling lives in the head's own type, saved in its
    ``head_config.json``, so every copy of the router (saved set, Hub repo, pipeline, Space) pools the same way.
    """
    return mean_pooled_head_class(MEAN_POOLED_HEAD)


LORA_ATTN_MATRICES = ("q", "k", "v")  # what adapters' BERT LoRA can wrap in self-attention (not its output "o")


@dataclass(frozen=True)
class AdapterSpec:
    """The adapter of a domain: LoRA (the paper's best: r=3, alpha=1) or prefix tuning (length 22).

    LoRA sits on the self-attention matrices ``lora_attn_matrices`` (default query and value, the library's
    default), and with ``lora_intermediate`` / ``lora_output`` on the feed-forward block's up (intermediate)
    and down (output) projections too. Its update is scaled by ``lora_alpha / lora_r``. The spec is saved in
    the manifest; manifests written before these fields existed load with the defaults, which is what they used.
    """

    kind: Literal["lora", "prefix"] = "lora"
    lora_r: int = 3
    lora_alpha: int = 1
    lora_dropout: float = 0.0
    prefix_length: int = 22
    prefix_bottleneck_size: int = 512
    prefix_flat: bool = False
    lora_attn_matrices: tuple[str, ...] = ("q", "v")
    lora_intermediate: bool = False
    lora_output: bool = False

    def __post_init__(self) -> None:
        matrices = tuple(self.lora_attn_matrices)  # a JSON manifest gives a list
        unknown = [m for m in matrices if m not in LORA_ATTN_MATRICES]
        if unknown:
            raise MultiBertError(f"lora_attn_matrices {unknown}: choose from {list(LORA_ATTN_MATRICES)} (adapters' "
                                 "BERT LoRA does not wrap the attention output projection)")
        if self.kind == "lora" and not matrices and not self.lora_intermediate and not self.lora_output:
            raise MultiBertError("a LoRA adapter needs a target: lora_attn_matrices, lora_intermediate or lora_output")
        object.__setattr__(self, "lora_attn_matrices", matrices)

    def to_config(self):
        from adapters import LoRAConfig, PrefixTuningConfig

        if self.kind == "lora":
            return LoRAConfig(r=self.lora_r, alpha=self.lora_alpha, dropout=self.lora_dropout,
                              selfattn_lora=bool(self.lora_attn_matrices), attn_matrices=list(self.lora_attn_matrices),
                              intermediate_lora=self.lora_intermediate, output_lora=self.lora_output)
        if self.kind == "prefix":
            return PrefixTuningConfig(prefix_length=self.prefix_length, bottleneck_size=self.prefix_bottleneck_size,
                                      flat=self.prefix_flat)
        raise MultiBertError(f"unknown adapter kind {self.kind!r}; use 'lora' or 'prefix'")

    @classmethod
    def from_arguments(cls, args) -> "AdapterSpec":
        """From :class:`~ner_adapters.multibert.config.ModelArguments`."""
        return cls(args.adapter_kind, args.lora_r, args.lora_alpha, args.lora_dropout, args.prefix_length,
                   args.prefix_bottleneck_size, args.prefix_flat, lora_attn_matrices=tuple(args.lora_attn_matrices),
                   lora_intermediate=args.lora_intermediate, lora_output=args.lora_output)


def _segments_match(parameter_name: str, module_name: str) -> bool:
    return module_name in parameter_name.split(".")


def check_compute_dtype(name: str) -> str:
    if name not in COMPUTE_DTYPES:
        raise MultiBertError(f"router_dtype {name!r} is not one of {list(COMPUTE_DTYPES)}")
    return name


class MultiBertModel:
    """A frozen core with per-domain adapters, per-scheme tagging heads and an optional domain router.

    Wraps an AdapterHub `AutoAdapterModel`. Each domain has its own adapter (LoRA or prefix tuning) and tags with
    its label scheme's head; a general adapter per scheme is the router's fallback. Adapter activation,
    tokenization and forward run under one lock, so one model serves many threads.

    Args:
        model (`AutoAdapterModel`): the core with its adapters and heads (use `from_core` or `load`).
        tokenizer (`PreTrainedTokenizerFast`): the core's fast tokenizer (word ids are needed).
        core_model (`str`): the core's Hub id or folder, recorded in the saved manifest.
        max_length (`int`, defaults to 128): sub-tokens per forward; longer sentences are tagged in overlapping
            windows, each word labelled where it has the most context.

    Raises:
        `ner_adapters.errors.MultiBertError`: an unknown domain, scheme or adapter, or a saved set that does not
            fit its core (`CoreMismatchError`).

    Example:

    ```python
    >>> from ner_adapters.multibert import MultiBertModel
    >>> mbert = MultiBertModel.load("outputs/multibert/default/model")
    >>> mbert.predict(["Mary flew to Paris ."], domain="email")
    [[TaggedEntity(entity_group='PER', score=0.93, word='Mary', start=0, end=4, ...), ...]]
    >>> mbert = MultiBertModel.from_core("intfloat/multilingual-e5-small")      # a new set
    >>> mbert.add_scheme("uner", ["PER", "ORG", "LOC"]); mbert.add_domain("email", "uner")
    ```
    """

    def __init__(self, model, tokenizer, core_model: str, *, max_length: int = 128):
        check_fast(tokenizer)
        self.model = model
        self.tokenizer = tokenizer
        self.core_model = core_model
        self.max_length = max_length
        self.schemes: dict[str, tuple[str, ...]] = {}  # scheme -> IOB2 labels
        self.domains: dict[str, str] = {}  # domain (general adapters included) -> scheme
        self.adapter_specs: dict[str, AdapterSpec] = {}
        self.general: dict[str, str] = {}  # scheme -> its general adapter's domain name
        self.router_domains: list[str] = []
        self.router_max_length = 512
        self.router_threshold = 0.5
        self.router_pooling = "cls"  # what the router head reads: [CLS] or the mean of the token states
        self.router_dtype = "auto"  # see classify(); a runtime choice, not saved
        self._lock = threading.RLock()
        self.model.eval()

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def from_core(cls, core_model: str = MINILM, *, max_length: int = 128) -> "MultiBertModel":
        """Load the core (Hub id or folder, through :func:`~ner_adapters.models.resolve_model`)."""
        from adapters import AutoAdapterModel
        from transformers import AutoTokenizer

        path = resolve_model(core_model)
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        model = AutoAdapterModel.from_pretrained(path)  # a fresh config object per model, never shared
        model.register_custom_head(MEAN_POOLED_HEAD, mean_pooled_classification_head())
        return cls(model, tokenizer, str(core_model), max_length=max_length)

    def add_scheme(self, name: str, types: Sequence[str]) -> tuple[str, ...]:
        """A label scheme and its tagging head (labels ``O, B-t, I-t, ...`` in ``types`` order)."""
        check_name("scheme", name)
        with self._lock:
            if name in self.schemes:
                raise MultiBertError(f"scheme {name!r} already exists")
            labels = tuple(label_names(types))
            self.model.add_tagging_head(HEAD_PREFIX + name, num_labels=len(labels), id2label=dict(enumerate(labels)))
            self.model.active_head = None  # nothing is active until activate() says which domain
            self.schemes[name] = labels
            return labels

    def add_domain(self, name: str, scheme: str, spec: AdapterSpec = AdapterSpec()) -> None:
        """A domain of ``scheme`` with a fresh adapter."""
        check_name("domain", name)
        if name == ROUTER_ADAPTER:
            raise MultiBertError(f"{ROUTER_ADAPTER!r} names the domain classifier; choose another domain name")
        with self._lock:
            if scheme not in self.schemes:
                raise MultiBertError(f"unknown scheme {scheme!r}; add it first (schemes: {sorted(self.schemes)})")
            if name in self.domains:
                raise MultiBertError(f"domain {name!r} already exists")
            self.model.add_adapter(ADAPTER_PREFIX + name, config=spec.to_config())
            self.domains[name] = scheme
            self.adapter_specs[name] = spec

    def add_general(self, scheme: str, spec: AdapterSpec = AdapterSpec()) -> str:
        """The scheme's general adapter (trained on all its domains): the router's fallback."""
        name = GENERAL_PREFIX + scheme
        self.add_domain(name, scheme, spec)
        self.general[scheme] = name
        return name

    def add_router(self, domains: Sequence[str], spec: AdapterSpec = AdapterSpec(), *, max_length: int = 512,
                   threshold: float = 0.5, pooling: str = "mean", seed: int | None = None) -> None:
        """The domain classifier: its own adapter and classification head over ``domains``.

        ``domains`` may be any names, not only domains with an adapter here: a router can be trained on its own
        (routing a corpus, or choosing among adapters loaded later); tagging a routed document still needs the
        chosen domain's adapter, and :class:`DomainRouter` checks the fallbacks it needs when it is built.

        ``pooling``: the head reads the mean of the token states ("mean", see
        :func:`mean_pooled_classification_head`) or the ``[CLS]`` state ("cls", the library's head).

        ``seed``: initialise the router's adapter and head from this seed, in a forked random stream, so the router
        does not depend on what was trained before it in the process, and what follows is not moved by it."""
        if pooling not in ROUTER_POOLINGS:
            raise MultiBertError(f"router pooling {pooling!r} is not one of {list(ROUTER_POOLINGS)}")
        domains = [check_name("domain", d) for d in domains]
        if not domains or len(set(domains)) != len(domains):
            raise MultiBertError(f"a router needs distinct domain names, got {domains}")
        if ROUTER_ADAPTER in domains:
            raise MultiBertError(f"{ROUTER_ADAPTER!r} names the domain classifier; choose another domain name")
        with self._lock:
            if self.router_domains:
                raise MultiBertError("this model already has a router")
            with torch.random.fork_rng(devices=[], enabled=seed is not None):
                if seed is not None:
                    torch.manual_seed(seed)
                self.model.add_adapter(ROUTER_ADAPTER, config=spec.to_config())
                if pooling == "mean":
                    self.model.add_custom_head(MEAN_POOLED_HEAD, ROUTER_HEAD, num_labels=len(domains),
                                               id2label=dict(enumerate(domains)))
                else:
                    self.model.add_classification_head(ROUTER_HEAD, num_labels=len(domains),
                                                       id2label=dict(enumerate(domains)))
            self.model.active_head = None
            self.router_pooling = pooling
            self.router_domains = list(domains)
            self.router_max_length = max_length
            self.router_threshold = threshold
            self.adapter_specs[ROUTER_ADAPTER] = spec

    def domain_names(self) -> list[str]:
        """The task domains (general adapters excluded)."""
        general = set(self.general.values())
        return [d for d in self.domains if d not in general]

    def scheme_of(self, domain: str) -> str:
        try:
            return self.domains[domain]
        except KeyError:
            raise MultiBertError(f"unknown domain {domain!r}; this model has {sorted(self.domains)}") from None

    def fallback_domain(self, scheme: str) -> str:
        """The general adapter of ``scheme``, or its only domain when it has one."""
        if scheme in self.general:
            return self.general[scheme]
        members = [d for d, s in self.domains.items() if s == scheme]
        if len(members) == 1:
            return members[0]
        raise MultiBertError(f"scheme {scheme!r} has {len(members)} domains and no general adapter to fall back on")

    # --- adapter surgery ------------------------------------------------------------------------------

    def _adapter_parameters(self, adapter: str) -> dict[str, torch.nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if _segments_match(n, adapter)}

    def copy_adapter(self, source: str, target: str) -> None:
        """Copy the weights of ``source``'s adapter into ``target``'s (same configuration)."""
        with self._lock:
            src, dst = ADAPTER_PREFIX + source, ADAPTER_PREFIX + target
            self.scheme_of(source), self.scheme_of(target)
            if self.model.adapters_config.get(src) != self.model.adapters_config.get(dst):
                raise MultiBertError(f"cannot copy adapter {source!r} into {target!r}: their configurations differ")
            targets = self._adapter_parameters(dst)
            copied = 0
            with torch.no_grad():
                for name, parameter in self._adapter_parameters(src).items():
                    target_name = ".".join(dst if part == src else part for part in name.split("."))
                    targets[target_name].copy_(parameter)
                    copied += 1
            if copied != len(targets) or not copied:
                raise MultiBertError(f"copied {copied} tensors into {target!r}, which has {len(targets)}")

    def eject_prefix(self, domain: str) -> bool:
        """Replace a prefix's reparametrization MLP by the prefix it computes (what gets saved and counted).

        The output is unchanged (checked in the tests); ``False`` when the adapter is not a non-flat prefix.
        ``domain`` may be ``"router"`` for the classifier's adapter.
        """
        from adapters import PrefixTuningConfig

        name = self._adapter_name(domain)
        with self._lock:
            config = self.model.adapters_config.match(name, PrefixTuningConfig)
            if config is None or config.flat:
                return False
            if not eject_prefix_tuning(self.model, name, config):
                raise MultiBertError(f"ejecting prefix {domain!r}: the prefix pools changed when it was re-added flat")
            self.adapter_specs[domain] = AdapterSpec(**{**asdict(self.adapter_specs[domain]), "prefix_flat": True})
            return True

    # --- activation, training mode ----------------------------------------------------------------------

    def activate(self, domain: str) -> str:
        """Make ``domain``'s adapter and its scheme's head the active ones; returns the scheme."""
        with self._lock:
            scheme = self.scheme_of(domain)
            adapter, head = ADAPTER_PREFIX + domain, HEAD_PREFIX + scheme
            self._set_active(adapter, head)
            expected = dict(enumerate(self.schemes[scheme]))
            if {int(k): v for k, v in self.model.config.id2label.items()} != expected:
                raise MultiBertError(f"head {head!r} has labels {self.model.config.id2label}, expected {expected}")
            return scheme

    @contextmanager
    def active(self, domain: str) -> Iterator[tuple[str, ...]]:
        """Hold the model with ``domain``'s adapter and head active; yields the head's labels.

        For callers that run their own forward pass (``ner_adapters.pipeline``): activation and forward must
        happen under one lock, or a concurrent call could switch the adapter in between.
        """
        with self._lock:
            scheme = self.activate(domain)
            self.model.eval()
            yield self.schemes[scheme]

    def _set_active(self, adapter: str, head: str) -> None:
        if adapter not in self.model.adapters_config.adapters:
            raise MultiBertError(f"adapter {adapter!r} is missing from the model")
        if head not in self.model.heads:
            raise MultiBertError(f"head {head!r} is missing from the model")
        self.model.set_active_adapters(adapter)
        self.model.active_head = head  # also switches config.id2label / label2id

    @contextmanager
    def training(self, domain: str, *, train_head: bool) -> Iterator[int]:
        """Hold the model in training mode for ``domain``: its adapter trains, the head only if asked.

        ``train_adapter`` freezes the core but leaves every head trainable and does not switch the active
        head: both are set here. Yields the number of trainable parameters.
        """
        if domain == ROUTER_ADAPTER:
            adapter, head = ROUTER_ADAPTER, ROUTER_HEAD
            if not self.router_domains:
                raise MultiBertError("this model has no router; add_router() first")
        else:
            adapter, head = ADAPTER_PREFIX + domain, HEAD_PREFIX + self.scheme_of(domain)
        with self._lock:
            try:
                self.model.train_adapter(adapter)
                self._set_active(adapter, head)
                for name, module in self.model.heads.items():
                    module.requires_grad_(train_head and name == head)
                yield sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            finally:
                self.model.requires_grad_(False)
                self.model.eval()

    # --- prediction ------------------------------------------------------------------------------------

    def _forward(self, encoding: dict) -> torch.Tensor:
        device = self.model.device
        return self.model(**{k: v.to(device) for k, v in encoding.items()}).logits

    def predict(self, inputs: Sequence[SentenceInput], domain: str, *, batch_size: int = 32) -> list[list[TaggedEntity]]:
        """Tag sentences (raw strings or token lists) with ``domain``'s adapter and head."""
        with self._lock, torch.inference_mode():
            scheme = self.activate(domain)
            self.model.eval()
            return tag(self._forward, self.tokenizer, inputs, self.schemes[scheme], self.max_length, batch_size)

    def predict_mixed(self, inputs: Sequence[SentenceInput], domains: Sequence[str], *,
                      batch_size: int = 32) -> list[list[TaggedEntity]]:
        """Tag sentences of several domains: grouped by domain, one activation per group, input order kept."""
        if len(inputs) != len(domains):
            raise ValueError(f"{len(inputs)} sentences but {len(domains)} domains")
        groups: dict[str, list[int]] = {}
        for index, domain in enumerate(domains):
            self.scheme_of(domain)  # fail before any work
            groups.setdefault(domain, []).append(index)
        results: list[list[TaggedEntity]] = [[] for _ in inputs]
        for domain, indices in groups.items():
            for index, entities in zip(indices, self.predict([inputs[i] for i in indices], domain,
                                                             batch_size=batch_size)):
                results[index] = entities
        return results

    def classify(self, texts: Sequence[str], *, batch_size: int = 8) -> list[dict[str, float]]:
        """Domain probabilities of each text (its first ``router_max_length`` tokens).

        The forward runs in ``router_dtype``: "auto" (default: bfloat16 where the device computes it natively,
        else float32), "float32", "bfloat16" or "float16" (autocast: weights stay as they are). A domain decision
        is coarse; bfloat16 makes it 1.66x faster on CPUs with AVX512-BF16 or AMX (and on recent GPUs) with the
        same decisions on all 316 UNER test documents (``benchmarks/bench_multibert.py``). Tagging stays float32.
        """
        if isinstance(texts, str):
            raise TypeError("pass a list of texts")
        if not self.router_domains:
            raise MultiBertError("this model has no router")
        # Documents differ in length by two orders of magnitude: batched in input order, short ones are padded to
        # the longest of their batch. Batches of similar lengths (results put back in input order) pad least.
        texts = list(texts)
        with self._lock:  # a fast tokenizer is not thread-safe ("Already borrowed"): predict() uses it under the lock
            encoded = self.tokenizer(texts, truncation=True, max_length=self.router_max_length)
        rows = [{key: values[i] for key, values in encoded.items()} for i in range(len(texts))]
        order = sorted(range(len(texts)), key=lambda i: len(rows[i]["input_ids"]))
        out: list[dict[str, float]] = [{} for _ in texts]
        with self._lock, torch.inference_mode(), compute_dtype(self.router_dtype, self.model.device):
            self._set_active(ROUTER_ADAPTER, ROUTER_HEAD)
            self.model.eval()
            for lo in range(0, len(order), batch_size):
                chunk = order[lo : lo + batch_size]
                batch = self.tokenizer.pad([rows[i] for i in chunk], padding=True, return_tensors="pt")
                probabilities = torch.softmax(self._forward(batch).float(), dim=-1)
                for i, row in zip(chunk, probabilities):
                    out[i] = dict(zip(self.router_domains, row.tolist()))
        return out

    # --- parameter counts ------------------------------------------------------------------------------

    def core_parameters(self) -> int:
        """Parameters of the frozen core (adapters and heads excluded)."""
        adapters = list(self.model.adapters_config.adapters)
        return sum(p.numel() for n, p in self.model.base_model.named_parameters()
                   if not any(_segments_match(n, a) for a in adapters))

    def core_embedding_parameters(self) -> int:
        """Parameters of the core's embedding layer: word, position and token-type embeddings and their LayerNorm.

        A multilingual core is mostly its word-embedding matrix (multilingual-e5-small: about 96M of 118M),
        which an adapter never touches; ``core_parameters() - core_embedding_parameters()`` is the body
        (transformer layers and pooler) that adapters are a share of.
        """
        embeddings = self.model.base_model.embeddings
        return sum(p.numel() for p in embeddings.parameters())

    def _adapter_name(self, domain: str) -> str:
        """The library's name of a domain's adapter (``router``: the classifier's); unknown domains raise."""
        if domain == ROUTER_ADAPTER:
            if not self.router_domains:
                raise MultiBertError("this model has no router")
            return ROUTER_ADAPTER
        self.scheme_of(domain)
        return ADAPTER_PREFIX + domain

    def adapter_parameters(self, domain: str) -> int:
        """Parameters of a domain's adapter (``"router"``: the classifier's adapter)."""
        return sum(p.numel() for p in self._adapter_parameters(self._adapter_name(domain)).values())

    def head_parameters(self, scheme: str) -> int:
        head = ROUTER_HEAD if scheme == ROUTER_ADAPTER else HEAD_PREFIX + scheme
        if head not in self.model.heads:
            raise MultiBertError(f"unknown scheme {scheme!r}; this model has {sorted(self.schemes)}")
        return sum(p.numel() for p in self.model.heads[head].parameters())

    # --- saving and loading ------------------------------------------------------------------------------

    def manifest(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "core_model": self.core_model,
            "core_fingerprint": core_fingerprint(self.model),
            "max_length": self.max_length,
            "schemes": {name: list(labels) for name, labels in self.schemes.items()},
            "domains": {name: {"scheme": scheme, "adapter": asdict(self.adapter_specs[name])}
                        for name, scheme in self.domains.items()},
            "general": dict(self.general),
            "router": None if not self.router_domains else {
                "domains": self.router_domains, "max_length": self.router_max_length,
                "threshold": self.router_threshold, "pooling": self.router_pooling,
                "adapter": asdict(self.adapter_specs[ROUTER_ADAPTER])},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole set to one directory, atomically (a temp folder renamed into place)."""
        path = Path(path)
        if path.exists() and not (path / MANIFEST).is_file() and any(path.iterdir()):
            raise MultiBertError(f"{path} exists and is not a saved Multi-BERT model; refusing to overwrite it")
        with atomic_directory(path) as staging:
            for folder in ("adapters", "heads", "router"):
                (staging / folder).mkdir()
            with self._lock:
                for domain in self.domains:
                    self._save_adapter(staging / "adapters" / domain, ADAPTER_PREFIX + domain, domain)
                for scheme in self.schemes:
                    self.model.save_head(str(staging / "heads" / scheme), HEAD_PREFIX + scheme, use_safetensors=True)
                if self.router_domains:
                    self._save_adapter(staging / "router" / "adapter", ROUTER_ADAPTER, ROUTER_ADAPTER)
                    self.model.save_head(str(staging / "router" / "head"), ROUTER_HEAD, use_safetensors=True)
                (staging / MANIFEST).write_text(json.dumps(self.manifest(), indent=2, ensure_ascii=False) + "\n",
                                                encoding="utf-8")
        return path

    def _save_adapter(self, folder: Path, adapter: str, key: str) -> None:
        # Prefix tuning shares tensors between layers, which safetensors refuses: torch.save for it.
        safe = self.adapter_specs[key].kind == "lora"
        self.model.save_adapter(str(folder), adapter, with_head=False, use_safetensors=safe)

    @classmethod
    def load(cls, path: str | os.PathLike, *, core_model: str | None = None,
             router_dtype: str | None = None) -> "MultiBertModel":
        """Reload a saved set onto its core (or ``core_model``, which must be the same weights).

        ``router_dtype`` sets the domain classifier's compute dtype (see ``classify``)."""
        path = Path(path)
        manifest_path = path / MANIFEST
        manifest = read_multibert_manifest(path, error=MultiBertError)
        self = cls.from_core(core_model or manifest["core_model"], max_length=manifest["max_length"])
        fingerprint = core_fingerprint(self.model)
        if fingerprint != manifest["core_fingerprint"]:
            raise CoreMismatchError(f"{manifest_path}: the adapters were trained on another core "
                                 f"({manifest['core_fingerprint']}), not {fingerprint}")
        for scheme, labels in manifest["schemes"].items():
            self._load_head(path / "heads" / scheme, HEAD_PREFIX + scheme, labels)
            self.schemes[scheme] = tuple(labels)
        for domain, entry in manifest["domains"].items():
            spec = AdapterSpec(**entry["adapter"])
            self._load_adapter(path / "adapters" / domain, ADAPTER_PREFIX + domain, spec)
            self.domains[domain] = entry["scheme"]
            self.adapter_specs[domain] = spec
        self.general = dict(manifest["general"])
        router = manifest["router"]
        if router:
            spec = AdapterSpec(**router["adapter"])
            self._load_adapter(path / "router" / "adapter", ROUTER_ADAPTER, spec)
            self._load_head(path / "router" / "head", ROUTER_HEAD, router["domains"])
            # The head's own type says how it pools (a Hub copy of the manifest may not carry "pooling");
            # a manifest without the field predates mean pooling: [CLS].
            pooling = "mean" if self.model.heads[ROUTER_HEAD].config.get("head_type") == MEAN_POOLED_HEAD else "cls"
            if router.get("pooling", pooling) != pooling:
                raise MultiBertError(f"{manifest_path}: router pooling {router['pooling']!r}, but its head pools "
                                     f"{pooling!r}")
            self.router_pooling = pooling
            self.router_domains = list(router["domains"])
            self.router_max_length = router["max_length"]
            self.router_threshold = router["threshold"]
            self.adapter_specs[ROUTER_ADAPTER] = spec
        if router_dtype is not None:
            self.router_dtype = check_compute_dtype(router_dtype)
        self.model.active_head = None
        self.model.eval()
        return self

    def _load_adapter(self, folder: Path, adapter: str, spec: AdapterSpec) -> None:
        if not (folder / "adapter_config.json").is_file():
            # Checked here: given a missing folder, the library would look the name up on the Hub.
            raise MultiBertError(f"adapter folder {folder} is missing or incomplete")
        info: dict = {}
        self.model.load_adapter(str(folder), load_as=adapter, with_head=False, set_active=False,
                                use_safetensors=spec.kind == "lora", loading_info=info)
        missing = [k for k in info.get("missing_keys", []) if _segments_match(k, adapter)]
        if missing:
            raise MultiBertError(f"adapter folder {folder} lacks weights for {missing[:3]}")

    def _load_head(self, folder: Path, head: str, labels: Sequence[str]) -> None:
        if not (folder / "head_config.json").is_file():
            raise MultiBertError(f"head folder {folder} is missing or incomplete")
        self.model.load_head(str(folder), load_as=head, use_safetensors=True)
        saved = [self.model.get_labels_dict(head)[i] for i in range(len(self.model.get_labels_dict(head)))]
        if saved != list(labels):
            raise MultiBertError(f"head folder {folder} has labels {saved}, the manifest says {list(labels)}")


__all__ = ["AdapterSpec", "MultiBertError", "MultiBertModel", "core_fingerprint"]
