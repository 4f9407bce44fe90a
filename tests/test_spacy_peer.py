"""spaCy's small English pipeline as a peer baseline: on our tokens, with each dataset's documented type mapping."""

import pytest

from ner_adapters.baselines.spacy_peer import TYPE_MAPS, SpacyTagger
from ner_adapters.data.schema import Sentence
from ner_adapters.metrics import span_scores
from ner_adapters.spans import Span

pytest.importorskip("spacy")


@pytest.fixture(scope="module")
def wnut_tagger():
    try:
        return SpacyTagger("wnut17")
    except OSError as err:  # the model package is not installed
        pytest.skip(f"en_core_web_sm is not installed: {err}")


def _sentence(text: str, spans=()) -> Sentence:
    return Sentence(tokens=text.split(), spans=list(spans), id="s")


def test_entities_come_on_our_tokens_in_the_dataset_types(wnut_tagger):
    sentence = _sentence("Barack Obama met Angela Merkel in Berlin on Monday with Google engineers .")
    (spans,) = wnut_tagger.predict([sentence])
    found = {(" ".join(sentence.tokens[s.start:s.end]), s.type) for s in spans}
    assert ("Barack Obama", "person") in found and ("Berlin", "location") in found
    assert all(t in set(TYPE_MAPS["wnut17"].values()) for _, t in found)  # DATE (Monday) dropped, ORG mapped
    assert not any(w == "Monday" for w, _ in found)


def test_unknown_dataset_mapping_names_the_known_ones():
    with pytest.raises(KeyError, match="conll2003, wnut17"):
        SpacyTagger("gum")


def test_scores_with_the_shared_metric(wnut_tagger):
    gold = [_sentence("I flew to Paris last week", [Span(3, 4, "location")]),
            _sentence("Barack Obama spoke", [Span(0, 2, "person")])]
    predicted = wnut_tagger.predict(gold)
    scores = span_scores([s.spans for s in gold], predicted)
    assert (scores.micro.tp, scores.micro.gold) == (2, 2), predicted
