"""benchmarks/cllmfs_summary.py on fake run folders: the issue's JSON shape, same-episode checks, in-place update."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hub_tiny import load_recipe, load_script

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "cllmfs_summary.py"


@pytest.fixture(scope="module")
def summary():
    return load_script(SCRIPT, "cllmfs_summary")


def fake_run(root: Path, name: str, method: str, f1s: list[float], *, source="wnut17", target="wnut17",
             protocol="intra", model="Qwen/Qwen2.5-Coder-0.5B-Instruct", query=500, ids=None, command=True,
             support=None, queries=None) -> Path:
    """A run folder as recipes/sft_cllmfs.py leaves it (only the files the script reads)."""
    folder = root / name
    ids = ids or [f"{source}-{protocol}-6way5shot-seed{i}" for i in range(len(f1s))]
    episodes = []
    for index, (episode_id, f1) in enumerate(zip(ids, f1s)):
        result = {"episode": episode_id, "scores": {"micro": {"precision": f1, "recall": f1, "f1": f1, "support": 80},
                                                    "macro": {}, "per_type": {}},
                  "predict_seconds": 10.0 + index, "peak_rss_mib": 2048.123}
        (folder / f"episode-{index}").mkdir(parents=True)
        (folder / f"episode-{index}" / "results.json").write_text(json.dumps(result))
        episodes.append(result)
    (folder / "results.json").write_text(json.dumps({
        "method": method, "source": source, "target": target, "protocol": protocol, "k_shot": 5, "n_way": 6,
        "query_sentences": [query] * len(f1s), "episodes": episodes}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"model_name_or_path": model}, "method": {"method": method}}))
    if command:
        (folder / "command.txt").write_text(f"accelerate launch recipes/sft_cllmfs.py --method {method}\n")
    if support is not None:  # support sentence ids per episode, as the run's episodes.jsonl lists them
        (folder / "episodes.jsonl").write_text("".join(
            json.dumps({"id": episode_id, "support": [{"id": i, "tokens": ["x"], "spans": []} for i in sentences],
                        **({"query": [{"id": i, "tokens": ["x"], "spans": []} for i in queries[n]]} if queries else {})})
            + "\n" for n, (episode_id, sentences) in enumerate(zip(ids, support))))
    return folder


def test_settings_in_the_issue_shape(summary, tmp_path):
    runs = [fake_run(tmp_path, m, m, values) for m, values in
            {"cllmfs": [0.25, 0.3], "proto": [0.12, 0.131], "nnshot": [0.1, 0.1], "zero_shot": [0.05, 0.0]}.items()]
    inter = [fake_run(tmp_path, f"i_{m}", m, [0.2], source="conll2003+gum", target="wnut17", protocol="inter")
             for m in ("cllmfs", "proto")]
    out = tmp_path / "docs" / "cllmfs.json"
    assert summary.main([*map(str, runs + inter), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    intra, other = data["settings"]
    assert intra["name"] == "wnut17_intra" and other["name"] == "conll2003+gum_to_wnut17_inter"
    assert (intra["kind"], intra["source"], intra["target"], intra["query_size"]) == ("intra", "wnut17", "wnut17", 500)
    assert intra["model"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    assert intra["f1"] == {"cllmfs": [25.0, 30.0], "proto": [12.0, 13.1], "nnshot": [10.0, 10.0], "zero_shot": [5.0, 0.0]}
    assert list(intra["f1"]) == ["cllmfs", "proto", "nnshot", "zero_shot"]
    assert intra["command"].splitlines()[0] == "accelerate launch recipes/sft_cllmfs.py --method cllmfs"
    assert other["f1"] == {"cllmfs": [20.0], "proto": [20.0]} and other["kind"] == "inter"
    assert intra["costs"]["proto"] == {"predict_seconds": [10.0, 11.0], "peak_rss_mib": [2048.12, 2048.12]}


def test_the_file_is_updated_in_place(summary, tmp_path):
    out = tmp_path / "cllmfs.json"
    out.write_text(json.dumps({"settings": [{"name": "gum_intra", "f1": {"cllmfs": [1.0]}},
                                            {"name": "wnut17_intra", "f1": {"cllmfs": [0.0]}}]}))
    run = fake_run(tmp_path, "c", "cllmfs", [0.5], command=False)
    assert summary.main([str(run), "--out", str(out), "--command", "make run"]) == 0
    settings = json.loads(out.read_text())["settings"]
    assert [s["name"] for s in settings] == ["gum_intra", "wnut17_intra"]
    assert settings[0] == {"name": "gum_intra", "f1": {"cllmfs": [1.0]}}  # another setting is left alone
    assert settings[1]["f1"] == {"cllmfs": [50.0]} and settings[1]["command"] == "make run"


def test_runs_that_cannot_be_compared_are_refused(summary, tmp_path, capsys):
    out = tmp_path / "cllmfs.json"
    cllmfs = fake_run(tmp_path, "c", "cllmfs", [0.5, 0.4])
    other_episodes = fake_run(tmp_path, "p", "proto", [0.1, 0.2], ids=["a", "b"])
    assert summary.main([str(cllmfs), str(other_episodes), "--out", str(out)]) == 1
    assert "ran on other episodes" in capsys.readouterr().err and not out.exists()
    twice = fake_run(tmp_path, "c2", "cllmfs", [0.5, 0.4])
    assert summary.main([str(cllmfs), str(twice), "--out", str(out)]) == 1
    assert "two cllmfs runs for wnut17_intra" in capsys.readouterr().err
    other_model = fake_run(tmp_path, "z", "zero_shot", [0.0, 0.0], model="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert summary.main([str(cllmfs), str(other_model), "--out", str(out)]) == 1
    assert "different models" in capsys.readouterr().err
    bare = fake_run(tmp_path, "n", "nnshot", [0.1, 0.1], command=False)
    assert summary.main([str(cllmfs), str(bare), "--out", str(out)]) == 1
    assert "no command.txt" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert summary.main([str(tmp_path / "empty"), "--out", str(out)]) == 1
    assert "not a finished CLLMFS run" in capsys.readouterr().err


def test_every_learning_method_must_have_had_the_same_support_sentences(summary, tmp_path, capsys):
    """Baselines given other labelled sentences than CLLMFS (e.g. one 5-shot set against five) are refused; zero-shot
    prompting uses none, so its support does not count; the setting records how many each episode had."""
    out = tmp_path / "cllmfs.json"
    five_sets = [[f"s{i}" for i in range(150)], [f"t{i}" for i in range(140)]]
    cllmfs = fake_run(tmp_path, "c", "cllmfs", [0.5, 0.4], support=five_sets)
    one_set = fake_run(tmp_path, "p1", "proto", [0.1, 0.2], support=[ids[:30] for ids in five_sets])
    assert summary.main([str(cllmfs), str(one_set), "--out", str(out)]) == 1
    assert "other support sentences" in capsys.readouterr().err and not out.exists()
    proto = fake_run(tmp_path, "p", "proto", [0.1, 0.2], support=five_sets)
    zero = fake_run(tmp_path, "z", "zero_shot", [0.0, 0.1], support=[["u"], ["v"]])
    assert summary.main([str(cllmfs), str(proto), str(zero), "--out", str(out)]) == 0
    (setting,) = json.loads(out.read_text())["settings"]
    assert setting["support_sentences"] == [150, 140]
    broken = fake_run(tmp_path, "b", "nnshot", [0.1, 0.2], support=five_sets)
    (broken / "episodes.jsonl").write_text("{not json\n")
    assert summary.main([str(cllmfs), str(broken), "--out", str(out)]) == 1
    assert "episodes.jsonl, line 1: not an episode" in capsys.readouterr().err


def test_the_recipe_records_its_command(tmp_path):
    recipe = load_recipe("sft_cllmfs")
    recipe.record_command(str(tmp_path / "run"), ["--config", "a b.yaml", "--n_support_sets", "5"])
    assert (tmp_path / "run" / "command.txt").read_text() == \
        "accelerate launch recipes/sft_cllmfs.py --config 'a b.yaml' --n_support_sets 5\n"
    # which episodes one process runs is not part of the experiment's command
    recipe.record_command(str(tmp_path / "split"), ["--run_episodes", "3", "4", "--n_episodes", "5", "--run_episodes=1",
                                                    "--none_threshold", "auto"])
    assert (tmp_path / "split" / "command.txt").read_text() == \
        "accelerate launch recipes/sft_cllmfs.py --n_episodes 5 --none_threshold auto\n"


def test_a_resumed_episodes_training_time_is_not_reported(summary, tmp_path):
    """After a resume, train_seconds covers only the steps after the checkpoint: the summary says unknown."""
    run = fake_run(tmp_path, "cllmfs", "cllmfs", [0.2, 0.3])
    for index, resumed in enumerate((None, "checkpoint-124")):
        path = run / f"episode-{index}" / "results.json"
        result = json.loads(path.read_text())
        result["train_seconds"] = 600.0 if resumed is None else 1.0
        if resumed:
            result["resumed_from_checkpoint"] = resumed
        path.write_text(json.dumps(result))
    out = tmp_path / "cllmfs.json"
    assert summary.main([str(run), "--out", str(out)]) == 0
    costs = json.loads(out.read_text())["settings"][0]["costs"]["cllmfs"]
    assert costs["train_seconds"] == [600.0, None] and costs["predict_seconds"] == [10.0, 11.0]


def test_zero_shot_prompting_may_come_from_other_support_sets_on_the_same_queries(summary, tmp_path, capsys):
    """Zero-shot prompting reads no support: a run on the one-set episodes compares with five-set runs when its
    query sentences are the same ones; other queries are still refused."""
    five = [f"wnut17-intra-6way5shot-seed{i}-5sets" for i in range(2)]
    one = [f"wnut17-intra-6way5shot-seed{i}" for i in range(2)]
    queries = [["t1", "t2"], ["t3", "t4"]]
    learners = [fake_run(tmp_path, m, m, [0.2, 0.1], ids=five, support=[["a", "b"], ["c", "d"]], queries=queries)
                for m in ("cllmfs", "proto")]
    zero = fake_run(tmp_path, "zs", "zero_shot", [0.01, 0.02], ids=one, support=[["a"], ["c"]], queries=queries)
    out = tmp_path / "cllmfs.json"
    assert summary.main([*map(str, learners), str(zero), "--out", str(out)]) == 0
    setting = json.loads(out.read_text())["settings"][0]
    assert setting["f1"]["zero_shot"] == [1.0, 2.0] and setting["episodes"] == five
    assert setting["support_sentences"] == [2, 2]
    other = fake_run(tmp_path, "zs_other", "zero_shot", [0.01, 0.02], ids=one, support=[["a"], ["c"]],
                     queries=[["t1", "t9"], ["t3", "t4"]])
    assert summary.main([*map(str, learners), str(other), "--out", str(out)]) != 0
    assert "ran on other episodes" in capsys.readouterr().err
    unlisted = fake_run(tmp_path, "zs_unlisted", "zero_shot", [0.01, 0.02], ids=one)  # no episodes.jsonl: ids decide
    assert summary.main([*map(str, learners), str(unlisted), "--out", str(out)]) != 0


def test_an_inter_zero_shot_run_serves_every_pair_into_its_target_on_the_same_queries(summary, tmp_path, capsys):
    """Zero-shot prompting reads nothing of an INTER source: a wnut17 -> conll2003 run joins gum -> conll2003 when
    the query sentences are the same; on other queries it stays a setting of its own."""
    queries = [["t1", "t2"], ["t3", "t4"]]
    inter = dict(target="conll2003", protocol="inter")
    gum_ids = [f"gum-inter-10way5shot-seed{i}-5sets" for i in range(2)]
    learners = [fake_run(tmp_path, m, m, [0.4, 0.3], source="gum", ids=gum_ids, support=[["g1"], ["g2"]],
                         queries=queries, **inter) for m in ("cllmfs", "proto")]
    wnut_ids = [f"wnut17-inter-6way5shot-seed{i}-5sets" for i in range(2)]
    zero = fake_run(tmp_path, "zs", "zero_shot", [0.1, 0.2], source="wnut17", ids=wnut_ids, support=[["w1"], ["w2"]],
                    queries=queries, **inter)
    out = tmp_path / "cllmfs.json"
    assert summary.main([*map(str, learners), str(zero), "--out", str(out)]) == 0
    (setting,) = json.loads(out.read_text())["settings"]
    assert setting["name"] == "gum_to_conll2003_inter" and setting["episodes"] == gum_ids
    assert setting["f1"] == {"cllmfs": [40.0, 30.0], "proto": [40.0, 30.0], "zero_shot": [10.0, 20.0]}
    other = fake_run(tmp_path, "zs_other", "zero_shot", [0.1, 0.2], source="wnut17", ids=wnut_ids,
                     support=[["w1"], ["w2"]], queries=[["t1", "t9"], ["t3", "t4"]], **inter)
    out.unlink()
    assert summary.main([*map(str, learners), str(other), "--out", str(out)]) == 0
    names = {s["name"]: s for s in json.loads(out.read_text())["settings"]}
    assert set(names) == {"gum_to_conll2003_inter", "wnut17_to_conll2003_inter"}
    assert "zero_shot" not in names["gum_to_conll2003_inter"]["f1"]
