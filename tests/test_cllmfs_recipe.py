"""recipes/sft_cllmfs.py end to end on a tiny model: episodes, training, extraction, results on disk."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hub_tiny import load_recipe

# The tiny models here are untrained: their answers ramble up to max_new_tokens, and extraction rightly says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_new_tokens.*before their end:UserWarning")

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "sft_cllmfs.py"


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("sft_cllmfs")


def tiny_config(tmp_path, tiny_llm_dir, data_dir, **overrides):
    config = yaml.safe_load((RECIPE.parent / "cllmfs" / "wnut17_intra_5shot.yaml").read_text())
    config.update(
        model_name_or_path=str(tiny_llm_dir), output_dir=str(tmp_path / "run"), data_dir=str(data_dir),
        n_way=2, k_shot=1, query_size=6, max_steps=2, per_device_train_batch_size=2, max_new_tokens=8,
        lora_r=2, lora_alpha=4, use_cpu=True, save_strategy="no", logging_steps=1, disable_tqdm=True,
    )
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_default_config_names_the_papers_setting():
    config = yaml.safe_load((RECIPE.parent / "cllmfs" / "wnut17_intra_5shot.yaml").read_text())
    assert config["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (config["dataset"], config["k_shot"], config["n_episodes"]) == ("wnut17", 5, 1)
    assert config["cl_weight"] == 0.001 and config["cl_layer"] is None
    assert config["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"]
    assert config["constrained"] is True


def test_quality_overlay_parses_on_any_dataset_config():
    """quality.yaml is an overlay: on a dataset config it swaps the LLM, turns bfloat16 on and decides none/entity
    with the capped split (release 27), nothing else; `--none_threshold null` alone takes it back to greedy."""
    from trl import ModelConfig, TrlParser

    from ner_adapters.cllmfs.cllmfs_config import CLLMFSConfig
    from ner_adapters.cllmfs.experiment import EpisodeArguments, MethodArguments
    from ner_adapters.cllmfs.extraction import DecodingConfig
    from ner_adapters.yaml_config import parse_recipe_args

    def parse(*configs, flags=()):
        parser = TrlParser((EpisodeArguments, MethodArguments, DecodingConfig, CLLMFSConfig, ModelConfig))
        return parse_recipe_args(parser, [arg for c in configs for arg in ("--config", str(RECIPE.parent / "cllmfs" / c))]
                                 + list(flags))

    for dataset in ("wnut17_intra_5shot.yaml", "conll2003_intra_5shot.yaml"):
        base, quality = parse(dataset), parse(dataset, "quality.yaml")
        assert quality[4].model_name_or_path == "Qwen/Qwen2.5-Coder-0.5B-Instruct"
        assert quality[2].compute_dtype == "auto" and base[2].compute_dtype == "float32"
        assert quality[3].bf16 is True
        assert quality[0] == base[0] and quality[1] == base[1]  # same episodes and method
        assert (base[2].none_threshold, base[2].split_max_threshold) == (None, None)
        assert (quality[2].none_threshold, quality[2].split_max_threshold) == ("split", 0.5)
        greedy = parse(dataset, "quality.yaml", flags=["--none_threshold", "null"])[2]
        assert greedy == base[2].__class__(**{**vars(quality[2]), "none_threshold": None, "split_max_threshold": None})
        uncapped = parse(dataset, "quality.yaml", flags=["--split_max_threshold", "null"])[2]
        assert (uncapped.none_threshold, uncapped.split_max_threshold) == ("split", None)


def test_recipe_trains_extracts_and_writes_results(recipe, tmp_path, tiny_llm_dir, data_dir):
    from ner_adapters.metrics import span_scores

    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, save_strategy="steps", save_steps=1)
    summary = recipe.main(["--config", str(config), "--n_episodes", "2"])
    run = tmp_path / "run"
    assert summary["runs"] == 2 and summary["protocol"] == "intra" and summary["n_way"] == 2
    saved = json.loads((run / "results.json").read_text())
    assert saved["micro_f1"] == summary["micro_f1"] and len(saved["episodes"]) == 2
    episode_f1 = []
    for index in range(2):
        episode = run / f"episode-{index}"
        adapter = episode / "adapter"
        assert (adapter / "adapter_model.safetensors").is_file()
        adapter_config = json.loads((adapter / "cllmfs_config.json").read_text())
        assert len(adapter_config["entity_types"]) == 2
        # The recorded score is the shared metric on the saved predictions against the saved gold.
        rows = [json.loads(line) for line in (episode / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == 6
        rescored = span_scores([r["gold"] for r in rows], [r["spans"] for r in rows],
                               types=[t["label"] for t in adapter_config["entity_types"]])
        result = json.loads((episode / "results.json").read_text())
        assert result["scores"]["micro"]["f1"] == pytest.approx(rescored.micro.f1)
        assert adapter_config["metrics"]["micro_f1"] == pytest.approx(rescored.micro.f1)
        episode_f1.append(rescored.micro.f1)
        # A complete artifact: the project's card, the base model as given (not a converted cache folder), no
        # TRL card naming "None", and no periodic checkpoint left beside the finished adapter.
        card = (adapter / "README.md").read_text()
        assert "ner-adapters" in card and "More Information Needed" not in card
        assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_llm_dir)
        assert not (episode / "README.md").exists() and not list(episode.glob("checkpoint-*"))
    assert summary["micro_f1"]["mean"] == pytest.approx(sum(episode_f1) / 2)
    assert len((run / "episodes.jsonl").read_text().splitlines()) == 2
    assert yaml.safe_load((run / "config.yaml").read_text())["method"]["method"] == "cllmfs"


def test_recipe_trains_and_extracts_in_bfloat16_on_cpu(recipe, tmp_path, tiny_llm_dir, data_dir, monkeypatch):
    """``--bf16 true --compute_dtype bfloat16``: training steps and extraction forwards run under bfloat16 autocast
    on the CPU (twice as fast as float32 on CPUs with AMX), and the episode still scores."""
    import torch

    seen = {"train": set(), "extract": set()}
    original_forward = torch.nn.Linear.forward

    def spying_forward(self, x):
        out = original_forward(self, x)
        phase = "train" if torch.is_grad_enabled() else "extract"
        seen[phase].add((torch.is_autocast_enabled("cpu"), out.dtype))
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", spying_forward)
    # bf16 TrainingArguments leave ACCELERATE_MIXED_PRECISION=bf16 behind, and accelerate keeps a bf16 state:
    # both are undone after this test, so later in-process runs train in float32 as they ask
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    monkeypatch.setattr("accelerate.state.AcceleratorState._shared_state", {}, raising=True)
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, bf16=True, compute_dtype="bfloat16")
    settings = yaml.safe_load(config.read_text())
    del settings["use_cpu"]  # a CPU-only machine needs no use_cpu for bf16 (transformers refuses it otherwise)
    config.write_text(yaml.safe_dump(settings))
    summary = recipe.main(["--config", str(config), "--n_episodes", "1"])
    assert summary["runs"] == 1 and 0 <= summary["micro_f1"]["mean"] <= 1
    assert seen["train"] == {(True, torch.bfloat16)}  # every training projection in bfloat16 autocast
    assert (True, torch.bfloat16) in seen["extract"] and (False, torch.float32) not in seen["extract"]


def test_rerun_reuses_finished_episodes_of_the_same_experiment(recipe, tmp_path, tiny_llm_dir, data_dir, capsys):
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=4)
    recipe.main(["--config", str(config), "--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml")])
    first = tmp_path / "run" / "episode-0" / "results.json"
    saved = first.read_text()
    first.touch()
    stamp = first.stat().st_mtime_ns
    capsys.readouterr()
    # More episodes of the same experiment (an interrupted run, or a longer one): episode 0 is not run again,
    # also when resuming or when only the decoding batch shapes changed (they change speed, not spans).
    summary = recipe.main(["--config", str(config), "--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml"),
                           "--n_episodes", "2", "--batch_size", "3", "--prefill_tokens", "256",
                           "--resume_from_checkpoint", "true"])
    assert "reusing" in capsys.readouterr().out
    assert first.stat().st_mtime_ns == stamp and first.read_text() == saved
    assert summary["runs"] == 2 and (tmp_path / "run" / "episode-1" / "results.json").is_file()
    # A changed setting is another experiment: every episode runs again.
    recipe.main(["--config", str(config), "--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml"),
                 "--n_episodes", "2", "--max_new_tokens", "6"])
    assert "reusing" not in capsys.readouterr().out and first.stat().st_mtime_ns != stamp


def test_run_episodes_splits_one_experiment_between_processes(recipe, tmp_path, tiny_llm_dir, data_dir, capsys):
    """Two processes on one output_dir, each with its own episodes: the first to finish waits for the other's,
    the last writes results.json over all of them, identical to one process running every episode."""
    zero_shot = ["--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml"), "--n_episodes", "3"]
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=4)
    run = tmp_path / "run"
    assert recipe.main(["--config", str(config), *zero_shot, "--run_episodes", "2"]) is None
    assert "waits for episode(s) [0, 1]" in capsys.readouterr().out
    assert not (run / "results.json").exists() and (run / "episode-2" / "results.json").is_file()
    assert not (run / "episode-0").exists()
    summary = recipe.main(["--config", str(config), *zero_shot, "--run_episodes", "0", "1"])
    assert "reusing" in capsys.readouterr().out  # episode 2, from the other process
    assert summary["runs"] == 3 and json.loads((run / "results.json").read_text())["runs"] == 3
    assert "run_episodes" not in yaml.safe_load((run / "config.yaml").read_text())["episodes"]
    whole = recipe.main(["--config", str(config), *zero_shot, "--output_dir", str(tmp_path / "whole")])
    assert [e["scores"] for e in whole["episodes"]] == [e["scores"] for e in summary["episodes"]]
    # Finished episodes of another experiment are never mixed in, and indices are checked.
    with pytest.raises(ValueError, match="different experiment.*fresh output_dir"):
        recipe.main(["--config", str(config), *zero_shot, "--run_episodes", "0", "--max_new_tokens", "6"])
    with pytest.raises(ValueError, match="past n_episodes 3"):
        recipe.main(["--config", str(config), *zero_shot, "--run_episodes", "3"])


def test_run_episodes_counts_what_another_process_finished_meanwhile(recipe, tmp_path, tiny_llm_dir, data_dir,
                                                                     monkeypatch, capsys):
    """Episode 0 is missing when this process starts its episode 1 and finished (by another process) before it
    ends: the last process to finish writes results.json over both instead of waiting forever."""
    from ner_adapters.cllmfs import experiment

    original = experiment.run_episode

    def meanwhile(episode, episode_args, *args):
        output_dir = args[-1]
        if output_dir.name == "episode-1":  # the other process finishes episode 0 while this one runs episode 1
            first = experiment.get_episodes(episode_args)[0]
            original(first, episode_args, *args[:-1], output_dir.parent / "episode-0")
        return original(episode, episode_args, *args)

    monkeypatch.setattr(experiment, "run_episode", meanwhile)
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=4)
    summary = recipe.main(["--config", str(config), "--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml"),
                           "--n_episodes", "2", "--run_episodes", "1"])
    assert "waits for" not in capsys.readouterr().out
    assert summary["runs"] == 2 and [e["episode"] for e in summary["episodes"]] == \
        [e.id for e in experiment.get_episodes(experiment.EpisodeArguments(**yaml.safe_load(
            (tmp_path / "run" / "config.yaml").read_text())["episodes"]))]


def test_layered_configs_and_baselines_share_the_episodes(recipe, tmp_path, tiny_llm_dir, data_dir):
    base = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=4)
    recipe.main(["--config", str(base), "--output_dir", str(tmp_path / "zs"), "--config",
                 str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml")])
    recipe.main(["--config", str(base), "--config", str(RECIPE.parent / "cllmfs" / "ablations" / "lora_only.yaml"),
                 "--output_dir", str(tmp_path / "lora")])
    zero_shot = json.loads((tmp_path / "zs" / "results.json").read_text())
    lora = json.loads((tmp_path / "lora" / "results.json").read_text())
    assert zero_shot["method"] == "zero_shot" and not (tmp_path / "zs" / "episode-0" / "adapter").exists()
    assert lora["method"] == "cllmfs"
    assert (tmp_path / "zs" / "episodes.jsonl").read_text() == (tmp_path / "lora" / "episodes.jsonl").read_text()
    lora_config = yaml.safe_load((tmp_path / "lora" / "config.yaml").read_text())
    assert lora_config["training"]["cl_weight"] == 0.0


def test_adapters_from_decodes_the_trained_adapters_again_without_training(recipe, tmp_path, tiny_llm_dir, data_dir):
    """The same decoding on the reused adapters gives the trained run's spans exactly; a changed training setting,
    a missing episode or a method without adapters is refused before any model loads."""
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, query_size=4)
    trained = tmp_path / "run"
    recipe.main(["--config", str(config), "--n_episodes", "2"])
    again = tmp_path / "again"
    summary = recipe.main(["--config", str(config), "--n_episodes", "2", "--adapters_from", str(trained),
                           "--output_dir", str(again)])
    for index in range(2):
        def spans(run):
            return [json.loads(line)["spans"] for line in
                    (run / f"episode-{index}" / "predictions.jsonl").read_text().splitlines()]

        assert spans(again) == spans(trained)
        result = json.loads((again / f"episode-{index}" / "results.json").read_text())
        assert result["adapter_from"] == str(trained / f"episode-{index}" / "adapter")
        assert "train_seconds" not in result and not (again / f"episode-{index}" / "adapter").exists()
    assert summary["micro_f1"] == json.loads((trained / "results.json").read_text())["micro_f1"]
    assert yaml.safe_load((again / "config.yaml").read_text())["method"]["adapters_from"] == str(trained)
    # Decoding may change (that is the point); training, episodes and the method may not.
    recipe.main(["--config", str(config), "--n_episodes", "2", "--adapters_from", str(trained), "--output_dir",
                 str(tmp_path / "split"), "--none_threshold", "split", "--run_episodes", "1"])
    assert json.loads((tmp_path / "split" / "episode-1" / "results.json").read_text())["episode"]
    # The split run keeps its forced pass, from which the split gives back the run's own spans (what the
    # decision-rules diagnostic re-scores); greedy decoding has no forced pass to keep.
    from ner_adapters.cllmfs.extraction import _token_spans, finalise_entities, split_decisions
    from ner_adapters.spans import token_char_offsets

    split_dir = tmp_path / "split" / "episode-1"
    forced = [json.loads(line) for line in (split_dir / "forced_pass.jsonl").read_text().splitlines()]
    saved = [json.loads(line) for line in (split_dir / "predictions.jsonl").read_text().splitlines()]
    assert [row["id"] for row in forced] == [row["id"] for row in saved] and len(saved) == 4
    assert any(row["entities"] for row in forced)
    assert all("_p_entity" in e for row in forced for e in row["entities"])
    resolve = yaml.safe_load((tmp_path / "split" / "config.yaml").read_text())["decoding"]["resolve_overlaps"]
    kept = split_decisions([row["entities"] for row in forced])
    assert [[{"type": s.type, "start": s.start, "end": s.end}
             for s in _token_spans(token_char_offsets(row["tokens"]), finalise_entities(entities, resolve))]
            for row, entities in zip(saved, kept)] == [row["spans"] for row in saved]
    assert not (trained / "episode-1" / "forced_pass.jsonl").exists()
    for flags, message in ((["--learning_rate", "0.5"], "training.learning_rate differ"),
                           (["--n_episodes", "3"], "episode 2 .* has no finished adapter"),
                           (["--none_threshold", "auto"], "auto holds support sentences back"),
                           (["--output_dir", str(trained)], "is this run's output_dir")):
        with pytest.raises(ValueError, match=message):
            recipe.main(["--config", str(config), "--n_episodes", "2", "--adapters_from", str(trained),
                         "--output_dir", str(tmp_path / "refused"), *flags])
    with pytest.raises(ValueError, match="adapters_from reuses trained CLLMFS adapters"):
        recipe.main(["--config", str(config), "--config", str(RECIPE.parent / "cllmfs" / "baselines_zero_shot.yaml"),
                     "--adapters_from", str(trained)])


def test_unknown_config_key_is_named(recipe, tmp_path, tiny_llm_dir, data_dir):
    path = tiny_config(tmp_path, tiny_llm_dir, data_dir, learning_rat=0.1)
    with pytest.raises(ValueError, match="learning_rat"):
        recipe.main(["--config", str(path)])
    with pytest.raises(ValueError, match="method must be one of"):
        recipe.main(["--config", str(tiny_config(tmp_path, tiny_llm_dir, data_dir, method="gliner"))])


@pytest.mark.integration
def test_accelerate_launch_with_two_cpu_processes(tmp_path, tiny_llm_dir, data_dir):
    """DDP (gloo) on CPU: the path the GPU DDP/FSDP configs take, with two processes."""
    config = tiny_config(tmp_path, tiny_llm_dir, data_dir, max_steps=2)
    accelerate_config = RECIPE.parent / "accelerate_configs" / "ddp_cpu.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config), str(RECIPE),
         "--config", str(config)], capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "results.json").read_text())
    assert summary["runs"] == 1 and summary["processes"] == 2  # two processes really trained together
    assert "micro-F1" in result.stdout and result.stdout.count("micro-F1") == 2  # printed by the main process only


def test_one_lora_target_module_stays_a_module_name():
    """trl.ModelConfig turns [q_proj] into "q_proj", which PEFT would read as a regex over whole module paths."""
    from trl import ModelConfig

    from ner_adapters.cllmfs.experiment import lora_config

    one = lora_config(ModelConfig(use_peft=True, lora_target_modules=["q_proj"], lora_task_type="CAUSAL_LM"))
    assert one.target_modules == {"q_proj"}
    several = lora_config(ModelConfig(use_peft=True, lora_target_modules=["q_proj", "v_proj"]))
    assert several.target_modules == {"q_proj", "v_proj"}
    assert lora_config(ModelConfig(use_peft=True, lora_target_modules=["all-linear"])).target_modules == "all-linear"
    assert lora_config(ModelConfig(use_peft=True, lora_target_modules=[".*proj"])).target_modules == ".*proj"
