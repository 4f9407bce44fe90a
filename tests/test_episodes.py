"""Few-shot episodes: Few-NERD's K..2K constraint, reproducibility, no leakage, JSONL, INTRA and INTER."""

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ner_adapters.data import DataFormatError, Sentence
from ner_adapters.episodes import (
    Episode,
    EpisodeSamplingError,
    greedy_kshot_sample,
    load_episodes,
    sample_episode,
    sample_episodes,
    save_episodes,
)
from ner_adapters.spans import Span


def counts(sentences, types):
    c = Counter(span.type for s in sentences for span in s.spans)
    return {t: c[t] for t in types}


def test_wnut_intra_episode_respects_k_to_2k(data_dir):
    (episode,) = sample_episodes("wnut17", k_shot=5, seed=3, query_size=100, data_dir=data_dir)
    assert episode.protocol == "intra" and episode.n_way == 6
    for entity_type, n in episode.type_counts().items():
        assert 5 <= n <= 10, entity_type
    assert len(episode.query) == 100
    assert not {s.id for s in episode.support} & {s.id for s in episode.query}


def test_n_way_subset_relabels_other_types(shared_data):
    (episode,) = sample_episodes("conll2003", n_way=2, k_shot=1, seed=0, query_size=50, data_dir=shared_data)
    assert len(episode.support_types) == 2
    seen = {span.type for s in episode.support + episode.query for span in s.spans}
    assert seen <= set(episode.support_types)


def test_reproducible_and_seed_dependent(data_dir):
    a = sample_episodes("wnut17", k_shot=5, seed=11, n_episodes=2, query_size=20, data_dir=data_dir)
    b = sample_episodes("wnut17", k_shot=5, seed=11, n_episodes=2, query_size=20, data_dir=data_dir)
    assert [e.to_json() for e in a] == [e.to_json() for e in b]
    assert [s.id for s in a[0].support] != [s.id for s in a[1].support]


def test_inter_episode_uses_target_label_set(shared_data):
    (episode,) = sample_episodes("conll2003", target="wnut17", k_shot=5, seed=0, query_size=80, data_dir=shared_data)
    assert episode.protocol == "inter"
    assert episode.support_types == ["person", "location", "organisation", "misc"]
    assert episode.query_types == ["person", "location", "group", "corporation", "product", "creative-work"]
    assert {span.type for s in episode.query for span in s.spans} <= set(episode.query_types)


def test_jsonl_round_trip_and_errors(tmp_path, data_dir):
    episodes = sample_episodes("wnut17", k_shot=2, n_episodes=2, query_size=5, data_dir=data_dir)
    path = save_episodes(episodes, tmp_path / "sub" / "episodes.jsonl")
    assert [e.to_json() for e in load_episodes(path)] == [e.to_json() for e in episodes]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: invalid JSON"):
        load_episodes(bad)
    bad.write_text('{"id": "x"}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: not an episode"):
        load_episodes(bad)


def test_impossible_sampling_is_explained():
    sentences = [Sentence(["a", "b"], [Span(0, 1, "A")], id="1"), Sentence(["c"], [Span(0, 1, "B")], id="2")]
    with pytest.raises(EpisodeSamplingError, match=r"5-shot support for types \{'A': 1, 'B': 1\}"):
        greedy_kshot_sample(sentences, ["A", "B"], 5, random.Random(0))
    with pytest.raises(ValueError, match="n_way=3 but the dataset has only 2 types"):
        sample_episode(sentences, sentences, support_types=["A", "B"], n_way=3, k_shot=1)


# --- properties -------------------------------------------------------------------------------


@st.composite
def pools(draw):
    n = draw(st.integers(5, 40))
    sentences = []
    for i in range(n):
        length = draw(st.integers(1, 8))
        spans, position = [], 0
        while position < length:
            position += draw(st.integers(0, 2))
            if position >= length:
                break
            spans.append(Span(position, position + 1, draw(st.sampled_from("ABC"))))
            position += 1
        sentences.append(Sentence(["w"] * length, spans, id=f"s{i}"))
    return sentences


@settings(max_examples=200, deadline=None)
@given(pools(), st.integers(1, 3), st.integers(0, 10_000))
def test_sampling_never_violates_k_to_2k_nor_leaks(pool, k, seed):
    types = ["A", "B"]
    try:
        episode = sample_episode(pool, pool, support_types=types, k_shot=k, seed=seed, query_size=5)
    except EpisodeSamplingError:
        return  # the pool cannot give K of each: the sampler must say so rather than bend the rule
    for n in counts(episode.support, types).values():
        assert k <= n <= 2 * k
    assert not {s.id for s in episode.support} & {s.id for s in episode.query}
    assert all(span.type in types for s in episode.support + episode.query for span in s.spans)
    assert isinstance(Episode.from_json(episode.to_json()), Episode)
