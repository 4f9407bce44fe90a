"""Multi-BERT: sentences/s of the routed pipeline against one plain encoder pass per sentence (the floor).

Data: the UNER English-EWT test split of the five web genres. 512 sentences are taken from whole documents
(``document_id``), one document from each genre in turn, so the stream mixes domains the way a real feed
would; the same 512 sentences are also cut into documents of 8 consecutive sentences (the router's training
unit). Variants, interleaved and rotated across repeats, all ending in the same word-level decoding
(``ner_adapters.multibert.tokenization.tag``):

- ``floor``: a plain ``transformers`` ``BertForTokenClassification`` (the core, no adapter machinery);
- ``one_adapter``: ``MultiBertModel.predict`` with one domain adapter for every sentence (no routing);
- ``routed_docs`` / ``routed_groups8``: ``DomainRouter.tag_many`` on the documents (classify each document,
  then tag its sentences grouped by adapter, one switch per group);
- ``routed_*_router_<dtype>``: the same with the classifier computing in ``<dtype>`` (``router_dtype``; float32 and
  bfloat16 by default, ``routed_docs`` itself runs at the model's default, ``auto``), tagging still in float32;
  each dtype's decisions on every test document are compared with float32's.

Also measured: the domain classifier's cost per document and the cost of one adapter switch.

    python benchmarks/bench_multibert.py              # outputs/multibert/default/model when present
    python benchmarks/bench_multibert.py --quick      # tiny random core, untrained adapters
"""

from __future__ import annotations

import _common  # noqa: F401  (sets the thread environment before torch loads)

import time
from pathlib import Path

from _common import (REPO_ROOT, TINY_DIR, PeakMemory, base_parser, machine_info, median, mib, rotations, setup,
                     table, timer, write_results)

DEFAULT_MODEL = REPO_ROOT / "outputs" / "multibert" / "default" / "model"
GENRES = ("answers", "email", "newsgroup", "reviews", "weblog")
SCHEME = "uner_en_ewt"
TYPES = ("PER", "ORG", "LOC")


def tiny_core(folder: Path) -> Path:
    """A random 2-layer, 64-wide BERT with MiniLM's (uncased WordPiece) tokenizer."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from ner_adapters.models import MINILM, resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(MINILM))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    folder.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_model(core: str, domains, *, router: bool = True):
    """A Multi-BERT model with fresh (untrained) adapters: enough for speed, not for accuracy."""
    from ner_adapters.multibert import MultiBertModel

    mbert = MultiBertModel.from_core(core)
    mbert.add_scheme(SCHEME, TYPES)
    for domain in domains:
        mbert.add_domain(domain, SCHEME)
    mbert.add_general(SCHEME)
    if router:
        mbert.add_router(list(domains))
    return mbert


def classify_unsorted(mbert, texts, batch_size: int = 8):
    """``MultiBertModel.classify`` as it was before this issue: batches in input order (for before/after)."""
    import torch

    from ner_adapters.multibert.model import ROUTER_ADAPTER, ROUTER_HEAD

    out = []
    with mbert._lock, torch.inference_mode():
        mbert._set_active(ROUTER_ADAPTER, ROUTER_HEAD)
        mbert.model.eval()
        for lo in range(0, len(texts), batch_size):
            encoding = mbert.tokenizer(list(texts[lo : lo + batch_size]), truncation=True,
                                       max_length=mbert.router_max_length, padding=True, return_tensors="pt")
            probabilities = torch.softmax(mbert._forward(encoding).float(), dim=-1)
            out += [dict(zip(mbert.router_domains, row.tolist())) for row in probabilities]
    return out


def mixed_documents(n_sentences: int):
    """Whole test documents, one per genre in turn, until ``n_sentences`` (the last one cut)."""
    from ner_adapters.data.registry import load_sentences

    queues = {}
    for genre in GENRES:
        docs: dict[str, list] = {}
        for sentence in load_sentences("uner_en_ewt", genre, split="test"):
            if sentence.tokens:
                docs.setdefault(sentence.document_id or sentence.id, []).append(sentence)
        queues[genre] = list(docs.values())
    documents, total = [], 0
    while total < n_sentences and any(queues.values()):
        for genre in GENRES:
            if queues[genre] and total < n_sentences:
                doc = queues[genre].pop(0)[: n_sentences - total]
                documents.append((genre, doc))
                total += len(doc)
    return documents


def main():
    parser = base_parser(__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="saved Multi-BERT folder; when missing, MiniLM with fresh adapters and router")
    parser.add_argument("--sentences", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--switches", type=int, default=200, help="adapter activations timed for the switch cost")
    parser.add_argument("--router-lengths", type=int, nargs="*", default=[128, 64],
                        help="also time routing with the classifier reading only this many tokens per document, "
                             "and score its document accuracy on every test document")
    parser.add_argument("--router-dtypes", nargs="*", default=["float32", "bfloat16"],
                        help="also time routing with the classifier computing in these dtypes (router_dtype), and "
                             "score its document accuracy and agreement with float32 on every test document")
    parser.add_argument("--before", action="store_true",
                        help="also time the router's classifier as it was before this issue (input-order batches)")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.sentences, args.switches = 1, 64, 20
    device = setup(args)
    machine = machine_info(device)

    import torch
    from transformers import AutoModelForTokenClassification

    from ner_adapters.models import MINILM, resolve_model
    from ner_adapters.multibert import DomainRouter, MultiBertModel
    from ner_adapters.compute import native_bfloat16
    from ner_adapters.multibert.tokenization import tag

    if args.quick:
        core = str(tiny_core(TINY_DIR / "tiny-bert"))
        mbert, source = build_model(core, GENRES), "tiny random core, untrained adapters"
    elif Path(args.model).is_dir():
        mbert, source = MultiBertModel.load(args.model), f"saved model {args.model}"
        core = str(resolve_model(mbert.core_model))
    else:
        core = str(resolve_model(MINILM))
        mbert, source = build_model(core, GENRES), "MiniLM, untrained adapters"
    mbert.model.to(device)
    scheme = next(iter(mbert.schemes))
    labels = mbert.schemes[scheme]
    plain = AutoModelForTokenClassification.from_pretrained(core, num_labels=len(labels)).to(device).eval()

    documents = mixed_documents(args.sentences)
    sentences = [s for _, doc in documents for s in doc]
    token_lists = [s.tokens for s in sentences]
    docs_real = [[s.tokens for s in doc] for _, doc in documents]
    docs_8 = [token_lists[i : i + 8] for i in range(0, len(token_lists), 8)]
    one_domain = next(d for d in mbert.domain_names())
    router = DomainRouter(mbert)

    def floor():
        with torch.inference_mode():
            return tag(lambda enc: plain(**{k: v.to(device) for k, v in enc.items()}).logits, mbert.tokenizer,
                       token_lists, labels, mbert.max_length, args.batch_size)

    def unsorted(fn):
        def run():
            mbert.classify = lambda texts, batch_size=8: classify_unsorted(mbert, texts, batch_size)
            try:
                return fn()
            finally:
                del mbert.classify
        return run

    doc_texts = [" ".join(" ".join(t) for t in d) for d in docs_real]
    variants = {
        "floor": floor,
        "one_adapter": lambda: mbert.predict(token_lists, one_domain, batch_size=args.batch_size),
        "routed_docs": lambda: router.tag_many(docs_real, batch_size=args.batch_size),
        "routed_groups8": lambda: router.tag_many(docs_8, batch_size=args.batch_size),
        "classify_docs": lambda: mbert.classify(doc_texts),
        "classify_groups8": lambda: mbert.classify([" ".join(" ".join(t) for t in d) for d in docs_8]),
    }

    def setting(attribute, value, fn):
        """``fn`` run with one of the model's router settings changed, then restored."""
        def run():
            saved = getattr(mbert, attribute)
            setattr(mbert, attribute, value)
            try:
                return fn()
            finally:
                setattr(mbert, attribute, saved)
        return run

    def reading(length, fn):
        return setting("router_max_length", length, fn)

    def computing(dtype, fn):
        return setting("router_dtype", dtype, fn)

    for length in args.router_lengths:  # the classifier reading fewer tokens of each document
        variants[f"routed_docs_read{length}"] = reading(length, variants["routed_docs"])
    for dtype in args.router_dtypes:  # the classifier's forward in a lower precision (all 512 tokens read)
        variants[f"routed_docs_router_{dtype}"] = computing(dtype, variants["routed_docs"])
        variants[f"routed_groups8_router_{dtype}"] = computing(dtype, variants["routed_groups8"])
        variants[f"classify_docs_{dtype}"] = computing(dtype, variants["classify_docs"])
    if args.before:  # the router's classifier as it was before this issue, side by side
        variants["routed_docs_unsorted"] = unsorted(variants["routed_docs"])
        variants["classify_docs_unsorted"] = lambda: classify_unsorted(mbert, doc_texts)
    for fn in variants.values():  # warm-up
        fn()
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for repeat, name in rotations(list(variants), args.repeats):
        with PeakMemory(device) as memory, timer(device) as t:
            variants[name]()
        runs[name].append({"seconds": t["seconds"], "cpu_seconds": t["cpu_seconds"], "peak_rss_delta": memory.delta_rss,
                           "peak_gpu": memory.peak_gpu})
        print(f"repeat {repeat + 1}/{args.repeats} {name}: {t['seconds']:.2f} s wall, {t['cpu_seconds']:.2f} s cpu",
              flush=True)

    # Adapter switching: activate domains in turn (each call switches adapter and head).
    names = mbert.domain_names()
    switch_times = []
    for i in range(args.switches):
        started = time.perf_counter()
        mbert.activate(names[i % len(names)])
        switch_times.append(time.perf_counter() - started)
    decisions = router.route_many(docs_real)
    routed_adapters = sorted({d.adapter for d in decisions})
    correct = sum(d.domain == genre for d, (genre, _) in zip(decisions, documents))
    # Document-level routing accuracy on every test document of the five genres, per classifier reading length.
    all_docs = mixed_documents(10**9)
    accuracy, dtype_accuracy, dtype_agreement = {}, {}, {}
    if set(mbert.router_domains) >= set(GENRES):
        all_texts = [" ".join(s.text for s in doc) for _, doc in all_docs]

        def decided(found):
            return [max(p, key=p.get) for p in found]

        def scored(domains):
            return sum(d == genre for d, (genre, _) in zip(domains, all_docs)) / len(all_docs)

        exact = decided(computing("float32", lambda: mbert.classify(all_texts))())  # the reference decisions
        for length in [mbert.router_max_length, *args.router_lengths]:
            found = decided(reading(length, lambda: mbert.classify(all_texts))())  # at the default dtype
            accuracy[length] = scored(found)
        for dtype in args.router_dtypes:
            found = decided(computing(dtype, lambda: mbert.classify(all_texts))())
            dtype_accuracy[dtype] = scored(found)
            dtype_agreement[dtype] = sum(a == b for a, b in zip(found, exact)) / len(all_docs)

    n = len(sentences)
    tokens = sum(len(t) for t in token_lists)

    clock = "cpu_seconds" if device == "cpu" else "seconds"  # CPU time is steady under contention

    def rate(name, key="seconds"):
        return median([n / r[key] for r in runs[name]])

    rows = []
    for name in [v for v in variants if not v.startswith("classify")]:
        n_documents = len(docs_8) if name.startswith("routed_groups8") else \
            len(docs_real) if name.startswith("routed") else None
        rows.append({"pipeline": name, "sentences": n, "documents": n_documents,
                     "seconds": median([r["seconds"] for r in runs[name]]), "sentences_per_s": rate(name),
                     "sentences_per_cpu_s": rate(name, "cpu_seconds"),
                     "cpu_seconds": median([r["cpu_seconds"] for r in runs[name]]),
                     "vs_floor": median([f[clock] / r[clock] for f, r in zip(runs["floor"], runs[name])]),
                     "vs_floor_wall": median([f["seconds"] / r["seconds"] for f, r in zip(runs["floor"], runs[name])]),
                     "peak_rss_delta_mib": mib(median([r["peak_rss_delta"] for r in runs[name]]))})
    costs = {
        "classifier_ms_per_document_real": 1000 * median([r[clock] for r in runs["classify_docs"]]) / len(docs_real),
        **({"classifier_unsorted_ms_per_document_real": 1000 * median(
            [r[clock] for r in runs["classify_docs_unsorted"]]) / len(docs_real)} if args.before else {}),
        **{f"classifier_{dtype}_ms_per_document_real": 1000 * median([r[clock] for r in runs[f"classify_docs_{dtype}"]])
           / len(docs_real) for dtype in args.router_dtypes},
        "classifier_ms_per_document_groups8": 1000 * median([r[clock] for r in runs["classify_groups8"]]) / len(docs_8),
        "classifier_share_of_routed_real": median([c[clock] / r[clock] for c, r in
                                                   zip(runs["classify_docs"], runs["routed_docs"])]),
        "classifier_share_of_routed_groups8": median([c[clock] / r[clock] for c, r in
                                                      zip(runs["classify_groups8"], runs["routed_groups8"])]),
        "adapter_switch_ms": 1000 * median(switch_times),
        "adapters_used_real_docs": len(routed_adapters),
        "router_document_accuracy_real": correct / len(documents),
        **{f"router_document_accuracy_all_test_docs_read{k}": v for k, v in accuracy.items()},
        **{f"router_document_accuracy_all_test_docs_{k}": v for k, v in dtype_accuracy.items()},
        **{f"router_{k}_agrees_with_float32": v for k, v in dtype_agreement.items()},
        "test_documents_scored": len(all_docs) if accuracy else 0,
    }
    columns = ["pipeline", "sentences", "documents", "seconds", "cpu_seconds", "sentences_per_s", "sentences_per_cpu_s",
               "vs_floor",
               "vs_floor_wall", "peak_rss_delta_mib"]
    print(f"\nMulti-BERT, {source}, {n} UNER EN-EWT test sentences ({tokens} words) from {len(docs_real)} documents "
          f"of {len(GENRES)} genres, batch {args.batch_size}, {args.repeats} repeats, {machine['torch_threads']} "
          f"thread(s), device {device}\n")
    print(table(rows, columns))
    print("\n| cost | value |\n|---|---|")
    for key, value in costs.items():
        print(f"| {key} | {value:.4g} |")
    vs = {r["pipeline"]: r["vs_floor"] for r in rows}
    targets = {"routed_docs_ge_70pct_floor": vs["routed_docs"] >= 0.7,
               "routed_groups8_ge_70pct_floor": vs["routed_groups8"] >= 0.7,
               "router_read_lengths_reaching_70pct": [length for length in args.router_lengths
                                                      if vs[f"routed_docs_read{length}"] >= 0.7],
               "router_dtypes_reaching_70pct": [dtype for dtype in args.router_dtypes
                                                if vs[f"routed_docs_router_{dtype}"] >= 0.7]}
    if args.quick:  # tiny random models: the targets are about the real ones
        targets = {key: None for key in targets}
    print(f"\nrouter_dtype default: {mbert.router_dtype!r}, computing in "
          f"{'bfloat16' if mbert.router_dtype == 'auto' and native_bfloat16(mbert.model.device) else mbert.router_dtype}")
    print(f"\ntargets: {targets}")
    write_results("multibert", args, device, {
        "settings": {"model": source, "sentences": n, "words": tokens, "documents_real": len(docs_real),
                     "router_dtype_default": mbert.router_dtype,
                     "documents_groups8": len(docs_8), "batch_size": args.batch_size,
                     "router_max_length": mbert.router_max_length, "genres": list(GENRES)},
        "columns": columns, "rows": rows, "costs": costs, "targets": targets, "ratio_clock": clock, "runs": runs},
        machine)


if __name__ == "__main__":
    main()
