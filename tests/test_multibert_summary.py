"""benchmarks/multibert_summary.py: a run's results.json becomes its table's entry in docs/results/multibert.json."""

import json
from pathlib import Path

import pytest
from hub_tiny import load_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summary():
    return load_script(REPO / "benchmarks" / "multibert_summary.py", "multibert_summary")


def fake_results(domains=("arman:fold1=arman", "parstwiner"), core="intfloat/multilingual-e5-small", f1=None,
                 **extra):
    """The fields of a recipe's results.json the summary reads (F1 as fractions, as the recipe writes them)."""
    results = {
        "config": {"data": {"domains": list(domains)}, "model": {"core_model": core}},
        "command": "python recipes/train_multibert.py recipes/multibert/formal_informal.yaml",
        "adapter_kind": "lora",
        "core_parameters": 117_653_760,
        "core_embedding_parameters": 96_225_024,
        "f1": {"multibert": {"arman": 0.6104, "parstwiner": 0.62}, "spec_bert": {"arman": 0.7, "parstwiner": 0.66},
               "routed": {"arman": 0.6, "parstwiner": 0.615}},
        "router": {"accuracy": 0.9917, "groups": 362, "pooling": "mean"},
        "parameters": [{"variant": "multibert head pre-training [fa]", "trainable": 500_000, "saved": 0},
                       {"variant": "multibert [fa]", "trainable": 442_368, "saved": 442_368},
                       {"variant": "router", "trainable": 600_000, "saved": 600_000}],
        "wall_seconds": 1500.0,
    }
    results.update(extra)
    if f1 is not None:
        results["f1"] = f1
    return results


def test_entry_shape_and_units(summary):
    entry = summary.summarize(fake_results())
    assert entry["name"] == "formal_informal" and entry["core"] == "intfloat/multilingual-e5-small"
    assert entry["f1"] == {"multibert": {"arman": 61.04, "parstwiner": 62.0}, "spec_bert": {"arman": 70.0,
                           "parstwiner": 66.0}, "routed": {"arman": 60.0, "parstwiner": 61.5}}
    assert entry["router_accuracy"] == 0.9917  # a fraction
    # the step-2 adapter (not the head pre-training run, not the router) over all / non-embedding core parameters
    assert entry["trainable_percent"] == round(100 * 442_368 / 117_653_760, 4) == 0.376
    assert entry["trainable_percent_body"] == round(100 * 442_368 / (117_653_760 - 96_225_024), 4)
    assert entry["command"].startswith("python recipes/train_multibert.py")
    for domains, name in ((["uner_en_ewt:*"], "uner_genres"), (["gum:bio", "gum:news"], "gum_genres"),
                          (["parsner:*"], "parsner")):
        assert summary.summarize(fake_results(domains))["name"] == name
    with pytest.raises(summary.SummaryError, match="none of the tables"):
        summary.summarize(fake_results(["wnut17"]))
    with pytest.raises(summary.SummaryError, match="local folder"):
        summary.summarize(fake_results(core="./cache/e5"))
    assert summary.summarize(fake_results(core="./cache/e5"), core="intfloat/multilingual-e5-small")


def test_file_gets_one_entry_per_table_and_core(summary, tmp_path):
    results = tmp_path / "results.json"
    out = tmp_path / "docs" / "multibert.json"
    results.write_text(json.dumps(fake_results()))
    assert summary.main([str(results), "--out", str(out)]) == 0
    minilm = fake_results(core="sentence-transformers/all-MiniLM-L6-v2")
    (tmp_path / "minilm.json").write_text(json.dumps(minilm))
    assert summary.main([str(tmp_path / "minilm.json"), "--out", str(out)]) == 0
    uner = fake_results(["uner_en_ewt:*"], core="sentence-transformers/all-MiniLM-L6-v2")
    (tmp_path / "uner.json").write_text(json.dumps(uner))
    assert summary.main([str(tmp_path / "uner.json"), "--out", str(out)]) == 0
    tables = json.loads(out.read_text())["tables"]
    assert [(t["name"], t["core"]) for t in tables] == [
        ("uner_genres", "sentence-transformers/all-MiniLM-L6-v2"),
        ("formal_informal", "intfloat/multilingual-e5-small"),
        ("formal_informal", "sentence-transformers/all-MiniLM-L6-v2")]

    # a re-run replaces its entry
    rerun = fake_results(f1={"multibert": {"arman": 0.5, "parstwiner": 0.5}})
    results.write_text(json.dumps(rerun))
    assert summary.main([str(results), "--out", str(out)]) == 0
    tables = json.loads(out.read_text())["tables"]
    entry = next(t for t in tables if t["core"] == "intfloat/multilingual-e5-small")
    assert entry["f1"] == {"multibert": {"arman": 50.0, "parstwiner": 50.0}} and len(tables) == 3

    # --merge: a second run of the same table adds its variants and keeps the others
    baselines = fake_results(f1={"general_bert": {"arman": 0.55, "parstwiner": 0.52}}, router=None,
                             command="python recipes/train_multibert.py x.yaml --variants general_bert")
    results.write_text(json.dumps(baselines))
    assert summary.main([str(results), "--out", str(out), "--merge"]) == 0
    entry = next(t for t in json.loads(out.read_text())["tables"] if t["core"] == "intfloat/multilingual-e5-small")
    assert set(entry["f1"]) == {"multibert", "general_bert"} and entry["router_accuracy"] == 0.9917
    assert entry["command"].endswith("--variants general_bert") and " ; " in entry["command"]

    # --merge of a router-only run with the other pooling: reported beside, the table's router stays
    cls_router = fake_results(f1={}, router={"accuracy": 0.9, "groups": 362, "pooling": "cls"})
    results.write_text(json.dumps(cls_router))
    assert summary.main([str(results), "--out", str(out), "--merge"]) == 0
    entry = next(t for t in json.loads(out.read_text())["tables"] if t["core"] == "intfloat/multilingual-e5-small")
    assert entry["router_accuracy"] == 0.9917 and entry["router_pooling"] == "mean"
    assert entry["router_accuracy_by_pooling"] == {"mean": 0.9917, "cls": 0.9}
    assert set(entry["f1"]) == {"multibert", "general_bert"}


def test_unusable_results_exit_1(summary, tmp_path, capsys):
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(fake_results(f1={}, router=None)))
    assert summary.main([str(bad), "--out", str(tmp_path / "out.json")]) == 1
    assert "no variant and no router" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_merged_runs_add_their_wall_times_once(summary):
    first = {"name": "t", "core": "c", "command": "run a", "f1": {"multibert": {"x": 1.0}}, "wall_minutes": 50.0}
    second = {"name": "t", "core": "c", "command": "run b", "f1": {}, "router_accuracy": 0.99, "wall_minutes": 20.0}
    merged = summary.merge(first, second)
    assert merged["wall_minutes"] == 70.0 and merged["command"] == "run a ; run b" and merged["router_accuracy"] == 0.99
    assert summary.merge(merged, second)["wall_minutes"] == 70.0  # the same run merged again adds nothing


def test_a_stopped_run_is_summarised_only_when_asked(summary):
    stopped = fake_results(complete=False)
    with pytest.raises(summary.SummaryError, match="had not finished.*--partial"):
        summary.summarize(stopped)
    assert summary.summarize(stopped, partial=True)["f1"]["multibert"] == {"arman": 61.04, "parstwiner": 62.0}
    assert summary.summarize(fake_results(complete=True))["router_accuracy"] == 0.9917


def test_a_run_without_multibert_keeps_the_entrys_parameter_count(summary):
    """A later run of baselines and the scratch adapters only counts the scratch adapter (adapter + own head): it
    must not replace the Multi-BERT domain's count that the entry's targets are stated at."""
    entry = summary.summarize(fake_results())
    scratch_only = summary.summarize(fake_results(
        f1={"multibert_scratch": {"arman": 0.5, "parstwiner": 0.5}, "general_bert": {"arman": 0.4, "parstwiner": 0.4}},
        router=None, parameters=[{"variant": "multibert_scratch", "trainable": 450_000, "saved": 450_000}]))
    assert scratch_only["trainable_percent"] == round(100 * 450_000 / 117_653_760, 4)  # alone, its own count
    merged = summary.merge(entry, scratch_only)
    assert (merged["trainable_percent"], merged["trainable_percent_body"]) == (entry["trainable_percent"],
                                                                                entry["trainable_percent_body"])
    assert set(merged["f1"]) == {"multibert", "spec_bert", "routed", "multibert_scratch", "general_bert"}
    assert merged["router_accuracy"] == entry["router_accuracy"]
    # a run with Multi-BERT does replace it
    again = summary.summarize(fake_results(parameters=[{"variant": "multibert [fa]", "trainable": 300_000}]))
    assert summary.merge(merged, again)["trainable_percent"] == round(100 * 300_000 / 117_653_760, 4)
