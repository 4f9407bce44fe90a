"""Model cards for the pushed artifacts, rendered from the Jinja templates in ``card_templates/``.

Every number in a card is read from what the training run wrote (Multi-BERT's ``results.json``; CLLMFS's
run and episode ``results.json``), never typed in: the per-type / per-domain tables, the ``model-index``
metadata (so the Hub shows the scores), the parameter counts (from the weight files themselves), the
training data with its licence (from the dataset registry), and the exact usage snippet for the repo.
Rendering is deterministic, so an unchanged artifact gives an unchanged card and the push skips it.
Cards hold Hub ids only: local paths and tokens never get in.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..artifacts import CLLMFS_CONFIG, read_hub_manifest, read_json
from .layout import ADAPTER_FILES, HEAD_FILES, is_repo_id

PROJECT_URL = "https://github.com/ner-adapters/ner-adapters"
DEFAULT_EXAMPLE = "Mary Smith flew from London to Paris to meet the Google team."
TEMPLATES = {"domain": "multibert_domain.md", "router": "multibert_router.md", "cllmfs": "cllmfs.md"}
#: Licences of the base models the project uses (as their model cards state them).
MODEL_LICENCES = {"sentence-transformers/all-MiniLM-L6-v2": "Apache-2.0",
                  "HuggingFaceTB/SmolLM2-135M-Instruct": "Apache-2.0",
                  "Qwen/Qwen2.5-Coder-0.5B-Instruct": "Apache-2.0",
                  "google/gemma-3-270m": "Gemma terms of use",
                  "intfloat/multilingual-e5-small": "MIT"}
#: Registry licence strings -> Hub licence ids (anything else is "other", explained in the card body).
LICENCE_IDS = {"CC-BY-4.0": "cc-by-4.0", "CC-BY-SA-4.0": "cc-by-sa-4.0", "MIT": "mit"}
#: Hub dataset ids for registered datasets whose registry entry has none (checked on huggingface.co).
HUB_DATASETS = {"uner_en_ewt": "universalner/universal_ner"}
#: Variant names of the Multi-BERT recipe (results.json) and what they are, for the comparison table.
VARIANTS = {"multibert": "Multi-BERT (two-step domain adapter)", "multibert_scratch": "domain adapter without pre-training",
            "general_adapter": "general adapter (all domains of the scheme)", "routed": "routed by the domain classifier",
            "general_bert": "General-BERT (full fine-tuning on all domains)",
            "spec_bert": "Spec-BERT (full fine-tuning per domain)"}


def default_template_dir() -> Path:
    """The templates shipped in the package (``model_cards/`` in a checkout links to them; ``--template_dir``
    overrides), so that a push works from an installed wheel as from the source tree."""
    return Path(__file__).resolve().parent / "card_templates"


def render(kind: str, card_data, context: Mapping[str, Any], template_dir: str | os.PathLike | None = None):
    """A ``huggingface_hub.ModelCard`` from the ``kind`` template."""
    from huggingface_hub import ModelCard

    folder = Path(template_dir) if template_dir else default_template_dir()
    path = folder / TEMPLATES[kind]
    if not path.is_file():
        raise FileNotFoundError(f"model card template {TEMPLATES[kind]} not found in {folder} (pass template_dir)")
    return ModelCard.from_template(card_data, template_path=str(path), **context)


# --- shared pieces -------------------------------------------------------------------------------------------


def percent(part: int | None, whole: int | None) -> str | None:
    return f"{100 * part / whole:.3f}%" if part and whole else None


def duration(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def tensor_parameters(folder: Path, names: Iterable[str]) -> int:
    """Parameters stored in a weights file (safetensors header, or a weights-only torch pickle)."""
    for name in names:
        path = folder / name
        if not path.is_file() or not name.endswith((".safetensors", ".bin")):
            continue
        if name.endswith(".safetensors"):
            from safetensors import safe_open

            with safe_open(str(path), "pt") as handle:
                return sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return sum(t.numel() for t in state.values())
    raise FileNotFoundError(f"no weights file among {list(names)} in {folder}")


def model_parameters(model: str, network: bool = True) -> int | None:
    """Best effort: a folder's safetensors headers, or the Hub's safetensors metadata; ``None`` if unknown."""
    try:
        if os.path.isdir(model):
            files = sorted(Path(model).glob("*.safetensors"))
            return sum(tensor_parameters(f.parent, [f.name]) for f in files) or None
        if network and is_repo_id(model):
            from huggingface_hub import get_safetensors_metadata

            return sum(get_safetensors_metadata(model).parameter_count.values())
    except Exception:  # unreachable Hub, no safetensors: the card just omits the number
        return None
    return None


@dataclass(frozen=True)
class DataSource:
    """One training dataset (subset) as the registry describes it."""

    dataset: str
    config: str | None

    def describe(self) -> dict:
        from ..data import get_spec

        try:
            spec = get_spec(self.dataset)
        except KeyError:
            return {"name": self.dataset, "config": self.config, "config_kind": "subset", "description": "",
                    "licence": "unknown", "citation": "", "hub_id": None, "language": None, "licence_id": "other"}
        return {"name": self.dataset, "config": self.config, "config_kind": spec.config_kind,
                "description": f"{spec.language}, {spec.domain}", "licence": spec.licence, "citation": spec.citation,
                "hub_id": spec.hub_id or HUB_DATASETS.get(self.dataset), "language": spec.language, "licence_id": LICENCE_IDS.get(spec.licence, "other")}


def describe_sources(sources: Iterable[DataSource]) -> list[dict]:
    """Registry descriptions, one per dataset, with the subsets used (``configs``) in order."""
    merged: dict[str, dict] = {}
    for source in sources:
        entry = merged.setdefault(source.dataset, {**source.describe(), "configs": []})
        if source.config and source.config not in entry["configs"]:
            entry["configs"].append(source.config)
    return list(merged.values())


def data_metadata(training: Sequence[dict], licence: str | None) -> dict:
    """Card metadata from the training data: licence, Hub dataset ids, languages."""
    licences = sorted({d["licence_id"] for d in training})
    return {
        "license": licence or (licences[0] if len(licences) == 1 else "other"),
        "datasets": sorted({d["hub_id"] for d in training if d["hub_id"]}) or None,
        "language": sorted({d["language"] for d in training if d["language"]}) or None,
    }


def scores_table(scores: Mapping | None) -> dict | None:
    """``NERScores.to_dict()`` as template rows (types sorted)."""
    if not scores:
        return None
    rows = [{"type": t, **s} for t, s in sorted(scores.get("per_type", {}).items())]
    return {"rows": rows, "micro": scores["micro"], "macro": scores["macro"]}


def ner_eval_results(scores: Mapping, *, source: DataSource, described: dict, split: str, name_suffix: str = "",
                     per_type: bool = True) -> list:
    """``model-index`` entries for one evaluation: micro P/R/F1 and per-type F1."""
    from huggingface_hub import EvalResult

    base = {"task_type": "token-classification", "task_name": "Named Entity Recognition",
            "dataset_type": described["hub_id"] or source.dataset,
            "dataset_name": f"{source.dataset}" + (f" ({source.config})" if source.config else ""),
            "dataset_config": source.config, "dataset_split": split}
    out = [EvalResult(**base, metric_type=key, metric_name=f"micro {key}{name_suffix}",
                      metric_value=round(float(scores["micro"][key]), 4)) for key in ("precision", "recall", "f1")]
    if per_type:
        out += [EvalResult(**base, metric_type="f1", metric_name=f"F1 ({label}){name_suffix}",
                           metric_value=round(float(s["f1"]), 4))
                for label, s in sorted(scores.get("per_type", {}).items())]
    return out


def provenance(results: Mapping) -> dict | None:
    machine = results.get("machine") or {}
    if not results.get("command"):
        return None
    described = ", ".join(x for x in (f"{machine['cpus']} CPU cores" if machine.get("cpus") else "",
                                      f"torch {machine['torch']}" if machine.get("torch") else "") if x)
    return {"command": results["command"], "machine": described or "an unrecorded machine",
            "wall": duration(results.get("wall_seconds"))}


def _card_data(*, model_name, library_name, base_model, tags, training, licence, eval_results):
    from huggingface_hub import ModelCardData

    meta = data_metadata(training, licence)
    return ModelCardData(
        model_name=model_name, library_name=library_name, pipeline_tag="token-classification",
        base_model=base_model if is_repo_id(base_model) else None, tags=sorted(set(tags)),
        metrics=["precision", "recall", "f1"], eval_results=eval_results or None, **meta,
    )


# --- Multi-BERT --------------------------------------------------------------------------------------------------


def domain_sources(results: Mapping) -> dict[str, DataSource]:
    """Each domain's dataset and subset, from the run's config (``DATASET[:CONFIG][=NAME]`` entries)."""
    data = (results.get("config") or {}).get("data") or {}
    try:
        from ..multibert.domains import parse_domain_specs

        specs = parse_domain_specs(data.get("domains", []), data.get("schemes", []))
    except Exception:  # an unregistered dataset: the card says the data was not recorded
        return {}
    return {spec.name: DataSource(spec.dataset, spec.config) for spec in specs}


def _adapter_description(spec: Mapping) -> str:
    if spec.get("kind") == "prefix":
        flat = "flat" if spec.get("prefix_flat") else f"reparametrized (bottleneck {spec.get('prefix_bottleneck_size')})"
        return f"prefix tuning, prefix length {spec.get('prefix_length')}, {flat}"
    names = {"q": "query", "k": "key", "v": "value"}
    targets = [names.get(m, m) for m in spec.get("lora_attn_matrices") or ("q", "v")]  # older manifests: q, v
    targets += ["feed-forward intermediate"] if spec.get("lora_intermediate") else []
    targets += ["feed-forward output"] if spec.get("lora_output") else []
    return f"LoRA, r={spec.get('lora_r')}, alpha={spec.get('lora_alpha')}, on the {', '.join(targets)} matrices"


def _multibert_limitations(core: str, micro_f1: float | None, max_length: int, domains: Sequence[str]) -> list[str]:
    items = []
    if micro_f1 is not None and micro_f1 < 0.5:
        items.append(f"The measured micro-F1 is {100 * micro_f1:.1f}%: many entities are missed or mistyped; "
                     "check outputs before relying on them.")
    if domains:
        items.append(f"Trained for the domain(s) {', '.join(domains)}: text of other domains, genres or languages "
                     "gets lower scores.")
    if core.endswith("all-MiniLM-L6-v2"):
        items.append("The core, all-MiniLM-L6-v2 (a 6-layer uncased English sentence-embedding model), stands in for "
                     "the paper's BERT-base, so scores are well below the paper's.")
    items.append(f"Labels are read on each word's first sub-token; words past {max_length} sub-tokens of a sentence "
                 "are tagged O. Nested entities are not represented.")
    items.append("The adapter needs the exact core weights it was trained on: ner-adapters refuses another core.")
    return items


def multibert_domain_card(repo_id: str, folder: Path, results: Mapping | None, *, router_repo: str | None = None,
                          example: str = DEFAULT_EXAMPLE, licence: str | None = None,
                          template_dir: str | os.PathLike | None = None, network: bool = True):
    """The card of an exported domain (or general) adapter folder."""
    results = results or {}
    manifest = read_hub_manifest(folder)
    domain, scheme, general_for = manifest["domain"], manifest["scheme"], manifest.get("general_for")
    sources = domain_sources(results)
    covered = [d for d, entry in (results.get("domain_scheme") or {}).items() if entry == scheme] if general_for else [domain]
    used = [sources[d] for d in covered if d in sources]
    training = describe_sources(used)
    variant = "general_adapter" if general_for else "multibert"
    all_scores = results.get("scores") or {}
    eval_results, per_domain = [], []
    scores = None
    if general_for:
        for d in covered:
            domain_scores = (all_scores.get(variant) or {}).get(d)
            if domain_scores and d in sources:
                per_domain.append({"domain": d, **domain_scores["micro"]})
                eval_results += ner_eval_results(domain_scores, source=sources[d], described=sources[d].describe(),
                                                 split="test", per_type=False)
    else:
        scores = (all_scores.get(variant) or {}).get(domain)
        if scores and domain in sources:
            eval_results = ner_eval_results(scores, source=sources[domain], described=sources[domain].describe(),
                                            split="test")
    comparison = [] if general_for else [
        {"variant": name, "f1": table[domain]} for name, table in (results.get("f1") or {}).items() if domain in table]
    core = manifest["core_model"]
    adapter_parameters = tensor_parameters(folder, ADAPTER_FILES)
    core_parameters = results.get("core_parameters") or model_parameters(core, network)
    micro = scores["micro"]["f1"] if scores else (
        sum(r["f1"] for r in per_domain) / len(per_domain) if per_domain else None)
    name = repo_id.split("/")[-1]
    types = [label[2:] for label in manifest["labels"] if label.startswith("B-")]
    tags = ["ner-adapters", "multibert", "adapter-transformers", "adapters", "named-entity-recognition",
            manifest["adapter"].get("kind", "lora"), f"domain:{domain}"]
    card_data = _card_data(model_name=name, library_name="adapter-transformers", base_model=core, tags=tags,
                           training=training, licence=licence, eval_results=eval_results)
    source = sources.get(domain) or (used[0] if used else None)
    context = {
        "repo_id": repo_id, "model_name": name, "domain": domain, "scheme": scheme, "general_for": general_for,
        "types": types, "labels": manifest["labels"], "core_model": core, "core_licence": MODEL_LICENCES.get(core),
        "core_parameters": core_parameters, "adapter_kind": manifest["adapter"].get("kind", "lora"),
        "adapter_description": _adapter_description(manifest["adapter"]), "adapter_parameters": adapter_parameters,
        "adapter_percent": percent(adapter_parameters, core_parameters), "head_parameters": tensor_parameters(folder, HEAD_FILES),
        "max_length": manifest["max_length"], "router_repo": router_repo, "example": example,
        "safetensors": (folder / "adapter.safetensors").is_file(), "training_data": training,
        "scores": scores_table(scores), "per_domain": per_domain, "comparison": comparison, "variant": variant,
        "eval_split": "test", "eval_name": f"{source.dataset}" + (f" ({source.config})" if source and source.config else "")
        if source else "its domain", "eval_sentences": scores["micro"]["gold"] if scores else None,
        "provenance": provenance(results), "project_url": PROJECT_URL, "variant_names": VARIANTS,
        "limitations": _multibert_limitations(core, micro, manifest["max_length"], covered),
    }
    return render("domain", card_data, context, template_dir)


def multibert_router_card(repo_id: str, folder: Path, results: Mapping | None, *, example: str = DEFAULT_EXAMPLE,
                          licence: str | None = None, endpoint: str | None = None,
                          template_dir: str | os.PathLike | None = None, network: bool = True):
    """The card of an exported domain-classifier folder."""
    from huggingface_hub import EvalResult, constants

    results = results or {}
    manifest = read_hub_manifest(folder)
    sources = domain_sources(results)
    training = describe_sources(sources[d] for d in manifest["domains"] if d in sources)
    router = results.get("router")
    routed = (results.get("f1") or {}).get("routed") or {}
    oracle = (results.get("f1") or {}).get("multibert") or {}
    rows = []
    eval_results = []
    if router:
        for domain in manifest["domains"]:
            rows.append({"domain": domain, "accuracy": router.get("per_domain", {}).get(domain, 0.0),
                         "routed": f"{100 * routed[domain]:.1f}" if domain in routed else "",
                         "oracle": f"{100 * oracle[domain]:.1f}" if domain in oracle else ""})
        first = next(iter(sources.values()), None)
        dataset = first.dataset if first else "held-out groups"
        eval_results.append(EvalResult(task_type="text-classification", task_name="Domain classification",
                                       dataset_type=(first.describe()["hub_id"] if first else None) or dataset,
                                       dataset_name=f"{dataset} (held-out groups)", dataset_split="test",
                                       metric_type="accuracy", metric_name="domain accuracy",
                                       metric_value=round(float(router["accuracy"]), 4)))
        for domain, f1 in routed.items():
            if domain in sources:
                source = sources[domain]
                eval_results.append(EvalResult(
                    task_type="token-classification", task_name="Named Entity Recognition",
                    dataset_type=source.describe()["hub_id"] or source.dataset,
                    dataset_name=source.dataset + (f" ({source.config})" if source.config else ""),
                    dataset_config=source.config, dataset_split="test", metric_type="f1",
                    metric_name="micro f1 (routed)", metric_value=round(float(f1), 4)))
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    adapters = [{"domain": d, "repo_id": ref.get("repo_id"), "revision": ref.get("revision"),
                 "url": f"{endpoint}/{ref.get('repo_id')}"} for d, ref in manifest["domain_adapters"].items()]
    core = manifest["core_model"]
    adapter_parameters = tensor_parameters(folder, ADAPTER_FILES)
    core_parameters = results.get("core_parameters") or model_parameters(core, network)
    name = repo_id.split("/")[-1]
    tags = ["ner-adapters", "multibert", "adapter-transformers", "adapters", "named-entity-recognition",
            "domain-classification", manifest["adapter"].get("kind", "lora")]
    card_data = _card_data(model_name=name, library_name="adapter-transformers", base_model=core, tags=tags,
                           training=training, licence=licence, eval_results=eval_results)
    limitations = []
    if router and router["accuracy"] < 0.9:
        limitations.append(f"The classifier picks the right domain for {100 * router['accuracy']:.1f}% of held-out "
                           "groups; short or mixed-domain texts are misrouted more often. A misrouted text is tagged "
                           "by another domain's adapter of the same label scheme, which still finds many entities.")
    limitations += [f"Only knows the domains {', '.join(manifest['domains'])}; anything else is routed to the closest.",
                    "Loads every adapter it routes to (pinned revisions): they must stay available on the Hub.",
                    "Needs the exact core weights it was trained on: ner-adapters refuses another core."]
    context = {
        "repo_id": repo_id, "model_name": name, "core_model": core, "core_licence": MODEL_LICENCES.get(core),
        "core_parameters": core_parameters, "domains": manifest["domains"], "threshold": manifest["threshold"],
        "max_length": manifest["max_length"], "adapter_kind": manifest["adapter"].get("kind", "lora"),
        "adapter_description": _adapter_description(manifest["adapter"]), "adapter_parameters": adapter_parameters,
        "head_parameters": tensor_parameters(folder, HEAD_FILES),
        "adapter_percent": percent(adapter_parameters + tensor_parameters(folder, HEAD_FILES), core_parameters),
        "adapters": adapters, "training_data": training,
        "router": {"accuracy": router["accuracy"], "groups": router.get("groups"), "rows": rows} if router else None,
        "routed": bool(routed), "example": example, "provenance": provenance(results), "project_url": PROJECT_URL,
        "limitations": limitations,
    }
    return render("router", card_data, context, template_dir)


# --- CLLMFS ----------------------------------------------------------------------------------------------------


def cllmfs_card(repo_id: str, folder: Path, *, episode_results: Mapping | None, run_results: Mapping | None,
                run_config: Mapping | None, episode_index: int | None = None, example: str = DEFAULT_EXAMPLE,
                licence: str | None = None, template_dir: str | os.PathLike | None = None, network: bool = True,
                support_sentences: int | None = None):
    """The card of an exported CLLMFS adapter folder, with its episode's and run's measured scores.

    ``support_sentences``: how many labelled sentences the adapter was trained on (the episode's support), when
    the caller knows it; the card says what the adapter saw, which for INTER is the source datasets only."""
    config = read_json(folder / CLLMFS_CONFIG)
    peft = read_json(folder / "adapter_config.json")
    run_results, episode_results, run_config = run_results or {}, episode_results or {}, run_config or {}
    episodes = run_config.get("episodes") or {}
    source = DataSource(run_results.get("source") or episodes.get("dataset") or "unknown", episodes.get("dataset_config"))
    target = DataSource(run_results.get("target") or source.dataset,
                        episodes.get("target_config") if episodes.get("target_dataset") else source.config)
    names = list(episodes.get("source_datasets") or [])
    if len(names) > 1:
        from ..cllmfs.support_sets import parse_source

        sources = [DataSource(*parse_source(n)) for n in names]
    else:
        sources = [source]
    inter = run_results.get("protocol") == "inter" or target.dataset != source.dataset
    training = describe_sources(sources if inter else [source, target])
    support = _support_description(run_results.get("n_way", len(config["entity_types"])), run_results.get("k_shot", "?"),
                                   int(episodes.get("n_support_sets") or 1), len(sources), support_sentences)
    scores = episode_results.get("scores")
    eval_results = ner_eval_results(scores, source=target, described=target.describe(), split="test") if scores else []
    base = config["base_model"]
    lora_parameters = tensor_parameters(folder, ["adapter_model.safetensors", "adapter_model.bin"])
    base_parameters = model_parameters(base, network)
    types = config["entity_types"]
    name = repo_id.split("/")[-1]
    summary = run_results.get("micro_f1")
    timing = None
    if episode_results.get("train_seconds") is not None:
        timing = {"train": duration(episode_results["train_seconds"]), "predict": duration(episode_results.get("predict_seconds")),
                  "speed": f"{episode_results.get('query_sentences_per_second', 0):.2f} query sentences/s"}
    micro = scores["micro"]["f1"] if scores else None
    counts = run_results.get("query_sentences") or []
    query_sentences = counts[min(episode_index or 0, len(counts) - 1)] if counts else "the"
    limitations = []
    if micro is not None:
        limitations.append(f"Few-shot: trained on {support}; the measured micro-F1 on this episode is {100 * micro:.1f}%.")
    limitations += [
        "Extraction prompts once per entity type and generates: slow on CPU"
        + (f" (measured {episode_results['query_sentences_per_second']:.2f} sentences/s)"
           if episode_results.get("query_sentences_per_second") else "") + ".",
        "Entities are word-aligned substrings of the input; nested or discontinuous entities are not represented.",
        "Other entity types than those it was trained on work only as far as the base model follows their description.",
        "The adapter is refused on a base model of another architecture.",
    ]
    tags = ["ner-adapters", "cllmfs", "lora", "peft", "few-shot", "named-entity-recognition"]
    card_data = _card_data(model_name=name, library_name="peft", base_model=base, tags=tags, training=training,
                           licence=licence, eval_results=eval_results)
    context = {
        "repo_id": repo_id, "model_name": name, "base_model_name": base, "base_licence": MODEL_LICENCES.get(base),
        "base_parameters": base_parameters, "lora_parameters": lora_parameters,
        "lora_percent": percent(lora_parameters, base_parameters),
        "adapter_description": f"LoRA r={peft.get('r')}, alpha={peft.get('lora_alpha')}, dropout {peft.get('lora_dropout')}, "
                               f"on {', '.join(sorted(peft.get('target_modules') or []))}",
        "entity_types": types, "type_labels": json.dumps([t["label"] for t in types], ensure_ascii=False),
        "prompt_mode": config.get("prompt_mode"), "cl_layer": config.get("cl_layer"),
        "n_way": run_results.get("n_way", len(types)), "k_shot": run_results.get("k_shot", "?"),
        "episode": episode_results.get("episode", "?"), "protocol": run_results.get("protocol", "?"),
        "source": source.dataset, "target": target.dataset, "training_data": training, "support": support,
        "inter": inter,
        "scores": scores_table(scores), "query_sentences": query_sentences,
        "run_summary": {"runs": run_results.get("runs", 1), **summary} if summary else None, "timing": timing,
        "example": example, "project_url": PROJECT_URL, "limitations": limitations,
    }
    return render("cllmfs", card_data, context, template_dir)


def _support_description(n_way, k_shot, n_sets: int, n_sources: int, sentences: int | None) -> str:
    """What a CLLMFS adapter was trained on, in words: "a 6-way 5-shot support set (33 sentences)"."""
    size = f"{sentences:,} sentences" if sentences else ""
    if n_sources > 1:
        sets = f"{n_sets} {k_shot}-shot support sets" if n_sets > 1 else f"a {k_shot}-shot support set"
        return f"{sets} from each of {n_sources} source datasets ({', '.join(x for x in (f'{n_way} types in all', size) if x)})"
    text = f"{n_sets} disjoint {n_way}-way {k_shot}-shot support sets" if n_sets > 1 else f"a {n_way}-way {k_shot}-shot support set"
    return text + (f" ({size})" if size else "")


__all__ = ["DEFAULT_EXAMPLE", "cllmfs_card", "default_template_dir", "domain_sources", "multibert_domain_card",
           "multibert_router_card", "render"]
