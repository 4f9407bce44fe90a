"""Training: the paper's two steps, the no-pre-training variant, the general adapter and the baselines.

Every run is a ``transformers`` Trainer run (``adapters.AdapterTrainer`` for adapters) that evaluates on
the dev set each epoch, checkpoints, stops early on dev span-F1 (:mod:`ner_adapters.metrics`) and
reloads the best checkpoint at the end.

Head sharing (one head per label scheme) follows the paper's section 3. For a scheme with domains D:

1. ``leave_one_out`` (default): the scheme's head is trained once, together with the scheme's general
   adapter, on all of D ("the classifier is only trained when the adapter is being pre-trained since this
   step includes all of the data associated with that particular output scheme"; run ``<prefix>-head-<scheme>``).
   Then, for each domain d, a fresh adapter ``ad_d`` is pre-trained on the other domains D - d with that head
   frozen. ``shared``: one adapter (the general adapter) is trained with the head on all of D and copied into
   every domain's adapter (the paper's "replicated across all other adapters", section 3 paragraph 2).
2. Each ``ad_d`` is fine-tuned on d alone with the head frozen. With ``step2_keeps_pretrained`` the step-1
   adapter is scored on d's dev set first and kept when no fine-tuning epoch beats it.

Why the head is frozen in the leave-one-out step 1: a head that kept training through the N step-1 runs
(as it did before) ends as whatever the last run left, so N - 1 of the adapters would meet, in step 2 and at
inference, a head they were not pre-trained with. Here every adapter is pre-trained, fine-tuned and used with
the one head its scheme keeps (``tests/test_multibert_training.py`` checks it run by run).

A scheme with a single domain has no other domains: its adapter and head are trained together on the
domain (step 1 is skipped). Training "without pre-training" is exactly that, with one scheme per domain.
The general adapter of a multi-domain scheme is the one that trained the head; with ``general`` it then
trains on for ``general_epochs`` on all of D with the head frozen (in ``shared`` mode it is the step-1
adapter itself).
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..data import Sentence
from ..metrics import sequence_scores
from ..resume import CheckpointOnSignal, last_complete_checkpoint, resumable_train_sampler
from .config import MultiBertTrainingArguments
from .domains import DomainData
from .model import ADAPTER_PREFIX, HEAD_PREFIX, MultiBertModel
from .tokenization import IGNORE_INDEX, encode_tagging, tag

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """One Trainer run: what it trained, on what, and how it ended."""

    name: str
    trained: str
    train_sentences: int
    trainable_parameters: int
    best_dev_metric: float | None
    epochs: float
    wall_seconds: float
    log_history: list[dict] = field(default_factory=list, repr=False)
    best_dev_loss: float | None = None  # the kept epoch's dev loss (the tie-breaker of equal dev metrics)
    #: What ``train_sentences`` counts: ``"sentences"``, or ``"groups"`` for the router (8-sentence groups).
    train_unit: str = "sentences"
    #: The run kept the weights it started from: no epoch beat them on dev (``step2_keeps_pretrained``).
    kept_start: bool = False

    def summary(self) -> dict:
        """The run as results.json records it; the training-set size is named by its unit (``train_groups``
        for the router), so a count of groups is never read as sentences."""
        return {(f"train_{self.train_unit}" if k == "train_sentences" else k): v for k, v in self.__dict__.items()
                if k not in ("log_history", "train_unit")}


def tagging_dataset(tokenizer, sentences: Sequence[Sentence], labels: Sequence[str], max_length: int, where: str = ""):
    """A ``datasets.Dataset`` of input ids and aligned labels, ready for a token-classification Trainer."""
    from datasets import Dataset

    return Dataset.from_dict(encode_tagging(tokenizer, sentences, labels, max_length, where))


def span_f1_metric(labels: Sequence[str]) -> Callable:
    """``compute_metrics`` for the Trainer: span P/R/F1 over the words (first sub-tokens)."""

    def compute(prediction) -> dict[str, float]:
        gold, predicted = [], []
        for pred_row, label_row in zip(prediction.predictions, prediction.label_ids):
            keep = label_row != IGNORE_INDEX
            gold.append([labels[i] for i in label_row[keep]])
            predicted.append([labels[i] for i in pred_row[keep]])
        scores = sequence_scores(gold, predicted, mode="repair").micro
        return {"f1": scores.f1, "precision": scores.precision, "recall": scores.recall}

    return compute


def _argmax(logits, labels):
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def trainer_arguments(run_dir: Path, args: MultiBertTrainingArguments, *, epochs: float, learning_rate: float,
                      metric: str = "f1", full_state: bool = False, warmup_ratio: Optional[float] = None):
    """Per-run ``transformers.TrainingArguments``: evaluate and checkpoint every epoch, keep the best.

    Checkpoints hold the optimizer, scheduler and RNG state too (what resuming needs) with ``full_state`` (adapter
    runs: a few MB) or ``args.resume_from_checkpoint``; otherwise only the weights (full fine-tuning baselines).
    ``warmup_ratio`` overrides ``args.warmup_ratio`` (the full fine-tuning baselines' own).
    """
    from transformers import TrainingArguments

    from ..internals.accelerate import float32_trainer

    float32_trainer()  # Multi-BERT trains in float32, even after a bfloat16 Trainer in this process
    arguments = TrainingArguments(
        output_dir=str(run_dir),
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        learning_rate=learning_rate,
        num_train_epochs=epochs,
        weight_decay=args.weight_decay,
        warmup_ratio=args.warmup_ratio if warmup_ratio is None else warmup_ratio,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=not (full_state or args.resume_from_checkpoint),
        restore_callback_states_from_checkpoint=True,  # early stopping's patience count, when resuming
        logging_steps=args.logging_steps,
        report_to=[],
        seed=args.seed,
        use_cpu=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,  # CPU: nothing to pin for (torch warns once per dataloader otherwise)
        remove_unused_columns=False,
        group_by_length=True,  # batches of similar lengths: less padding (2x faster on UNER email here)
    )
    return arguments


# --- best-epoch selection and early stopping ------------------------------------------------------------
#
# transformers keeps a checkpoint as the best only when its dev metric is *strictly* higher than the best so
# far. A tagger that predicts no entity for its first epochs (dev F1 0.0, 0.0, 0.0, ...) then keeps epoch 1 and
# early stopping ends the run after ``patience`` epochs, however far its dev loss falls meanwhile: the collapse
# measured on Persian with a small learning rate. Here an epoch is better than the best so far when its dev
# metric is higher, or equal with a lower dev loss; and early stopping never stops before ``min_epochs``.


def _eval_key(metric: str) -> str:
    return metric if metric.startswith("eval_") else f"eval_{metric}"


def is_better_epoch(candidate: dict, best: dict | None, metric: str) -> bool:
    """Whether dev metrics ``candidate`` beat ``best``: higher ``metric``, ties (all-zero F1 too) by lower loss."""
    if best is None:
        return True
    key = _eval_key(metric)
    if candidate[key] != best[key]:
        return candidate[key] > best[key]
    return candidate.get("eval_loss", float("inf")) < best.get("eval_loss", float("inf"))


def best_epoch_metrics(state, metric: str) -> dict | None:
    """The dev metrics logged at the best step so far (``state.best_global_step``), or ``None``.

    Read from ``state.log_history``, which checkpoints hold: a resumed run compares against the same best.
    """
    if state.best_global_step is None:
        return None
    key = _eval_key(metric)
    for entry in reversed(state.log_history):
        if entry.get("step") == state.best_global_step and key in entry:
            return entry
    return None


class SelectBestEpoch:
    """Trainer mixin: the best checkpoint by dev metric, ties broken by dev loss (:func:`is_better_epoch`), and
    console logs at 4 significant digits (:func:`ner_adapters.training_logs.use_readable_logs`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from ..training_logs import use_readable_logs

        use_readable_logs(self)

    def _determine_best_metric(self, metrics, trial):
        metric = self.args.metric_for_best_model
        if not is_better_epoch(metrics, best_epoch_metrics(self.state, metric), metric):
            return False
        self.state.best_metric = metrics[_eval_key(metric)]
        self.state.best_global_step = self.state.global_step
        return True


def early_stopping_callback(patience: int, min_epochs: float = 0):
    """Early stopping that agrees with :class:`SelectBestEpoch` on what an improvement is.

    It counts the evaluations since the last better epoch (:func:`is_better_epoch`: a tie in dev F1 with a
    lower dev loss counts as progress) and stops after ``patience`` of them, but never before ``min_epochs``
    epochs were trained. Its count is saved in checkpoints and restored on resume (``ExportableState``).
    """
    from transformers import EarlyStoppingCallback

    class DevEarlyStopping(EarlyStoppingCallback):
        def __init__(self, early_stopping_patience: int = 1, early_stopping_threshold: float | None = 0.0,
                     min_epochs: float = 0):
            super().__init__(early_stopping_patience, early_stopping_threshold)
            self.min_epochs = min_epochs

        def on_evaluate(self, args, state, control, metrics, **kwargs):
            metric = args.metric_for_best_model
            if _eval_key(metric) not in metrics:
                logger.warning("early stopping: no %s in the dev metrics; not stopping", _eval_key(metric))
                return
            # Runs before the Trainer updates best_global_step for this evaluation: compares with the best so far.
            if is_better_epoch(metrics, best_epoch_metrics(state, metric), metric):
                self.early_stopping_patience_counter = 0
            else:
                self.early_stopping_patience_counter += 1
            if (self.early_stopping_patience_counter >= self.early_stopping_patience
                    and (state.epoch or 0) >= self.min_epochs - 1e-9):
                control.should_training_stop = True

        def state(self) -> dict:
            exported = super().state()
            exported["args"]["min_epochs"] = self.min_epochs
            return exported

    return DevEarlyStopping(patience, min_epochs=min_epochs)


def adapter_trainer_class():
    from adapters import AdapterTrainer

    class MultiBertAdapterTrainer(SelectBestEpoch, AdapterTrainer):
        """AdapterTrainer whose checkpoints hold the run's adapter (and head, when it trains) only.

        ``AdapterTrainer`` writes every adapter and head at each checkpoint and, at the end, reloads only
        adapters: a head trained in step 1 would stay at its last epoch while its adapter went back to the
        best one. Both go back together here.
        """

        def __init__(self, *args, adapter_name: str, head_name: str, train_head: bool, safetensors: bool, **kwargs):
            super().__init__(*args, **kwargs)
            self.adapter_name, self.head_name = adapter_name, head_name
            self.train_head, self.safetensors = train_head, safetensors

        def _save(self, output_dir: str | None = None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            self.model.save_adapter(os.path.join(output_dir, self.adapter_name), self.adapter_name, with_head=False,
                                    use_safetensors=self.safetensors)
            if self.train_head:
                self.model.save_head(os.path.join(output_dir, "head"), self.head_name, use_safetensors=True)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # AdapterTrainer's own loader reads every adapter as pytorch_adapter.bin (not our safetensors).
            self.model.load_adapter(os.path.join(resume_from_checkpoint, self.adapter_name), load_as=self.adapter_name,
                                    with_head=False, use_safetensors=self.safetensors)
            if self.train_head:
                self.model.load_head(os.path.join(resume_from_checkpoint, "head"), load_as=self.head_name,
                                     use_safetensors=True)

        def _get_train_sampler(self, train_dataset=None):
            return resumable_train_sampler(self, train_dataset) or super()._get_train_sampler(train_dataset)

        def _load_best_model(self):
            checkpoint = self.state.best_model_checkpoint
            logger.info("loading the best checkpoint %s (%s)", checkpoint, self.state.best_metric)
            self.model.load_adapter(os.path.join(checkpoint, self.adapter_name), load_as=self.adapter_name,
                                    with_head=False, use_safetensors=self.safetensors)
            if self.train_head:
                self.model.load_head(os.path.join(checkpoint, "head"), load_as=self.head_name, use_safetensors=True)

    return MultiBertAdapterTrainer


FINISHED = "finished"  # marks a run folder whose training ended (its checkpoints are kept, not resumed)


def resume_point(run_dir: Path, args: MultiBertTrainingArguments) -> str | None:
    """The checkpoint an interrupted run continues from (``resume_from_checkpoint``), else ``None``.

    A run that had finished is trained again from the start rather than resumed: transformers would not stop
    it where early stopping did. Training is seeded, so it reaches the same weights.
    """
    if not args.resume_from_checkpoint:
        return None
    if (run_dir / FINISHED).exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        return None
    return last_complete_checkpoint(run_dir)


def finish_run(trainer, run_dir: Path, args: MultiBertTrainingArguments, name: str, trained: str, n_train: int,
            trainable: int, started: float, *, unit: str = "sentences",
            kept_start: dict | None = None) -> RunResult:
    """The run's summary; ``kept_start``: the dev metrics of the starting weights it restored, if it did."""
    best = best_epoch_metrics(trainer.state, trainer.args.metric_for_best_model)
    result = RunResult(name, trained, n_train, trainable, trainer.state.best_metric, trainer.state.epoch or 0.0,
                       round(time.time() - started, 1), list(trainer.state.log_history),
                       best.get("eval_loss") if best else None, train_unit=unit)
    if kept_start is not None:
        result.best_dev_metric = kept_start[_eval_key(trainer.args.metric_for_best_model)]
        result.best_dev_loss = kept_start.get("eval_loss")
        result.kept_start = True
    if not args.keep_checkpoints:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif run_dir.is_dir():
        (run_dir / FINISHED).write_text(name + "\n", encoding="utf-8")
    logger.info("%s: best dev %s after %.1f epochs%s, %.0f s", name, result.best_dev_metric, result.epochs,
                " (the starting weights, kept)" if result.kept_start else "", result.wall_seconds)
    return result


def train_adapter(
    mbert: MultiBertModel,
    domain: str,
    train: Sequence[Sentence],
    dev: Sequence[Sentence],
    args: MultiBertTrainingArguments,
    *,
    train_head: bool,
    epochs: float,
    run_name: str,
    learning_rate: float | None = None,
    keep_start_if_better: bool = False,
) -> RunResult:
    """Train ``domain``'s adapter (and its scheme's head when ``train_head``) on ``train``, best dev F1 kept.

    With ``keep_start_if_better`` the weights the run starts from are scored on ``dev`` first, as an epoch 0:
    when no epoch beats them (:func:`is_better_epoch`), they are restored and the run reports their dev score.
    """
    from transformers import DataCollatorForTokenClassification

    scheme = mbert.scheme_of(domain)
    labels = mbert.schemes[scheme]
    run_dir = Path(args.output_dir) / "runs" / run_name
    train_set = tagging_dataset(mbert.tokenizer, train, labels, mbert.max_length, f"{run_name} train: ")
    dev_set = tagging_dataset(mbert.tokenizer, dev, labels, mbert.max_length, f"{run_name} dev: ")
    started = time.time()
    stop_on_signal = CheckpointOnSignal()
    with mbert.training(domain, train_head=train_head) as trainable:
        trainer = adapter_trainer_class()(
            model=mbert.model,
            args=trainer_arguments(run_dir, args, epochs=epochs, learning_rate=learning_rate or args.learning_rate,
                                   full_state=True),
            data_collator=DataCollatorForTokenClassification(mbert.tokenizer),
            train_dataset=train_set,
            eval_dataset=dev_set,
            compute_metrics=span_f1_metric(labels),
            preprocess_logits_for_metrics=_argmax,
            callbacks=[early_stopping_callback(args.early_stopping_patience, args.early_stopping_min_epochs),
                       stop_on_signal],
            adapter_name=ADAPTER_PREFIX + domain,
            head_name=HEAD_PREFIX + scheme,
            train_head=train_head,
            safetensors=mbert.adapter_specs[domain].kind == "lora",
        )
        start = _score_start(trainer) if keep_start_if_better else None
        trainer.train(resume_from_checkpoint=resume_point(run_dir, args))
        stop_on_signal.raise_if_received()
        kept = start is not None and _restore_start_if_better(trainer, *start, run_name)
    what = f"adapter {domain}" + (f" + head {scheme}" if train_head else f" (head {scheme} frozen)")
    return finish_run(trainer, run_dir, args, run_name, what, len(train), trainable, started,
                      kept_start=start[0] if kept else None)


def _score_start(trainer) -> tuple[dict, dict]:
    """The dev metrics of the weights a run starts from, and a copy of its trainable weights.

    A resumed run starts from the same weights (the runs before it are retrained, seeded), so this holds there too.
    """
    with torch.random.fork_rng(devices=[]):  # the dev pass draws a DataLoader seed: training's random stream stays
        metrics = trainer.evaluate()         # the one it would have had without this pass
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    return metrics, weights


def _restore_start_if_better(trainer, metrics: dict, weights: dict, run_name: str) -> bool:
    """Put the starting weights back when no trained epoch beat them on dev; returns whether it did."""
    metric = trainer.args.metric_for_best_model
    best = best_epoch_metrics(trainer.state, metric)
    if best is not None and is_better_epoch(best, metrics, metric):
        return False
    with torch.no_grad():
        for name, parameter in trainer.model.named_parameters():
            if name in weights:
                parameter.copy_(weights[name])
    logger.info("%s: no epoch beat the starting weights on dev (%s %.4f); keeping them", run_name, metric,
                metrics[_eval_key(metric)])
    return True


def _concat(parts: Sequence[Sequence[Sentence]]) -> list[Sentence]:
    return [s for part in parts for s in part]


def train_multibert(
    mbert: MultiBertModel,
    domains: Sequence[DomainData],
    args: MultiBertTrainingArguments,
    *,
    general: bool = True,
    eject_prefix: bool = True,
    prefix: str = "multibert",
) -> list[RunResult]:
    """Train every domain of ``mbert`` in the paper's two steps (see the module docstring).

    ``domains`` must already be added to ``mbert``. Each multi-domain scheme gets its general adapter (the
    adapter its head is trained with); with ``general`` it trains on with the head frozen (leave_one_out), so
    it can serve as the router's fallback. Prefix adapters are ejected to their flat form once fully trained.
    """
    data = {d.name: d for d in domains}
    missing = [d for d in mbert.domain_names() if d not in data]
    if missing:
        raise ValueError(f"no data given for domain(s) {missing}")
    results: list[RunResult] = []
    by_scheme: dict[str, list[str]] = {}
    for name in mbert.domain_names():
        by_scheme.setdefault(mbert.scheme_of(name), []).append(name)
    for scheme, members in by_scheme.items():
        if len(members) == 1:
            only = members[0]
            results.append(train_adapter(mbert, only, data[only].train, data[only].dev, args, train_head=True,
                                         epochs=args.num_train_epochs, run_name=f"{prefix}-{only}"))
            continue
        spec = mbert.adapter_specs[members[0]]
        head_epochs = args.pretrain_epochs if args.head_epochs is None else args.head_epochs
        if args.pretrain_mode == "shared":
            name = mbert.general.get(scheme) or mbert.add_general(scheme, spec)
            results.append(train_adapter(
                mbert, name, _concat([data[m].train for m in members]), _concat([data[m].dev for m in members]),
                args, train_head=True, epochs=head_epochs, run_name=f"{prefix}-step1-{scheme}"))
            for member in members:
                mbert.copy_adapter(name, member)
        else:
            name = mbert.general.get(scheme) or mbert.add_general(scheme, spec)
            results.append(train_adapter(
                mbert, name, _concat([data[m].train for m in members]), _concat([data[m].dev for m in members]),
                args, train_head=True, epochs=head_epochs, run_name=f"{prefix}-head-{scheme}"))
            for member in members:
                others = [m for m in members if m != member]
                results.append(train_adapter(
                    mbert, member, _concat([data[m].train for m in others]), _concat([data[m].dev for m in others]),
                    args, train_head=False, epochs=args.pretrain_epochs, run_name=f"{prefix}-step1-{member}"))
        for member in members:
            results.append(train_adapter(mbert, member, data[member].train, data[member].dev, args,
                                         train_head=False, epochs=args.num_train_epochs,
                                         run_name=f"{prefix}-step2-{member}",
                                         learning_rate=args.step2_learning_rate,
                                         keep_start_if_better=args.step2_keeps_pretrained))
        if general and args.pretrain_mode == "leave_one_out":
            name = mbert.general[scheme]
            results.append(train_adapter(
                mbert, name, _concat([data[m].train for m in members]), _concat([data[m].dev for m in members]),
                args, train_head=False, epochs=args.general_epochs, run_name=f"{prefix}-general-{scheme}"))
    if eject_prefix:
        for name in list(mbert.domains):
            mbert.eject_prefix(name)
    return results


# --- full fine-tuning baselines (General-BERT, Spec-BERT) -------------------------------------------------


class FullTagger:
    """A fully fine-tuned core with a token-classification head, tagged like a Multi-BERT domain."""

    def __init__(self, model, tokenizer, labels: Sequence[str], max_length: int):
        self.model, self.tokenizer, self.labels, self.max_length = model, tokenizer, tuple(labels), max_length

    def predict(self, inputs, *, batch_size: int = 32):
        self.model.eval()
        with torch.inference_mode():
            return tag(lambda enc: self.model(**enc).logits, self.tokenizer, inputs, self.labels, self.max_length,
                       batch_size)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def full_trainer_class():
    from transformers import Trainer

    class FullTrainer(SelectBestEpoch, Trainer):
        """The baselines' Trainer with the same best-epoch rule as the adapters'."""

    return FullTrainer


def train_full(
    core_model: str,
    labels: Sequence[str],
    train: Sequence[Sentence],
    dev: Sequence[Sentence],
    args: MultiBertTrainingArguments,
    *,
    max_length: int,
    run_name: str,
    init: FullTagger | None = None,
) -> tuple[FullTagger, RunResult]:
    """Fine-tune the whole core (or a copy of ``init``) on ``train``: the General-/Spec-BERT baselines."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification

    from ..models import resolve_model

    if init is not None:
        if tuple(init.labels) != tuple(labels):
            raise ValueError(f"{run_name}: the initial model has labels {init.labels}, not {tuple(labels)}")
        tokenizer, model = init.tokenizer, copy.deepcopy(init.model)  # deepcopy: its own config object too
    else:
        path = resolve_model(core_model)
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
        model = AutoModelForTokenClassification.from_pretrained(
            path, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)})
    run_dir = Path(args.output_dir) / "runs" / run_name
    started = time.time()
    trainer = full_trainer_class()(
        model=model,
        args=trainer_arguments(run_dir, args, epochs=args.full_num_train_epochs, learning_rate=args.full_learning_rate,
                               warmup_ratio=args.full_warmup_ratio),
        data_collator=DataCollatorForTokenClassification(tokenizer),
        train_dataset=tagging_dataset(tokenizer, train, labels, max_length, f"{run_name} train: "),
        eval_dataset=tagging_dataset(tokenizer, dev, labels, max_length, f"{run_name} dev: "),
        compute_metrics=span_f1_metric(labels),
        preprocess_logits_for_metrics=_argmax,
        callbacks=[early_stopping_callback(args.early_stopping_patience, args.early_stopping_min_epochs)],
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer.train()
    model.eval()
    result = finish_run(trainer, run_dir, args, run_name, "full model", len(train), trainable, started)
    return FullTagger(model, tokenizer, labels, max_length), result


__all__ = ["FullTagger", "RunResult", "span_f1_metric", "tagging_dataset",
           "train_adapter", "train_full", "train_multibert", "trainer_arguments"]
