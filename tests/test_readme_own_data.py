"""README "Your own data": every command of the section, in its order, on data this test writes.

The commands and YAML files are read from README.md itself, so the walkthrough cannot drift from what runs. Each
runs as written, with only extra flags appended that swap in tiny models (a 2-layer BERT core, a 5-layer random
Llama) and small budgets; ``ner-adapters`` commands run through the CLI's ``main`` in this process, the recipes
through their entry points, and the ``accelerate launch`` command as a real 2-process launch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hub_tiny import load_recipe
from multibert_tiny import make_sentences, one_torch_thread

from ner_adapters.spans import spans_to_tags

# The tiny models here are untrained: their answers ramble up to max_new_tokens, and extraction rightly says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_new_tokens.*before their end:UserWarning")

REPO = Path(__file__).resolve().parents[1]


def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Your own data")
    return text[start:text.index("\n## ", start + 1)]


def blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.S)


def readme_commands() -> list[str]:
    return [line.strip() for block in blocks(readme_section(), "bash") for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def write_conll(path: Path, sentences) -> None:
    path.write_text("".join("".join(f"{t}\t{g}\n" for t, g in zip(s.tokens, spans_to_tags(s.spans, len(s.tokens))))
                            + "\n" for s in sentences), encoding="utf-8")


def write_data(root: Path) -> None:
    """data/legal (PER, LOC, ORG) and data/medical (PER, LOC) as CoNLL split folders, and contracts.txt."""
    for domain, templates in (("legal", ("news", "sports")), ("medical", ("travel",))):
        folder = root / "data" / domain
        folder.mkdir(parents=True)
        for split, n, seed in (("train", 30, 0), ("dev", 6, 1), ("test", 6, 2)):
            write_conll(folder / f"{split}.conll", [s for t in templates for s in make_sentences(t, n, seed)])
    (root / "contracts.txt").write_text(
        "mary visited paris today . john scored twice for arsenal in london .\n"
        "we flew from tehran to berlin .\n"
        "the minister met sara in shiraz .\n"
        + " ".join(s.text for s in make_sentences("sports", 30, 7)) + "\n", encoding="utf-8")


def test_the_section_lists_the_whole_walk():
    commands = readme_commands()
    assert [c.split()[0:3] for c in commands] == [
        ["ner-adapters", "data", "stats"], ["ner-adapters", "episodes", "data/legal"],
        ["accelerate", "launch", "recipes/sft_cllmfs.py"], ["python", "recipes/train_multibert.py", "--config"],
        ["ner-adapters", "predict", "contracts.txt"], ["ner-adapters", "predict", "data/legal/test.conll"],
        ["ner-adapters", "evaluate", "--gold"], ["ner-adapters", "predict", "data/legal/test.conll"],
        ["ner-adapters", "evaluate", "--gold"], ["accelerate", "launch", "--multi_gpu"]]
    files = [block.splitlines()[0] for block in blocks(readme_section(), "yaml")]
    assert files == ["# legal_types.yaml", "# my_domains.yaml"]


@pytest.mark.integration
def test_every_command_of_the_walkthrough_runs(tmp_path, monkeypatch, capsys, tiny_llm_dir, core):
    from ner_adapters.cli import main as cli_main

    monkeypatch.chdir(tmp_path)
    write_data(tmp_path)
    for block in blocks(readme_section(), "yaml"):
        name = block.splitlines()[0].lstrip("# ").strip()
        (tmp_path / name).write_text(block, encoding="utf-8")
    cllmfs_tiny = ["--model_name_or_path", str(tiny_llm_dir), "--max_steps", "2", "--per_device_train_batch_size", "2",
                   "--max_new_tokens", "8", "--lora_r", "2", "--lora_alpha", "4", "--use_cpu", "true",
                   "--save_strategy", "no", "--logging_steps", "1", "--disable_tqdm", "true", "--query_size", "6"]
    multibert_tiny = ["--core_model", str(core), "--num_train_epochs", "1", "--pretrain_epochs", "1",
                      "--general_epochs", "1", "--router_epochs", "1", "--router_max_length", "64", "--max_length", "32",
                      "--torch_threads", "1", "--per_device_train_batch_size", "8"]
    outputs: dict[str, str] = {}
    for command in readme_commands():
        argv = shlex.split(command)
        if argv[0] == "ner-adapters":
            with one_torch_thread():
                code = cli_main(argv[1:])
            out = capsys.readouterr()
            assert code == 0, (command, out.err[-2000:])
            outputs[command] = out.out
        elif argv[:3] == ["accelerate", "launch", "recipes/sft_cllmfs.py"]:
            recipe = load_recipe("sft_cllmfs")
            with one_torch_thread():
                assert recipe.cli(argv[3:] + cllmfs_tiny) == 0, command
            outputs[command] = capsys.readouterr().out
        elif argv[:2] == ["python", "recipes/train_multibert.py"]:
            recipe = load_recipe("train_multibert")
            with one_torch_thread():
                assert recipe.main(argv[2:] + multibert_tiny) == 0, command
            outputs[command] = capsys.readouterr().out
        elif argv[:3] == ["accelerate", "launch", "--multi_gpu"]:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO / "src")}
            done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", "29531",
                                   "--mixed_precision", "no", "--dynamo_backend", "no", *argv[2:]],
                                  env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            outputs[command] = done.stdout
        else:
            pytest.fail(f"README command not covered by this test: {command}")

    # what each step left behind
    assert "data/legal [train]: 60 sentences" in next(v for k, v in outputs.items() if "data stats" in k)
    episode = json.loads((tmp_path / "legal_episodes.jsonl").read_text().splitlines()[0])
    assert episode["support_types"] == ["PER", "LOC", "ORG"] and episode["k_shot"] == 5
    run = tmp_path / "outputs" / "legal_cllmfs"
    adapter_config = json.loads((run / "episode-0" / "adapter" / "cllmfs_config.json").read_text())
    assert {t["label"]: t["description"] for t in adapter_config["entity_types"]}["ORG"].startswith("an organization")
    printed = next(v for k, v in outputs.items() if "sft_cllmfs" in k)
    assert re.search(r"episode 0 adapter: +outputs/legal_cllmfs/episode-0/adapter\n", printed), printed[-800:]
    assert re.search(r"summary: +outputs/legal_cllmfs/results.json\n", printed)
    results = json.loads((tmp_path / "outputs" / "multibert_own" / "results.json").read_text())
    assert results["domain_scheme"] == {"legal": "contracts", "medical": "contracts"}
    assert results["schemes"] == {"contracts": ["PER", "LOC", "ORG"]}
    router_run = next(r for r in results["runs"] if r["name"] == "router")
    assert router_run["train_groups"] > 0 and "train_sentences" not in router_run
    tagged = [json.loads(line) for line in (tmp_path / "tagged.jsonl").read_text().splitlines()]
    assert [r["id"] for r in tagged] == ["1", "2", "3", "4"]
    assert all(r["domain"] in ("legal", "medical") for r in tagged)
    assert all(r["text"][e["start"]:e["end"]] == e["word"] for r in tagged for e in r["entities"])
    for name in ("legal_mbert.jsonl", "legal_llm.jsonl"):
        ids = [json.loads(line)["id"] for line in (tmp_path / name).read_text().splitlines()]
        assert ids == [f"test-{i}" for i in range(12)]
    scores = [v for k, v in outputs.items() if k.startswith("ner-adapters evaluate")]
    assert len(scores) == 2 and all("micro avg" in s for s in scores)
    two = [json.loads(line) for line in (tmp_path / "tagged_2proc.jsonl").read_text().splitlines()]
    assert [(r["id"], [(e["type"], e["start"], e["end"]) for e in r["entities"]]) for r in two] == \
        [(r["id"], [(e["type"], e["start"], e["end"]) for e in r["entities"]]) for r in tagged]
    assert "on 2 processes" in outputs[readme_commands()[-1]]
