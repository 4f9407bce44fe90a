"""``ner-adapters predict`` and ``evaluate`` on its output (issue 14): inputs, outputs, resuming, long documents,
two CPU processes under accelerate, and every artifact kind the pipeline loads (tiny models, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multibert_tiny import build_tiny_core, make_sentences, one_torch_thread, randomize

from ner_adapters.cli import main
from ner_adapters.predict import Document, predict, read_documents, read_scored, score_files, written_ids

REPO = Path(__file__).resolve().parents[1]
DOMAINS = {"news": "news", "sports": "sports"}


@pytest.fixture(scope="module")
def saved_set(tmp_path_factory):
    """A tiny saved Multi-BERT set: two domains of one scheme, a general adapter and a router (random weights)."""
    from ner_adapters.multibert import MultiBertModel

    root = tmp_path_factory.mktemp("predict-set")
    with one_torch_thread():
        core = build_tiny_core(root / "core")
        mbert = MultiBertModel.from_core(str(core), max_length=16)
        mbert.add_scheme("web", ("PER", "LOC", "ORG"))
        for domain in DOMAINS:
            mbert.add_domain(domain, "web")
        mbert.add_general("web")
        mbert.add_router(list(DOMAINS), max_length=64, threshold=0.0)
        randomize(mbert, seed=5)
        return mbert.save(root / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Gold CoNLL of synthetic sentences, and the same documents as plain text and JSONL."""
    root = tmp_path_factory.mktemp("predict-corpus")
    sentences = make_sentences("news", 7, 3) + make_sentences("sports", 6, 4)
    from ner_adapters.spans import spans_to_tags

    (root / "gold.conll").write_text("".join(
        "".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, spans_to_tags(s.spans, len(s.tokens)))) + "\n"
        for s in sentences), encoding="utf-8")
    (root / "docs.txt").write_text("".join(s.text + "\n" for s in sentences), encoding="utf-8")
    (root / "docs.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": s.text}) + "\n"
                                             for i, s in enumerate(sentences)), encoding="utf-8")
    return root


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def lines(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_inputs_are_read_with_ids_and_tokens(corpus):
    text = read_documents(corpus / "docs.txt")
    conll = read_documents(corpus / "gold.conll")
    jsonl = read_documents(corpus / "docs.jsonl")
    assert [d.id for d in text[:2]] == ["1", "2"] and text[0].tokens is None
    assert [d.id for d in conll[:2]] == ["gold-0", "gold-1"] and conll[0].tokens == conll[0].text.split()
    assert [d.text for d in jsonl] == [d.text for d in text] == [d.text for d in conll]
    assert read_documents(corpus / "gold.conll", input_format="text")[0].text.startswith(conll[0].tokens[0] + "\t")


def test_routed_predict_writes_entities_with_offsets_and_domains(saved_set, corpus, capsys, tmp_path):
    out = tmp_path / "pred.jsonl"
    with one_torch_thread():
        code, stdout, _ = run(capsys, "predict", str(corpus / "gold.conll"), "--model", str(saved_set), "--output",
                              str(out), "--batch-size", "4", "--no-progress")
    assert code == 0 and "tagged 13 of 13 document(s) (0 already in the output" in stdout and str(out) in stdout
    records = lines(out)
    assert [r["id"] for r in records] == [f"gold-{i}" for i in range(13)]
    assert all(r["domain"] in DOMAINS and 0 <= r["domain_score"] <= 1 for r in records)
    entities = [e for r in records for e in r["entities"]]
    assert entities and all(set(e) == {"type", "start", "end", "word", "score"} for e in entities)
    assert all(r["text"][e["start"]:e["end"]] == e["word"] for r in records for e in r["entities"])
    # evaluate takes the gold CoNLL and predict's JSONL as they are, and scores what the metric scores
    code, stdout, _ = run(capsys, "evaluate", "--gold", str(corpus / "gold.conll"), "--pred", str(out), "--json")
    scores = json.loads(stdout)
    gold = read_scored(corpus / "gold.conll")
    predicted = {r["id"]: {(e["start"], e["end"], e["type"]) for e in r["entities"]} for r in records}
    tp = sum(len(set(gold[k].spans) & predicted[k]) for k in gold)
    assert code == 0 and scores["micro"]["tp"] == tp and scores["micro"]["predicted"] == len(entities)
    assert scores["micro"]["gold"] == sum(len(g.spans) for g in gold.values())


def test_a_perfect_prediction_scores_one_in_every_gold_shape(corpus, tmp_path):
    """Gold as CoNLL, as tokens + tags JSONL and as text + character spans JSONL: predictions equal to the gold
    score 1.0, whatever shape they are compared in."""
    gold = read_scored(corpus / "gold.conll")
    documents = read_documents(corpus / "gold.conll")
    pred = tmp_path / "pred.jsonl"
    pred.write_text("".join(json.dumps({"id": d.id, "text": d.text, "entities": [
        {"type": t, "start": s, "end": e, "word": d.text[s:e], "score": 1.0} for s, e, t in gold[d.id].spans]}) + "\n"
        for d in documents), encoding="utf-8")
    from ner_adapters.data import read_conll

    tokens = tmp_path / "gold_tokens.jsonl"
    tokens.write_text("".join(json.dumps({"id": s.id, "tokens": s.tokens, "spans": [
        {"type": x.type, "start": x.start, "end": x.end} for x in s.spans]}) + "\n"
        for s in read_conll(corpus / "gold.conll")), encoding="utf-8")
    chars = tmp_path / "gold_chars.jsonl"
    chars.write_text(pred.read_text(encoding="utf-8"), encoding="utf-8")
    for gold_file in (corpus / "gold.conll", tokens, chars):
        scores, missing = score_files(gold_file, pred)
        assert scores.micro.f1 == 1.0 and not missing
    # one wrong boundary is a miss: scores are exact in characters, not per token
    shifted = lines(pred)
    first = next(r for r in shifted if r["entities"])
    first["entities"][0]["end"] -= 1
    pred.write_text("".join(json.dumps(r) + "\n" for r in shifted), encoding="utf-8")
    scores, _ = score_files(corpus / "gold.conll", pred)
    assert scores.micro.tp == scores.micro.gold - 1


def test_a_dataset_is_gold_for_predictions_of_that_dataset(saved_set, tmp_path, capsys):
    """``predict <folder>`` then ``evaluate --gold <folder>``: the same split, ids and texts on both sides."""
    from ner_adapters.spans import spans_to_tags

    folder = tmp_path / "corpus"
    folder.mkdir()
    for split, seed in (("train", 0), ("test", 5)):
        (folder / f"{split}.conll").write_text("".join(
            "".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, spans_to_tags(s.spans, len(s.tokens)))) + "\n"
            for s in make_sentences("travel", 5, seed)), encoding="utf-8")
    out = tmp_path / "pred.jsonl"
    with one_torch_thread():
        assert run(capsys, "predict", str(folder), "--model", str(saved_set), "--domain", "news", "--output",
                   str(out), "--no-progress")[0] == 0
    assert [r["id"] for r in lines(out)] == [f"test-{i}" for i in range(5)]
    code, stdout, _ = run(capsys, "evaluate", "--gold", str(folder), "--pred", str(out), "--json")
    assert code == 0 and json.loads(stdout)["micro"]["gold"] == sum(len(s.spans) for s in make_sentences("travel", 5, 5))
    code, _, err = run(capsys, "evaluate", "--gold", str(folder), "--split", "train", "--pred", str(out))
    assert code == 2 and "5 predicted id(s) are not in the gold file" in err  # the train split: other ids


def test_evaluate_errors_name_the_file_and_id(corpus, tmp_path, capsys):
    pred = tmp_path / "pred.jsonl"
    pred.write_text(json.dumps({"id": "gold-0", "text": "something else", "entities": []}) + "\n")
    code, _, err = run(capsys, "evaluate", "--gold", str(corpus / "gold.conll"), "--pred", str(pred))
    assert code == 2 and "pred.jsonl: id 'gold-0': the predicted text differs" in err
    pred.write_text(json.dumps({"id": "nope", "text": "x", "entities": []}) + "\n")
    code, _, err = run(capsys, "evaluate", "--gold", str(corpus / "gold.conll"), "--pred", str(pred))
    assert code == 2 and "1 predicted id(s) are not in the gold file" in err and "'nope'" in err


def test_conll_output_reads_back_and_scores_like_jsonl(saved_set, corpus, tmp_path):
    from ner_adapters.predict import load_tagger

    with one_torch_thread():
        tagger = load_tagger(str(saved_set))
        documents = read_documents(corpus / "gold.conll")
        predict(documents, tagger, tmp_path / "p.jsonl", batch_size=5, progress=False)
        predict(documents, tagger, tmp_path / "p.conll", output_format="conll", batch_size=5, progress=False)
    text = (tmp_path / "p.conll").read_text(encoding="utf-8")
    assert text.startswith("# id = gold-0\n") and text.count("# id = ") == 13
    assert written_ids(tmp_path / "p.conll", "conll") == [d.id for d in documents]
    as_jsonl, _ = score_files(corpus / "gold.conll", tmp_path / "p.jsonl")
    as_conll, _ = score_files(corpus / "gold.conll", tmp_path / "p.conll")
    assert as_conll.to_dict() == as_jsonl.to_dict()


def test_rerun_skips_written_documents_and_cuts_a_torn_line(saved_set, corpus, tmp_path):
    from ner_adapters.predict import load_tagger

    documents = read_documents(corpus / "docs.jsonl")
    with one_torch_thread():
        tagger = load_tagger(str(saved_set), domain="news")
        full = tmp_path / "full.jsonl"
        predict(documents, tagger, full, domain="news", batch_size=3, progress=False)
        reference = full.read_text(encoding="utf-8")
        partial = tmp_path / "partial.jsonl"
        kept = reference.splitlines(keepends=True)[:5]
        partial.write_text("".join(kept) + kept[0][:17], encoding="utf-8")  # five lines and a torn sixth
        report = predict(documents, tagger, partial, domain="news", batch_size=3, progress=False)
        assert (report.skipped, report.tagged) == (5, 8)
        assert partial.read_text(encoding="utf-8") == reference
        assert predict(documents, tagger, partial, domain="news", progress=False).tagged == 0
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "zzz", "text": "x", "entities": []}) + "\n", encoding="utf-8")
    from ner_adapters.data import DataFormatError

    with pytest.raises(DataFormatError, match=r"other\.jsonl: holds predictions of other documents .* id 'zzz', "
                                              r"input id 'd0'"):
        predict(documents, tagger, other, domain="news", progress=False)


def test_long_documents_are_tagged_to_their_end(saved_set, tmp_path):
    """A document of far more sub-tokens than the core's max_length (16) is tagged in windows, not cut."""
    from ner_adapters.predict import load_tagger, tag_documents

    words = " ".join(s.text for s in make_sentences("news", 40, 9)).replace(" .", "")  # one sentence, ~200 words
    with one_torch_thread():
        tagger = load_tagger(str(saved_set), domain="sports")
        record = tag_documents(tagger, [Document("long", words)], domain="sports")[0]
    assert record["entities"] and max(e["end"] for e in record["entities"]) > len(words) * 0.9
    assert all(words[e["start"]:e["end"]] == e["word"] for e in record["entities"])


def test_cllmfs_adapter_predicts_through_the_same_command(cllmfs_run, corpus, tmp_path, capsys):
    out = tmp_path / "llm.jsonl"
    with one_torch_thread():
        code, stdout, _ = run(capsys, "predict", str(corpus / "docs.txt"), "--model", str(cllmfs_run.adapter_dir),
                              "--output", str(out), "--entity-types", "person,location", "--batch-size", "13",
                              "--no-progress")
    records = lines(out)
    assert code == 0 and [r["id"] for r in records] == [str(i) for i in range(1, 14)]
    assert all("domain" not in r for r in records)
    assert all(e["type"] in ("person", "location") and r["text"][e["start"]:e["end"]] == e["word"]
               for r in records for e in r["entities"])


def test_two_accelerate_processes_write_what_one_writes(saved_set, corpus, tmp_path):
    """``accelerate launch`` with 2 CPU processes: shards merged in input order, identical to one process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    common = ["predict", str(corpus / "gold.conll"), "--model", str(saved_set), "--batch-size", "1", "--no-progress"]
    single = tmp_path / "single.jsonl"
    subprocess.run([sys.executable, "-m", "ner_adapters.cli", *common, "--output", str(single)], env=env, check=True,
                   capture_output=True, timeout=300)
    double = tmp_path / "double.jsonl"
    launched = subprocess.run(  # torchrun-style launch of 2 CPU processes (gloo), as the README shows
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517", "-m",
         "ner_adapters.cli", *common, "--output", str(double)],
        env={**env, "ACCELERATE_USE_CPU": "1"}, capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "tagged 13 of 13 document(s) on 2 processes" in launched.stdout
    assert double.read_text(encoding="utf-8") == single.read_text(encoding="utf-8")
    assert not list(tmp_path.glob("double.jsonl.part*"))
