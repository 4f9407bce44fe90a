"""The nearest-prototype / nearest-neighbour baselines on the packaged MiniLM encoder."""

import pytest
import torch

from ner_adapters.baselines import PrototypeTagger
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

SUPPORT = [
    Sentence("Alice Smith visited Paris".split(), [Span(0, 2, "person"), Span(3, 4, "location")], id="a"),
    Sentence("Bob Jones flew to Berlin".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="b"),
]
QUERY = [Sentence("Carol White moved to Madrid".split(), [Span(0, 2, "person"), Span(4, 5, "location")], id="q")]


@pytest.mark.integration
def test_nnshot_reproduces_its_support_set():
    tagger = PrototypeTagger(method="nnshot").fit(SUPPORT, ["person", "location"])
    assert tagger.predict(SUPPORT) == [s.spans for s in SUPPORT]  # every word's nearest neighbour is itself
    (predicted,) = tagger.predict(QUERY)
    assert all(0 <= s.start < s.end <= 5 and s.type in ("person", "location") for s in predicted)


@pytest.mark.integration
def test_prototypes_are_class_means():
    tagger = PrototypeTagger(method="proto").fit(SUPPORT, ["person", "location"])
    words = torch.cat(tagger.embed(SUPPORT))
    labels = torch.tensor([1, 1, 0, 2, 1, 1, 0, 0, 2])  # O=0, person=1, location=2, word by word
    assert [int(i) for i in tagger.support_labels] == [0, 1, 2]
    for row, label in enumerate(tagger.support_labels):
        assert torch.allclose(tagger.support[row], words[labels == label].mean(0), atol=1e-5)


def test_invalid_method():
    with pytest.raises(ValueError, match="method must be"):
        PrototypeTagger(method="knn")
