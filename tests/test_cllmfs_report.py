import json

import pytest

from ner_adapters.cllmfs.report import load_summary, main, results_table
from ner_adapters.metrics import span_scores, summarize
from ner_adapters.spans import Span


def write_run(folder, method, runs):
    folder.mkdir()
    summary = {"method": method, **summarize(runs)}
    (folder / "results.json").write_text(json.dumps(summary))
    return folder


def test_table_has_one_row_per_run_with_mean_and_std(tmp_path, capsys):
    gold = [[Span(0, 1, "person"), Span(2, 3, "location")]]
    perfect = span_scores(gold, gold)
    half = span_scores(gold, [[Span(0, 1, "person")]])
    a = write_run(tmp_path / "a", "cllmfs", [perfect, half])
    b = write_run(tmp_path / "b", "proto", [half])
    table = results_table([a, b], labels=["CLLMFS", "ProtoBERT"])
    lines = table.splitlines()
    assert lines[0].split("|")[1:-1][-2:] == [" location ", " person "]
    assert "| CLLMFS | cllmfs | 2 | 83.3 ± 23.6 |" in lines[2]
    assert lines[3].startswith("| ProtoBERT | proto | 1 | 66.7 | ")
    assert lines[3].rstrip().endswith("| 0.0 | 100.0 |")
    main([str(a)])
    assert "| a | cllmfs |" in capsys.readouterr().out


def test_missing_or_foreign_summary_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.json"):
        load_summary(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"method": "x"}))
    with pytest.raises(ValueError, match="micro_f1"):
        load_summary(tmp_path)
