"""The Multi-BERT experiment: train the variants of a config, score them per domain, write the tables.

Variants (``training.variants``): ``multibert`` (two-step adapters, shared heads), ``multibert_scratch``
(adapter and own head per domain, no pre-training), ``general_adapter`` (one adapter per scheme on all
its domains), ``general_bert`` (the core fully fine-tuned on all domains of a scheme), ``spec_bert``
(fully fine-tuned per domain, from General-BERT as in the paper unless ``spec_from_general`` is off) and
``routed`` (test sentences in groups, each group routed by the domain classifier and tagged by the
adapter it picks). Every F1 is the project's span-level micro-F1 on the domain's test split. The router is
trained and scored whenever ``train_router`` is on, the domain adapters only when a variant needs them
(``multibert``, ``general_adapter``, ``routed``): ``variants: [router]`` measures the domain classifier alone.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..atomic import atomic_write_text
from ..data import Sentence
from ..metrics import span_scores
from ..spans import label_names
from .config import ADAPTER_VARIANTS, ConfigError, MultiBertConfig
from .domains import DomainData, load_domains
from .model import ROUTER_ADAPTER, AdapterSpec, MultiBertModel
from .router import DomainRouter, make_groups, router_accuracy, train_router
from .training import FullTagger, RunResult, train_full, train_multibert

VARIANT_TITLES = {
    "general_bert": "General-BERT (full fine-tuning, all domains of the scheme)",
    "spec_bert": "Spec-BERT (full fine-tuning per domain)",
    "general_adapter": "General adapter (all domains of the scheme)",
    "multibert_scratch": "Multi-BERT, no pre-training (adapter + own head per domain)",
    "multibert": "Multi-BERT (two steps: pre-train, then fine-tune with the shared head frozen)",
    "routed": "Multi-BERT behind the router (groups of test sentences, predicted domain)",
}


@dataclass
class ExperimentResult:
    """Everything a run measured; ``to_json`` is what the recipe writes, ``markdown`` the report tables."""

    config: dict
    command: str
    machine: dict
    adapter_kind: str
    domains: list[str]
    schemes: dict[str, list[str]]
    domain_scheme: dict[str, str]
    core_parameters: int
    f1: dict[str, dict[str, float]] = field(default_factory=dict)
    scores: dict[str, dict[str, dict]] = field(default_factory=dict)
    parameters: list[dict] = field(default_factory=list)
    router: dict | None = None
    runs: list[dict] = field(default_factory=list)
    variant_seconds: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    targets: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The core's embedding layer (word, position, type embeddings, LayerNorm); "% core" counts all core
    # parameters, "% body" those outside this layer (a multilingual core is mostly its word embeddings).
    core_embedding_parameters: int = 0
    # False while the run goes on: results.json is rewritten after every variant, so a run stopped midway
    # (SIGTERM, a crash, the end of a session) keeps the scores of the variants it finished.
    complete: bool = False

    def to_json(self) -> dict:
        return dict(self.__dict__)

    def write(self, out: Path) -> None:
        """Write ``results.json`` and ``results.md`` under ``out``, atomically (a reader never sees half a file)."""
        atomic_write_text(out / "results.json", json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        atomic_write_text(out / "results.md", self.markdown() + "\n")

    def f1_table(self) -> str:
        header = "| variant | " + " | ".join(self.domains) + " | mean |"
        lines = [header, "|---" * (len(self.domains) + 2) + "|"]
        for variant in VARIANT_TITLES:
            if variant not in self.f1:
                continue
            row = self.f1[variant]
            cells = [f"{100 * row[d]:.1f}" if d in row else "–" for d in self.domains]
            mean = sum(row.values()) / len(row) if row else 0.0
            lines.append(f"| {variant} | " + " | ".join(cells) + f" | {100 * mean:.1f} |")
        return "\n".join(lines)

    @property
    def core_body_parameters(self) -> int:
        """Core parameters outside the embedding layer (transformer layers and pooler)."""
        return self.core_parameters - self.core_embedding_parameters

    def percent_of_core(self, count: int, *, body: bool = False) -> float | None:
        """``count`` in % of all core parameters, or (``body``) of those outside the embedding layer."""
        total = self.core_body_parameters if body else self.core_parameters
        if body and not self.core_embedding_parameters:
            return None  # not measured (an old results file)
        return 100 * count / total if total else None

    def parameter_table(self) -> str:
        lines = ["| variant | trainable | % core | % body | saved | % core | % body | per |",
                 "|---|---|---|---|---|---|---|---|"]

        def pct(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        for row in self.parameters:
            cells = []
            for key in ("trainable", "saved"):
                cells += [f"{row[key]:,}", pct(self.percent_of_core(row[key])),
                          pct(self.percent_of_core(row[key], body=True))]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + f" | {row['per']} |")
        return "\n".join(lines)

    def percent_basis(self) -> str:
        return (f"% core: of all {self.core_parameters:,} core parameters; % body: of the "
                f"{self.core_body_parameters:,} outside the embedding layer (word, position and type embeddings and "
                f"their LayerNorm: {self.core_embedding_parameters:,}, "
                f"{self.percent_of_core(self.core_embedding_parameters) or 0:.1f}% of the core)")

    def markdown(self) -> str:
        parts = [f"Command: `{self.command}`", "",
                 f"Machine: {self.machine['cpus']} CPU cores ({self.machine['torch_threads']} torch threads), "
                 f"{self.machine['platform']}, torch {self.machine['torch']}; wall time {self.wall_seconds / 60:.1f} min",
                 "", f"Span micro-F1 (%) on each domain's test split, adapters: {self.adapter_kind}", "",
                 self.f1_table(), "",
                 *[f"- {v}: {title}" for v, title in VARIANT_TITLES.items() if v in self.f1], "",
                 f"Parameters (core: {self.core_parameters:,}). {self.percent_basis()}", "", self.parameter_table()]
        if self.router:
            pooling = f", {self.router['pooling']} pooling" if self.router.get("pooling") else ""
            parts += ["", f"Router accuracy on {self.router['groups']} held-out test groups{pooling}: "
                          f"{100 * self.router['accuracy']:.1f}% (per domain: "
                      + ", ".join(f"{d} {100 * a:.0f}%" for d, a in self.router["per_domain"].items()) + ")"]
        if self.targets:
            parts += ["", "Targets: " + "; ".join(f"{k}: {v}" for k, v in self.targets.items())]
        parts += [f"\nNote: {note}" for note in self.notes]
        if not self.complete:
            parts += ["\nPartial: the run had not finished every variant when this was written "
                      f"(done: {', '.join(self.f1) or 'none'}; router: {'yes' if self.router else 'no'})."]
        return "\n".join(parts)


def _machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def score_tagger(predict: Callable[[list[list[str]]], list], test: Sequence[Sentence]) -> dict:
    """Span scores (the project's metric) of ``predict`` (token lists -> tagged entities) on ``test``; the recipe
    scores every variant with it, and ``benchmarks/multibert_evaluate.py`` a saved set."""
    predicted = predict([s.tokens for s in test])
    return span_scores([s.spans for s in test], [[e.span for e in entities] for entities in predicted]).to_dict()


def _record(result: ExperimentResult, variant: str, domain: str, scores: dict) -> None:
    result.scores.setdefault(variant, {})[domain] = scores
    result.f1.setdefault(variant, {})[domain] = scores["micro"]["f1"]


def _concat(parts) -> list[Sentence]:
    return [s for part in parts for s in part]


def run_experiment(config: MultiBertConfig, *, command: str = "", log: Callable[[str], None] = print) -> ExperimentResult:
    """Train and evaluate every variant of ``config``; saves the Multi-BERT model and the results files."""
    from transformers import set_seed

    started = time.time()
    model_args, training, router_args = config.model, config.training, config.router
    for needs_router in ("routed", "router"):
        if needs_router in training.variants and not router_args.train_router:
            raise ConfigError(f"variants: {needs_router!r} needs the router; set train_router: true")
    if training.torch_threads:
        torch.set_num_threads(training.torch_threads)
    set_seed(training.seed)
    out = Path(training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    schemes, domains = load_domains(config.data)
    spec = AdapterSpec.from_arguments(model_args)
    variants = training.variants
    log(f"{len(domains)} domains in {len(schemes)} scheme(s): "
        + ", ".join(f"{d.name} ({d.scheme}; {len(d.train)}/{len(d.dev)}/{len(d.test)})" for d in domains))

    result = ExperimentResult(
        config=config.to_dict(), command=command, machine=_machine(), adapter_kind=model_args.adapter_kind,
        domains=[d.name for d in domains], schemes={k: list(v) for k, v in schemes.items()},
        domain_scheme={d.name: d.scheme for d in domains}, core_parameters=0)
    by_scheme: dict[str, list[DomainData]] = {}
    for d in domains:
        by_scheme.setdefault(d.scheme, []).append(d)

    def progress() -> None:  # after each variant: a run stopped later keeps what it scored
        result.wall_seconds = round(time.time() - started, 1)
        result.write(out)

    train_adapters = bool(set(ADAPTER_VARIANTS) & set(variants))
    if train_adapters or router_args.train_router:
        variant_started = time.time()
        mbert = MultiBertModel.from_core(model_args.core_model, max_length=model_args.max_length)
        result.core_parameters = mbert.core_parameters()
        result.core_embedding_parameters = mbert.core_embedding_parameters()
        for name, types in schemes.items():
            mbert.add_scheme(name, types)
        for d in domains:
            mbert.add_domain(d.name, d.scheme, spec)
        if train_adapters:
            want_general = "general_adapter" in variants or router_args.train_router
            runs = train_multibert(mbert, domains, training, general=want_general,
                                   eject_prefix=model_args.eject_prefix)
            result.runs += [r.summary() for r in runs]
            for d in domains:
                _record(result, "multibert", d.name, score_tagger(lambda x, d=d: mbert.predict(x, d.name), d.test))
                if d.scheme in mbert.general and "general_adapter" in variants:
                    general = mbert.general[d.scheme]
                    _record(result, "general_adapter", d.name,
                            score_tagger(lambda x: mbert.predict(x, general), d.test))
            result.variant_seconds["multibert"] = round(time.time() - variant_started, 1)
            _adapter_parameters(result, mbert, runs, by_scheme)
            progress()
        if router_args.train_router:
            _router(result, mbert, domains, config, log)
            progress()
        if training.save_model and train_adapters:
            saved = mbert.save(out / "model")
            log(f"saved the Multi-BERT model to {saved}")
        elif training.save_model:  # the domain adapters were never trained: a saved set would tag at random
            result.notes.append("no adapter variant was trained (variants: " + ", ".join(variants)
                                + "), so no Multi-BERT model was saved")
        del mbert

    if "multibert_scratch" in variants:
        variant_started = time.time()
        scratch = MultiBertModel.from_core(model_args.core_model, max_length=model_args.max_length)
        result.core_parameters = scratch.core_parameters()
        result.core_embedding_parameters = scratch.core_embedding_parameters()
        for d in domains:  # one scheme per domain: the single-domain path, adapter and head trained together
            scratch.add_scheme(d.name, schemes[d.scheme])
            scratch.add_domain(d.name, d.name, spec)
        runs = train_multibert(scratch, domains, training, general=False, eject_prefix=model_args.eject_prefix,
                               prefix="scratch")
        result.runs += [r.summary() for r in runs]
        for d in domains:
            _record(result, "multibert_scratch", d.name,
                    score_tagger(lambda x, d=d: scratch.predict(x, d.name), d.test))
        d0 = domains[0]
        result.parameters.append({"variant": "multibert_scratch", "trainable": runs[0].trainable_parameters,
                                  "saved": scratch.adapter_parameters(d0.name) + scratch.head_parameters(d0.name),
                                  "per": "domain (adapter + own head)"})
        result.variant_seconds["multibert_scratch"] = round(time.time() - variant_started, 1)
        del scratch
        progress()

    if {"general_bert", "spec_bert"} & set(variants):
        _full_baselines(result, by_scheme, schemes, config, log, progress)

    if not result.core_parameters:
        from transformers import AutoModel

        from ..models import resolve_model

        core = AutoModel.from_pretrained(resolve_model(model_args.core_model))
        result.core_parameters = sum(p.numel() for p in core.parameters())
        result.core_embedding_parameters = sum(p.numel() for p in core.embeddings.parameters())
    for row in result.parameters:  # both shares in results.json too, so no reader has to know the totals
        for key in ("trainable", "saved"):
            row[f"{key}_percent_core"] = result.percent_of_core(row[key])
            row[f"{key}_percent_body"] = result.percent_of_core(row[key], body=True)
    _targets(result)
    result.wall_seconds = round(time.time() - started, 1)
    result.complete = True
    result.write(out)
    return result


def _adapter_parameters(result: ExperimentResult, mbert: MultiBertModel, runs: Sequence[RunResult],
                        by_scheme: dict[str, list[DomainData]]) -> None:
    """Trainable (as trained) and saved (as written) parameters of the adapter variants."""
    trained = {r.name: r.trainable_parameters for r in runs}
    for scheme, members in by_scheme.items():
        first = members[0].name
        head = mbert.head_parameters(scheme)
        head_run = trained.get(f"multibert-head-{scheme}")  # leave_one_out: the head trains with the general adapter
        step1 = trained.get(f"multibert-step1-{first}", trained.get(f"multibert-step1-{scheme}"))
        step2 = trained.get(f"multibert-step2-{first}", trained.get(f"multibert-{first}"))
        adapter = mbert.adapter_parameters(first)
        if head_run is not None:
            result.parameters.append({"variant": f"multibert head pre-training [{scheme}]", "trainable": head_run,
                                      "saved": 0, "per": "scheme (general adapter + shared head, all domains)"})
        if step1 is not None:
            result.parameters.append({"variant": f"multibert step 1 [{scheme}]", "trainable": step1, "saved": 0,
                                      "per": "pre-training run (adapter; head frozen)" if head_run is not None
                                      else "pre-training run (adapter + shared head)"})
        result.parameters.append({"variant": f"multibert [{scheme}]", "trainable": step2, "saved": adapter,
                                  "per": "domain (adapter; head frozen)" if step1 is not None else
                                  "domain (adapter + head: single-domain scheme)"})
        result.parameters.append({"variant": f"shared head [{scheme}]", "trainable": 0, "saved": head,
                                  "per": f"scheme ({len(members)} domains)"})
        if scheme in mbert.general:
            general = mbert.general[scheme]
            result.parameters.append({"variant": f"general_adapter [{scheme}]",
                                      "trainable": trained.get(f"multibert-general-{scheme}",
                                                               head_run if head_run is not None else step1),
                                      "saved": mbert.adapter_parameters(general), "per": "scheme"})


def _router(result: ExperimentResult, mbert: MultiBertModel, domains: Sequence[DomainData],
            config: MultiBertConfig, log: Callable[[str], None]) -> None:
    router_args, training = config.router, config.training
    started = time.time()
    mbert.add_router([d.name for d in domains], AdapterSpec.from_arguments(config.model),
                     max_length=router_args.router_max_length, threshold=router_args.confidence_threshold,
                     pooling=router_args.router_pooling, seed=training.seed)

    def groups(split: str, seed: int | None, stride: int | None = None):
        return make_groups({d.name: getattr(d, split) for d in domains}, mbert.tokenizer,
                           group_size=router_args.group_size, max_length=router_args.router_max_length, seed=seed,
                           stride=stride)

    train_groups = groups("train", training.seed, router_args.router_train_stride)
    dev_groups, test_groups = groups("dev", None), groups("test", None)
    run = train_router(mbert, train_groups, dev_groups, router_args, training)
    if config.model.eject_prefix:
        mbert.eject_prefix(ROUTER_ADAPTER)
    result.runs.append(run.summary())
    accuracy = router_accuracy(mbert, test_groups)
    accuracy.update({"train_groups": len(train_groups), "dev_groups": len(dev_groups),
                     "group_size": router_args.group_size, "max_length": router_args.router_max_length,
                     "pooling": router_args.router_pooling, "train_stride": router_args.router_train_stride})
    result.router = accuracy
    log(f"router accuracy on {len(test_groups)} test groups: {accuracy['accuracy']:.3f}")
    result.parameters.append({"variant": "router", "trainable": run.trainable_parameters,
                              "saved": mbert.adapter_parameters(ROUTER_ADAPTER) + mbert.head_parameters(ROUTER_ADAPTER),
                              "per": "model (adapter + classification head)"})
    if "routed" in training.variants:
        router = DomainRouter(mbert, router_args.confidence_threshold)
        tagged = router.tag_many([[s.tokens for s in g.sentences] for g in test_groups])
        gold: dict[str, list] = {}
        predicted: dict[str, list] = {}
        fallbacks = 0
        for group, document in zip(test_groups, tagged):
            fallbacks += document.decision.fallback
            gold.setdefault(group.domain, []).extend(s.spans for s in group.sentences)
            predicted.setdefault(group.domain, []).extend([e.span for e in s.entities] for s in document.sentences)
        for d in domains:
            _record(result, "routed", d.name, span_scores(gold[d.name], predicted[d.name]).to_dict())
        result.router["fallback_groups"] = fallbacks
    result.variant_seconds["router"] = round(time.time() - started, 1)


def _full_baselines(result: ExperimentResult, by_scheme: dict[str, list[DomainData]], schemes: dict,
                    config: MultiBertConfig, log: Callable[[str], None], progress: Callable[[], None]) -> None:
    training, model_args = config.training, config.model
    variants = training.variants
    for scheme, members in by_scheme.items():
        labels = label_names(schemes[scheme])
        started = time.time()
        need_general = "general_bert" in variants or ("spec_bert" in variants and training.spec_from_general)
        general: FullTagger | None = None
        if need_general:
            general, run = train_full(model_args.core_model, labels, _concat(m.train for m in members),
                                      _concat(m.dev for m in members), training, max_length=model_args.max_length,
                                      run_name=f"general_bert-{scheme}")
            result.runs.append(run.summary())
            result.parameters.append({"variant": f"general_bert [{scheme}]", "trainable": run.trainable_parameters,
                                      "saved": general.parameters(), "per": "scheme"})
            if "general_bert" in variants:
                for d in members:
                    _record(result, "general_bert", d.name, score_tagger(general.predict, d.test))
        result.variant_seconds[f"general_bert-{scheme}"] = round(time.time() - started, 1)
        progress()
        if "spec_bert" not in variants:
            continue
        started = time.time()
        for d in members:
            if len(members) == 1 and general is not None:
                spec = general  # one domain: General-BERT is already fine-tuned on exactly that domain
                note = f"{d.name} is its scheme's only domain: Spec-BERT is General-BERT there"
                result.notes.append(note)
                log(note)
            else:
                spec, run = train_full(model_args.core_model, labels, d.train, d.dev, training,
                                       max_length=model_args.max_length, run_name=f"spec_bert-{d.name}",
                                       init=general if training.spec_from_general else None)
                result.runs.append(run.summary())
            _record(result, "spec_bert", d.name, score_tagger(spec.predict, d.test))
            progress()
        result.parameters.append({"variant": f"spec_bert [{scheme}]", "trainable": spec.parameters(),
                                  "saved": spec.parameters(), "per": "domain"})
        result.variant_seconds[f"spec_bert-{scheme}"] = round(time.time() - started, 1)
        progress()


def _targets(result: ExperimentResult) -> None:
    """The paper's targets, checked on what was measured (reported as they come out)."""
    f1 = result.f1
    if "multibert" in f1 and "spec_bert" in f1:
        close = [d for d in result.domains if f1["multibert"][d] >= f1["spec_bert"][d] - 0.02]
        result.targets["adapters within 2 F1 of Spec-BERT"] = f"{len(close)}/{len(result.domains)} domains"
    if "multibert" in f1 and "general_bert" in f1:
        above = [d for d in result.domains if f1["multibert"][d] > f1["general_bert"][d]]
        result.targets["adapters above General-BERT"] = f"{len(above)}/{len(result.domains)} domains"
    saved = [row for row in result.parameters if row["variant"].startswith("multibert [")]
    if saved:
        worst = max(row["saved"] for row in saved)
        body = result.percent_of_core(worst, body=True)
        result.targets["saved parameters per domain < 2% of the core"] = (
            f"{result.percent_of_core(worst):.3f}% of the core (max over schemes)"
            + ("" if body is None else f", {body:.3f}% of its non-embedding body"))
    if result.router:
        result.targets["router accuracy"] = f"{100 * result.router['accuracy']:.1f}%"


__all__ = ["ExperimentResult", "VARIANT_TITLES", "run_experiment", "score_tagger"]
