"""N-way K-shot few-shot episodes: Few-NERD's greedy support sampling, query sets, INTRA and INTER protocols.

An episode is what one few-shot run trains and tests on: a support set in which each of the N sampled
entity types appears K to 2K times (Ding et al. 2021, Few-NERD, Algorithm 1), and a query set to
predict. Entities of types outside the episode are relabelled ``O`` (Few-NERD's convention).

- INTRA: support from the train split and query from the test split of the same dataset.
- INTER: support from a source dataset's types, query from a different target dataset and label set.

Episodes are saved to and loaded from JSONL, one episode per line, so every method is scored on the
very same sentences.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

from .atomic import atomic_write_text
from .data.schema import DataFormatError, Sentence
from .spans import Span
from .errors import EpisodeSamplingError  # noqa: F401  (re-exported: raised here)

Protocol = Literal["intra", "inter"]


@dataclass
class Episode:
    """One few-shot task: support sentences to learn from and query sentences to predict."""

    id: str
    protocol: Protocol
    n_way: int
    k_shot: int
    seed: int
    support_dataset: str
    query_dataset: str
    support_types: list[str]
    query_types: list[str]
    support: list[Sentence] = field(default_factory=list)
    query: list[Sentence] = field(default_factory=list)

    def to_json(self) -> dict:
        def sentence(s: Sentence) -> dict:
            return {
                "id": s.id,
                "tokens": s.tokens,
                "spans": [{"type": sp.type, "start": sp.start, "end": sp.end} for sp in s.spans],
                "domain": s.domain,
                "document_id": s.document_id,
            }

        fields = {k: v for k, v in self.__dict__.items() if k not in ("support", "query")}
        return {**fields, "support": [sentence(s) for s in self.support], "query": [sentence(s) for s in self.query]}

    @classmethod
    def from_json(cls, data: dict) -> "Episode":
        def sentence(row: dict) -> Sentence:
            return Sentence(
                tokens=list(row["tokens"]),
                spans=sorted(Span(int(s["start"]), int(s["end"]), str(s["type"])) for s in row.get("spans", [])),
                id=str(row.get("id", "")),
                domain=row.get("domain"),
                document_id=row.get("document_id"),
            )

        fields = {k: data[k] for k in cls.__dataclass_fields__ if k not in ("support", "query")}
        return cls(**fields, support=[sentence(r) for r in data["support"]], query=[sentence(r) for r in data["query"]])

    def type_counts(self, part: Literal["support", "query"] = "support") -> dict[str, int]:
        counts = Counter(span.type for s in getattr(self, part) for span in s.spans)
        return {t: counts.get(t, 0) for t in (self.support_types if part == "support" else self.query_types)}


def restrict_types(sentence: Sentence, types: Iterable[str]) -> Sentence:
    """A copy whose entities of other types are relabelled ``O``."""
    keep = set(types)
    return Sentence(list(sentence.tokens), [s for s in sentence.spans if s.type in keep], sentence.id,
                    sentence.domain, sentence.document_id)


def greedy_kshot_sample(
    sentences: Sequence[Sentence], types: Sequence[str], k_shot: int, rng: random.Random,
    exclude_ids: Iterable[str] = (),
) -> list[Sentence]:
    """Few-NERD's greedy sampling: add random sentences while no type exceeds 2K, until every type has K.

    Sentences are drawn without replacement among those holding at least one of ``types``; a sentence
    that would push any type past 2K mentions is skipped. Returns copies restricted to ``types``.
    """
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1, got {k_shot}")
    wanted = set(types)
    excluded = set(exclude_ids)
    candidates = [s for s in sentences if s.id not in excluded and any(sp.type in wanted for sp in s.spans)]
    rng.shuffle(candidates)
    counts = Counter({t: 0 for t in types})
    chosen: list[Sentence] = []
    for sentence in candidates:
        if all(counts[t] >= k_shot for t in types):
            break
        added = Counter(sp.type for sp in sentence.spans if sp.type in wanted)
        if any(counts[t] + n > 2 * k_shot for t, n in added.items()):
            continue
        counts.update(added)
        chosen.append(restrict_types(sentence, wanted))
    short = {t: counts[t] for t in types if counts[t] < k_shot}
    if short:
        raise EpisodeSamplingError(
            f"cannot sample {k_shot}-shot support for types {short} (mentions reached); the data has too few "
            "sentences of these types with at most 2K mentions each. Use a smaller K or other types"
        )
    return chosen


def sample_query(
    sentences: Sequence[Sentence], types: Sequence[str], rng: random.Random, *, size: int | None = None,
    k_shot: int | None = None, exclude_ids: Iterable[str] = (),
) -> list[Sentence]:
    """The query set: a Few-NERD greedy K-shot sample when ``k_shot`` is given, else ``size`` random
    sentences (all sentences when ``size`` is ``None``), never one of ``exclude_ids``."""
    excluded = set(exclude_ids)
    if k_shot is not None:
        return greedy_kshot_sample(sentences, types, k_shot, rng, exclude_ids=excluded)
    pool = [s for s in sentences if s.id not in excluded]
    if size is not None and size < len(pool):
        indices = sorted(rng.sample(range(len(pool)), size))
        pool = [pool[i] for i in indices]
    return [restrict_types(s, types) for s in pool]


def _choose_types(available: Sequence[str], n_way: int | None, types: Sequence[str] | None, rng: random.Random) -> list[str]:
    if types:
        unknown = [t for t in types if t not in available]
        if unknown:
            raise ValueError(f"types {unknown} are not in the dataset's label set {list(available)}")
        return list(types)
    if n_way is None or n_way >= len(available):
        if n_way is not None and n_way > len(available):
            raise ValueError(f"n_way={n_way} but the dataset has only {len(available)} types: {list(available)}")
        return list(available)
    return sorted(rng.sample(list(available), n_way), key=list(available).index)


def sample_episode(
    support_pool: Sequence[Sentence],
    query_pool: Sequence[Sentence],
    *,
    support_types: Sequence[str],
    query_types: Sequence[str] | None = None,
    n_way: int | None = None,
    types: Sequence[str] | None = None,
    k_shot: int = 5,
    seed: int = 0,
    query_size: int | None = None,
    query_k_shot: int | None = None,
    protocol: Protocol = "intra",
    support_dataset: str = "",
    query_dataset: str = "",
    episode_id: str | None = None,
) -> Episode:
    """Sample one episode from sentence pools (see :func:`sample_episodes` for the dataset-level entry).

    In INTRA the N sampled types are both learnt and queried; in INTER the support uses N of the source
    ``support_types`` and the query all ``query_types`` of the target. ``types`` fixes the N types
    instead of sampling them.
    """
    rng = random.Random(f"{support_dataset}|{query_dataset}|{seed}")
    chosen = _choose_types(support_types, n_way, types, rng)
    support = greedy_kshot_sample(support_pool, chosen, k_shot, rng)
    queried = chosen if protocol == "intra" else list(query_types or [])
    if not queried:
        raise ValueError("an INTER episode needs the target dataset's query_types")
    query = sample_query(query_pool, queried, rng, size=query_size, k_shot=query_k_shot,
                         exclude_ids={s.id for s in support} if support_dataset == query_dataset else ())
    return Episode(
        id=episode_id or f"{support_dataset}-{protocol}-{len(chosen)}way{k_shot}shot-seed{seed}",
        protocol=protocol, n_way=len(chosen), k_shot=k_shot, seed=seed,
        support_dataset=support_dataset, query_dataset=query_dataset,
        support_types=chosen, query_types=queried, support=support, query=query,
    )


def sample_episodes(
    source: str,
    *,
    target: str | None = None,
    n_way: int | None = None,
    types: Sequence[str] | None = None,
    k_shot: int = 5,
    n_episodes: int = 1,
    seed: int = 0,
    query_size: int | None = None,
    query_k_shot: int | None = None,
    source_config: str | None = None,
    target_config: str | None = None,
    support_split: str = "train",
    query_split: str = "test",
    data_dir: str | os.PathLike | None = None,
    source_format: str | None = None,
    target_format: str | None = None,
) -> list[Episode]:
    """N-way K-shot few-shot episodes: INTRA when ``target`` is ``None`` (or equal to ``source``), else INTER.

    Support sets follow Few-NERD's greedy algorithm: every sampled type appears K to 2K times. Episode ``i`` uses
    seed ``seed + i``, so episode sets are reproducible and extendable, and every method run on them sees the same
    support and query sentences.

    Args:
        source (`str`): the support dataset: a registered name, your own file or folder, or a Hub id
            (:func:`ner_adapters.data.registry.resolve_spec`); the label set is read from the data for your own
            files, and a file without a train split is split into seeded train/validation/test parts.
        target (`str`, *optional*): the query dataset of an INTER episode (its own types).
        n_way (`int`, *optional*): types per episode, sampled from the label set (default: all of them); the
            other types' mentions count as outside.
        types (`list[str]`, *optional*): exactly these types instead of sampling ``n_way``.
        k_shot (`int`, defaults to 5): K.
        n_episodes (`int`, defaults to 1), seed (`int`, defaults to 0): how many episodes, from which seed.
        query_size (`int`, *optional*): a fixed random subset of the query split per episode (default: all of it).
        query_k_shot (`int`, *optional*): sample the queries like a support set instead (Few-NERD's query sets).
        source_config, target_config (`str`, *optional*): subsets (genre, domain, fold).
        support_split, query_split (`str`): the splits to draw from (``"train"`` and ``"test"``).
        data_dir (`str` or `os.PathLike`, *optional*): the folder of the registered datasets.
        source_format, target_format (`str`, *optional*): the format of a file or folder of your own
            (`"conll"`, `"jsonl"`, `"conllu"`, `"disk"`, `"hub"`) when detection should not decide.

    Returns:
        `list[Episode]`: each with ``support`` and ``query`` sentences and their types; ``save_episodes`` writes
        them to JSONL for other tools.

    Raises:
        `ner_adapters.errors.EpisodeSamplingError`: the data cannot give every type K to 2K mentions.
        `ner_adapters.errors.UnknownDatasetError`, `FileNotFoundError`: as :func:`load_ner_dataset`.

    Example:

    ```python
    >>> from ner_adapters.episodes import sample_episodes
    >>> episodes = sample_episodes("wnut17", k_shot=5, n_episodes=5, seed=0, query_size=500)   # INTRA
    >>> inter = sample_episodes("conll2003", target="wnut17", k_shot=5)                        # INTER
    ```
    """
    from .data.registry import load_sentences, resolve_spec

    source, target = os.fspath(source), (os.fspath(target) if target is not None else None)
    protocol: Protocol = "intra" if target in (None, source) and target_config in (None, source_config) else "inter"
    target_name = target or source
    target_cfg = target_config if target is not None else source_config
    source_options = {"format": source_format} if source_format else {}
    target_options = {"format": target_format} if target_format else ({} if target is not None else source_options)
    support_pool = load_sentences(source, source_config, split=support_split, data_dir=data_dir, **source_options)
    query_pool = load_sentences(target_name, target_cfg, split=query_split, data_dir=data_dir, **target_options)
    support_types = resolve_spec(source, source_config, **source_options).types
    query_types = resolve_spec(target_name, target_cfg, **target_options).types
    source_label = source + (f"/{source_config}" if source_config else "")
    target_label = target_name + (f"/{target_cfg}" if target_cfg else "")
    episodes = []
    for i in range(n_episodes):
        episodes.append(
            sample_episode(
                support_pool, query_pool,
                support_types=support_types, query_types=query_types,
                n_way=n_way, types=types, k_shot=k_shot, seed=seed + i, query_size=query_size, query_k_shot=query_k_shot,
                protocol=protocol, support_dataset=source_label, query_dataset=target_label,
            )
        )
    return episodes


def save_episodes(episodes: Iterable[Episode], path: str | os.PathLike) -> Path:
    """Write episodes as JSONL atomically (a temp file renamed over the target)."""
    return atomic_write_text(path, "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in episodes))


def load_episodes(path: str | os.PathLike) -> list[Episode]:
    """Read a JSONL episode file; a bad line raises an error naming the file and line."""
    path = Path(path)
    episodes = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                episodes.append(Episode.from_json(json.loads(line)))
            except json.JSONDecodeError as err:
                raise DataFormatError(f"invalid JSON ({err.msg})", path, number) from None
            except (KeyError, TypeError, ValueError) as err:
                raise DataFormatError(f"not an episode ({type(err).__name__}: {err})", path, number) from None
    if not episodes:
        raise DataFormatError("no episodes in file", path)
    return episodes
