"""Edge-case inputs through the public prediction paths: CLLMFS extraction (tiny Llama + a fresh LoRA, constrained
decoding) and Multi-BERT (``MultiBertModel.predict`` and ``DomainRouter.tag`` on a tiny BERT).

Every case must give entities whose offsets are exact (``text[start:end] == word``) or a clear error, never a
crash or a silently truncated answer. Untrained models answer at random, which would make "the offsets are
right" vacuous, so the answers are also *scripted*: on the CLLMFS side a logits processor pushes the model
towards a chosen answer (the constrained decoder still has to accept it), on the Multi-BERT side a head is set to
tag every word, so the expected entities are known exactly.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from multibert_tiny import TYPES as TOY_TYPES
from multibert_tiny import one_torch_thread, randomize
from scripted_answers import ScriptedAnswers, scripted_occurrences
from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig, EntityType, PromptFormat
from ner_adapters.data.readers import tokenize_with_offsets

PERSIAN = "می\u200cخواهم با علی\u200cرضا در تهران دیدار کنم."  # RTL, with zero-width non-joiners inside words
MIXED = "Ali (علی) met 山田太郎 in Москва and Zürich 🙂 then paris."
EMOJI = "I ❤️ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢, 👩\u200d👩\u200d👧 and 😀 in Zürich 🏳️\u200d🌈!"
LONG_SENTENCE = "Ali met Sara in Paris and then flew to Tehran with Omid . "


def _long_document() -> str:
    """50,000 characters of sentences, with "Shiraz" near the start, the middle and the very end."""
    filler = "the cat sat on the mat and looked at the rain for a while . "
    text = (filler * (50_000 // len(filler) + 1))[:50_000]
    for position in (500, 25_000, 49_950):
        cut = text.index(" ", position) + 1
        text = text[:cut] + "Shiraz " + text[cut:]
    tail = " Shiraz ."
    text = text[: text.rindex(" ", 0, 50_000 - len(tail))]
    return text + " " * (50_000 - len(tail) - len(text)) + tail


LONG_DOC = _long_document()
EDGE_TEXTS = {
    "empty": "",
    "whitespace": " \t\n  \u3000 ",
    "one_char": "x",
    "one_astral": "😀",
    "emoji": EMOJI,
    "persian_zwnj": PERSIAN,
    "mixed_scripts": MIXED,
    "repeated": "Paris , Paris and Paris again ; not Parisian but Paris .",
}


def assert_exact(text, entities):
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["word"], entity
        assert 0 <= entity["start"] < entity["end"] <= len(text)


# ==============================================================================================================
# CLLMFS
# ==============================================================================================================


@pytest.fixture(scope="module")
def tokenizer(tiny_llm_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llm_dir)


@pytest.fixture(scope="module")
def extractor(tiny_llm_dir, tokenizer):
    """The tiny Llama with a fresh LoRA (its B matrices randomised so the adapter changes the outputs)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    types = [EntityType("person", "Person", "a named person"), EntityType("location", "Location", "a named place")]
    return CLLMFSExtractor(model, tokenizer, types, decoding=DecodingConfig(max_new_tokens=40, batch_size=16))


@pytest.fixture
def scripted(extractor, monkeypatch):
    """``scripted({"Location": ["Paris"]})``: the extractor's answers are steered to those strings."""

    def install(script):
        monkeypatch.setattr(extractor, "make_logits_processors", lambda: [ScriptedAnswers(extractor.tokenizer, script)])

    return install


expected_occurrences = scripted_occurrences


def triples(entities):
    return {(e["entity_group"], e["start"], e["end"]) for e in entities}


@pytest.mark.parametrize("case", sorted(EDGE_TEXTS))
def test_cllmfs_free_answers_have_exact_offsets(extractor, case):
    """The model answers on its own (random LoRA): whatever it lists is an exact substring."""
    text = EDGE_TEXTS[case]
    result = extractor(text)
    assert isinstance(result, list)
    assert_exact(text, result)
    if not text.strip():
        assert result == []
    for entity in result:
        assert entity["entity_group"] in ("person", "location") and 0.0 <= entity["score"] <= 1.0


SCRIPTS = {
    "one_char": {"Person": ["x"]},
    "one_astral": {"Location": ["😀"]},
    "emoji": {"Location": ["Zürich", "😀"], "Person": ["𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]},
    "persian_zwnj": {"Person": ["علی\u200cرضا"], "Location": ["تهران"]},
    "mixed_scripts": {"Person": ["Ali", "علی", "山田太郎"], "Location": ["Москва", "Zürich", "paris"]},
    "repeated": {"Location": ["Paris"]},
}


@pytest.mark.parametrize("case", sorted(SCRIPTS))
def test_cllmfs_scripted_answers_map_to_the_right_offsets(extractor, scripted, case):
    """Astral characters, ZWNJ inside words, RTL and mixed scripts, a repeated entity: the listed strings come
    back at exactly the occurrences they name (a repeat maps to successive occurrences, never twice to one)."""
    text, script = EDGE_TEXTS[case], SCRIPTS[case]
    scripted(script)
    result = extractor(text)
    assert_exact(text, result)
    expected = expected_occurrences(text, script, extractor.entity_types)
    assert expected  # the script names strings that are in the text
    assert triples(result) == expected
    if case == "repeated":
        assert [e["start"] for e in result] == [0, 8, 18, 49]  # four distinct "Paris", not "Parisian"


def test_cllmfs_50k_character_document_is_chunked_not_truncated(extractor, scripted):
    """A 50,000-character document: split into chunks, every scripted entity found (the one in the last
    characters included) at its document offset, each exactly once although chunks overlap."""
    assert len(LONG_DOC) == 50_000
    extractor.decoding = DecodingConfig(max_new_tokens=24, batch_size=32, max_input_tokens=512)
    try:
        scripted({"Location": ["Shiraz"]})
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing was cut: no truncation warning either
            result = extractor(LONG_DOC)
        jobs = extractor._jobs([LONG_DOC], extractor.entity_types[:1], None)
    finally:
        extractor.decoding = DecodingConfig(max_new_tokens=40, batch_size=16)
    assert len(jobs) > 20  # really chunked
    covered = set()
    for job in jobs:
        assert LONG_DOC[job.chunk_offset : job.chunk_offset + len(job.chunk)] == job.chunk
        covered.update(range(job.chunk_offset, job.chunk_offset + len(job.chunk)))
    assert covered >= {i for i, c in enumerate(LONG_DOC) if not c.isspace()}  # every character in some chunk
    assert_exact(LONG_DOC, result)
    expected = expected_occurrences(LONG_DOC, {"Location": ["Shiraz"]}, extractor.entity_types)
    assert len(expected) == 4 and max(end for _, _, end in expected) == 49_998
    assert triples(result) == expected


def test_cllmfs_answer_cut_by_max_new_tokens_is_continued(extractor, scripted):
    """More entities than ``max_new_tokens`` can spell: the rest of the chunk is asked again after the last
    entity listed, so all 30 come back; an answer cut before its first entity cannot go on and warns."""
    text = " ".join(["Paris"] * 30) + " and Rome"
    extractor.decoding = DecodingConfig(max_new_tokens=12)
    try:
        scripted({"Location": ["Paris", "Rome"]})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = extractor(text)
        assert triples(result) == expected_occurrences(text, {"Location": ["Paris", "Rome"]}, extractor.entity_types)
        assert len(result) == 31
        extractor.decoding = DecodingConfig(max_new_tokens=2)
        with pytest.warns(UserWarning, match=r"1 answer\(s\) reached max_new_tokens=2 before their end"):
            result = extractor(text)
        assert result == []
    finally:
        extractor.decoding = DecodingConfig(max_new_tokens=40, batch_size=16)


def test_cllmfs_all_types_answer_cut_by_max_new_tokens_is_continued(extractor, scripted):
    """All types in one answer, cut inside its first slot: that type is asked again after its last entity, the
    types whose slots never started are asked together, and every entity comes back; cut before its first slot,
    it warns."""
    text = " ".join(["Paris"] * 12) + " met Ali and Sara"
    script = {"Location": ["Paris"], "Person": ["Ali", "Sara"]}
    extractor.format = PromptFormat(extractor.tokenizer, mode="all_types")
    types = [EntityType("location", "Location", "a named place"), EntityType("person", "Person", "a named person")]
    try:
        scripted(script)
        extractor.decoding = DecodingConfig(max_new_tokens=14)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            result = extractor(text, entity_types=types)
        assert triples(result) == expected_occurrences(text, script, types)
        assert len(result) == 14
        extractor.decoding = DecodingConfig(max_new_tokens=1)
        with pytest.warns(UserWarning, match=r"1 answer\(s\) reached max_new_tokens=1 before their end"):
            assert extractor(text, entity_types=types) == []
    finally:
        extractor.format = PromptFormat(extractor.tokenizer, mode="per_type")
        extractor.decoding = DecodingConfig(max_new_tokens=40, batch_size=16)


def test_cllmfs_200_entity_types(extractor, scripted):
    """200 types, one prompt each: every type is asked, the answers land on their own type."""
    types = [EntityType(f"type_{i}", f"Kind{i:03d}", f"entity kind number {i}") for i in range(200)]
    text = "Ali met Sara in Paris"
    scripted({"Kind007": ["Ali"], "Kind150": ["Paris"], "Kind199": ["Sara"]})
    before = extractor.stats["prompts"]
    result = extractor(text, entity_types=types)
    assert extractor.stats["prompts"] - before == 200
    assert_exact(text, result)
    assert triples(result) == {("type_7", 0, 3), ("type_150", 16, 21), ("type_199", 8, 12)}
    with pytest.raises(ValueError, match="duplicate entity types"):
        extractor(text, entity_types=["a"] * 200)


def test_cllmfs_rejects_non_strings_clearly(extractor):
    with pytest.raises(TypeError, match="input 1 is a NoneType"):
        extractor(["fine", None])
    with pytest.raises(ValueError, match="at least one entity type"):
        extractor("text", entity_types=[])


# ==============================================================================================================
# Multi-BERT
# ==============================================================================================================


@pytest.fixture(scope="module")
def _one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def mbert(core, _one_thread):
    from ner_adapters.multibert import MultiBertModel

    model = MultiBertModel.from_core(str(core), max_length=32)
    model.add_scheme("toy", TOY_TYPES)
    model.add_scheme("many", [f"T{i}" for i in range(200)])
    model.add_domain("news", "toy")
    model.add_domain("sports", "toy")
    model.add_domain("wide", "many")
    model.add_general("toy")
    model.add_router(["news", "sports"], max_length=64, threshold=0.0)
    randomize(model)
    return model


def tag_everything_as(mbert, scheme, label):
    """Set ``scheme``'s head to answer ``label`` for every sub-token (zero weights, a one-hot bias)."""
    head = mbert.model.heads["head_" + scheme]
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    index = mbert.schemes[scheme].index(label)
    with torch.no_grad():
        for layer in linears[:-1]:
            layer.weight.zero_()
            layer.bias.zero_()
        linears[-1].weight.zero_()
        linears[-1].bias.fill_(-10.0)
        linears[-1].bias[index] = 10.0


@pytest.fixture
def every_word_b_per(mbert):
    saved = {k: v.clone() for k, v in mbert.model.heads["head_toy"].state_dict().items()}
    tag_everything_as(mbert, "toy", "B-PER")
    yield
    mbert.model.heads["head_toy"].load_state_dict(saved)


def kept_words(mbert, text):
    """The words of ``text`` the tokenizer keeps (a lone ZWNJ or a control character yields no sub-token)."""
    words, offsets = tokenize_with_offsets(text)
    kept = []
    for word, span in zip(words, offsets):
        if mbert.tokenizer(word, add_special_tokens=False)["input_ids"]:
            kept.append((word, span))
    return kept


@pytest.mark.parametrize("case", sorted(EDGE_TEXTS))
def test_multibert_predict_random_head_exact_offsets(mbert, case):
    text = EDGE_TEXTS[case]
    (entities,) = mbert.predict([text], "news")
    assert_exact(text, [e.as_dict() for e in entities])
    if not text.strip():
        assert entities == []


@pytest.mark.parametrize("case", sorted(EDGE_TEXTS))
def test_multibert_every_word_tagged_with_exact_offsets(mbert, every_word_b_per, case):
    """With a head that tags every word B-PER, each kept word is exactly one entity at its own offsets."""
    text = EDGE_TEXTS[case]
    (entities,) = mbert.predict([text], "news")
    assert_exact(text, [e.as_dict() for e in entities])
    assert [(e.word, (e.start, e.end)) for e in entities] == kept_words(mbert, text)
    assert all(e.entity_group == "PER" for e in entities)


def test_multibert_sentence_longer_than_max_length_is_tagged_to_the_end(mbert, every_word_b_per):
    """A single 50,000-character "sentence" is 10,000+ sub-tokens against max_length=32: it is tagged window by
    window, so the last word is tagged too, with no truncation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (entities,) = mbert.predict([LONG_DOC], "news")
    expected = kept_words(mbert, LONG_DOC)
    assert len(expected) > 9000
    assert [(e.word, (e.start, e.end)) for e in entities] == expected
    # token lists too: offsets into the space-joined tokens
    tokens = LONG_DOC.split()
    (entities,) = mbert.predict([tokens], "news")
    joined = " ".join(tokens)
    assert_exact(joined, [e.as_dict() for e in entities])
    assert len(entities) == len(tokens) and entities[-1].token_end == len(tokens)


def test_multibert_windows_label_words_as_the_window_alone_would(mbert):
    """Windowing is exact where a word has one window: the words only the first (last) window holds get the
    labels that window gets as a sentence of its own (random head, real context)."""
    from ner_adapters.multibert.tokenization import predict_word_labels, word_windows

    words = LONG_SENTENCE.split() * 40
    windows = word_windows(mbert.tokenizer, words, mbert.max_length)
    assert len(windows) > 10 and windows[0][0] == 0 and windows[-1][1] == len(words)
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b < d  # overlapping, always moving on
        assert len(mbert.tokenizer(words[a:b], is_split_into_words=True)["input_ids"]) <= mbert.max_length
    with torch.inference_mode():
        mbert.activate("news")
        (labels, _), first, last = predict_word_labels(
            mbert._forward, mbert.tokenizer,
            [words, words[: windows[0][1]], words[windows[-1][0] :]], mbert.max_length)
    only_first, only_last = windows[1][0], windows[-2][1]
    assert labels[:only_first] == first[0][:only_first]
    assert labels[only_last:] == last[0][only_last - windows[-1][0] :]
    assert len(set(labels)) > 1  # the random head gives a mix of labels: the comparison means something


def test_multibert_200_type_scheme(mbert):
    saved = {k: v.clone() for k, v in mbert.model.heads["head_many"].state_dict().items()}
    try:
        tag_everything_as(mbert, "many", "B-T199")
        (entities,) = mbert.predict(["Ali met Sara in Paris"], "wide")
    finally:
        mbert.model.heads["head_many"].load_state_dict(saved)
    assert [e.entity_group for e in entities] == ["T199"] * 5
    assert_exact("Ali met Sara in Paris", [e.as_dict() for e in entities])
    assert len(mbert.schemes["many"]) == 401


def test_router_tag_edge_documents(mbert, every_word_b_per):
    """``DomainRouter.tag`` on every edge case and on the 50,000-character document: sentence ranges and entity
    offsets index the document string itself."""
    from ner_adapters.multibert import DomainRouter

    router = DomainRouter(mbert)
    for text in [*EDGE_TEXTS.values(), LONG_DOC]:
        routed = router.tag(text)
        assert routed.decision.domain in ("news", "sports")
        for sentence in routed.sentences:
            assert text[sentence.start : sentence.end] == sentence.text
            assert_exact(text, [e.as_dict() for e in sentence.entities])
        found = [(e.word, (e.start, e.end)) for s in routed.sentences for e in s.entities]
        assert found == kept_words(mbert, text)
        if not text.strip():
            assert routed.sentences == []
    many = router.tag_many([LONG_DOC, PERSIAN, ""])
    assert [len(r.sentences) for r in many][1:] == [1, 0]


def test_multibert_bad_inputs_raise_clearly(mbert):
    from ner_adapters.multibert import DomainRouter, MultiBertError

    with pytest.raises(TypeError, match="not a single sentence"):
        mbert.predict("a string", "news")
    with pytest.raises(TypeError, match="list of string tokens"):
        mbert.predict([["ok", 3]], "news")
    with pytest.raises(MultiBertError, match="unknown domain 'nope'"):
        mbert.predict(["x"], "nope")
    with pytest.raises(TypeError, match="list of documents"):
        DomainRouter(mbert).tag_many("a string")


# ==============================================================================================================
# The same cases through the public entry point, ner_adapters.pipeline
# ==============================================================================================================


@pytest.fixture
def tag_all_pipeline(mbert, core, every_word_b_per, tmp_path):
    """``ner_adapters.pipeline`` over the saved set whose toy head tags every word B-PER."""
    from ner_adapters import pipeline

    saved = mbert.save(tmp_path / "set")
    return pipeline("token-classification", model=str(core), adapter=str(saved))


def test_pipeline_multibert_edge_cases(mbert, tag_all_pipeline):
    for text, domain in [*((t, d) for t in EDGE_TEXTS.values() for d in ("news", "auto")), (LONG_DOC, "news")]:
        entities = tag_all_pipeline(text, domain=domain)
        assert_exact(text, entities)
        assert [(e["word"], (e["start"], e["end"])) for e in entities] == kept_words(mbert, text), domain
    (single,) = tag_all_pipeline(["x"], domain="news")
    assert single == [] or single[0]["word"] == "x"
    with pytest.raises(TypeError, match="takes a string"):
        tag_all_pipeline(3)


def test_pipeline_multibert_200_types(mbert, core, tmp_path):
    from ner_adapters import pipeline

    saved = {k: v.clone() for k, v in mbert.model.heads["head_many"].state_dict().items()}
    try:
        tag_everything_as(mbert, "many", "B-T137")
        folder = mbert.save(tmp_path / "set")
    finally:
        mbert.model.heads["head_many"].load_state_dict(saved)
    pipe = pipeline("token-classification", model=str(core), adapter=str(folder))
    entities = pipe(MIXED, domain="wide")
    assert_exact(MIXED, entities)
    assert entities and {e["entity_group"] for e in entities} == {"T137"}


@pytest.fixture(scope="module")
def cllmfs_pipeline(extractor, tiny_llm_dir, tmp_path_factory):
    """``ner_adapters.pipeline`` over the edge-case extractor's LoRA, saved as a CLLMFS adapter."""
    import dataclasses

    from ner_adapters import pipeline
    from ner_adapters.cllmfs import CLLMFSAdapterConfig, save_adapter
    from ner_adapters.cllmfs.artifact import architecture_fingerprint

    config = CLLMFSAdapterConfig(
        base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(extractor.model.get_base_model().config),
        entity_types=[dataclasses.asdict(t) for t in extractor.entity_types])
    folder = save_adapter(extractor.model, extractor.tokenizer, tmp_path_factory.mktemp("cllmfs") / "adapter", config)
    return pipeline("token-classification", model=str(tiny_llm_dir), adapter=str(folder),
                    decoding=DecodingConfig(max_new_tokens=40, batch_size=16, max_input_tokens=512))


def test_pipeline_cllmfs_edge_cases(cllmfs_pipeline, monkeypatch):
    script = {"Location": ["Zürich", "😀", "تهران", "Москва", "paris", "Paris", "Shiraz"],
              "Person": ["علی\u200cرضا", "山田太郎", "x"]}
    monkeypatch.setattr(cllmfs_pipeline.extractor, "make_logits_processors",
                        lambda: [ScriptedAnswers(cllmfs_pipeline.tokenizer, script)])
    types = cllmfs_pipeline.extractor.entity_types
    for name, text in [*EDGE_TEXTS.items(), ("long", LONG_DOC)]:
        entities = cllmfs_pipeline(text)
        assert_exact(text, entities)
        assert triples(entities) == expected_occurrences(text, script, types), name
    many = [EntityType(f"type_{i}", f"Kind{i:03d}", f"entity kind number {i}") for i in range(200)]
    script.clear()
    script.update({"Type 42": ["Sara"], "Type 199": ["Paris"]})  # a {label: description} mapping names "type_42" so
    entities = cllmfs_pipeline("Ali met Sara in Paris", entity_types={t.label: t.description for t in many})
    assert triples(entities) == {("type_42", 8, 12), ("type_199", 16, 21)}
