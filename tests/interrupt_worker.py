"""A training process for tests/test_interruptions.py to kill (not a test module).

    python tests/interrupt_worker.py cllmfs RECIPE_ARGS...       # recipes/sft_cllmfs.py, exit code as from a shell
    python tests/interrupt_worker.py multibert OUT CORE [resume] # one Multi-BERT train_adapter run

``STEP_SLEEP`` (seconds) slows every optimizer step so a signal reliably lands mid-run; ``PROGRESS_FILE``, when
set, receives the global step after each one. Neither changes what is computed. ``SIGTERM_AT_STEP=N`` makes the
worker send itself SIGTERM at the end of step N, after the stop callback looked for one: the signal then stops
the run at step N + 1 exactly, where an outside ``kill`` lands at a step that depends on the machine's load.
``HOLD_AFTER_SAVE=N`` makes it wait, once checkpoint N is whole, until it is killed (``<PROGRESS_FILE>.held`` says
it is waiting). ``RESUME_CALLS`` (CLLMFS), when set, names a JSON file that receives what each ``train()`` call
was asked to resume from.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))


def _progress_callback():
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            time.sleep(float(os.environ.get("STEP_SLEEP", "0")))
            if os.environ.get("PROGRESS_FILE"):
                Path(os.environ["PROGRESS_FILE"]).write_text(str(state.global_step))
            if os.environ.get("SIGTERM_AT_STEP") == str(state.global_step):
                os.kill(os.getpid(), signal.SIGTERM)

        def on_save(self, args, state, control, **kwargs):
            # Called once the checkpoint is whole (trainer_state.json written, old checkpoints rotated): wait here
            # to be killed, so the kill lands after this checkpoint and before any further step, under any load.
            if os.environ.get("HOLD_AFTER_SAVE") == str(state.global_step) and os.environ.get("PROGRESS_FILE"):
                Path(os.environ["PROGRESS_FILE"] + ".held").write_text(str(state.global_step))
                time.sleep(600)

    return Progress()


def run_cllmfs(argv: list[str]) -> int:
    from ner_adapters.cllmfs import cllmfs_trainer

    original = cllmfs_trainer.CLLMFSTrainer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(_progress_callback())

    cllmfs_trainer.CLLMFSTrainer.__init__ = init
    if os.environ.get("RESUME_CALLS"):  # record what train() is asked to resume from, for the test to check
        calls, train = [], cllmfs_trainer.CLLMFSTrainer.train

        def recording_train(self, resume_from_checkpoint=None, **kwargs):
            calls.append(resume_from_checkpoint)
            Path(os.environ["RESUME_CALLS"]).write_text(json.dumps(calls))
            return train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

        cllmfs_trainer.CLLMFSTrainer.train = recording_train
    spec = importlib.util.spec_from_file_location("sft_cllmfs", TESTS.parent / "recipes" / "sft_cllmfs.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    return recipe.cli(argv)


def multibert_run(out: Path, core: Path, resume: bool, callbacks=()):
    """Train one domain's adapter and head for 4 epochs (checkpoint every epoch); returns their weights."""
    import torch

    from multibert_tiny import make_domain
    from ner_adapters.multibert import MultiBertModel, training
    from ner_adapters.multibert.config import MultiBertTrainingArguments

    torch.manual_seed(0)  # the adapter and head start from the same random weights in every process
    mbert = MultiBertModel.from_core(str(core), max_length=32)
    mbert.add_scheme("places", ["PER", "LOC"])
    mbert.add_domain("holiday", "places")
    data = make_domain("travel", "places", n_train=16)
    args = MultiBertTrainingArguments(output_dir=str(out), learning_rate=2e-2, num_train_epochs=4, per_device_train_batch_size=8,
                             logging_steps=100, early_stopping_patience=10, keep_checkpoints=True,
                             resume_from_checkpoint=resume, seed=7)
    original = training.adapter_trainer_class

    def with_callbacks():
        base = original()

        class Trainer(base):
            def __init__(self, *a, **k):
                super().__init__(*a, **k)
                for callback in callbacks:
                    self.add_callback(callback)

        return Trainer

    training.adapter_trainer_class = with_callbacks
    try:
        result = training.train_adapter(mbert, "holiday", data.train, data.dev, args, train_head=True, epochs=4,
                                        run_name="holiday")
    finally:
        training.adapter_trainer_class = original
    weights = {n: p.detach().clone() for n, p in mbert.model.named_parameters()
               if "ad_holiday" in n.split(".") or n.startswith("heads.head_places")}
    return weights, result


def run_multibert(out: str, core: str, resume: bool) -> int:
    import torch
    from safetensors.torch import save_file

    from ner_adapters.resume import TrainingInterrupted

    torch.set_num_threads(1)
    try:
        weights, result = multibert_run(Path(out), Path(core), resume, callbacks=[_progress_callback()])
    except TrainingInterrupted as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    save_file({k: v.contiguous() for k, v in weights.items()}, str(Path(out) / "final.safetensors"))
    (Path(out) / "final.json").write_text(json.dumps({"best": result.best_dev_metric, "epochs": result.epochs}))
    return 0


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "cllmfs":
        sys.exit(run_cllmfs(rest))
    sys.exit(run_multibert(rest[0], rest[1], len(rest) > 2 and rest[2] == "resume"))
