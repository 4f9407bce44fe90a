"""``benchmarks/keep_runs.py``: the small files of a run go to git and come back, weights and predictions do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub_tiny import load_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "keep_runs.py"


@pytest.fixture()
def keep(tmp_path, monkeypatch):
    module = load_script(SCRIPT, "keep_runs")
    monkeypatch.setattr(module, "OUTPUTS", tmp_path / "outputs")
    monkeypatch.setattr(module, "KEPT", tmp_path / "docs" / "results" / "runs")
    return module


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_a_run_is_kept_without_its_weights_and_restored_byte_for_byte(keep, tmp_path):
    run = tmp_path / "outputs" / "cllmfs" / "conll" / "run"
    write(run / "config.yaml", "method: {method: cllmfs}\n")
    write(run / "command.txt", "accelerate launch recipes/sft_cllmfs.py --output_dir outputs/cllmfs/conll/run\n")
    write(run / "episode-0" / "results.json", '{"episode": "e0"}')
    write(run / "episode-1" / "results.json", '{"episode": "e1"}')
    write(run / "episode-0" / "adapter" / "adapter_model.safetensors", "weights")
    write(run / "episode-0" / "predictions.jsonl", "{}\n")
    write(run / "episodes.jsonl", "{}\n")

    keep.main(["save", str(run)])
    kept = tmp_path / "docs" / "results" / "runs" / "cllmfs" / "conll" / "run"
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()) == [
        "command.txt", "config.yaml", "episode-0/results.json", "episode-1/results.json"]

    for path in (run / "config.yaml", run / "episode-1" / "results.json"):
        path.unlink()
    keep.main(["restore", str(kept)])
    assert (run / "config.yaml").read_text(encoding="utf-8") == "method: {method: cllmfs}\n"
    assert (run / "episode-1" / "results.json").read_text(encoding="utf-8") == '{"episode": "e1"}'
    assert not list(run.rglob("*.tmp"))


def test_folders_outside_outputs_or_without_results_are_refused_by_name(keep, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    write(elsewhere / "config.yaml", "x: 1\n")
    with pytest.raises(SystemExit, match="not under"):
        keep.main(["save", str(elsewhere)])
    empty = tmp_path / "outputs" / "empty"
    empty.mkdir(parents=True)
    with pytest.raises(SystemExit, match="empty: no config.yaml or results.json"):
        keep.main(["save", str(empty)])
