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


def test_span_errors_sort_every_prediction_into_one_kind():
    from ner_adapters.metrics import span_errors

    gold = [[Span(0, 2, "person"), Span(3, 4, "location"), Span(6, 7, "group")], [Span(1, 2, "product")]]
    predicted = [[Span(0, 2, "person"),          # right
                  Span(3, 4, "corporation"),     # right boundaries, wrong type
                  Span(5, 7, "group"),           # overlaps "group", wrong boundaries
                  Span(8, 9, "person")],         # overlaps nothing
                 []]                             # the product is missed
    assert span_errors(gold, predicted) == {"correct": 1, "wrong_type": 1, "boundary": 1, "spurious": 1, "missed": 1}
    with pytest.raises(ValueError, match="2 gold sentences but 1 predicted"):
        span_errors(gold, predicted[:1])


def test_errors_table_reads_every_episode_of_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    records = [{"id": "a", "tokens": ["x"] * 4, "gold": [{"type": "person", "start": 0, "end": 2}],
                "spans": [{"type": "location", "start": 0, "end": 2}]},
               {"id": "b", "tokens": ["x"] * 4, "gold": [{"type": "person", "start": 0, "end": 1}], "spans": []}]
    for episode in (0, 1):
        (run / f"episode-{episode}").mkdir(parents=True)
        (run / f"episode-{episode}" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    main(["--errors", str(run), "--labels", "CLLMFS"])
    row = capsys.readouterr().out.splitlines()[2]
    assert row == "| CLLMFS | 2 | 2 | 0 (0%) | 2 (100%) | 0 (0%) | 0 (0%) | 2 |"
    (run / "episode-1" / "predictions.jsonl").write_text("{\"id\": \"a\"}\n")
    with pytest.raises(ValueError, match=r"episode-1/predictions.jsonl, line 1: not a prediction record"):
        main(["--errors", str(run)])
    with pytest.raises(FileNotFoundError, match="no episode-"):
        main(["--errors", str(tmp_path / "nothing")])
