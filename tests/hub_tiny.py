"""Tiny trained-looking artifacts for the Hub delivery tests (pipeline, push, Space), built in seconds.

- a Multi-BERT run folder (``model/`` + ``results.json``) on a 2-layer BERT core that is itself a repo of the
  local Hub (so the artifacts name their core by Hub id, as real ones do): domains ``email`` and ``reviews``
  of the ``uner_en_ewt`` scheme, a general adapter and a router, with random (non-trivial) weights;
- a CLLMFS run folder (``episode-0/adapter`` + results) on a tiny random Llama, also a local-Hub repo.

The scores in the results files are measured: the tiny models' predictions on synthetic sentences,
scored with the project's metric (and the router's accuracy with ``router_accuracy``), so the cards are
tested against numbers the code computed, in the formats the real recipes write.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from multibert_tiny import build_tiny_core, make_sentences, randomize

UNER_TYPES = ("PER", "ORG", "LOC")
DOMAINS = {"email": "news", "reviews": "travel", "newsgroup": "sports"}  # domain -> its synthetic sentences
PREFIX_DOMAIN = "newsgroup"  # a prefix-tuning adapter: the one kind saved as a (weights-only) torch pickle
SCHEME = "uner_en_ewt"
EXAMPLE = "mary visited paris today . john scored twice for arsenal in london ."


@dataclass
class MultiBertRun:
    core_id: str
    core_dir: Path
    run_dir: Path
    model_dir: Path
    results: dict


@dataclass
class CLLMFSRun:
    base_id: str
    run_dir: Path
    adapter_dir: Path
    types: list


def load_script(path: Path, name: str):
    """A script (a recipe or a benchmark: scripts, not a package) as a module named ``name``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses with string annotations look their module up
    spec.loader.exec_module(module)
    return module


def load_recipe(name: str):
    """``recipes/<name>.py`` as a module."""
    return load_script(Path(__file__).resolve().parents[1] / "recipes" / f"{name}.py", f"recipe_{name}")


def push_model_folder(api, folder: Path, name: str) -> str:
    repo_id = f"tester/{name}-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder))
    return repo_id


def build_multibert_run(root: Path, api, seed: int = 3) -> MultiBertRun:
    """Train nothing: random adapters/heads (from ``seed``), saved and scored like ``recipes/train_multibert.py``.
    ``wall_seconds`` is this build's own measured time (the cards print it as the run's)."""
    import time

    import torch

    started = time.perf_counter()

    from ner_adapters.metrics import span_scores
    from ner_adapters.multibert import AdapterSpec, MultiBertModel, make_groups, router_accuracy

    core_dir = build_tiny_core(root / "core", extra_words=["playing", "jumped"])
    core_id = push_model_folder(api, core_dir, "tiny-bert-core")
    mbert = MultiBertModel.from_core(core_id, max_length=32)
    mbert.add_scheme(SCHEME, UNER_TYPES)
    for domain in DOMAINS:
        spec = AdapterSpec(kind="prefix", prefix_length=4, prefix_flat=True) if domain == PREFIX_DOMAIN else AdapterSpec()
        mbert.add_domain(domain, SCHEME, spec)
    mbert.add_general(SCHEME)
    mbert.add_router(list(DOMAINS), max_length=64, threshold=0.5)
    randomize(mbert, seed=seed)
    run_dir = root / "multibert-run"
    model_dir = mbert.save(run_dir / "model")
    scores, f1 = {"multibert": {}, "general_adapter": {}, "routed": {}}, {"multibert": {}, "general_adapter": {}, "routed": {}}
    test = {d: make_sentences(t, 12, 2) for d, t in DOMAINS.items()}
    for domain, sentences in test.items():
        for variant, adapter in (("multibert", domain), ("general_adapter", f"general-{SCHEME}")):
            predicted = [[e.span for e in row] for row in mbert.predict([s.tokens for s in sentences], adapter)]
            result = span_scores([s.spans for s in sentences], predicted, types=list(UNER_TYPES))
            scores[variant][domain] = result.to_dict()
            f1[variant][domain] = result.micro.f1
        f1["routed"][domain] = f1["multibert"][domain]
    groups = make_groups({d: test[d] for d in DOMAINS}, mbert.tokenizer, group_size=4)
    results = {
        "config": {"data": {"domains": [f"{SCHEME}:{d}" for d in DOMAINS], "schemes": []}},
        "command": "python recipes/train_multibert.py tests/tiny.yaml",
        "machine": {"cpus": 2, "torch": torch.__version__},
        "wall_seconds": round(time.perf_counter() - started, 2),
        "domains": list(DOMAINS), "schemes": {SCHEME: list(UNER_TYPES)},
        "domain_scheme": {d: SCHEME for d in DOMAINS},
        "core_parameters": mbert.core_parameters(),
        "f1": f1, "scores": scores,
        "router": {**router_accuracy(mbert, groups), "train_groups": 0},
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return MultiBertRun(core_id, core_dir, run_dir, model_dir, results)


def build_cllmfs_run(root: Path, api, tiny_llm_dir: Path, seed: int = 0) -> CLLMFSRun:
    """A LoRA adapter on the tiny Llama with random B matrices (from ``seed``), saved and scored like the CLLMFS
    recipe. Its ``train_seconds`` is the measured time of making and saving that adapter (the fixture's
    "training"); ``predict_seconds`` and the speed are measured on its query sentences."""
    import time

    import torch
    import yaml
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSAdapterConfig, CLLMFSExtractor, DecodingConfig, save_adapter
    from ner_adapters.cllmfs.artifact import architecture_fingerprint
    from ner_adapters.cllmfs.entity_types import dataset_entity_types
    from ner_adapters.data import Sentence
    from ner_adapters.metrics import span_scores, summarize
    from ner_adapters.spans import Span

    base_id = push_model_folder(api, tiny_llm_dir, "tiny-llm")
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    model.eval()
    types = dataset_entity_types("wnut17", ["person", "location"])
    run_dir = root / "cllmfs-run"
    adapter_dir = save_adapter(model, tokenizer, run_dir / "episode-0" / "adapter", CLLMFSAdapterConfig(
        base_model=base_id, base_fingerprint=architecture_fingerprint(base.config),
        entity_types=[dataclasses.asdict(t) for t in types], prompt_mode="per_type", cl_layer=4))
    # README.md as PEFT writes it (with the local path), which the push must replace
    (adapter_dir / "README.md").write_text(f"---\nbase_model: {tiny_llm_dir}\nlibrary_name: peft\n---\n")
    query = [Sentence("Ali met Sara in Rome".split(), [Span(0, 1, "person"), Span(2, 3, "person"),
                                                        Span(4, 5, "location")], id="q0"),
             Sentence("we flew from Paris to London".split(), [Span(3, 4, "location"), Span(5, 6, "location")], id="q1")]
    train_seconds = time.perf_counter() - started
    extractor = CLLMFSExtractor(model, tokenizer, types, decoding=DecodingConfig(max_new_tokens=16))
    started = time.perf_counter()
    predictions = extractor.predict_sentences(query)
    predict_seconds = time.perf_counter() - started
    scores = span_scores([s.spans for s in query], predictions, types=[t.label for t in types])
    episode = {"episode": "wnut17-intra-2way5shot-seed0", "scores": scores.to_dict(),
               "train_seconds": round(train_seconds, 3), "predict_seconds": round(predict_seconds, 3),
               "query_sentences_per_second": round(len(query) / predict_seconds, 3)}
    (run_dir / "episode-0" / "results.json").write_text(json.dumps(episode, indent=2), encoding="utf-8")
    summary = {"method": "cllmfs", "source": "wnut17", "target": "wnut17", "protocol": "intra", "k_shot": 5,
               "n_way": 2, "query_sentences": [len(query)], **summarize([scores]), "episodes": [episode]}
    (run_dir / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"episodes": {"dataset": "wnut17", "dataset_config": None,
                                                                      "target_dataset": None}}), encoding="utf-8")
    return CLLMFSRun(base_id, run_dir, adapter_dir, types)
