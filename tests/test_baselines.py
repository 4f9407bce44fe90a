"""The nearest-prototype / nearest-neighbour baselines on the packaged MiniLM encoder."""

import pytest

from ner_adapters.baselines import PrototypeTagger
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

SUPPORT = [
    Sentence("Alice Smith visited Paris".split(), [Span(0, 2, "person"), Span(3, 4, "location")], id="a"),
    Sentence("Bob Jones flew to Berlin".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="b"),
]
QUERY = [Sentence("Carol White moved to Madrid".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="q")]


@pytest.mark.integration
@pytest.mark.parametrize("method", ["proto", "nnshot"])
def test_prototype_baselines_tag_spans(method):
    tagger = PrototypeTagger(method=method).fit(SUPPORT, ["person", "location"])
    (predicted,) = tagger.predict(QUERY)
    assert all(0 <= s.start < s.end <= 5 and s.type in ("person", "location") for s in predicted)
    assert Span(4, 5, "location") in predicted  # an easy case even for a frozen sentence encoder
    labels = {int(i) for i in tagger.support_labels}
    assert labels == {0, 1, 2}  # O, person, location


def test_invalid_method_and_unfitted():
    with pytest.raises(ValueError, match="method must be"):
        PrototypeTagger(method="knn")
