"""Interrupted training: stop cleanly on SIGTERM, resume from the last *complete* checkpoint, same batches after.

- :class:`CheckpointOnSignal`: a ``TrainerCallback`` that, on SIGTERM (what schedulers and ``kill`` send before
  SIGKILL), lets the current optimizer step finish, writes a checkpoint and stops; the caller then raises
  :class:`TrainingInterrupted` instead of treating the run as finished.
- :func:`last_complete_checkpoint`: transformers writes ``checkpoint-N`` in place and its ``trainer_state.json``
  last, and ``get_last_checkpoint`` takes the highest ``N`` even when a kill cut its writing short; this skips
  such half-written folders (a ``trainer_state.json`` that is missing, or created but not yet written).
- :class:`EpochSeededLengthGroupedSampler`: transformers' length-grouped sampler draws its order from the global
  RNG when an epoch starts, so a run resumed in the middle of an epoch sees other batches than the run it
  continues; this one seeds each epoch's order with ``seed + epoch``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler
from .errors import TrainingInterrupted  # noqa: F401  (re-exported: raised here)

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # written last in a checkpoint (transformers.Trainer._save_checkpoint)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The highest ``checkpoint-N`` in ``folder`` whose ``trainer_state.json`` exists, or ``None``."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))),
                   reverse=True)
    for _, path in found:
        if _readable_state(path / TRAINER_STATE):
            return str(path)
        logger.warning("skipping %s: incomplete (no readable %s; the run was probably killed while writing it)",
                       path, TRAINER_STATE)
    return None


def _readable_state(path: Path) -> bool:
    """``trainer_state.json`` exists and parses: a kill can land after the file is created, before it is written."""
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except (OSError, ValueError):
        return False


class CheckpointOnSignal(TrainerCallback):
    """On SIGTERM (and the other ``signals``), checkpoint at the end of the current step and stop training.

    Handlers are installed for the duration of ``train()`` only, and only from the main thread (Python
    delivers signals there). ``received`` holds the signal number once one arrived.
    """

    def __init__(self, signals=(signal.SIGTERM,)):
        self.signals = tuple(signals)
        self.received: int | None = None
        self.checkpoint: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            logger.warning("%s received: checkpointing after the current step, then stopping",
                           signal.Signals(signum).name)
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)

    def on_step_end(self, args, state, control, **kwargs):
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True
            self.checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if args.save_total_limit == 1:
                # With a limit of 1, transformers deletes the last checkpoint at the end of train() when it is not
                # the best one: the very checkpoint this stop is for. A limit of 2 keeps the best and the last.
                args.save_total_limit = 2

    def on_epoch_end(self, args, state, control, **kwargs):
        # Stopping breaks out of the epoch loop, and transformers then ends the epoch as if it were complete: with
        # per-epoch evaluation it would evaluate (and maybe keep as best) a half-trained epoch that the
        # uninterrupted run never evaluates, and resave the checkpoint with that in its history. Only a stop that
        # falls on a real epoch end evaluates, as the uninterrupted run does at that step.
        if self.received is not None and state.epoch is not None and abs(state.epoch - round(state.epoch)) > 1e-9:
            control.should_evaluate = False
            control.should_save = False  # already saved at the end of the step
        return control

    def on_train_end(self, args, state, control, **kwargs):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def raise_if_received(self) -> None:
        if self.received is not None:
            raise TrainingInterrupted(self.received, self.checkpoint)


class EpochSeededLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` whose order in epoch ``e`` depends only on ``seed + e`` (accelerate calls
    ``set_epoch`` at the start of every epoch, the resumed one included)."""

    def __init__(self, *args, seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + epoch)


def resumable_train_sampler(trainer, train_dataset=None):
    """For ``Trainer._get_train_sampler``: the epoch-seeded sampler when ``group_by_length`` is on, else ``None``
    (the Trainer's own choice, whose random order accelerate already seeds per epoch)."""
    args = trainer.args
    dataset = train_dataset if train_dataset is not None else trainer.train_dataset
    if not args.group_by_length or dataset is None or not hasattr(dataset, "__len__"):
        return None
    column_names = getattr(dataset, "column_names", None) or []
    lengths = dataset[args.length_column_name] if args.length_column_name in column_names else None
    processing_class = getattr(trainer, "processing_class", None)
    model_input_name = processing_class.model_input_names[0] if processing_class is not None else None
    return EpochSeededLengthGroupedSampler(
        args.train_batch_size * args.gradient_accumulation_steps, dataset=dataset,
        lengths=list(lengths) if lengths is not None else None, model_input_name=model_input_name,
        seed=args.data_seed if args.data_seed is not None else args.seed,
    )


__all__ = ["CheckpointOnSignal", "EpochSeededLengthGroupedSampler", "TrainingInterrupted", "last_complete_checkpoint",
           "resumable_train_sampler"]
