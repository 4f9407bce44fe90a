"""``pipeline("token-classification", model=CORE, adapter=ADAPTER)``: transformers' pipeline, with adapters.

transformers' own ``pipeline()`` has no ``adapter=`` argument, silently loads a random head for an AdapterHub
model folder, and switching adapters on a shared model is not thread-safe. This entry point mirrors its
signature and returns a real :class:`transformers.Pipeline` (batching, datasets and generators work as
usual) whose output is the token-classification pipeline's::

    from ner_adapters import pipeline

    ner = pipeline("token-classification", model="sentence-transformers/all-MiniLM-L6-v2",
                   adapter="me/ner-adapters-email", aggregation_strategy="simple")
    ner("Mary flew to Paris.")  # [{'entity_group': 'PER', 'score': 0.93, 'word': 'Mary', 'start': 0, 'end': 4}, ...]

``adapter`` is a Hub repo id (``namespace/name``, optionally ``@revision``) or a local folder of:

- a **Multi-BERT domain adapter** (adapter + head + label map, as ``recipes/push_to_hub.py`` exports it);
- a **list** of them: choose per call with ``ner(text, domain="email")``;
- the **domain classifier** (router repo): routes each text to its domain's adapter (the adapters it was
  trained with are fetched by the ids and revisions it records), or a whole saved Multi-BERT folder
  (``outputs/multibert/default/model``);
- ``"auto"``: route with the classifier found in ``model`` (a router repo or a saved Multi-BERT folder);
- a **CLLMFS LoRA adapter** of a decoder LLM (``model`` is then the LLM, by default the one it was trained on),
  with the entity types to extract: ``entity_types=["person", "drug"]`` (labels the adapter was trained on
  keep their descriptions) or ``{"drug": "the name of a medication"}``; per call too.

Routed calls add ``"domain"`` (the detected domain) and ``"domain_score"`` (the classifier's probability) to
every entity; ``return_domain=True`` returns ``{"entities", "domain", "domain_score", "adapter", "fallback",
"probabilities"}`` instead, which also says the domain of a text without entities.

``aggregation_strategy`` (default ``"simple"``, not transformers' ``"none"``): Multi-BERT heads are trained on
each word's first sub-token, so ``"simple"`` and ``"first"`` read that one (and equal
``MultiBertModel.predict``); ``"average"`` / ``"max"`` decide a word's label from all its sub-tokens
(average of the probabilities / the most confident one); ``"none"`` gives every sub-token's label
(``entity``, ``score``, ``index``, ``word``, ``start``, ``end``; ``index`` counts sub-tokens across the
text's sentences). Texts are split into sentences (``. ! ?`` and line breaks), each tagged on its own, and a
sentence longer than the model's ``max_length`` sub-tokens in overlapping windows of whole words (never cut),
as ``MultiBertModel.predict`` does; offsets always refer to the whole text. CLLMFS extracts whole entities, so all strategies but ``"none"``
give them as they are; ``"none"`` lists their words as ``B-``/``I-`` entries.

Adapters trained on another core (Multi-BERT: a hash of the core's embeddings; CLLMFS: the base model's
architecture) raise :class:`~ner_adapters.errors.AdapterMismatchError`. One pipeline may be called
from many threads: adapter activation and forward pass hold the model's lock together. Nothing runs remote
code. ``cache_dir``, ``revision`` and ``token`` apply to the adapter repos; the core is loaded through
:func:`ner_adapters.models.resolve_model` (standard Hugging Face cache).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from transformers import Pipeline
from transformers.pipelines.base import ChunkPipeline

from .cllmfs.artifact import CLLMFSAdapterConfig
from .errors import AdapterMismatchError
from .artifacts import HUB_MANIFEST, KIND_CLLMFS, KIND_DOMAIN, KIND_MULTIBERT, KIND_ROUTER, artifact_kind
from .errors import ArtifactError
from .hub.layout import MultiBertAssembly, resolve_folder

from .paths import looks_local, missing_path_error

logger = logging.getLogger(__name__)

TASKS = ("token-classification", "ner")
#: The zero-shot-capable CLLMFS adapter (``recipes/cllmfs/zero_shot_adapter.yaml``, published by
#: ``recipes/push/zero_shot.yaml``): what ``pipeline(entity_types=...)`` loads when no adapter is given. The
#: environment variable ``NER_ADAPTERS_CLLMFS_ADAPTER`` (a Hub id or folder) replaces it.
DEFAULT_CLLMFS_ADAPTER = "ner-adapters/ner-adapters-cllmfs-zero-shot"
DEFAULT_CLLMFS_ENV = "NER_ADAPTERS_CLLMFS_ADAPTER"
AGGREGATIONS = ("none", "simple", "first", "average", "max")
AUTO = "auto"


def _strategy(value) -> str:
    name = str(getattr(value, "value", value)).lower()
    if name not in AGGREGATIONS:
        raise ValueError(f"aggregation_strategy must be one of {AGGREGATIONS}, got {value!r}")
    return name


class _NoSave:
    def save_pretrained(self, *args, **kwargs):
        # transformers would save the bare AdapterModel / PeftModel, which it then reloads with a random head.
        raise NotImplementedError("this pipeline's adapters are published with recipes/push_to_hub.py, "
                                  "not with Pipeline.save_pretrained")


class MultiBertTokenClassificationPipeline(_NoSave, ChunkPipeline):
    """Multi-BERT domain adapters on one frozen core, with an optional domain classifier.

    A ``ChunkPipeline``: each sentence of a text is one chunk, so batches (``batch_size=``) mix sentences of
    several texts and domains; each domain's rows run under that domain's adapter, holding the model's lock.
    """

    def __init__(self, mbert, *, router_threshold: float | None = None, sources: Sequence[str] = (), **kwargs):
        from .multibert.router import DomainRouter

        self.mbert = mbert
        self.router = DomainRouter(mbert, router_threshold) if mbert.router_domains else None
        self.sources = list(sources)
        # Fast tokenizers are not thread-safe ("Already borrowed"): the pipeline tokenizes with its own copy,
        # under its own lock; the model's tokenizer stays the model's (used under the model's lock).
        self._tokenizer_lock = threading.Lock()
        super().__init__(model=mbert.model, tokenizer=copy.deepcopy(mbert.tokenizer), task="token-classification",
                         framework="pt", **kwargs)

    @property
    def domains(self) -> list[str]:
        """Domains that can be chosen with ``domain=`` (general adapters last)."""
        general = [d for d in self.mbert.domains if d not in self.mbert.domain_names()]
        return self.mbert.domain_names() + general

    @property
    def has_router(self) -> bool:
        return self.router is not None

    def _sanitize_parameters(self, domain: str | None = None, aggregation_strategy=None, ignore_labels=None,
                             return_domain: bool | None = None):
        preprocess, postprocess = {}, {}
        if domain is not None:
            if domain != AUTO:
                self.mbert.scheme_of(domain)  # unknown domains raise here, naming the known ones
            elif self.router is None:
                raise ValueError("domain='auto' needs a domain classifier; this pipeline has none")
            preprocess["domain"] = domain
        if aggregation_strategy is not None:
            postprocess["aggregation_strategy"] = _strategy(aggregation_strategy)
        if ignore_labels is not None:
            postprocess["ignore_labels"] = list(ignore_labels)
        if return_domain is not None:
            postprocess["return_domain"] = bool(return_domain)
        return preprocess, {}, postprocess

    def _choose(self, text: str, domain: str | None) -> tuple[str, dict | None]:
        """The adapter to run, and the classifier's decision when it chose."""
        if domain in (None, AUTO) and self.router is not None:
            decision = self.router.route(text)
            return decision.adapter, {"domain": decision.domain, "domain_score": decision.probability,
                                      "adapter": decision.adapter, "fallback": decision.fallback,
                                      "probabilities": dict(decision.probabilities)}
        if domain is None:
            if len(self.mbert.domains) == 1:
                return next(iter(self.mbert.domains)), None
            raise ValueError(f"several domain adapters are loaded ({', '.join(self.domains)}) and no domain "
                             "classifier: pass domain=... to the call")
        return domain, None

    def _encode(self, words: list[str]):
        encoding = self.tokenizer(words or [""], is_split_into_words=True, truncation=True,
                                  max_length=self.mbert.max_length, return_offsets_mapping=True, return_tensors="pt")
        return encoding, self.tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])

    def preprocess(self, inputs, domain: str | None = None):
        from .multibert.router import document_sentences
        from .multibert.tokenization import lost_words, word_windows

        if not isinstance(inputs, str):
            raise TypeError(f"the pipeline takes a string (or a list of strings), got {type(inputs).__name__}")
        adapter, routing = self._choose(inputs, domain)
        _, sentences = document_sentences(inputs)
        if not sentences:  # one empty chunk, so that postprocess still answers (with no entities)
            sentences = [(None, 0, 0)]
        for number, (words, _, _) in enumerate(sentences):
            word_list = list(words.words) if words is not None else []
            with self._tokenizer_lock:
                encoding, tokens = self._encode(word_list)
                windows = [(0, len(word_list))]
                if word_list and lost_words(encoding.word_ids(0), len(word_list), encoding["input_ids"].shape[1],
                                            self.mbert.max_length):  # too long: overlapping windows, as predict()
                    windows = word_windows(self.tokenizer, word_list, self.mbert.max_length)
                    pieces = [self._encode(word_list[a:b]) for a, b in windows]
                else:
                    pieces = [(encoding, tokens)]
            for piece, ((a, b), (window_encoding, window_tokens)) in enumerate(zip(windows, pieces)):
                offsets = window_encoding.pop("offset_mapping")[0].tolist()
                word_ids = [None if w is None else w + a for w in window_encoding.word_ids(0)] if word_list \
                    else [None] * len(offsets)
                meta = {"text": inputs, "sentence": number, "window": (a, b), "words": word_list,
                        "offsets": list(words.offsets) if words is not None else [], "word_ids": word_ids,
                        "token_offsets": offsets, "tokens": window_tokens, "adapter": adapter, "routing": routing}
                last = number == len(sentences) - 1 and piece == len(windows) - 1
                yield {**window_encoding, "meta": meta, "is_last": last}

    def _forward(self, model_inputs):
        is_last, meta = model_inputs.pop("is_last"), model_inputs.pop("meta")
        batched = isinstance(is_last, list)
        metas = meta if batched else [meta]
        rows_by_adapter: dict[str, list[int]] = {}
        for row, item in enumerate(metas):
            rows_by_adapter.setdefault(item["adapter"], []).append(row)
        probabilities: list[torch.Tensor | None] = [None] * len(metas)
        labels: list[tuple[str, ...] | None] = [None] * len(metas)
        for adapter, rows in rows_by_adapter.items():
            index = torch.tensor(rows)
            batch = {key: value[index] for key, value in model_inputs.items()}
            with self.mbert.active(adapter) as head_labels:  # activation + forward under one lock
                logits = self.model(**batch).logits
            scores = torch.softmax(logits.float(), dim=-1)
            for position, row in enumerate(rows):
                probabilities[row], labels[row] = scores[position], head_labels
        if batched:  # per-row lists: the pipeline's loader unbatches them
            return {"probabilities": probabilities, "labels": labels, "meta": metas, "is_last": is_last}
        return {"probabilities": probabilities[0].unsqueeze(0), "labels": labels[0], "meta": metas[0],
                "is_last": is_last}

    def postprocess(self, all_outputs, aggregation_strategy: str = "simple", ignore_labels=None,
                    return_domain: bool = False):
        ignore = set(ignore_labels if ignore_labels is not None else ["O"])
        by_sentence: list[list[dict]] = []
        for output in all_outputs:
            if not by_sentence or by_sentence[-1][0]["meta"]["sentence"] != output["meta"]["sentence"]:
                by_sentence.append([])
            by_sentence[-1].append(output)
        entities: list[dict] = []
        token_base = 0
        for chunks in by_sentence:
            token_base = self._sentence_entities(chunks, aggregation_strategy, ignore, entities, token_base)
        routing, adapter = all_outputs[-1]["meta"]["routing"], all_outputs[-1]["meta"]["adapter"]
        if routing is not None and not return_domain:
            for entity in entities:
                entity["domain"], entity["domain_score"] = routing["domain"], routing["domain_score"]
        if return_domain:
            routing = routing or {"domain": adapter, "domain_score": None, "adapter": adapter, "fallback": False,
                                  "probabilities": None}
            return {"entities": entities, **routing}
        return entities

    @staticmethod
    def _sentence_entities(chunks: list[dict], strategy: str, ignore: set, entities: list[dict], token_base: int) -> int:
        """One sentence's entities (appended to ``entities``) from its window chunks; returns the next token index.

        Windows are read as ``MultiBertModel.predict`` reads them: each word from the window that owns it
        (:func:`~ner_adapters.multibert.tokenization.stitch_windows`), its label from its sub-tokens
        (:func:`~ner_adapters.multibert.tokenization.word_distributions`).
        """
        from .multibert.tokenization import (Words, entities_from_labels, stitch_windows, window_owners,
                                             word_distributions)

        meta = chunks[0]["meta"]
        labels = list(chunks[0]["labels"])
        if strategy == "none":  # one entry per sub-token, of the words each window owns
            owners = window_owners([chunk["meta"]["window"] for chunk in chunks])
            for number, chunk in enumerate(chunks):
                probabilities, chunk_meta = chunk["probabilities"][0], chunk["meta"]
                for position, word in enumerate(chunk_meta["word_ids"]):
                    if word is None or owners[word] != number:
                        continue
                    label_id = int(probabilities[position].argmax())
                    if labels[label_id] not in ignore:
                        word_start = meta["offsets"][word][0]
                        entities.append({"entity": labels[label_id],
                                         "score": float(probabilities[position, label_id]),
                                         "index": token_base + position, "word": chunk_meta["tokens"][position],
                                         "start": word_start + chunk_meta["token_offsets"][position][0],
                                         "end": word_start + chunk_meta["token_offsets"][position][1]})
                token_base += len(chunk_meta["word_ids"])
            return token_base
        word_strategy = "first" if strategy == "simple" else strategy
        distributions = stitch_windows([chunk["meta"]["window"] for chunk in chunks],
                                       [word_distributions(chunk["meta"]["word_ids"], chunk["probabilities"][0],
                                                           word_strategy) for chunk in chunks])
        label_ids, scores = [0] * len(meta["words"]), [None] * len(meta["words"])  # words without sub-tokens: O
        for word, distribution in distributions.items():
            label_ids[word] = int(distribution.argmax())
            scores[word] = float(distribution[label_ids[word]])
        words = Words(meta["text"], meta["words"], meta["offsets"])
        entities.extend(e.as_dict() for e in entities_from_labels(words, label_ids, scores, labels)
                        if e.entity_group not in ignore)
        return token_base + sum(len(chunk["meta"]["word_ids"]) for chunk in chunks)


class CLLMFSTokenClassificationPipeline(_NoSave, Pipeline):
    """A CLLMFS LoRA adapter on its decoder LLM: constrained extraction of the requested entity types."""

    def __init__(self, extractor, *, sources: Sequence[str] = (), **kwargs):
        self.extractor = extractor
        self.sources = list(sources)
        self._lock = threading.Lock()  # the extractor keeps per-call state (KV prefix cache, counters)
        super().__init__(model=extractor.model, tokenizer=extractor.tokenizer, task="token-classification",
                         framework="pt", **kwargs)

    @property
    def entity_types(self) -> list:
        return list(self.extractor.entity_types)

    def resolve_types(self, entity_types) -> list:
        """Labels the adapter knows keep their trained descriptions; others get a generic one."""
        from .cllmfs.entity_types import as_entity_types

        if isinstance(entity_types, Mapping):
            return as_entity_types(entity_types)
        if isinstance(entity_types, str):
            entity_types = [t for t in entity_types.split(",") if t.strip()]
        known = {t.label.lower(): t for t in self.extractor.entity_types}
        chosen = [known.get(t.strip().lower(), t) if isinstance(t, str) else t for t in entity_types]
        return as_entity_types(chosen)

    def _sanitize_parameters(self, entity_types=None, aggregation_strategy=None, ignore_labels=None):
        preprocess, postprocess = {}, {}
        if entity_types is not None:
            preprocess["entity_types"] = tuple(self.resolve_types(entity_types))
        if aggregation_strategy is not None:
            postprocess["aggregation_strategy"] = _strategy(aggregation_strategy)
        if ignore_labels is not None:
            postprocess["ignore_labels"] = list(ignore_labels)
        return preprocess, {}, postprocess

    def preprocess(self, inputs, entity_types=None):
        if not isinstance(inputs, str):
            raise TypeError(f"the pipeline takes a string (or a list of strings), got {type(inputs).__name__}")
        return {"text": inputs, "types": tuple(entity_types or self.extractor.entity_types)}

    def _forward(self, model_inputs):
        texts, types = model_inputs["text"], model_inputs["types"]
        batched = isinstance(texts, list)
        if not batched:
            texts, types = [texts], [types]
        groups: dict[tuple, list[int]] = {}
        for row, row_types in enumerate(types):
            groups.setdefault(tuple(row_types), []).append(row)
        found: list[list[dict] | None] = [None] * len(texts)
        for group_types, rows in groups.items():
            with self._lock:
                results = self.extractor.extract([texts[r] for r in rows], entity_types=list(group_types))
            for row, entities in zip(rows, results):
                found[row] = entities
        if batched:
            return {"entities": found, "text": texts}
        return {"entities": found[0], "text": texts[0]}

    def postprocess(self, model_outputs, aggregation_strategy: str = "simple", ignore_labels=None):
        from .cllmfs.extraction import word_boundaries

        ignore = set(ignore_labels or ())
        entities = [e for e in model_outputs["entities"] if e["entity_group"] not in ignore]
        if aggregation_strategy != "none":
            return [dict(e) for e in entities]
        text = model_outputs["text"]
        words = word_boundaries(text)
        out = []
        for entity in entities:
            inside = [(i, s, e) for i, (s, e) in enumerate(words) if s >= entity["start"] and e <= entity["end"]]
            for number, (index, start, end) in enumerate(inside):
                prefix = "B-" if number == 0 else "I-"
                out.append({"entity": prefix + entity["entity_group"], "score": entity["score"], "index": index,
                            "word": text[start:end], "start": start, "end": end})
        return out


# --- the entry point -----------------------------------------------------------------------------------------


def _load_multibert(items: list[tuple[str, Path, str]], core: str | None, *, router_threshold, router_dtype,
                    revision, cache_dir, token, pipeline_kwargs) -> MultiBertTokenClassificationPipeline:
    from .errors import CoreMismatchError
    from .multibert.model import MultiBertModel

    assembly = MultiBertAssembly()
    router_folder = None
    for source, folder, kind in items:
        assembly.add(folder, source, kind=kind)
        if kind == KIND_ROUTER:
            router_folder = folder
    for domain, ref in assembly.missing_router_domains().items():
        sibling = router_folder.parent / ref["folder"] if router_folder is not None and ref.get("folder") else None
        if sibling is not None and (sibling / HUB_MANIFEST).is_file():
            folder, source = sibling, str(sibling)
        elif ref.get("repo_id"):
            source = ref["repo_id"] + (f"@{ref['revision']}" if ref.get("revision") else "")
            folder = resolve_folder(ref["repo_id"], revision=ref.get("revision") or revision, cache_dir=cache_dir,
                                    token=token)
        else:
            raise ArtifactError(f"the domain classifier needs the adapter of {domain!r} and records no repo for it")
        if assembly.add(folder, source) != KIND_DOMAIN:
            raise ArtifactError(f"{source}, recorded as the adapter of {domain!r}, is not a domain adapter")
    sources = [source for source, _, _ in items]
    recorded = next(iter(assembly.core_models.values()), None)
    with tempfile.TemporaryDirectory(prefix="ner-adapters-") as tmp:
        staging = assembly.write(Path(tmp) / "model")
        try:
            mbert = MultiBertModel.load(staging, core_model=core, router_dtype=router_dtype)
        except CoreMismatchError:
            raise CoreMismatchError(
                f"the adapter(s) {', '.join(sources)} were trained on the core {recorded!r}, whose weights differ "
                f"from {core or recorded!r}; load them with model={recorded!r}") from None
    return MultiBertTokenClassificationPipeline(mbert, router_threshold=router_threshold, sources=sources,
                                                **pipeline_kwargs)


def _load_cllmfs(source: str, folder: Path, model: str | None, *, entity_types, decoding, torch_dtype,
                 pipeline_kwargs) -> CLLMFSTokenClassificationPipeline:
    from .cllmfs.extraction import CLLMFSExtractor

    saved = CLLMFSAdapterConfig.load(folder)
    try:
        extractor = CLLMFSExtractor.from_pretrained(model or saved.base_model, adapter=folder, decoding=decoding,
                                                    torch_dtype=torch_dtype)
    except AdapterMismatchError as err:
        raise AdapterMismatchError(str(err).replace(str(folder), source)) from None
    pipe = CLLMFSTokenClassificationPipeline(extractor, sources=[source], **pipeline_kwargs)
    if entity_types is not None:
        pipe.extractor.entity_types = pipe.resolve_types(entity_types)
    return pipe


def pipeline(
    task: str = "token-classification",
    model: str | os.PathLike | None = None,
    adapter: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    entity_types: Sequence[str] | Mapping[str, str] | None = None,
    aggregation_strategy: str = "simple",
    router_threshold: float | None = None,
    router_dtype: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    device: int | str | torch.device | None = None,
    decoding: Any = None,
    torch_dtype: torch.dtype | None = None,
    **kwargs,
) -> MultiBertTokenClassificationPipeline | CLLMFSTokenClassificationPipeline:
    """A `transformers` token-classification pipeline over ner-adapters artifacts, loaded from the Hub or a folder.

    Multi-BERT domain adapters (one, several, or all of a saved set) tag with their domain's adapter; a domain
    classifier routes each text to the adapter of the domain it predicts; a CLLMFS LoRA adapter extracts the
    entity types it is given. The result is a real `transformers.Pipeline` (lists, `batch_size=`, datasets and
    generators work), and every entity satisfies `text[start:end] == word`.

    Args:
        task (`str`, defaults to `"token-classification"`):
            `"token-classification"` or its alias `"ner"`.
        model (`str` or `os.PathLike`, *optional*):
            The core (Multi-BERT) or base LLM (CLLMFS), a Hub id or folder. Defaults to the one the adapter records.
            With `adapter="auto"`, the router repo or saved Multi-BERT folder to route with.
        adapter (`str`, `os.PathLike` or a list of them):
            A domain adapter, a list of them, a domain classifier repo, a saved Multi-BERT folder, `"auto"`, or a
            CLLMFS adapter; `"repo@revision"` pins one repo.
        entity_types (`list[str]` or `dict[str, str]`, *optional*):
            CLLMFS: the types to extract, as labels or `{label: description}` (defaults to the adapter's own).
            Given without `adapter`, the default zero-shot CLLMFS adapter is loaded (`DEFAULT_CLLMFS_ADAPTER`, or
            the environment variable `NER_ADAPTERS_CLLMFS_ADAPTER`).
        aggregation_strategy (`str`, defaults to `"simple"`):
            How sub-token labels become entities, as in transformers (`"simple"`, `"first"`, `"average"`, `"max"`,
            `"none"`). Multi-BERT heads are trained on each word's first sub-token.
        router_threshold (`float`, *optional*):
            Below this probability the router falls back to the scheme's general adapter (default: the saved one).
        router_dtype (`str`, *optional*):
            The domain classifier's compute dtype: `"auto"` (default: bfloat16 where the device computes it
            natively, else float32), `"float32"`, `"bfloat16"` or `"float16"`. Tagging always runs in float32.
        revision (`str`, *optional*), cache_dir (`str` or `os.PathLike`, *optional*), token (`str` or `bool`, *optional*):
            Applied to the adapter repos, as in `huggingface_hub`.
        device (`int`, `str` or `torch.device`, *optional*):
            Where the model runs.
        decoding (`DecodingConfig`, *optional*):
            CLLMFS decoding: e.g. `resolve_overlaps="none"` keeps a span under every type that listed it (the paper;
            default `"score"`: the best-scored type), `none_threshold=0.3` lists an entity from that probability
            on (default: the adapter's calibrated threshold, if any).
        torch_dtype (`torch.dtype`, *optional*):
            The dtype to load the base LLM in (CLLMFS).
        **kwargs:
            The pipeline's defaults for every call: `batch_size`, `domain`, `ignore_labels`, `return_domain`.

    Returns:
        `MultiBertTokenClassificationPipeline` or `CLLMFSTokenClassificationPipeline`: called on a text (or a list),
        it returns dictionaries with `entity_group`, `score`, `word`, `start` and `end` (plus `domain` and
        `domain_score` when routed).

    Raises:
        `FileNotFoundError`: `adapter` looks like a local path that does not exist (the nearest folder is named).
        `ner_adapters.errors.AdapterMismatchError`: the adapter was trained on another core or base model.
        `ner_adapters.errors.ArtifactError`: the folder or repo is not a ner-adapters artifact.
        `ValueError`: another task, or no adapter.

    Example:

    ```python
    >>> from ner_adapters import pipeline
    >>> ner = pipeline("token-classification", adapter="my-org/ner-adapters-router")
    >>> ner("Mary flew to Paris. She loved it.", return_domain=True)
    {'entities': [...], 'domain': 'email', 'domain_score': 0.82, ...}
    >>> cllmfs = pipeline("ner", model="HuggingFaceTB/SmolLM2-135M-Instruct", adapter="outputs/cllmfs/run/episode-0/adapter",
    ...                   entity_types={"drug": "the name of a medication"})
    ```
    """
    if task not in TASKS:
        raise ValueError(f"ner_adapters.pipeline supports the task 'token-classification' (alias 'ner'), not {task!r}")
    default_adapter = adapter is None and entity_types is not None
    if default_adapter:
        adapter = default_cllmfs_adapter()
        logger.info("no adapter given with entity_types: the default zero-shot CLLMFS adapter %s", adapter)
    if adapter is None:
        raise ValueError("pass adapter=...: a domain adapter (repo id or folder), a list of them, a domain classifier "
                         "repo or saved Multi-BERT folder, 'auto', or a CLLMFS adapter (or only entity_types=..., "
                         "for the default zero-shot CLLMFS adapter); for a plain model use transformers.pipeline")
    if isinstance(adapter, (str, os.PathLike)) and str(adapter) == AUTO:
        if model is None:
            raise ValueError("adapter='auto' routes with a domain classifier: pass it as model=<router repo or saved "
                             "Multi-BERT folder>, or pass the router repo as adapter=")
        specs, core = [model], None
    else:
        specs = list(adapter) if isinstance(adapter, (list, tuple)) else [adapter]
        core = None if model is None else str(model)
    if not specs:
        raise ValueError("adapter=[] is empty")
    items = []
    for spec in specs:
        if not os.path.isdir(spec) and looks_local(spec):  # a mistyped folder, not a Hub id: no network round trip
            raise missing_path_error(spec, "adapter folder")
        try:
            folder = resolve_folder(spec, revision=revision, cache_dir=cache_dir, token=token)
        except (ArtifactError, OSError) as err:
            if not default_adapter:
                raise
            raise ArtifactError(f"the default zero-shot CLLMFS adapter {spec!r} could not be loaded ({err}); pass "
                                f"adapter=<a CLLMFS adapter folder or Hub id>, or set {DEFAULT_CLLMFS_ENV}") from None
        items.append((str(spec), folder, artifact_kind(folder)))
    pipeline_kwargs = {"aggregation_strategy": aggregation_strategy, "device": device, **kwargs}
    kinds = {kind for _, _, kind in items}
    if KIND_CLLMFS in kinds:
        if len(items) != 1:
            raise ArtifactError("a CLLMFS adapter is loaded on its own: one per pipeline, without Multi-BERT adapters")
        if str(adapter) == AUTO:
            raise ArtifactError("adapter='auto' routes between Multi-BERT domain adapters; a CLLMFS adapter has none")
        if router_dtype is not None:
            raise ValueError("router_dtype= is for Multi-BERT domain classifiers; a CLLMFS adapter has none")
        source, folder, _ = items[0]
        return _load_cllmfs(source, folder, core, entity_types=entity_types, decoding=decoding, torch_dtype=torch_dtype,
                            pipeline_kwargs=pipeline_kwargs)
    if entity_types is not None:
        raise ValueError("entity_types= is for CLLMFS adapters; Multi-BERT heads have fixed label sets")
    if str(adapter) == AUTO and KIND_ROUTER not in kinds and not any(
            kind == KIND_MULTIBERT and _has_router(folder) for _, folder, kind in items):
        raise ArtifactError(f"adapter='auto' needs a domain classifier, and {model} has none")
    return _load_multibert(items, core, router_threshold=router_threshold, router_dtype=router_dtype, revision=revision,
                           cache_dir=cache_dir, token=token, pipeline_kwargs=pipeline_kwargs)


def default_cllmfs_adapter() -> str:
    """The CLLMFS adapter ``pipeline(entity_types=...)`` loads when given no adapter: ``$NER_ADAPTERS_CLLMFS_ADAPTER``
    when set, else :data:`DEFAULT_CLLMFS_ADAPTER`."""
    return os.environ.get(DEFAULT_CLLMFS_ENV) or DEFAULT_CLLMFS_ADAPTER


def _has_router(folder: Path) -> bool:
    from .artifacts import read_multibert_manifest

    return bool(read_multibert_manifest(folder).get("router"))


__all__ = ["AGGREGATIONS", "CLLMFSTokenClassificationPipeline", "DEFAULT_CLLMFS_ADAPTER", "MultiBertTokenClassificationPipeline",
           "default_cllmfs_adapter", "pipeline"]
