"""``ner-adapters predict``: documents/s and sentences/s for each artifact kind, on a real test set.

What is timed is ``ner_adapters.predict.predict`` (what the command runs after loading): pipeline calls of
``--batch-size`` documents, the JSONL records, the appends to the output file. Documents are test documents
(``document_id``; consecutive sentences where a dataset has none) cut to at most ``--sentences-per-doc``
sentences, one sentence per line; sentences/s counts those gold sentences. Kinds, rotated across repeats:

- ``multibert_domain``: a saved Multi-BERT set, every document through one chosen domain adapter (``--domain``);
- ``multibert_routed``: the same set routed (domain classifier per document, then its adapter);
- ``cllmfs``: a CLLMFS LoRA adapter with its entity types (a decoder LLM; far slower, so fewer documents).

Data: UNER English-EWT test (Multi-BERT kinds, five web genres interleaved) and WNUT-17 test (CLLMFS).

    python benchmarks/bench_predict.py --multibert outputs/multibert/default/model \\
        --cllmfs outputs/cllmfs/wnut17_intra_5shot/episode-0/adapter
    python benchmarks/bench_predict.py                    # missing artifacts: MiniLM / SmolLM2 with fresh adapters
    python benchmarks/bench_predict.py --quick            # tiny random models (smoke run)

Artifacts built here (when none is given) have untrained adapters: their speed is the real one (same shapes,
same code path), their entities mean nothing.
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import dataclasses
import tempfile
import time
from pathlib import Path

from _common import (REPO_ROOT, TINY_DIR, base_parser, machine_info, median, resolve_llm, rotations, setup, table,
                     write_results)

DEFAULT_MULTIBERT = REPO_ROOT / "outputs" / "multibert" / "default" / "model"
DEFAULT_CLLMFS = REPO_ROOT / "outputs" / "cllmfs" / "wnut17_intra_5shot" / "episode-0" / "adapter"
GENRES = ("answers", "email", "newsgroup", "reviews", "weblog")
COLUMNS = ("kind", "documents", "sentences", "batch_size", "seconds", "documents_per_s", "sentences_per_s",
           "load_seconds")


def documents_of(dataset: str, n_documents: int, per_doc: int, configs=(None,)):
    """``n_documents`` test documents of at most ``per_doc`` sentences, configs interleaved, one sentence a line."""
    from ner_adapters.data.registry import load_sentences
    from ner_adapters.predict import Document

    queues = []
    for config in configs:
        grouped: dict[str, list] = {}
        for sentence in load_sentences(dataset, config, split="test"):
            if sentence.tokens:
                grouped.setdefault(sentence.document_id or "", []).append(sentence)  # no ids: consecutive runs
        chunks = [doc[i:i + per_doc] for doc in grouped.values() for i in range(0, len(doc), per_doc)]
        queues.append(chunks)
    documents = []
    while len(documents) < n_documents and any(queues):
        for queue in queues:
            if queue and len(documents) < n_documents:
                chunk = queue.pop(0)
                documents.append((Document(f"{dataset}-{len(documents)}", "\n".join(s.text for s in chunk)),
                                  len(chunk)))
    return [d for d, _ in documents], sum(n for _, n in documents)


def build_multibert(folder: Path, core: str) -> Path:
    """A saved set on ``core``: the five UNER genres with fresh adapters, the general adapter, a router."""
    if (folder / "multibert.json").is_file():
        return folder
    from ner_adapters.multibert import MultiBertModel

    mbert = MultiBertModel.from_core(core)
    mbert.add_scheme("uner_en_ewt", ("PER", "ORG", "LOC"))
    for genre in GENRES:
        mbert.add_domain(genre, "uner_en_ewt")
    mbert.add_general("uner_en_ewt")
    mbert.add_router(list(GENRES))
    return mbert.save(folder)


def build_cllmfs(folder: Path, base: str, base_name: str) -> Path:
    """A fresh LoRA adapter (q/k/v/gate/up, r=16: the recipe's default targets) on ``base``, saved as CLLMFS saves."""
    if (folder / "cllmfs_config.json").is_file():
        return folder
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ner_adapters.cllmfs import CLLMFSAdapterConfig, save_adapter
    from ner_adapters.cllmfs.artifact import architecture_fingerprint
    from ner_adapters.cllmfs.entity_types import dataset_entity_types

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    peft = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM",
                                            target_modules=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]))
    types = dataset_entity_types("wnut17", ["person", "location", "corporation"])
    return save_adapter(peft, tokenizer, folder, CLLMFSAdapterConfig(
        base_model=base_name, base_fingerprint=architecture_fingerprint(model.config),
        entity_types=[dataclasses.asdict(t) for t in types], prompt_mode="per_type"))


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--multibert", default=str(DEFAULT_MULTIBERT), help="saved Multi-BERT folder (with router)")
    parser.add_argument("--domain", help="the adapter of multibert_domain (default: the set's first domain)")
    parser.add_argument("--cllmfs", default=str(DEFAULT_CLLMFS), help="CLLMFS adapter folder")
    parser.add_argument("--kinds", nargs="+", default=["multibert_domain", "multibert_routed", "cllmfs"])
    parser.add_argument("--documents", type=int, default=120, help="documents for the Multi-BERT kinds")
    parser.add_argument("--cllmfs-documents", type=int, default=12, help="documents for the CLLMFS kind")
    parser.add_argument("--sentences-per-doc", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.documents, args.cllmfs_documents = 1, 16, 4
    device = setup(args)
    machine = machine_info(device)

    from ner_adapters.models import MINILM, resolve_model
    from ner_adapters.predict import load_tagger, predict

    sources = {}
    multibert = Path(args.multibert)
    if not (multibert / "multibert.json").is_file():
        if args.quick:
            from bench_multibert import tiny_core

            core = str(tiny_core(TINY_DIR / "tiny-bert"))
            multibert, sources["multibert"] = build_multibert(TINY_DIR / "predict-tiny-set", core), "tiny random core"
        else:
            multibert = build_multibert(TINY_DIR / "predict-minilm-set", str(resolve_model(MINILM)))
            sources["multibert"] = "MiniLM-L6 with fresh adapters and router (speed only)"
    else:
        sources["multibert"] = str(multibert)
    cllmfs = Path(args.cllmfs)
    if "cllmfs" in args.kinds and not (cllmfs / "cllmfs_config.json").is_file():
        name = "tiny" if args.quick else "HuggingFaceTB/SmolLM2-135M-Instruct"
        folder = TINY_DIR / ("predict-tiny-cllmfs" if args.quick else "predict-smollm2-cllmfs")
        cllmfs = build_cllmfs(folder, resolve_llm(name), resolve_llm(name) if args.quick else name)
        sources["cllmfs"] = f"{name} with a fresh LoRA adapter (speed only)"
    elif "cllmfs" in args.kinds:
        sources["cllmfs"] = str(cllmfs)

    uner_docs, uner_sentences = documents_of("uner_en_ewt", args.documents, args.sentences_per_doc, GENRES)
    wnut_docs, wnut_sentences = documents_of("wnut17", args.cllmfs_documents, args.sentences_per_doc)
    taggers, load_seconds, work = {}, {}, {}
    for kind in args.kinds:
        started = time.perf_counter()
        if kind == "cllmfs":
            taggers[kind] = load_tagger(str(cllmfs), device=None if device == "cpu" else device)
            work[kind] = (wnut_docs, wnut_sentences, None)
        else:
            taggers[kind] = load_tagger(str(multibert), device=None if device == "cpu" else device)
            domain = None
            if kind == "multibert_domain":
                domain = args.domain or taggers[kind].mbert.domain_names()[0]
            work[kind] = (uner_docs, uner_sentences, domain)
        load_seconds[kind] = time.perf_counter() - started
    for kind in args.kinds:  # one untimed warm-up pass each (first-call allocations, lazy imports)
        documents, _, domain = work[kind]
        with tempfile.TemporaryDirectory() as tmp:
            predict(documents[:2], taggers[kind], Path(tmp) / "warm.jsonl", domain=domain,
                    batch_size=args.batch_size, progress=False)

    seconds: dict[str, list[float]] = {kind: [] for kind in args.kinds}
    for _, kind in rotations(args.kinds, args.repeats):
        documents, _, domain = work[kind]
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            predict(documents, taggers[kind], Path(tmp) / "out.jsonl", domain=domain, batch_size=args.batch_size,
                    progress=False)
            seconds[kind].append(time.perf_counter() - started)
    rows = []
    for kind in args.kinds:
        documents, sentences, domain = work[kind]
        took = median(seconds[kind])
        rows.append({"kind": kind + (f" ({domain})" if domain else ""), "documents": len(documents),
                     "sentences": sentences, "batch_size": args.batch_size, "seconds": round(took, 3),
                     "documents_per_s": round(len(documents) / took, 2), "sentences_per_s": round(sentences / took, 2),
                     "load_seconds": round(load_seconds[kind], 2), "all_seconds": [round(s, 3) for s in seconds[kind]]})
    print(table(rows, COLUMNS))
    print("\nartifacts: " + "; ".join(f"{k}: {v}" for k, v in sources.items()))
    path = write_results("predict", args, device, {
        "settings": {"documents": args.documents, "cllmfs_documents": args.cllmfs_documents,
                     "sentences_per_doc": args.sentences_per_doc, "batch_size": args.batch_size,
                     "data": {"multibert": "uner_en_ewt test, 5 genres interleaved", "cllmfs": "wnut17 test"}},
        "artifacts": sources, "columns": list(COLUMNS), "rows": rows}, machine)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
