"""Interrupted training and interrupted saves.

Training: a real training process (tests/interrupt_worker.py: the CLLMFS recipe on a tiny Llama, or one Multi-BERT
adapter run on a tiny BERT) is killed with SIGKILL after it wrote a checkpoint, or sent SIGTERM between two
checkpoints; the same command with ``resume_from_checkpoint`` then finishes the run. The final adapter must equal
the one of an uninterrupted run with the same seed: every weight within 1e-6 absolute (CPU training is
deterministic here, so in practice the difference is 0), and the CLLMFS metrics and predictions identical.

Saves: a failure inside ``save_adapter`` / ``MultiBertModel.save`` (the writer raising half-way, the final rename
failing) leaves the previous artifact loadable and unchanged, or no artifact at all, never a half-written one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

# The tiny models here are untrained: their answers ramble up to max_new_tokens, and extraction rightly says so.
pytestmark = pytest.mark.filterwarnings("ignore:.*reached max_new_tokens.*before their end:UserWarning")

TESTS = Path(__file__).resolve().parent
RECIPE = TESTS.parent / "recipes" / "sft_cllmfs.py"
WORKER = TESTS / "interrupt_worker.py"
TOLERANCE = 1e-6  # max |w_resumed - w_uninterrupted| over every adapter (and head) weight


def start_worker(*args: str, progress: Path, sleep: float = 0.4, sigterm_at_step: int | None = None,
                 hold_after_save: int | None = None, resume_calls: Path | None = None) -> subprocess.Popen:
    # a fresh process: nothing an earlier in-process run left in the environment (bf16 TrainingArguments leave
    # ACCELERATE_MIXED_PRECISION behind) reaches the worker
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}, "OMP_NUM_THREADS": "1", "STEP_SLEEP": str(sleep), "PROGRESS_FILE": str(progress),
           "HF_HUB_OFFLINE": "1"}
    if sigterm_at_step is not None:
        env["SIGTERM_AT_STEP"] = str(sigterm_at_step)
    if hold_after_save is not None:
        env["HOLD_AFTER_SAVE"] = str(hold_after_save)
    if resume_calls is not None:
        env["RESUME_CALLS"] = str(resume_calls)
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=TESTS.parent)


def wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the worker ended (rc {process.returncode}) before the expected point:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the worker")
        time.sleep(0.02)


def step(progress: Path) -> int:
    try:
        return int(progress.read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def complete(checkpoint: Path) -> bool:
    """Written to the end: ``trainer_state.json`` (written last) exists and parses. A SIGKILL sent as soon as the
    file exists could land before its content is written; the kill must come after the checkpoint is whole."""
    try:
        return bool(json.loads((checkpoint / "trainer_state.json").read_text()))
    except (OSError, ValueError):
        return False


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# ==============================================================================================================
# CLLMFS: the recipe, killed and resumed
# ==============================================================================================================


def cllmfs_config(folder: Path, tiny_llm_dir: Path, data_dir: Path) -> Path:
    config = yaml.safe_load((RECIPE.parent / "cllmfs" / "wnut17_intra_5shot.yaml").read_text())
    config.update(  # group_by_length, LoRA dropout and the contrastive noise stay on: all of them draw random numbers
        model_name_or_path=str(tiny_llm_dir), output_dir=str(folder / "run"), data_dir=str(data_dir),
        n_way=2, k_shot=1, query_size=6, max_steps=8, per_device_train_batch_size=2, max_new_tokens=8,
        lora_r=2, lora_alpha=4, use_cpu=True, save_strategy="steps", save_steps=2, save_total_limit=1,
        logging_steps=1, disable_tqdm=True, cl_noise_scale=0.1, dataloader_num_workers=0,
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_llm_dir, data_dir):
    """The reference run, in a fresh worker process like the interrupted and resumed ones: every run compared
    here trains at one thread in a process no earlier test has touched (thread count, accelerate's state and
    the environment all move the last bits of the weights)."""
    folder = tmp_path_factory.mktemp("straight")
    run_worker("--config", str(cllmfs_config(folder, tiny_llm_dir, data_dir)), folder=folder)
    return folder / "run"


def run_worker(*args: str, folder: Path) -> list:
    """Run the CLLMFS recipe to its end in a worker; returns what ``train()`` was asked to resume from."""
    calls = folder / "resume_calls.json"
    worker = start_worker("cllmfs", *args, progress=folder / "progress.final", sleep=0, resume_calls=calls)
    _, stderr = worker.communicate(timeout=300)
    assert worker.returncode == 0, stderr[-3000:]
    return json.loads(calls.read_text())


def outcome(run: Path) -> tuple[dict, dict, str]:
    episode = run / "episode-0"
    weights = load_file(str(episode / "adapter" / "adapter_model.safetensors"))
    scores = json.loads((episode / "results.json").read_text())["scores"]
    return weights, scores, (episode / "predictions.jsonl").read_text()


def resume(config: Path) -> list:
    """The same command with --resume_from_checkpoint true, in a fresh worker; returns what train() resumed from."""
    return run_worker("--config", str(config), "--resume_from_checkpoint", "true", folder=config.parent)


def assert_same_as_uninterrupted(run: Path, reference: Path) -> None:
    weights, scores, predictions = outcome(run)
    expected_weights, expected_scores, expected_predictions = outcome(reference)
    difference = max_difference(weights, expected_weights)
    print(f"max |w_resumed - w_uninterrupted| = {difference:.3g}")
    assert difference <= TOLERANCE
    assert scores == expected_scores
    assert predictions == expected_predictions


def test_cllmfs_sigkill_after_a_checkpoint_then_resume(uninterrupted, tmp_path, tiny_llm_dir, data_dir):
    config = cllmfs_config(tmp_path, tiny_llm_dir, data_dir)
    episode = tmp_path / "run" / "episode-0"
    worker = start_worker("cllmfs", "--config", str(config), progress=tmp_path / "progress", hold_after_save=2)
    wait_for(lambda: (tmp_path / "progress.held").exists(), worker)  # checkpoint-2 whole, nothing after it yet
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL
    assert not (episode / "adapter").exists() and not (episode / "results.json").exists()
    last = max(int(p.name.split("-")[1]) for p in episode.glob("checkpoint-*") if complete(p))
    assert last < 8  # killed before the end
    # a checkpoint the kill cut short (weights half written, no trainer_state.json) must be skipped, not loaded
    torn = episode / f"checkpoint-{last + 1}"
    torn.mkdir(exist_ok=True)
    (torn / "adapter_model.safetensors").write_bytes(b"\x00" * 100)
    calls = resume(config)
    assert calls == [str(episode / f"checkpoint-{last}")]
    assert_same_as_uninterrupted(tmp_path / "run", uninterrupted)
    # its train_seconds timed only the steps after the checkpoint; the results say so (the summary then omits it)
    assert json.loads((episode / "results.json").read_text())["resumed_from_checkpoint"] == f"checkpoint-{last}"
    assert "resumed_from_checkpoint" not in json.loads((uninterrupted / "episode-0" / "results.json").read_text())


def test_cllmfs_sigterm_midway_checkpoints_then_resume(uninterrupted, tmp_path, tiny_llm_dir, data_dir):
    """SIGTERM between two checkpoints: the step in progress finishes, a checkpoint of it is written, the
    process exits 143 without pretending the episode is done; resuming loses no step."""
    config = cllmfs_config(tmp_path, tiny_llm_dir, data_dir)
    episode = tmp_path / "run" / "episode-0"
    progress = tmp_path / "progress"
    worker = start_worker("cllmfs", "--config", str(config), progress=progress)
    wait_for(lambda: step(progress) >= 3, worker)
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=120)
    assert worker.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "interrupted by SIGTERM" in stderr
    stopped = step(progress)
    assert 3 <= stopped < 8
    assert complete(episode / f"checkpoint-{stopped}")  # the step in progress, not the last periodic checkpoint
    assert not (episode / "adapter").exists() and not (episode / "results.json").exists()
    calls = resume(config)
    assert calls == [str(episode / f"checkpoint-{stopped}")]
    assert_same_as_uninterrupted(tmp_path / "run", uninterrupted)


# ==============================================================================================================
# Multi-BERT: one adapter + head run, killed and resumed
# ==============================================================================================================


@pytest.fixture(scope="module")
def multibert_reference(core, tmp_path_factory):
    from interrupt_worker import multibert_run
    from multibert_tiny import one_torch_thread

    with one_torch_thread():
        weights, result = multibert_run(tmp_path_factory.mktemp("mb_straight"), core, resume=False)
    return weights, result


def multibert_resume(out: Path, core: Path):
    """The same run with resume on; also returns how many optimizer steps this process took."""
    from transformers import TrainerCallback

    from interrupt_worker import multibert_run
    from multibert_tiny import one_torch_thread

    class Count(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            Count.steps += 1

    with one_torch_thread():
        weights, result = multibert_run(out, core, resume=True, callbacks=[Count()])
    return weights, result, Count.steps


@pytest.mark.parametrize("kill", ["sigkill_after_checkpoint", "sigterm_midway", "sigterm_at_epoch_end"])
def test_multibert_run_killed_then_resumed(core, multibert_reference, tmp_path, kill):
    """4 epochs of 2 steps, a checkpoint per epoch (with optimizer and RNG state when resume is on).

    SIGTERM is sent by the worker itself at a chosen step so that each case tests what it names whatever the
    machine's load: the stop lands in the middle of epoch 3 (step 5; the half epoch must not be evaluated, or
    the resumed run keeps another best epoch than the uninterrupted one) or at the end of epoch 2 (step 4;
    that epoch's evaluation must run, as in the uninterrupted run).
    """
    run_dir = tmp_path / "runs" / "holiday"
    progress = tmp_path / "progress"
    if kill == "sigkill_after_checkpoint":
        worker = start_worker("multibert", str(tmp_path), str(core), progress=progress, sleep=0.0, hold_after_save=2)
        wait_for(lambda: Path(f"{progress}.held").exists(), worker)  # checkpoint-2 whole, nothing after it yet
        worker.send_signal(signal.SIGKILL)
        worker.communicate(timeout=60)
        assert worker.returncode == -signal.SIGKILL
    else:
        stop = 5 if kill == "sigterm_midway" else 4
        worker = start_worker("multibert", str(tmp_path), str(core), progress=progress, sleep=0.0,
                              sigterm_at_step=stop - 1)
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 128 + signal.SIGTERM, stderr[-3000:]
        assert step(progress) == stop and complete(run_dir / f"checkpoint-{stop}")
        state = json.loads((run_dir / f"checkpoint-{stop}" / "trainer_state.json").read_text())
        evaluated = [entry["step"] for entry in state["log_history"] if "eval_loss" in entry]
        assert evaluated == [2, 4]  # epoch ends only: at step 5 the half epoch 3 is not evaluated
    assert not (tmp_path / "final.safetensors").exists()
    checkpoint = max((p for p in run_dir.glob("checkpoint-*") if complete(p)), key=lambda p: int(p.name.split("-")[1]))
    assert int(checkpoint.name.split("-")[1]) < 8 and (checkpoint / "optimizer.pt").is_file()
    weights, result, steps = multibert_resume(tmp_path, core)
    assert steps == 8 - int(checkpoint.name.split("-")[1])  # resumed, not started over
    expected_weights, expected = multibert_reference
    difference = max_difference(weights, expected_weights)
    print(f"max |w_resumed - w_uninterrupted| = {difference:.3g}")
    assert difference <= TOLERANCE
    assert result.best_dev_metric == expected.best_dev_metric and result.epochs == expected.epochs == 4
    assert (run_dir / "finished").is_file()
    # running again after the end trains the run again from scratch (early stopping could not be resumed) to the
    # same weights
    again, _, steps = multibert_resume(tmp_path, core)
    assert steps == 8 and max_difference(again, expected_weights) <= TOLERANCE


def test_last_complete_checkpoint_skips_torn_folders(tmp_path):
    from ner_adapters.resume import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "missing") is None
    for n, whole in ((2, True), (10, True), (12, False), (9, True), (14, None)):
        folder = tmp_path / f"checkpoint-{n}"
        folder.mkdir()
        if whole:
            (folder / "trainer_state.json").write_text('{"global_step": 1}')
        elif whole is None:  # killed after the file was created, before its content was written
            (folder / "trainer_state.json").write_text("")
    (tmp_path / "checkpoint-x").mkdir()
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")  # not 14 or 12 (torn), not 9


# ==============================================================================================================
# Atomic saves
# ==============================================================================================================


@pytest.fixture(scope="module")
def lora_model(tiny_llm_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llm_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    return model, AutoTokenizer.from_pretrained(tiny_llm_dir)


def adapter_config(tiny_llm_dir, model):
    from ner_adapters.cllmfs import CLLMFSAdapterConfig
    from ner_adapters.cllmfs.artifact import architecture_fingerprint

    return CLLMFSAdapterConfig(base_model=str(tiny_llm_dir), base_fingerprint=architecture_fingerprint(model.config),
                               entity_types=[{"label": "person", "name": "Person", "description": "a person"}])


def fill_lora(model, value: float) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.fill_(value)


def test_cllmfs_adapter_save_failing_midway_keeps_the_previous_adapter(lora_model, tiny_llm_dir, tmp_path,
                                                                      monkeypatch):
    from ner_adapters.cllmfs import CLLMFSExtractor, save_adapter

    model, tokenizer = lora_model
    config = adapter_config(tiny_llm_dir, model)
    target = tmp_path / "adapter"
    fill_lora(model, 0.25)
    save_adapter(model, tokenizer, target, config)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    fill_lora(model, -0.5)  # the weights a failed save must not leave behind

    def half_then_fail(self, folder, *args, **kwargs):
        Path(folder, "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    def disk_full(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(tokenizer, "save_pretrained", disk_full)
        with pytest.raises(OSError, match="disk full"):
            save_adapter(model, tokenizer, target, config)
    with monkeypatch.context() as patch:
        patch.setattr(type(model), "save_pretrained", half_then_fail)
        with pytest.raises(OSError, match="disk full"):
            save_adapter(model, tokenizer, target, config)
        with pytest.raises(OSError, match="disk full"):
            save_adapter(model, tokenizer, tmp_path / "never", config)
    # the final rename failing: the previous adapter is moved back
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".saving-" in Path(src).name:  # the staging folder of atomic_directory
            raise OSError("rename failed")
        return real_replace(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing_replace)
        with pytest.raises(OSError, match="rename failed"):
            save_adapter(model, tokenizer, target, config)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert not (tmp_path / "never").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no staging or backup folder left
    loaded = CLLMFSExtractor.from_pretrained(tiny_llm_dir, adapter=target)
    lora = {n: p for n, p in loaded.model.named_parameters() if "lora_B" in n}
    assert lora and all(torch.all(p == 0.25) for p in lora.values())


def test_multibert_save_failing_midway_keeps_the_previous_set(core, tmp_path, monkeypatch):
    from multibert_tiny import TYPES, one_torch_thread, randomize
    from ner_adapters.multibert import MultiBertModel

    with one_torch_thread():
        mbert = MultiBertModel.from_core(str(core), max_length=32)
        mbert.add_scheme("toy", TYPES)
        mbert.add_domain("news", "toy")
        mbert.add_domain("sports", "toy")
        randomize(mbert, seed=1)
        target = mbert.save(tmp_path / "model")
        sentences = [["mary", "visited", "paris", "."]]
        expected = rounded(mbert.predict(sentences, "sports"))
        randomize(mbert, seed=2)
        assert rounded(mbert.predict(sentences, "sports")) != expected
        original = type(mbert.model).save_head

        def fail_on_head(self, *args, **kwargs):
            raise OSError("disk full")

        def failing_replace(src, dst):
            if ".saving-" in Path(src).name:
                raise OSError("rename failed")
            return real_replace(src, dst)

        real_replace = os.replace
        monkeypatch.setattr(type(mbert.model), "save_head", fail_on_head)  # adapters already written by then
        with pytest.raises(OSError, match="disk full"):
            mbert.save(target)
        with pytest.raises(OSError, match="disk full"):
            mbert.save(tmp_path / "fresh")
        monkeypatch.setattr(type(mbert.model), "save_head", original)
        monkeypatch.setattr(os, "replace", failing_replace)
        with pytest.raises(OSError, match="rename failed"):
            mbert.save(target)
        monkeypatch.setattr(os, "replace", real_replace)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
        assert rounded(MultiBertModel.load(target).predict(sentences, "sports")) == expected


def rounded(batch):
    return [[(e.entity_group, e.start, e.end, round(e.score, 5)) for e in row] for row in batch]


def test_length_grouped_order_survives_a_resume():
    """transformers' LengthGroupedSampler draws each epoch's order from the global RNG when the epoch starts, so
    a run resumed in epoch 3 (fresh process, RNG restored only after the order is drawn) batches differently
    from the run it continues; the epoch-seeded sampler CLLMFS and Multi-BERT use gives the same order."""
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from ner_adapters.resume import EpochSeededLengthGroupedSampler

    lengths = [(i * 7919) % 97 + 1 for i in range(400)]  # > one mega-batch (50 x batch size): order matters

    def epoch_orders(sampler_factory, resumed_at=None):
        torch.manual_seed(0)
        sampler = sampler_factory()
        orders = []
        for epoch in range(4):
            if resumed_at is not None and epoch < resumed_at:
                continue  # the resumed process never iterated these epochs
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            orders.append(list(sampler))
        return orders

    ours = lambda: EpochSeededLengthGroupedSampler(4, lengths=lengths, seed=42)  # noqa: E731
    theirs = lambda: LengthGroupedSampler(4, lengths=lengths)  # noqa: E731
    assert epoch_orders(ours)[3] == epoch_orders(ours, resumed_at=3)[0]
    assert epoch_orders(theirs)[3] != epoch_orders(theirs, resumed_at=3)[0]  # the problem it fixes
    assert epoch_orders(ours)[0] != epoch_orders(ours)[1]  # still shuffled between epochs
    assert sorted(epoch_orders(ours)[2]) == list(range(400))


def _router_run(out: Path, core: Path, monkeypatch, sigterm_at_step: int | None = None):
    """The domain classifier alone over two tiny domains, 3 epochs of 2 steps, resumable; returns its weights."""
    from transformers import TrainerCallback

    from multibert_tiny import make_sentences, one_torch_thread
    from ner_adapters.multibert import MultiBertModel, make_groups, router as router_module, train_router
    from ner_adapters.multibert.config import MultiBertTrainingArguments, RouterArguments

    original = router_module.adapter_trainer_class

    class SelfSigterm(TrainerCallback):  # runs after the stop callback: the stop lands one step later
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == sigterm_at_step:
                os.kill(os.getpid(), signal.SIGTERM)

    def with_signal():
        base = original()

        class Trainer(base):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                self.add_callback(SelfSigterm())

        return Trainer

    monkeypatch.setattr(router_module, "adapter_trainer_class", with_signal)
    with one_torch_thread():
        torch.manual_seed(0)
        mbert = MultiBertModel.from_core(str(core), max_length=32)
        mbert.add_router(["legal", "sports"], max_length=64, threshold=0.0)
        data = {"legal": make_sentences("news", 48, 0), "sports": make_sentences("sports", 48, 0)}
        dev = {"legal": make_sentences("news", 16, 1), "sports": make_sentences("sports", 16, 1)}
        result = train_router(
            mbert, make_groups(data, mbert.tokenizer, group_size=8, max_length=64, seed=0),
            make_groups(dev, mbert.tokenizer, group_size=8, max_length=64),
            RouterArguments(group_size=8, router_max_length=64, router_learning_rate=5e-3, router_epochs=3),
            MultiBertTrainingArguments(output_dir=str(out), per_device_train_batch_size=8, logging_steps=100,
                                       early_stopping_min_epochs=0, early_stopping_patience=10, keep_checkpoints=True,
                                       resume_from_checkpoint=True, seed=7))
    weights = {n: p.detach().clone() for n, p in mbert.model.named_parameters()
               if "router" in n.split(".") or n.startswith("heads.router_head")}
    return weights, result


def test_router_run_stopped_midway_then_resumed(core, tmp_path, monkeypatch):
    """The router's training resumes like a domain adapter's: stopped by SIGTERM in the middle of epoch 2, the
    same call continues from the checkpoint to the weights of an uninterrupted run."""
    from ner_adapters.resume import TrainingInterrupted

    expected, expected_result = _router_run(tmp_path / "straight", core, monkeypatch)
    assert expected_result.epochs == 3
    with pytest.raises(TrainingInterrupted) as stopped:
        _router_run(tmp_path / "stopped", core, monkeypatch, sigterm_at_step=2)
    assert stopped.value.checkpoint.endswith("checkpoint-3")  # mid epoch 2 (12 groups, batch 8: 2 steps an epoch)
    weights, result = _router_run(tmp_path / "stopped", core, monkeypatch)
    assert max_difference(weights, expected) <= TOLERANCE
    assert result.best_dev_metric == expected_result.best_dev_metric and result.epochs == 3
