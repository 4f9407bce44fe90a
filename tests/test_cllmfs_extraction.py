"""Constrained decoding and extraction: valid substrings only, exact offsets, chunking, adapters on disk."""

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from scripted_answers import ScriptedAnswers, scripted_occurrences
from ner_adapters.cllmfs import CLLMFSAdapterConfig, CLLMFSExtractor, DecodingConfig, EntityType, save_adapter
from ner_adapters.cllmfs.artifact import AdapterMismatchError, architecture_fingerprint
from ner_adapters.cllmfs.constrained import AnswerGrammar, allowed_tokens, token_bytes, vocabulary_trie
from ner_adapters.cllmfs.extraction import locate, word_boundaries
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

TYPES = [EntityType("person", "Person", "a named person"), EntityType("location", "Location", "a named place")]


@pytest.fixture(scope="module")
def tokenizer(tiny_llm_dir):
    return AutoTokenizer.from_pretrained(tiny_llm_dir)


@pytest.fixture(scope="module")
def extractor(tiny_llm_dir, tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    return CLLMFSExtractor(model, tokenizer, TYPES, decoding=DecodingConfig(max_new_tokens=24, batch_size=8))


@pytest.fixture
def scripted(extractor):
    """``scripted({"Location": ["Paris"]})``: the untrained model's answers are steered to those strings (the
    constraint still decides what comes out), so a check of the entities has entities to check."""

    def install(script):
        extractor.make_logits_processors = lambda: [ScriptedAnswers(extractor.tokenizer, script)]

    yield install
    extractor.make_logits_processors = None


def occurrences(text, script):
    """(label, start, end) of every word-aligned occurrence of each type's scripted strings."""
    return scripted_occurrences(text, script, TYPES)


def triples(entities):
    return {(e["entity_group"], e["start"], e["end"]) for e in entities}


def accepts(grammar, answer):
    states = grammar.advance_bytes(grammar.initial(), answer.encode("utf-8"))
    return grammar.accepts(states)


def test_grammar_only_accepts_ordered_word_aligned_substrings():
    text = "Paris is not Paris , Texas"
    grammar = AnswerGrammar.build("X are", [None], text, word_boundaries(text))
    assert accepts(grammar, "X are none")
    assert accepts(grammar, "X are <<< Paris >>> <<< Paris >>>")
    assert accepts(grammar, "X are <<< Paris , Texas >>>")
    assert not accepts(grammar, "X are <<< Paris >>> <<< Paris >>> <<< Paris >>>")  # only two occurrences
    assert not accepts(grammar, "X are <<< Texas >>> <<< Paris >>>")  # reading order
    assert not accepts(grammar, "X are <<< Par >>>")  # not a whole word
    assert not accepts(grammar, "X are <<< London >>>")
    slots = AnswerGrammar.build("X are", [" Person:", "; Location:"], text, word_boundaries(text))
    assert accepts(slots, "X are Person: none; Location: <<< Texas >>>")
    assert not accepts(slots, "X are Location: <<< Texas >>>")


def test_grammar_knows_when_only_the_stop_can_follow():
    text = "Paris is not Paris , Texas"
    grammar = AnswerGrammar.build("X are", [None], text, word_boundaries(text))

    def complete(answer):
        return grammar.complete(grammar.advance_bytes(grammar.initial(), answer.encode("utf-8")))

    assert complete("X are none")  # the decoder ends the row here, without a step to predict the stop
    assert not complete("X are")
    assert not complete("X are <<< Paris >>>")  # another entity may follow
    assert not complete("X are <<< Paris , Texas")  # accepted nowhere yet
    assert complete("X are <<< Paris , Texas >>>")  # the text is used up: nothing can follow


def test_token_bytes_spell_the_text(tokenizer):
    pieces = token_bytes(tokenizer)
    for text in ["Zaha Hadid (زها حديد) won 🏆 in Tōkyō", "می‌خواهم  tabs\tand\nlines"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(pieces[i] for i in ids).decode("utf-8") == text
    assert pieces[tokenizer.eos_token_id] is None


def test_allowed_tokens_are_exactly_the_valid_continuations(tokenizer):
    text = "Andrew Little met Jacinda Ardern"
    grammar = AnswerGrammar.build("", [None], text, word_boundaries(text))
    trie = vocabulary_trie(tokenizer)
    states = grammar.advance_bytes(grammar.initial(), b" <<< ")
    allowed = set(allowed_tokens(grammar, states, trie))
    assert tokenizer.convert_tokens_to_ids("And") in allowed or tokenizer.convert_tokens_to_ids("A") in allowed
    for token in allowed:  # every allowed token keeps the answer valid
        assert grammar.advance_bytes(states, trie.token_bytes[token])
    assert tokenizer.convert_tokens_to_ids("ĠLondon") not in allowed


def test_locate_maps_repeats_to_successive_occurrences():
    text = "Paris and Paris , then Parisian Paris"
    assert locate(text, word_boundaries(text), ["Paris", "Paris", "Paris"]) == [(0, 5), (10, 15), (32, 37)]
    assert locate(text, word_boundaries(text), ["Texas"]) == [None]


TEXTS = st.lists(st.sampled_from(["Paris", "Ali", "زها", "حديد", "می‌خواهم", "🏆", "Tōkyō", "New", "York", ",", "(",
                                  "e-mail", "U.S.", "x"]), min_size=1, max_size=12).map(" ".join)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(TEXTS)
def test_every_extracted_entity_is_an_exact_substring(extractor, text):
    for entity in extractor(text):  # free answers of the untrained model: whatever it lists
        assert text[entity["start"] : entity["end"]] == entity["word"]
        assert entity["entity_group"] in ("person", "location") and 0.0 <= entity["score"] <= 1.0
    script = {"Person": ["Ali", "حديد", "x"], "Location": ["Paris", "Tōkyō", "🏆", "New York", "U.S.", "می‌خواهم"]}
    extractor.make_logits_processors = lambda: [ScriptedAnswers(extractor.tokenizer, script)]
    try:
        entities = extractor(text)  # scripted: every occurrence comes out, with exact offsets
    finally:
        extractor.make_logits_processors = None
    assert triples(entities) == occurrences(text, script)
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["word"] and 0.0 < entity["score"] <= 1.0
    assert extractor.stats["unmatched"] == 0


def test_pipeline_shaped_output_and_edge_inputs(extractor, scripted):
    scripted({"Person": ["Ali", "Sara"], "Location": ["Rome"]})
    assert extractor("") == [] and extractor("   \n ") == []
    out = extractor(["Ali met Sara in Rome", "x"])
    assert isinstance(out, list) and len(out) == 2 and out[1] == []
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in out[0]] == [
        ("person", "Ali", 0, 3), ("person", "Sara", 8, 12), ("location", "Rome", 16, 20)]
    for entity in out[0]:
        assert set(entity) == {"entity_group", "score", "word", "start", "end"}
    with pytest.raises(TypeError, match="input 0 is a int"):
        extractor([3])


def test_prefix_cache_gives_the_same_entities(extractor, scripted):
    texts = ["Ali met Sara in Rome", "Tokyo and Paris", "Nothing here at all", "Bob"]
    scripted({"Person": ["Ali", "Bob"], "Location": ["Rome", "Tokyo", "Paris"]})
    extractor.decoding = DecodingConfig(max_new_tokens=24, prefix_cache=False)
    plain = extractor(texts)
    extractor.decoding = DecodingConfig(max_new_tokens=24, prefix_cache=True)
    cached = extractor(texts)
    strip = lambda rows: [[(e["entity_group"], e["start"], e["end"]) for e in row] for row in rows]  # noqa: E731
    assert strip(plain) == strip(cached) and sum(map(len, strip(plain))) == 5
    # The scores come from the model's own log-probabilities: the cached prefix must give the same ones.
    for row_plain, row_cached in zip(plain, cached):
        assert [e["score"] for e in row_plain] == pytest.approx([e["score"] for e in row_cached], rel=1e-4)


def test_long_inputs_are_chunked_not_truncated(extractor):
    extractor.decoding = DecodingConfig(max_new_tokens=16, max_input_tokens=24, chunk_overlap_words=2)
    text = " ".join(f"word{i}" for i in range(120))
    jobs = extractor._jobs([text], TYPES, None)
    chunks = {(job.chunk_offset, job.chunk) for job in jobs}
    assert len(chunks) > 3
    covered = set()
    for offset, chunk in chunks:
        assert text[offset : offset + len(chunk)] == chunk
        covered.update(range(offset, offset + len(chunk)))
    assert covered >= {i for i, c in enumerate(text) if c != " "}  # every character is in some chunk
    script = {"Location": ["word7", "word61", "word119"]}
    extractor.make_logits_processors = lambda: [ScriptedAnswers(extractor.tokenizer, script)]
    try:
        entities = extractor(text)
    finally:
        extractor.make_logits_processors = None
        extractor.decoding = DecodingConfig(max_new_tokens=24)
    assert triples(entities) == occurrences(text, script) and len(entities) == 3  # each once, though chunks overlap
    for entity in entities:
        assert text[entity["start"] : entity["end"]] == entity["word"]


def test_predict_sentences_aligns_to_dataset_tokens(extractor, scripted):
    sentences = [Sentence(["Ali", "met", "Sara", "in", "New", "York"], [Span(0, 1, "person")], id="a"),
                 Sentence(["Rome"], [], id="b")]
    scripted({"Person": ["Sara"], "Location": ["New York"]})
    predictions = extractor.predict_sentences(sentences)
    assert predictions == [[Span(2, 3, "person"), Span(4, 6, "location")], []]


def test_adapter_round_trip_and_base_mismatch(tiny_llm_dir, tokenizer, tmp_path, smollm2_dir):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)  # make the adapter change the outputs
    config = CLLMFSAdapterConfig(base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(base.config),
                                 entity_types=[t.__dict__ for t in TYPES])
    folder = save_adapter(model, tokenizer, tmp_path / "adapter", config)
    assert (folder / "adapter_model.safetensors").is_file() and not list(tmp_path.glob(".adapter*"))  # no staging folder left
    script = {"Person": ["Ali", "Sara"], "Location": ["Rome"]}  # entities to compare, scored by each model itself
    processors = lambda: [ScriptedAnswers(tokenizer, script)]  # noqa: E731
    before = CLLMFSExtractor(model, tokenizer, TYPES, make_logits_processors=processors)("Ali met Sara in Rome")
    loaded = CLLMFSExtractor.from_pretrained(tiny_llm_dir, adapter=folder)
    assert loaded.entity_types == TYPES and not loaded.format.format_hint
    loaded.make_logits_processors = processors
    assert len(before) == 3 and loaded("Ali met Sara in Rome") == before  # scores too: the same weights
    bare = CLLMFSExtractor.from_pretrained(tiny_llm_dir, entity_types=TYPES)
    bare.make_logits_processors = processors
    assert [e["score"] for e in bare("Ali met Sara in Rome")] != [e["score"] for e in before]  # the adapter matters
    with pytest.raises(AdapterMismatchError, match="architecture differs.*hidden_size: adapter 32 vs model 576"):
        CLLMFSExtractor.from_pretrained(smollm2_dir, adapter=folder)
    (folder / "cllmfs_config.json").write_text("{broken")
    with pytest.raises(AdapterMismatchError, match="not a valid CLLMFS adapter config"):
        CLLMFSAdapterConfig.load(folder)
    with pytest.raises(AdapterMismatchError, match="has no cllmfs_config.json"):
        CLLMFSAdapterConfig.load(tmp_path)
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 2
