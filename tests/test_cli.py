"""The ner-adapters command line."""

import json

from ner_adapters.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_data_stats(capsys, data_dir):
    code, out, _ = run(capsys, "--data-dir", str(data_dir), "data", "stats", "wnut17", "--split", "test")
    assert code == 0
    assert "wnut17 [test]: 1287 sentences, 23394 tokens, 1079 entities" in out
    assert "person" in out and "429" in out
    code, out, _ = run(capsys, "--data-dir", str(data_dir), "data", "stats", "wnut17", "--split", "test", "--json")
    assert json.loads(out)["test"]["per_type"]["person"] == 429


def test_data_list(capsys):
    code, out, _ = run(capsys, "data", "list")
    assert code == 0 and "wnut17" in out and "CC-BY-4.0" in out


def test_episodes_then_evaluate(capsys, tmp_path, data_dir):
    out_file = tmp_path / "episodes.jsonl"
    code, out, _ = run(capsys, "--data-dir", str(data_dir), "episodes", "wnut17", "--n-way", "3", "--k-shot", "2",
                       "--seed", "5", "--query-size", "30", "--out", str(out_file))
    assert code == 0 and "wrote 1 episode(s)" in out
    episode = json.loads(out_file.read_text())
    gold = tmp_path / "gold.jsonl"
    pred = tmp_path / "pred.jsonl"
    with gold.open("w") as g, pred.open("w") as p:
        for i, sentence in enumerate(episode["query"]):
            g.write(json.dumps({"id": sentence["id"], "spans": sentence["spans"]}) + "\n")
            spans = sentence["spans"] if i % 2 == 0 else []
            p.write(json.dumps({"id": sentence["id"], "entities": [
                {"entity_group": s["type"], "start": s["start"], "end": s["end"]} for s in spans]}) + "\n")
    code, out, _ = run(capsys, "evaluate", "--gold", str(gold), "--pred", str(pred), "--json")
    scores = json.loads(out)
    assert code == 0 and scores["micro"]["precision"] == 1.0 and scores["micro"]["recall"] <= 1.0
    code, out, _ = run(capsys, "evaluate", "--gold", str(gold), "--pred", str(gold))
    assert "micro avg" in out and "1.0000" in out


def test_errors_name_file_and_line(capsys, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "a", "spans": []}\n{"id": "b", "spans": [{"type": "X", "start": 0}]}\n')
    code, _, err = run(capsys, "evaluate", "--gold", str(gold), "--pred", str(gold))
    assert code == 2 and "gold.jsonl:2:" in err and "needs 'type'" in err
    code, _, err = run(capsys, "data", "stats", "nope")
    assert code == 2 and "unknown dataset 'nope'" in err
