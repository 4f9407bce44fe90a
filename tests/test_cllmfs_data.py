"""CLLMFS prompts and SFT data: the paper's format, and contrastive positions that decode to the right text."""

import pytest

from ner_adapters.cllmfs.entity_types import DESCRIPTIONS, EntityType, as_entity_types, dataset_entity_types
from ner_adapters.cllmfs.prompts import ANSWER_PREFIX, PromptFormat
from ner_adapters.cllmfs.sft_data import build_example, build_sft_dataset, neighbour_spans
from ner_adapters.data import Sentence, get_spec, list_datasets
from ner_adapters.spans import Span

SENTENCE = Sentence(
    "True , but as I pointed out to Andrew Little it would be cheaper than eliminating fees in Wellington".split(),
    [Span(8, 10, "person"), Span(18, 19, "location")],
    id="s1",
)
PERSON, LOCATION = dataset_entity_types("wnut17", ["person", "location"])


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def wordpiece():
    from transformers import AutoTokenizer

    from ner_adapters.models import MINILM, resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(MINILM))


def test_every_registered_type_is_described_once_in_the_registry():
    for name in list_datasets():
        spec = get_spec(name)
        assert set(spec.type_descriptions) == set(spec.types), name
        assert all(len(description) > 10 for _, description in spec.type_descriptions.values()), name
        assert [label for label, _, _ in DESCRIPTIONS[name]] == list(spec.types)  # the prompts' view of it


def test_user_types():
    types = as_entity_types({"drug": "a medication name", "dose-unit": "a unit of dosage"})
    assert types[1] == EntityType("dose-unit", "Dose unit", "a unit of dosage")
    assert [t.name for t in as_entity_types(["PER", "creative_work"])] == ["PER", "Creative work"]
    with pytest.raises(ValueError, match="duplicate"):
        as_entity_types(["a", "a"])
    with pytest.raises(ValueError, match="non-empty"):
        as_entity_types([""])


def test_paper_instruction_and_answer_with_chat_template(tokenizer):
    fmt = PromptFormat(tokenizer)
    prompt = fmt.build(SENTENCE.text, [PERSON])
    assert "Please extract the Person in the sentence given below, the entity of person refers to" in prompt.text
    assert prompt.text.startswith("<|im_start|>") and prompt.text.endswith("<|im_start|>assistant\n")
    assert prompt.text[slice(*prompt.type_spans[0])] == "Person"
    assert prompt.text[prompt.sentence_offset :].startswith(SENTENCE.text)
    answer = fmt.answer([["Andrew Little"]], [PERSON])
    assert answer == f"{ANSWER_PREFIX} <<< Andrew Little >>><|im_end|>"
    assert fmt.answer([[]], [PERSON]) == f"{ANSWER_PREFIX} none<|im_end|>"
    parsed = fmt.parse(f"{ANSWER_PREFIX} <<< Andrew Little >>> <<< Bob >>><|im_end|> <<< junk >>>", [PERSON])
    assert [s for s, _, _ in parsed[0]] == ["Andrew Little", "Bob"]


def test_literal_markers_without_chat_template(wordpiece):
    fmt = PromptFormat(wordpiece)
    assert not fmt.uses_chat_template
    answer = fmt.answer([["andrew little"]], [PERSON])
    assert answer == f"<im_start> {ANSWER_PREFIX} <<< andrew little >>> <im_end>"  # the paper's own markers
    assert fmt.parse(answer, [PERSON])[0][0][0] == "andrew little"


def test_all_types_mode(tokenizer):
    fmt = PromptFormat(tokenizer, "all_types")
    prompt = fmt.build(SENTENCE.text, [PERSON, LOCATION])
    assert [prompt.text[s:e] for s, e in prompt.type_spans] == ["Person", "Location"]
    answer = fmt.answer([["Andrew Little"], []], [PERSON, LOCATION])
    assert answer == f"{ANSWER_PREFIX} Person: <<< Andrew Little >>>; Location: none<|im_end|>"
    parsed = fmt.parse(answer, [PERSON, LOCATION])
    assert [[s for s, _, _ in p] for p in parsed] == [["Andrew Little"], []]


def test_neighbour_negatives():
    entity = Span(8, 10, "person")
    spans = neighbour_spans(entity, 19, [entity])
    assert {(s.start, s.end) for s in spans} == {(7, 10), (8, 11), (7, 11), (9, 10), (8, 9), (6, 8), (10, 12)}
    # A neighbour that is itself a gold entity of the type is not a negative; at the sentence edge none go outside.
    spans = neighbour_spans(Span(0, 1, "person"), 3, [Span(0, 1, "person"), Span(1, 2, "person")])
    assert {(s.start, s.end) for s in spans} == {(0, 2), (1, 3)} - {(1, 2)}


def _decode(tokenizer, ids, span):
    return tokenizer.decode(ids[span[0] : span[1]]).strip()


@pytest.mark.parametrize("mode", ["per_type", "all_types"])
def test_sft_example_positions_decode_to_type_and_entity(tokenizer, mode):
    fmt = PromptFormat(tokenizer, mode)
    types = [PERSON, LOCATION]
    group = fmt.groups(types)[0]
    example = build_example(SENTENCE, group, fmt)
    ids = example["input_ids"]
    completion = [t for t, label in zip(ids, example["labels"]) if label != -100]
    assert tokenizer.decode(completion).startswith(ANSWER_PREFIX) and completion[-1] == tokenizer.eos_token_id
    assert all(label == -100 for label in example["labels"][: len(ids) - len(completion)])
    anchors = [_decode(tokenizer, ids, a) for a in example["cl_anchor"]]
    positives = [_decode(tokenizer, ids, p) for p in example["cl_positive"]]
    expected = [("Person", "Andrew Little")] + ([("Location", "Wellington")] if mode == "all_types" else [])
    assert list(zip(anchors, positives)) == expected
    negatives = [_decode(tokenizer, ids, n) for n in example["cl_negatives"][0]]
    assert "to Andrew Little" in negatives and "Andrew Little it" in negatives and "Andrew" in negatives


def test_positions_with_a_wordpiece_tokenizer(wordpiece):
    """Offsets come from the tokenizer, so they hold for WordPiece (lower-cased, split words) too."""
    fmt = PromptFormat(wordpiece)
    example = build_example(SENTENCE, [PERSON], fmt)
    ids = example["input_ids"]
    assert _decode(wordpiece, ids, example["cl_anchor"][0]) == "person"
    assert _decode(wordpiece, ids, example["cl_positive"][0]) == "andrew little"


def test_dataset_has_one_example_per_sentence_and_type(tokenizer):
    other = Sentence(["Nothing", "here"], [], id="s2")
    per_type = build_sft_dataset([SENTENCE, other], [PERSON, LOCATION], PromptFormat(tokenizer))
    assert len(per_type) == 4
    assert per_type[3]["cl_anchor"] == [] and per_type[1]["types"] == ["location"]
    all_types = build_sft_dataset([SENTENCE, other], [PERSON, LOCATION], PromptFormat(tokenizer, "all_types"))
    assert len(all_types) == 2
    with pytest.raises(ValueError, match="empty"):
        build_sft_dataset([], [PERSON], PromptFormat(tokenizer))


def test_none_sampling_per_type_keeps_the_ratio_for_every_type(tokenizer):
    """Pooled sampling lets one type get all the "none" answers (here: person), per-type gives each type
    exactly ``none_ratio`` x its answers with entities, whatever the seed."""
    people = [Sentence(["Ann", "Lee", "spoke", str(i)], [Span(0, 2, "person")], id=f"p{i}") for i in range(6)]
    place = [Sentence(["in", "Oslo", str(i)], [Span(1, 2, "location")], id=f"l{i}") for i in range(2)]
    fmt = PromptFormat(tokenizer)

    def counts(dataset):
        found = {}
        for row in dataset:
            kind = "none" if not row["cl_anchor"] else "entity"
            found[(row["types"][0], kind)] = found.get((row["types"][0], kind), 0) + 1
        return found

    for seed in range(5):
        per_type = counts(build_sft_dataset(people + place, [PERSON, LOCATION], fmt, none_ratio=1.0,
                                            none_sampling="per_type", seed=seed))
        assert per_type == {("person", "entity"): 6, ("person", "none"): 2, ("location", "entity"): 2,
                            ("location", "none"): 2}
    # pooled: 8 "none" answers for 8 with entities, here every none pair: location gets 6 "none" for 2 answers
    pooled = counts(build_sft_dataset(people + place, [PERSON, LOCATION], fmt, none_ratio=1.0, seed=0))
    assert pooled[("location", "none")] == 6 and pooled[("person", "none")] == 2
    with pytest.raises(ValueError, match="none_sampling must be one of"):
        build_sft_dataset(people, [PERSON], fmt, none_ratio=1.0, none_sampling="stratified")
