"""File readers: every format, and bad input reported with its file and line."""

import gzip
import json
import warnings

import pytest

from ner_adapters.data import (
    DataFormatError,
    read_conll,
    read_conllu_entities,
    read_presidio_json,
    read_uner_iob2,
    sentences_to_dataset,
)
from ner_adapters.spans import Span, TagRepairWarning


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_conll_tab_two_columns(tmp_path):
    path = write(tmp_path, "a.conll", "Empire\tB-location\nState\tI-location\nis\tO\n\nNew\tB-creative-work\n")
    first, second = read_conll(path)
    assert first.tokens == ["Empire", "State", "is"]
    assert first.spans == [Span(0, 2, "location")]
    assert second.spans == [Span(0, 1, "creative-work")]


def test_conll_space_separated_tag_in_other_column_and_docstart(tmp_path):
    text = "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n-DOCSTART- -X- O O\n\nBonn NNP B-NP B-LOC\n"
    sentences = read_conll(write(tmp_path, "c.txt", text), tag_column=3)
    assert [s.tokens for s in sentences] == [["EU", "rejects"], ["Bonn"]]
    assert sentences[0].spans == [Span(0, 1, "ORG")]
    assert sentences[0].document_id != sentences[1].document_id


def test_conll_iob1_normalised(tmp_path):
    path = write(tmp_path, "iob1.txt", "Ali I-pers\nRezaei I-pers\nTehran I-loc\n")
    (sentence,) = read_conll(path, scheme="IOB1")
    assert sentence.spans == [Span(0, 2, "pers"), Span(2, 3, "loc")]


def test_conll_gzip(tmp_path):
    path = tmp_path / "a.conll.gz"
    path.write_bytes(gzip.compress(b"Paris\tB-LOC\n"))
    assert read_conll(path)[0].spans == [Span(0, 1, "LOC")]


def test_stray_inside_tag_warns_with_file_and_line(tmp_path):
    path = write(tmp_path, "bad.conll", "a\tO\nb\tO\n\nx\tO\ny\tI-PER\n")
    with pytest.warns(TagRepairWarning, match=r"bad\.conll: 1 I- tag.*lines 5"):
        (_, second) = read_conll(path)
    assert second.spans == [Span(1, 2, "PER")]
    with pytest.raises(DataFormatError, match=r"bad\.conll:5: .*'I-PER'"):
        read_conll(path, mode="strict")


def test_a_file_read_again_repeats_no_repair_warning(tmp_path):
    # Seeded-split sources (ParsNER, Presidio) read their one file once per split: the file's repair warning
    # is news once, as Python's "default" filter intends, not once per split.
    path = write(tmp_path, "again.conll", "x\tO\ny\tI-PER\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(3):
            read_conll(path)
    assert [str(w.message).count("again.conll") for w in caught if w.category is TagRepairWarning] == [1]


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "m.conll", "a\tO\nlonely\n")
    with pytest.raises(DataFormatError, match=r"m\.conll:2: expected at least 2 columns"):
        read_conll(path)


def test_unknown_tag_prefix_names_line(tmp_path):
    path = write(tmp_path, "t.conll", "a\tO\nb\tX-PER\n")
    with pytest.raises(DataFormatError, match=r"t\.conll:2: tag 'X-PER' is not valid"):
        read_conll(path)


def test_unknown_scheme(tmp_path):
    path = write(tmp_path, "s.conll", "a\tO\n")
    with pytest.raises(ValueError, match="unknown tag scheme 'BIOLU2'"):
        read_conll(path, scheme="BIOLU2")


def test_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"e\.conll: file is empty"):
        read_conll(write(tmp_path, "e.conll", "\n\n  \n"))


def test_wrong_encoding_names_line(tmp_path):
    path = write(tmp_path, "latin.conll", "a\tO\n\nCafé\tB-ORG\n", encoding="latin-1")
    with pytest.raises(DataFormatError, match=r"latin\.conll:3: cannot decode byte 0xe9 as utf-8"):
        read_conll(path)
    assert read_conll(path, encoding="latin-1")[1].tokens == ["Café"]


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such file"):
        read_conll(tmp_path / "nope.conll")


def test_uner_iob2_genre_and_document(tmp_path):
    text = (
        "# newdoc id = weblog-1\n# sent_id = weblog-juancole.com_20051126063000_ENG_20051126_063000-0001\n"
        "# text = Al-Zaman : American\n1\tAl\tB-ORG\t-\tx\n2\tZaman\tI-ORG\t-\tx\n3\t:\tO\t-\t-\n"
    )
    (sentence,) = read_uner_iob2(write(tmp_path, "u.iob2", text))
    assert sentence.domain == "weblog" and sentence.document_id == "weblog-1"
    assert sentence.spans == [Span(0, 2, "ORG")]


GUM_SNIPPET = """# global.Entity = GRP-etype-infstat-salience-centering-minspan-link-identity
# newdoc id = GUM_bio_test
# meta::genre = bio
# sent_id = GUM_bio_test-1
# text = Zaha Hadid won the Stirling Prize.
1\tZaha\tZaha\tPROPN\tNNP\t_\t2\tnsubj\t_\tEntity=(1-person-new-sss-cf1-1,2-coref-Zaha_Hadid
2\tHadid\tHadid\tPROPN\tNNP\t_\t0\troot\t_\tEntity=1)
3-4\twon't\t_\t_\t_\t_\t_\t_\t_\t_
3\twon\twin\tVERB\tVBD\t_\t0\troot\t_\t_
4\tthe\tthe\tDET\tDT\t_\t6\tdet\t_\tEntity=(2-abstract-new-nnn-cf2-2,3-coref-Stirling_Prize
5\tStirling\tStirling\tPROPN\tNNP\t_\t6\tcompound\t_\tEntity=(3-person-new-nnn-cf3-1-sgl-James_Stirling)
5.1\tcopied\t_\t_\t_\t_\t_\t_\t_\t_
6\tPrize\tPrize\tPROPN\tNNP\t_\t3\tobj\t_\tEntity=2)|SpaceAfter=No
7\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_

# sent_id = GUM_bio_test-2
# text = She left it.
1\tShe\tshe\tPRON\tPRP\t_\t2\tnsubj\t_\tEntity=(1-person-giv-sss-cf1-1-ana-Zaha_Hadid)
2\tleft\tleave\tVERB\tVBD\t_\t0\troot\t_\t_
3\tit\tit\tPRON\tPRP\t_\t2\tobj\t_\tEntity=(4-object-new-nnn-cf4-1-sgl)
"""


def test_conllu_nested_entities_flattened_to_outermost(tmp_path):
    first, second = read_conllu_entities(write(tmp_path, "GUM_bio_test.conllu", GUM_SNIPPET))
    assert first.tokens == ["Zaha", "Hadid", "won", "the", "Stirling", "Prize", "."]  # no ranges, no empty nodes
    assert first.spans == [Span(0, 2, "person"), Span(3, 6, "abstract")]
    assert first.domain == "bio" and first.document_id == "GUM_bio_test" and first.id == "GUM_bio_test-1"
    assert second.spans == [Span(0, 1, "person"), Span(2, 3, "object")]


def test_conllu_named_only_keeps_wikipedia_linked(tmp_path):
    first, second = read_conllu_entities(write(tmp_path, "g.conllu", GUM_SNIPPET), entities="named")
    assert first.spans == [Span(0, 2, "person"), Span(3, 6, "abstract")]
    assert second.spans == [Span(0, 1, "person")]  # "it" has no identity: not a named entity


def test_conllu_unclosed_entity(tmp_path):
    bad = GUM_SNIPPET.replace("Entity=1)", "_")
    with pytest.raises(DataFormatError, match=r"g\.conllu:\d+: entities \['1'\] opened but not closed"):
        read_conllu_entities(write(tmp_path, "g.conllu", bad))


def test_conllu_wrong_column_count(tmp_path):
    with pytest.raises(DataFormatError, match=r"g\.conllu:2: CoNLL-U needs 10"):
        read_conllu_entities(write(tmp_path, "g.conllu", "# sent_id = x\n1\tonly\tthree\n"))


def test_presidio_char_spans_to_tokens(tmp_path):
    records = [
        {"full_text": "Call Jane Doe at 555-1234.", "spans": [
            {"entity_type": "PERSON", "entity_value": "Jane Doe", "start_position": 5, "end_position": 13},
            {"entity_type": "PHONE_NUMBER", "entity_value": "555-1234", "start_position": 17, "end_position": 25}]},
        {"full_text": "Nothing here", "spans": []},
    ]
    first, second = read_presidio_json(write(tmp_path, "p.json", json.dumps(records)))
    assert first.tokens == ["Call", "Jane", "Doe", "at", "555-1234", "."]
    assert [(s.type, s.text(first.tokens)) for s in first.spans] == [("PERSON", "Jane Doe"), ("PHONE_NUMBER", "555-1234")]
    assert second.spans == []


def test_presidio_bad_records(tmp_path):
    with pytest.raises(DataFormatError, match=r"p\.json:1: invalid JSON"):
        read_presidio_json(write(tmp_path, "p.json", "[{"))
    bad = [{"full_text": "abc", "spans": [{"entity_type": "X", "start_position": 2, "end_position": 9}]}]
    with pytest.raises(DataFormatError, match="record 0: span \\[2, 9\\) is outside"):
        read_presidio_json(write(tmp_path, "p.json", json.dumps(bad)))


def test_dataset_schema_and_unknown_types(tmp_path):
    sentences = read_conll(write(tmp_path, "a.conll", "Paris\tB-LOC\nis\tO\n"))
    dataset = sentences_to_dataset(sentences, ["PER", "LOC"])
    row = dataset[0]
    assert dataset.features["ner_tags"].feature.names == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    assert row["ner_tags"] == [3, 0]
    assert row["spans"] == [{"type": "LOC", "start": 0, "end": 1, "char_start": 0, "char_end": 5}]
    with pytest.raises(DataFormatError, match=r"entity types \['LOC'\] outside the label set \['PER'\]"):
        sentences_to_dataset(sentences, ["PER"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sentences_to_dataset([], ["PER"])
