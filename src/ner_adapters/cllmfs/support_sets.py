"""Training data as the CLLMFS paper uses it: several support sets per episode, and INTER from several sources.

INTRA in the paper samples "multiple support sets ... from the original training set to train our model"; INTER
trains on a source dataset split into N-way K-shot sets and tests on another dataset's test set with its own
types. A plain episode holds one K-shot support set (about 30 sentences for 6 types and K=5), so
:func:`with_support_sets` adds more to it:

- ``n_support_sets`` sets per source, each sampled with Few-NERD's greedy algorithm (every type K to 2K times)
  and a seed of its own, disjoint from the sets before it while the data has enough sentences (then a set may
  reuse sentences, with a warning); set 0 of the first source is the episode's own support set, so one set is
  the plain episode unchanged.
- several source datasets (INTER): each source gives its own sets with its own types; the episode's support
  is all of them, and its ``support_types`` the union of their labels.

Everything stays inside the :class:`~ner_adapters.episodes.Episode` (so ``episodes.jsonl`` still holds exactly
what every method saw): the support list is the sets one after the other, and with several sources each support
sentence id is prefixed ``"<source>:"`` (the source as in ``support_dataset``, ``"gum/news"`` for a subset) and
``support_dataset`` joins the sources with ``"+"``. :func:`support_parts` reads that back: the SFT data of a
sentence asks only for its own source's types (another source's types are not annotated in it, so asking
for them would teach "none" for entities that are there).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

from ..data.schema import Sentence
from ..episodes import Episode, EpisodeSamplingError, greedy_kshot_sample

logger = logging.getLogger(__name__)

SOURCE_SEPARATOR = ":"
SOURCES_JOIN = "+"


def parse_source(spec: str) -> tuple[str, str | None]:
    """``"gum"`` -> ``("gum", None)``; ``"gum/news"`` -> ``("gum", "news")`` (a dataset and its subset); an
    existing file or folder is a dataset of its own, whatever its slashes."""
    if Path(spec).exists():
        return spec, None
    name, _, config = spec.partition("/")
    if not name:
        raise ValueError(f"source_datasets: {spec!r} is not a dataset name")
    return name, config or None


def _label(name: str, config: str | None) -> str:
    return name + (f"/{config}" if config else "")


def sample_support_sets(
    pool: Sequence[Sentence], types: Sequence[str], k_shot: int, n_sets: int, seed: str,
    first: Sequence[Sentence] | None = None,
) -> list[list[Sentence]]:
    """``n_sets`` K-shot support sets of ``types`` from ``pool``, disjoint while the pool allows.

    ``first``, when given, is set 0 (the episode's own); set ``i`` is sampled with ``random.Random(f"{seed}|{i}")``.
    """
    if n_sets < 1:
        raise ValueError(f"n_support_sets must be >= 1, got {n_sets}")
    sets: list[list[Sentence]] = [list(first)] if first is not None else []
    used = {s.id for s in sets[0]} if sets else set()
    for index in range(len(sets), n_sets):
        chosen = _sample(pool, types, k_shot, f"{seed}|{index}", used)
        if chosen is None:
            logger.warning("support set %d of %s: too few unused sentences for disjoint %d-shot sets; this set may "
                           "repeat sentences of the earlier ones", index, seed, k_shot)
            chosen = _sample(pool, types, k_shot, f"{seed}|{index}|reuse", set())
        if chosen is None:
            raise EpisodeSamplingError(f"support set {index} of {seed}: {_ATTEMPTS} tries could not give every type of "
                                       f"{list(types)} {k_shot} to {2 * k_shot} mentions; use a smaller K or n_way")
        used.update(s.id for s in chosen)
        sets.append(chosen)
    return sets


_ATTEMPTS = 64


def _sample(pool, types, k_shot, seed: str, used: set) -> list[Sentence] | None:
    """Few-NERD's greedy sampling, retried with other seeds: with many types the 2K cap can strand one type below K
    on an unlucky order (Few-NERD retries too). ``None`` when every try fails."""
    for attempt in range(_ATTEMPTS):
        try:
            return greedy_kshot_sample(pool, types, k_shot, random.Random(f"{seed}|{attempt}" if attempt else seed),
                                       exclude_ids=used)
        except EpisodeSamplingError:
            continue
    return None


def with_support_sets(
    episode: Episode,
    *,
    n_support_sets: int = 1,
    sources: Sequence[str] | None = None,
    n_way: int | None = None,
    load_pool: Callable[[str, str | None], Sequence[Sentence]],
    source_types: Callable[[str], Sequence[str]],
) -> Episode:
    """The episode with ``n_support_sets`` support sets per source (see the module docstring).

    ``sources`` lists every source dataset (``"name"`` or ``"name/subset"``); the first must be the episode's
    own ``support_dataset``, whose types stay the episode's. Other sources use all their types, or ``n_way`` of
    them sampled with the episode's seed. ``load_pool(name, config)`` gives a source's training sentences and
    ``source_types(name)`` its label set. One set of one source returns the episode itself.
    """
    sources = list(sources or [episode.support_dataset])
    if sources[0] != episode.support_dataset:
        raise ValueError(f"source_datasets[0] must be the episode's source {episode.support_dataset!r}, got {sources[0]!r}")
    if len(set(sources)) != len(sources):
        raise ValueError(f"source_datasets lists a dataset twice: {sources}")
    if n_support_sets == 1 and len(sources) == 1:
        return episode
    parts: list[tuple[str, list[Sentence]]] = []
    labels: list[str] = []
    for position, source in enumerate(sources):
        name, config = parse_source(source)
        seed = f"{source}|support-sets|seed{episode.seed}"
        sentences = load_pool(name, config)
        if position == 0:
            types = list(episode.support_types)
        else:  # all its types that K-shot sets can be sampled for (a type with fewer than K mentions cannot)
            mentions = Counter(span.type for sentence in sentences for span in sentence.spans)
            available = [t for t in source_types(name) if mentions[t] >= episode.k_shot]
            rare = [t for t in source_types(name) if mentions[t] < episode.k_shot]
            if rare:
                logger.warning("source %s: types %s have fewer than %d mentions in its training split and are left "
                               "out", source, rare, episode.k_shot)
            if not available:
                raise ValueError(f"source {source!r} has no type with {episode.k_shot} mentions to sample from")
            types = available
            if n_way is not None and n_way < len(available):
                types = sorted(random.Random(seed).sample(available, n_way), key=available.index)
        sets = sample_support_sets(sentences, types, episode.k_shot, n_support_sets, seed,
                                   first=episode.support if position == 0 else None)
        parts.append((_label(name, config), [s for support in sets for s in support]))
        labels += [t for t in types if t not in labels]
    several = len(sources) > 1
    support = [
        dataclasses.replace(s, id=f"{source}{SOURCE_SEPARATOR}{s.id}") if several else s
        for source, sentences in parts for s in sentences
    ]
    support_dataset = SOURCES_JOIN.join(sources)
    suffix = f"-{n_support_sets}sets" if n_support_sets > 1 else ""
    episode_id = (f"{support_dataset}-{episode.protocol}-{len(labels)}way{episode.k_shot}shot-seed{episode.seed}"
                  if several else episode.id) + suffix
    return dataclasses.replace(episode, id=episode_id, support_dataset=support_dataset, support_types=labels,
                               n_way=len(labels), support=support)


def support_parts(episode: Episode) -> list[tuple[str, list[Sentence], list[str]]]:
    """``(source, sentences, type labels)`` per source of an episode's support (one part for one source).

    A part's types are the episode's support types that its own sentences hold (greedy sampling gives each
    sampled type K to 2K mentions, so these are exactly the types sampled for that source).
    """
    sources = episode.support_dataset.split(SOURCES_JOIN)
    if len(sources) == 1:
        return [(episode.support_dataset, list(episode.support), list(episode.support_types))]
    grouped: dict[str, list[Sentence]] = {source: [] for source in sources}
    for sentence in episode.support:
        source = sentence.id.partition(SOURCE_SEPARATOR)[0]
        if source not in grouped:
            raise ValueError(f"episode {episode.id}: support sentence {sentence.id!r} names none of the sources "
                             f"{sources} (expected '<source>{SOURCE_SEPARATOR}<id>')")
        grouped[source].append(sentence)
    parts = []
    for source, sentences in grouped.items():
        held = {span.type for s in sentences for span in s.spans}
        parts.append((source, sentences, [t for t in episode.support_types if t in held]))
    return parts
