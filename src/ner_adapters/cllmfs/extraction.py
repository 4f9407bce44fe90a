"""CLLMFS extraction: prompt a (LoRA-adapted) LLM per type, decode under the substring constraint, and map
the answers back to character offsets in the shape of the transformers token-classification pipeline.

Decoding follows the paper: greedy or temperature 0.01 with top-p, stopping at the end-of-turn marker,
constrained to substrings of the input. Prompts are batched, and a row leaves its batch as soon as its
answer ends (see ``decoding``). The prompt prefix of each type group (the system message and the instruction,
the same for every sentence of a type) is encoded once per call and its key/value cache reused by every row of
that group, in any batch, with the row's own tokens after it. An input longer than
``max_input_tokens`` is split into overlapping word-aligned chunks whose entities are shifted back to
document offsets, never silently truncated. A string the model lists twice maps to two successive
occurrences.

Beyond the paper, two decisions can be made from the model's own probabilities: per-type prompting may list
one span under several types, and ``DecodingConfig.resolve_overlaps="score"`` keeps the answer the model was
surest of (:func:`answer_score`; ``"none"`` keeps them all, as the paper); and the none/entity choice at the
start of an answer can use a threshold (``none_threshold``, see :class:`~.constrained.NoneThreshold`), chosen on
held-back labelled sentences with :meth:`CLLMFSExtractor.calibrate_none_threshold`.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
import math
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ..compute import COMPUTE_DTYPES, compute_dtype
from ..data.readers import tokenize_with_offsets
from ..data.schema import Sentence
from ..models import resolve_model
from ..spans import Span, char_span_to_tokens, token_char_offsets
from .artifact import CLLMFSAdapterConfig
from .constrained import AnswerGrammar, NoneThreshold, SubstringConstraint, vocabulary_trie
from .decoding import decode, merge, prefill
from .entity_types import EntityType, as_entity_types
from .prompts import OPEN, SLOT_SEPARATOR, PromptFormat, PromptMode

logger = logging.getLogger(__name__)


@dataclass
class DecodingConfig:
    """How answers are generated (the paper: temperature 0.01 with top-p, constrained, stop at <im_end>)."""

    constrained: bool = field(default=True, metadata={"help": "Only allow substrings of the input as entities."})
    do_sample: bool = field(default=False, metadata={"help": "Sample (temperature, top_p) instead of greedy."})
    temperature: float = field(default=0.01, metadata={"help": "Sampling temperature (with do_sample)."})
    top_p: float = field(default=0.9, metadata={"help": "Nucleus sampling threshold (with do_sample)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Longest answer, in tokens."})
    batch_size: int = field(default=64, metadata={"help": "Prompts decoded together (one forward per step)."})
    prefill_tokens: int = field(
        default=1024, metadata={"help": "Most tokens (padding included) per prefill forward of similar-length prompts."}
    )
    max_input_tokens: int = field(default=256, metadata={"help": "Longer inputs are split into chunks."})
    chunk_overlap_words: int = field(default=8, metadata={"help": "Words shared by consecutive chunks."})
    resolve_overlaps: str = field(
        default="score", metadata={"help": "'score': of entities that overlap (one span under several types, or nested "
                                           "spans), keep the one with the best answer score; 'none': keep every type's "
                                           "answer as it came (the paper)."}
    )
    none_threshold: str | None = field(
        default=None, metadata={"help": "Probability of listing an entity rather than 'none' from which an answer lists "
                                        "one: null decides greedily (the paper), a number in (0, 1) fixes it, 'auto' has "
                                        "the experiment choose it on held-back support sentences, 'split' chooses one "
                                        "per type from the inputs of each call, without labels (see split_decisions)."}
    )
    split_max_threshold: float | None = field(
        default=None, metadata={"help": "With none_threshold: split, the highest cut a type may get: 0.5 keeps every "
                                        "answer greedy decoding keeps and adds those of types whose split lies below "
                                        "0.5 (it only adds answers); null (or 1) lets the split drop answers too. "
                                        "Ignored unless none_threshold is 'split'."}
    )
    prefix_cache: bool = field(default=True, metadata={"help": "Encode a batch's shared prompt prefix once."})
    prime_answer: bool = field(
        default=True, metadata={"help": "Put the fixed answer opening in the prompt instead of generating it."}
    )
    compute_dtype: str = field(
        default="float32", metadata={"help": "Autocast dtype of the forwards: 'float32' (none), 'bfloat16', 'float16' "
                                             "or 'auto' (bfloat16 where the device computes it natively: GPUs, CPUs "
                                             "with AMX / AVX512-BF16). Answer scores are computed in float32."}
    )

    def __post_init__(self):
        # Python callers of the old boolean field: True was score-based resolution, False none.
        if isinstance(self.resolve_overlaps, bool):
            self.resolve_overlaps = "score" if self.resolve_overlaps else "none"
        if self.resolve_overlaps not in OVERLAP_MODES:
            raise ValueError(f"resolve_overlaps must be one of {OVERLAP_MODES}, got {self.resolve_overlaps!r}")
        self.none_threshold = _parse_threshold(self.none_threshold)
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {self.compute_dtype!r}")
        if self.none_threshold is not None and not self.constrained:
            raise ValueError("none_threshold needs constrained: true (the none/entity choice is read from the answer "
                             "grammar)")
        if isinstance(self.split_max_threshold, str) and self.split_max_threshold.strip().lower() in ("null", "none"):
            self.split_max_threshold = None
        if self.split_max_threshold is not None:
            try:
                cap = float(self.split_max_threshold)
            except (TypeError, ValueError):
                cap = math.nan  # not a number: refused below with the field's own message
            if isinstance(self.split_max_threshold, bool) or not 0.0 < cap <= 1.0:
                raise ValueError(f"split_max_threshold must lie in (0, 1] (1: no cap), got {self.split_max_threshold!r}")
            # A cap of 1 caps nothing; a cap without `split` has nothing to cap. Both are stored as null, so an
            # overlay that sets the capped split (recipes/cllmfs/quality.yaml) can be switched back to greedy with
            # `--none_threshold null` alone, and the run records the same decoding as one that never set the cap.
            if cap == 1.0 or self.none_threshold != "split":
                if self.none_threshold != "split":
                    logger.info("split_max_threshold %s ignored: it caps none_threshold: split, and none_threshold is "
                                "%r", cap, self.none_threshold)
                cap = None
            self.split_max_threshold = cap


OVERLAP_MODES = ("score", "none")


def _parse_threshold(value):
    """``none_threshold`` from YAML (a number, null), the command line (a string) or Python."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    if isinstance(value, str) and value.strip().lower() in ("auto", "split"):
        return value.strip().lower()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"none_threshold must be null, 'auto', 'split' or a number in [0, 1], got {value!r}") from None
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise ValueError(f"none_threshold must be null, 'auto', 'split' or a number in [0, 1], got {value!r}")
    return number


#: Fewer answers of a type than this in one call and ``none_threshold: split`` keeps 0.5 for it (no split to find).
SPLIT_MIN_ANSWERS = 20


def otsu_cut(values: Sequence[float]) -> float:
    """The cut that best splits ``values`` into a low and a high group (Otsu: the largest between-group variance);
    the midpoint between the two values it falls between, or the value itself when all are equal (one group)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("a split needs values")
    if xs[0] == xs[-1]:
        return xs[0]
    total, n, left = sum(xs), len(xs), 0.0
    best, cut = -1.0, (xs[0] + xs[-1]) / 2
    for i in range(1, n):
        left += xs[i - 1]
        if xs[i] == xs[i - 1]:
            continue
        between = (i / n) * ((n - i) / n) * (left / i - (total - left) / (n - i)) ** 2
        if between > best:
            best, cut = between, (xs[i - 1] + xs[i]) / 2
    return cut


def split_decisions(rows: list[list[dict]], min_answers: int | None = None,
                    max_threshold: float | None = None) -> list[list[dict]]:
    """``none_threshold: split``: per type, keep the answers whose ``p`` lies above the split of that type's ``p``.

    ``rows`` come from one pass with every entity list forced open, each entity carrying the model's probability
    ``p`` of listing an entity rather than answering none (``"_p_entity"``). Measured on Qwen2.5-Coder-0.5B
    adapters (docs/results.md, release 21), ``p`` moves little from sentence to sentence and its level differs per
    type and per training run: greedy decoding (0.5) then answers one type for nearly every sentence and another
    for none. The sentences that do hold a type's entities still sit higher than the rest, so the type's own
    split of ``log p/(1-p)`` over the call's inputs (Otsu's cut, no labels) decides instead of 0.5. Transductive:
    it needs many inputs per call (a dataset, a document's sentences); types with fewer than ``min_answers``
    answers (default :data:`SPLIT_MIN_ANSWERS`) keep 0.5. ``max_threshold`` caps every type's cut at that ``p``
    (0.5: the split only ever adds answers to what greedy decoding keeps, never drops one of them).
    """
    min_answers = SPLIT_MIN_ANSWERS if min_answers is None else min_answers
    if max_threshold is not None and not 0.0 < max_threshold < 1.0:
        raise ValueError(f"max_threshold must lie in (0, 1), got {max_threshold!r}")
    highest = math.inf if max_threshold is None else _log_odds(max_threshold)
    by_type: dict[str, list[float]] = {}
    for row in rows:
        for entity in row:
            if "_p_entity" in entity:
                by_type.setdefault(entity["entity_group"], []).append(_log_odds(entity["_p_entity"]))
    cuts = {label: min(otsu_cut(values) if len(values) >= min_answers else 0.0, highest)
            for label, values in by_type.items()}
    kept = []
    for row in rows:
        kept.append([{k: v for k, v in e.items() if k != "_p_entity"} for e in row
                     if "_p_entity" not in e or _log_odds(e["_p_entity"]) >= cuts[e["entity_group"]]])
    return kept


def _log_odds(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


@dataclass
class _Job:
    """One prompt: a chunk of one input and one group of types."""

    text_index: int
    chunk_offset: int
    chunk: str
    boundaries: list[tuple[int, int]]
    types: list[EntityType]
    prompt: str
    ids: list[int] | None = None  # the prompt's token ids, once encoded


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    limit = min(len(row) for row in rows) - 1
    length = 0
    while length < limit and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def _group_key(job: _Job) -> tuple[str, ...]:
    return tuple(t.label for t in job.types)


def word_boundaries(text: str) -> list[tuple[int, int]]:
    """Where entities may start and end in raw text: its words and punctuation marks."""
    return tokenize_with_offsets(text)[1]


def locate(text: str, boundaries: Sequence[tuple[int, int]], strings: Sequence[str]) -> list[tuple[int, int] | None]:
    """Character ranges of entity strings listed in reading order (``None``: not a word-aligned substring
    after the previous entity).

    Each string maps to its first word-aligned occurrence at or after the previous entity's end, the rule
    the constrained decoder enforces, so a string listed twice maps to two successive occurrences.
    """
    starts = {s for s, _ in boundaries}
    ends = {e for _, e in boundaries}
    cursor = 0
    found: list[tuple[int, int] | None] = []
    for string in strings:
        choice = None
        position = text.find(string, cursor) if string else -1
        while position >= 0:
            if position in starts and position + len(string) in ends:
                choice = (position, position + len(string))
                break
            position = text.find(string, position + 1)
        if choice is not None:
            cursor = choice[1]
        found.append(choice)
    return found


class CLLMFSExtractor:
    """Entity extraction with a CLLMFS-tuned (or plain, for zero-shot) causal LM.

    Prompts once per entity type (or once for all types with `prompt_mode="all_types"`), decodes greedily with a
    constraint that only allows word-aligned substrings of the input listed in reading order, and stops at the
    end-of-turn token. Overlapping answers of different types are resolved by the model's own score
    (`DecodingConfig.resolve_overlaps`); long inputs are split into overlapping chunks.

    Args:
        model (`PreTrainedModel` or `PeftModel`): the causal LM (with its LoRA adapter).
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer; a chat template is used when it has one, the paper's
            literal `<im_start>`/`<im_end>` markers otherwise.
        entity_types (`list[str]`, `list[EntityType]` or `dict[str, str]`): the types to extract, with
            descriptions (`{label: description}`); a label alone gets a readable default.
        prompt_mode (`str`, defaults to `"per_type"`): `"per_type"` (the paper) or `"all_types"`.
        decoding (`DecodingConfig`, *optional*): greedy or sampled decoding, batch sizes, `max_new_tokens`,
            `constrained`, `resolve_overlaps`, `none_threshold`.
        format_hint (`bool`, defaults to `False`): spell the answer format out in the instruction (zero-shot).
        make_logits_processors (`Callable`, *optional*): see `__init__`.

    Returns (when called on a text or a list of texts):
        `list[dict]` per text, like the transformers token-classification pipeline: `entity_group`, `score`,
        `word`, `start`, `end`, with `text[start:end] == word`.

    Example:

    ```python
    >>> from ner_adapters.cllmfs import CLLMFSExtractor
    >>> extractor = CLLMFSExtractor.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct",
    ...                                             adapter="outputs/cllmfs/wnut17_intra_5shot/episode-0/adapter")
    >>> extractor("Andrew Little met Jacinda Ardern in Wellington.")
    [{'entity_group': 'person', 'score': 0.97, 'word': 'Andrew Little', 'start': 0, 'end': 13}, ...]
    >>> extractor("...", entity_types={"drug": "the name of a medication"})   # other types, same adapter
    ```
    """

    def __init__(
        self,
        model,
        tokenizer,
        entity_types: Sequence[EntityType | str] | Mapping[str, str],
        *,
        prompt_mode: PromptMode = "per_type",
        decoding: DecodingConfig | None = None,
        format_hint: bool = False,
        make_logits_processors: Callable[[], Sequence] | None = None,
    ):
        """``make_logits_processors``: called for every decoding batch, it returns extra ``transformers``
        logits processors, applied before the substring constraint (fresh ones per batch, as ``generate``
        would get). A processor with a ``keep(rows)`` method lets finished rows leave the batch."""
        self.model = model.eval()
        self.make_logits_processors = make_logits_processors
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.entity_types = as_entity_types(entity_types)
        self.format = PromptFormat(tokenizer, prompt_mode, format_hint=format_hint)
        self.decoding = decoding or DecodingConfig()
        self.stop_ids = [tokenizer.eos_token_id]
        self.stats = {"prompts": 0, "entities": 0, "unmatched": 0}
        self._prefix_caches: dict[tuple[int, ...], object] = {}
        self._group_prefixes: dict[tuple[str, ...], tuple[int, ...]] = {}
        self._call = threading.local()  # per-thread state of the extract() call in progress (answers cut short)
        #: With ``none_threshold: split``, the latest call's forced pass: per input, every type's answer with its
        #: ``_p_entity`` (before the split and overlap resolution), so a caller can keep it and score other
        #: none/entity rules on it without a second pass (the harness writes it as ``forced_pass.jsonl``).
        self.last_forced_pass: list[list[dict]] | None = None

    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        entity_types: Sequence[EntityType | str] | Mapping[str, str] | None = None,
        *,
        prompt_mode: PromptMode | None = None,
        decoding: DecodingConfig | None = None,
        format_hint: bool | None = None,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
    ) -> "CLLMFSExtractor":
        """Load the base model (any Hub id or folder; packaged copies offline) and optionally a CLLMFS adapter.

        Without ``entity_types`` the adapter's own types are used. ``format_hint`` defaults to on without an
        adapter (zero-shot) and off with one (the adapter learnt the format). Without ``decoding``, an adapter's
        calibrated ``none_threshold`` (if it records one) is used. Never runs remote code.
        """
        resolved = resolve_model(model_name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(resolved, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype, trust_remote_code=False)
        saved = None
        if adapter is not None:
            model, saved = attach_adapter(model, str(adapter))
        if entity_types is None:
            if saved is None:
                raise ValueError("entity_types are needed when no adapter is given")
            entity_types = saved.types
        if device is not None:
            model = model.to(device)
        if decoding is None and saved is not None and saved.none_threshold is not None:
            decoding = DecodingConfig(none_threshold=saved.none_threshold)
        mode = prompt_mode or (saved.prompt_mode if saved else "per_type")
        hint = format_hint if format_hint is not None else adapter is None
        return cls(model, tokenizer, entity_types, prompt_mode=mode, decoding=decoding, format_hint=hint)

    # --- public API ------------------------------------------------------------------------------------

    def __call__(self, inputs: str | Sequence[str], entity_types=None, **kwargs):
        """Entities of one text (a list of dicts) or of several (a list of lists), like the transformers pipeline."""
        single = isinstance(inputs, str)
        results = self.extract([inputs] if single else list(inputs), entity_types=entity_types, **kwargs)
        return results[0] if single else results

    def extract(
        self,
        texts: Sequence[str],
        entity_types: Sequence[EntityType | str] | Mapping[str, str] | None = None,
        boundaries: Sequence[Sequence[tuple[int, int]]] | None = None,
        show_progress: bool = False,
    ) -> list[list[dict]]:
        """Entities per text as ``{"entity_group", "score", "word", "start", "end"}`` with ``text[start:end] == word``.

        ``boundaries`` (per text, the character spans of its words) fix where entities may start and end;
        by default the text's words and punctuation marks.
        """
        types = as_entity_types(entity_types) if entity_types is not None else self.entity_types
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"input {i} is a {type(text).__name__}, not a string")
        if self.decoding.none_threshold == "split":  # one pass with every list open, then the decision per type
            configured = self.decoding
            self.decoding = dataclasses.replace(configured, none_threshold=0.0, split_max_threshold=None,
                                                resolve_overlaps="none")
            self._call.record = True
            try:
                forced = self.extract(texts, entity_types, boundaries, show_progress)
            finally:
                self._call.record = False
                self.decoding = configured
            self.last_forced_pass = forced
            kept = split_decisions(forced, max_threshold=self.decoding.split_max_threshold)
            return [self._finalise(row) for row in kept]
        jobs = self._jobs(texts, types, boundaries)
        self._encode_prompts(jobs)
        self._prefix_caches = {}  # the model may have changed since the last call
        self._group_prefixes = self._shared_prefixes(jobs) if self.decoding.prefix_cache else {}
        found: list[list[dict]] = [[] for _ in texts]
        batches = self._batches(jobs)
        iterator = batches
        if show_progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc="extracting", unit="batch")
        self._call.cut = []  # (job, entities, slots opened) of answers cut by max_new_tokens
        for batch in iterator:
            for job, entities in zip((jobs[j] for j in batch), self._generate([jobs[j] for j in batch])):
                found[job.text_index].extend(entities)
        self._continue_cut_answers(found)
        return [self._finalise(entities) for entities in found]

    def _continue_cut_answers(self, found: list[list[dict]]) -> None:
        """Answers that ran into ``max_new_tokens`` before their end are not dropped silently.

        A one-type answer is asked again on the rest of its chunk, after the last entity it listed, until it ends.
        An all-types answer goes on the same way: the type whose slot was cut is asked alone after its last
        listed entity (or on the whole chunk when it had listed none), and the types whose slots never started
        are asked together again. Each round either starts later in the chunk or asks fewer types, so it ends;
        an answer that cannot go on (a one-type answer cut before its first entity, or an all-types answer cut
        before its first slot) warns with the count.
        """
        lost = 0
        while self._call.cut:
            jobs, cut = [], self._call.cut
            self._call.cut = []
            for job, entities, started in cut:
                if len(job.types) == 1:
                    continued = self._after_last_entity(job, job.types, entities)
                    lost += continued is None
                    jobs += [continued] if continued is not None else []
                    continue
                if started == 0:
                    lost += 1
                    continue
                current, unstarted = job.types[started - 1], job.types[started:]
                listed = [e for e in entities if e["entity_group"] == current.label]
                continued = self._after_last_entity(job, [current], listed) if listed else \
                    self._job_for(job, [current], 0)
                jobs += [continued] if continued is not None else []
                if unstarted:
                    jobs.append(self._job_for(job, unstarted, 0))
            for lo in range(0, len(jobs), self.decoding.batch_size):
                batch = jobs[lo : lo + self.decoding.batch_size]
                for job, entities in zip(batch, self._generate(batch)):
                    found[job.text_index].extend(entities)
        if lost:
            self.stats["cut"] = self.stats.get("cut", 0) + lost
            warnings.warn(f"{lost} answer(s) reached max_new_tokens={self.decoding.max_new_tokens} before their end; "
                          "entities after that point were not extracted. Raise DecodingConfig.max_new_tokens or "
                          "lower max_input_tokens", UserWarning, stacklevel=3)

    def _after_last_entity(self, job: "_Job", types: list[EntityType], entities: list[dict]) -> "_Job | None":
        """The job asking ``types`` on the rest of ``job``'s chunk after the last of ``entities`` (``None`` when
        no entity was listed, so asking again would repeat the same answer; also when no word is left)."""
        ends = [e["end"] - job.chunk_offset for e in entities]
        if not ends:
            return None
        first = next((i for i, (s, _) in enumerate(job.boundaries) if s >= max(ends)), None)
        return None if first is None else self._job_for(job, types, first)

    def _job_for(self, job: "_Job", types: list[EntityType], first_word: int) -> "_Job":
        """A job asking ``types`` on ``job``'s chunk from its word ``first_word`` on."""
        rest = job.boundaries[first_word:]
        start, end = rest[0][0], rest[-1][1]
        prompt = self.format.build(job.chunk[start:end], types).text
        return _Job(job.text_index, job.chunk_offset + start, job.chunk[start:end],
                    [(s - start, e - start) for s, e in rest], list(types),
                    prompt + (self.format.answer_prefix if self.decoding.prime_answer else ""))

    def predict_sentences(self, sentences: Sequence[Sentence], **kwargs) -> list[list[Span]]:
        """Token spans for pre-tokenized sentences (entities aligned to the dataset's own tokens)."""
        offsets = [token_char_offsets(s.tokens) for s in sentences]
        results = self.extract([s.text for s in sentences], boundaries=offsets, **kwargs)
        return [_token_spans(o, entities) for o, entities in zip(offsets, results)]

    def calibrate_none_threshold(self, sentences: Sequence[Sentence], show_progress: bool = False) -> float:
        """Choose ``decoding.none_threshold`` on labelled sentences the model was not trained on, set it, return it.

        One pass answers every (sentence, type) prompt with an entity list forced open, recording the model's
        probability ``p`` of listing an entity rather than "none" (see :class:`NoneThreshold`). With threshold
        ``t`` a prompt would keep its (greedy) entities when ``p >= t`` and answer none otherwise, so every ``t``
        is scored from that one pass: candidates are the recorded ``p`` values and 0.5, each scored by span
        micro-F1 after the configured overlap resolution; the best wins (ties: the one closest to 0.5, greedy's
        choice between two options).
        """
        from ..metrics import span_scores

        if not self.decoding.constrained:
            raise ValueError("calibrating none_threshold needs constrained decoding")
        if not sentences:
            raise ValueError("calibrating none_threshold needs at least one labelled sentence")
        configured = self.decoding
        offsets = [token_char_offsets(s.tokens) for s in sentences]
        self.decoding = dataclasses.replace(configured, none_threshold=0.0, split_max_threshold=None,
                                            resolve_overlaps="none")
        self._call.record = True
        try:
            forced = self.extract([s.text for s in sentences], boundaries=offsets, show_progress=show_progress)
        finally:
            self._call.record = False
            self.decoding = configured
        gold = [s.spans for s in sentences]
        labels = [t.label for t in self.entity_types]
        candidates = sorted({0.5, *(e["_p_entity"] for row in forced for e in row if "_p_entity" in e)})
        best, best_f1 = 0.5, -1.0
        for t in candidates:
            kept = [self._finalise([e for e in row if e.get("_p_entity", 1.0) >= t]) for row in forced]
            f1 = span_scores(gold, [_token_spans(o, row) for o, row in zip(offsets, kept)], types=labels).micro.f1
            if f1 > best_f1 + 1e-12 or (abs(f1 - best_f1) <= 1e-12 and abs(t - 0.5) < abs(best - 0.5)):
                best, best_f1 = t, f1
        self.decoding = dataclasses.replace(configured, none_threshold=best, split_max_threshold=None)
        self.stats["none_threshold_f1"] = best_f1
        return best

    # --- internals -------------------------------------------------------------------------------------

    def _jobs(self, texts, types, boundaries) -> list[_Job]:
        jobs = []
        for index, text in enumerate(texts):
            if not text.strip():
                continue
            words = list(boundaries[index]) if boundaries is not None else word_boundaries(text)
            if not words:
                continue
            for offset, chunk, chunk_words in self._chunks(text, words):
                for group in self.format.groups(types):
                    prompt = self.format.build(chunk, group).text
                    if self.decoding.prime_answer:  # the grammar forces it anyway: one prefill, not ~12 steps
                        prompt += self.format.answer_prefix
                    jobs.append(_Job(index, offset, chunk, chunk_words, list(group), prompt))
        return jobs

    def _chunks(self, text: str, words: list[tuple[int, int]]):
        """Word-aligned pieces of at most ``max_input_tokens`` tokens, overlapping by a few words."""
        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        limit = self.decoding.max_input_tokens
        if len(encoded["input_ids"]) <= limit:
            yield 0, text, words
            return
        token_ends = [end for _, end in encoded["offset_mapping"]]

        def tokens_before(char: int) -> int:
            return bisect.bisect_right(token_ends, char)

        first = 0
        while first < len(words):
            last = first
            while last + 1 < len(words) and tokens_before(words[last + 1][1]) - tokens_before(words[first][0]) <= limit:
                last += 1
            start, end = words[first][0], words[last][1]
            yield start, text[start:end], [(s - start, e - start) for s, e in words[first : last + 1]]
            if last + 1 >= len(words):
                break
            first = max(first + 1, last + 1 - self.decoding.chunk_overlap_words)

    def _encode_prompts(self, jobs: Sequence[_Job]) -> None:
        """Token ids of every prompt, in one tokenizer call."""
        missing = [job for job in jobs if job.ids is None]
        if missing:
            encoded = self.tokenizer([job.prompt for job in missing], add_special_tokens=False)["input_ids"]
            for job, ids in zip(missing, encoded):
                job.ids = ids

    def _shared_prefixes(self, jobs: Sequence[_Job]) -> dict[tuple[str, ...], tuple[int, ...]]:
        """The prompt tokens every job of a type group starts with (the system message and the instruction)."""
        self._encode_prompts(jobs)
        rows: dict[tuple[str, ...], list[list[int]]] = {}
        for job in jobs:
            rows.setdefault(_group_key(job), []).append(job.ids)
        return {key: tuple(group[0][: _common_prefix_length(group)]) for key, group in rows.items()}

    def _own_length(self, job: _Job) -> int:
        """Tokens of a prompt after its group's cached prefix: what prefilling it costs."""
        return len(job.ids) - len(self._group_prefixes.get(_group_key(job), ()))

    def _batches(self, jobs: Sequence[_Job]) -> list[list[int]]:
        """Job indices in decoding batches, sorted by their own prompt length, so the prefill batches cut from
        them (``prefill_batch_size``) pad little. The batches may mix type groups: each row's instruction prefix
        comes from its group's KV cache (see ``_encode_batch``), so a batch never splits only to keep one prefix,
        and a few sentences of many types still fill whole batches."""
        self._encode_prompts(jobs)
        order = sorted(range(len(jobs)), key=lambda j: (self._own_length(jobs[j]), _group_key(jobs[j])))
        return [order[i : i + self.decoding.batch_size] for i in range(0, len(order), self.decoding.batch_size)]

    def _prefix_cache(self, prefix: tuple[int, ...]):
        """The key/value cache of one prompt prefix, computed once per ``extract`` call."""
        cache = self._prefix_caches.get(prefix)
        if cache is None:
            cache = self.model(input_ids=torch.tensor([prefix], device=self.model.device), use_cache=True).past_key_values
            self._prefix_caches[prefix] = cache
        return cache

    @torch.no_grad()
    def _encode_batch(self, jobs: list[_Job]) -> dict:
        """Token ids of a batch, or with the prefix cache: per row, left padding + its group's prefix (KV-cached)
        + padding + the row's own tokens; only the row's own tokens go through the model here.

        Padding positions are masked and positions come from the attention mask, so every row sees the same
        positions as alone. A row whose group has no usable prefix gets an empty one (all of it is its own).
        """
        tokenizer = self.tokenizer
        self._encode_prompts(jobs)
        rows = [job.ids for job in jobs]
        prefixes: list[tuple[int, ...]] = []
        if self.decoding.prefix_cache:
            batch_groups: dict[tuple[str, ...], list[list[int]]] = {}
            for job, row in zip(jobs, rows):
                batch_groups.setdefault(_group_key(job), []).append(row)
            for job, row in zip(jobs, rows):
                key = _group_key(job)
                prefix = self._group_prefixes.get(key)
                if prefix is None or len(row) <= len(prefix) or tuple(row[: len(prefix)]) != prefix:
                    group = batch_groups[key]  # a job not seen by extract(): what its batch-mates share
                    prefix = tuple(row[: _common_prefix_length(group)]) if len(group) > 1 else ()
                prefixes.append(prefix if len(prefix) >= 2 else ())
        device = self.model.device
        if not any(prefixes):
            batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
            return {k: v.to(device) for k, v in batch.items()}
        rests = [row[len(prefix) :] for prefix, row in zip(prefixes, rows)]
        longest_prefix, longest_rest = max(map(len, prefixes)), max(map(len, rests))
        pad = tokenizer.pad_token_id
        input_ids, attention = [], []
        for prefix, rest in zip(prefixes, rests):
            lead, gap = longest_prefix - len(prefix), longest_rest - len(rest)
            input_ids.append([pad] * lead + list(prefix) + [pad] * gap + rest)
            attention.append([0] * lead + [1] * len(prefix) + [0] * gap + [1] * len(rest))
        past = self._stack_prefix_caches(prefixes, longest_prefix)
        return {"input_ids": torch.tensor(input_ids, device=device),
                "attention_mask": torch.tensor(attention, device=device), "past_key_values": past}

    def _stack_prefix_caches(self, prefixes: list[tuple[int, ...]], length: int):
        """One batch cache from the rows' prefix caches, each left-padded (with masked zeros) to ``length``."""
        from transformers import DynamicCache

        caches = {prefix: self._prefix_cache(prefix) for prefix in set(prefixes) if prefix}
        template = next(iter(caches.values()))
        layers = []
        for index, layer in enumerate(template.layers):
            keys, values = [], []
            for prefix in prefixes:
                source = caches[prefix].layers[index] if prefix else layer
                k = source.keys if prefix else layer.keys[:, :, :0]
                v = source.values if prefix else layer.values[:, :, :0]
                lead = length - k.shape[2]
                keys.append(torch.nn.functional.pad(k, (0, 0, lead, 0)))
                values.append(torch.nn.functional.pad(v, (0, 0, lead, 0)))
            layers.append((torch.cat(keys), torch.cat(values)))
        past = DynamicCache()
        for index, (k, v) in enumerate(layers):
            past.update(k, v, index)
        return past

    def _prefill_slices(self, jobs: list[_Job]) -> list[list[_Job]]:
        """Consecutive runs of a decoding batch to prefill together: at most ``prefill_tokens`` padded tokens, and
        no prompt over 1.25x the own length of the run's first (a padded position costs as much as a real one)."""
        self._encode_prompts(jobs)
        lengths = [max(1, self._own_length(job)) for job in jobs]
        slices: list[list[_Job]] = []
        first = 0
        for index in range(1, len(jobs) + 1):
            if index == len(jobs) or lengths[index] > 1.25 * lengths[first] \
                    or (index - first + 1) * max(lengths[first : index + 1]) > self.decoding.prefill_tokens:
                slices.append(jobs[first:index])
                first = index
        return slices

    @torch.no_grad()
    def _generate(self, jobs: list[_Job]) -> list[list[dict]]:
        """Answers of one decoding batch: prefilled in slices of similar lengths, decoded together."""
        constraint = None
        if self.decoding.constrained:
            grammars = [
                AnswerGrammar.build("" if self.decoding.prime_answer else self.format.answer_prefix,
                                    self.format.slot_labels(job.types), job.chunk,
                                    job.boundaries, stop=self.format.stop_text)
                for job in jobs
            ]
            constraint = SubstringConstraint(grammars, self.tokenizer, self.stop_ids)
        threshold = self.decoding.none_threshold
        if threshold == "auto":
            raise ValueError("none_threshold='auto' is chosen on labelled sentences first: call "
                             "calibrate_none_threshold(sentences) (run_experiment does, on held-back support sentences)")
        chooser = NoneThreshold(constraint, threshold) if threshold is not None and constraint is not None else None
        processors = [*(self.make_logits_processors() if self.make_logits_processors else ()),
                      *([constraint] if constraint is not None else []), *([chooser] if chooser else [])]
        stop = self.format.stop_text.strip() if self.format.stop_text else None
        parts = []
        with compute_dtype(self.decoding.compute_dtype, self.model.device):
            for piece in self._prefill_slices(jobs):
                batch = self._encode_batch(piece)
                parts.append(prefill(self.model, batch["input_ids"], batch["attention_mask"],
                                     past_key_values=batch.get("past_key_values")))
            answers = decode(
                self.model, merge(parts, self.tokenizer.pad_token_id), max_new_tokens=self.decoding.max_new_tokens,
                stop_ids=self.stop_ids, processors=processors, stop_bytes=stop.encode("utf-8") if stop else None,
                token_bytes=vocabulary_trie(self.tokenizer).token_bytes, do_sample=self.decoding.do_sample,
                temperature=self.decoding.temperature, top_p=self.decoding.top_p,
            )
        self.stats["prompts"] += len(jobs)
        decisions = chooser.decisions if chooser is not None else [[] for _ in jobs]
        return [self._read_answer(job, answer.token_ids, answer.logprobs, decision[0] if decision else None)
                for job, answer, decision in zip(jobs, answers, decisions)]

    def _read_answer(self, job: _Job, token_ids: list[int], logprobs: list[float],
                     decision: float | None = None) -> list[dict]:
        """Entities of one generated answer, with scores from the tokens that spell them (and, while calibrating,
        the answer's none/entity probability ``decision`` as ``"_p_entity"``)."""
        pieces = vocabulary_trie(self.tokenizer).token_bytes
        completion_bytes = b""
        token_spans = []  # byte range of each generated token in the completion
        finished = False
        for token in token_ids:
            if token in self.stop_ids or token == self.tokenizer.pad_token_id:
                finished = True
                break
            piece = pieces[token] if token < len(pieces) and pieces[token] else b""
            token_spans.append((len(completion_bytes), len(completion_bytes) + len(piece)))
            completion_bytes += piece
        completion = completion_bytes.decode("utf-8", errors="replace")
        char_to_byte = list(itertools.accumulate((len(c.encode("utf-8")) for c in completion), initial=0))
        entities = []
        for entity_type, listed in zip(job.types, self.format.parse(completion, job.types)):
            located = locate(job.chunk, job.boundaries, [string for string, _, _ in listed])
            for (string, c_start, c_end), place in zip(listed, located):
                if place is None:
                    self.stats["unmatched"] += 1
                    continue
                marker = completion.rfind(OPEN.strip(), 0, c_start)
                if marker > 0 and completion[marker - 1] == " ":
                    marker -= 1
                score = answer_score(token_spans, logprobs, char_to_byte[max(marker, 0)], char_to_byte[c_start],
                                     char_to_byte[c_end])
                start, end = place[0] + job.chunk_offset, place[1] + job.chunk_offset
                entities.append({"entity_group": entity_type.label, "score": score, "word": string, "start": start, "end": end})
                if decision is not None and getattr(self._call, "record", False):
                    entities[-1]["_p_entity"] = decision
        self.stats["entities"] += len(entities)
        stop = self.format.stop_text
        stopped = finished or bool(stop and stop.strip() in completion)
        if not stopped and len(token_ids) >= self.decoding.max_new_tokens:
            cut = getattr(self._call, "cut", None)
            if cut is not None:  # see _continue_cut_answers; for all types, how many slots the answer opened
                labels = self.format.slot_labels(job.types)
                started = 1 if labels == [None] else sum(
                    completion.find(label.lstrip(SLOT_SEPARATOR).strip()) >= 0 for label in labels)
                cut.append((job, entities, started))
        return entities

    def _finalise(self, entities: list[dict]) -> list[dict]:
        return finalise_entities(entities, self.decoding.resolve_overlaps)


def finalise_entities(entities: Sequence[dict], resolve_overlaps: str = "score") -> list[dict]:
    """Deduplicate (chunks overlap), optionally drop overlapping lower-scored entities, sort by position.

    Per-type prompting asks every type on its own, so one span can come back under several types; with
    ``resolve_overlaps="score"`` the answer the model was surest of wins (see :func:`answer_score`)."""
    best: dict[tuple[str, int, int], dict] = {}
    for entity in entities:
        key = (entity["entity_group"], entity["start"], entity["end"])
        if key not in best or entity["score"] > best[key]["score"]:
            best[key] = entity
    kept = list(best.values())
    if resolve_overlaps == "score":
        chosen: list[dict] = []
        for entity in sorted(kept, key=lambda e: (-e["score"], e["start"])):
            if all(entity["end"] <= c["start"] or entity["start"] >= c["end"] for c in chosen):
                chosen.append(entity)
        kept = chosen
    return sorted(kept, key=lambda e: (e["start"], e["end"], e["entity_group"]))


def _token_spans(offsets: Sequence[tuple[int, int]], entities: Sequence[dict]) -> list[Span]:
    """Entities (character offsets) as spans of the sentence's own tokens."""
    row = []
    for entity in entities:
        token_range = char_span_to_tokens(offsets, entity["start"], entity["end"], expand=False)
        if token_range is not None:
            row.append(Span(token_range[0], token_range[1], entity["entity_group"]))
    return sorted(set(row))


def answer_score(token_spans: Sequence[tuple[int, int]], logprobs: Sequence[float], marker_start: int,
                 entity_start: int, entity_end: int) -> float:
    """The model's own probability of one listed entity: P(opening marker) x geometric mean P(entity tokens).

    Arguments are byte offsets in the answer (``token_spans``: each generated token's range). The marker
    tokens (``" <<<"``, those starting in ``[marker_start, entity_start)``) carry the decision to list an entity
    for this type at all, rather than "none" or the end; the entity tokens, copied from the input, are near 1 for
    any type once that decision is made. Scoring by the entity tokens alone would leave a span asked under two
    types with nearly the same score; the product keeps the type decision in it. Log-probabilities are the
    unconstrained model's, so a forced choice scores low. NaN (a stop appended without a step) is skipped.
    """
    marker = [lp for (s, _), lp in zip(token_spans, logprobs) if marker_start <= s < entity_start and lp == lp]
    used = [lp for (s, e), lp in zip(token_spans, logprobs) if s < entity_end and e > entity_start and lp == lp]
    if not used:
        return 0.0
    return float(math.exp(sum(marker) + sum(used) / len(used)))


def attach_adapter(model, adapter: str, *, trainable: bool = False):
    """``model`` wrapped with a saved CLLMFS adapter (a folder or Hub id) and the adapter's recorded config; refused
    when the adapter was trained on another base architecture. ``trainable``: to train it further."""
    from peft import PeftModel

    path = adapter if os.path.isdir(adapter) else _download_adapter(adapter)
    saved = CLLMFSAdapterConfig.load(path)
    saved.check_base(model.config, adapter)
    return PeftModel.from_pretrained(model, path, is_trainable=trainable), saved


def _download_adapter(repo_id: str) -> str:
    """A Hub adapter's local snapshot; a name that can only be a local path (``outputs/adaptr``: ``outputs``
    exists here) is a ``FileNotFoundError`` naming the nearest folder, not a Hub lookup that fails offline."""
    from huggingface_hub import snapshot_download

    from ..paths import looks_local, missing_path_error

    if looks_local(repo_id):
        raise missing_path_error(repo_id, "adapter folder")
    return snapshot_download(repo_id)
