"""The two training steps on a tiny BERT: what trains when, best-checkpoint restore, baselines, bad labels."""

import logging

import pytest
import torch

from multibert_tiny import TYPES, make_domain, one_torch_thread
from ner_adapters.data import DataFormatError, Sentence
from ner_adapters.metrics import span_scores
from ner_adapters.multibert import AdapterSpec, MultiBertModel, train_full, train_multibert
from ner_adapters.multibert import training as training_module
from ner_adapters.multibert.config import ConfigError, MultiBertTrainingArguments
from ner_adapters.spans import Span, label_names


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


def arguments(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "out"), learning_rate=2e-2, pretrain_epochs=1, num_train_epochs=2,
                  general_epochs=1, per_device_train_batch_size=8, logging_steps=100, early_stopping_patience=5,
                  full_num_train_epochs=1, full_learning_rate=1e-3)
    values.update(overrides)
    return MultiBertTrainingArguments(**values)


def model_with(core, kind="lora", toy=("news", "sports", "travel"), holiday=True):
    """Toy-scheme domains plus, with ``holiday``, a single-domain scheme; returns the model and its data."""
    mbert = MultiBertModel.from_core(str(core), max_length=32)
    spec = AdapterSpec(kind, prefix_length=4, prefix_bottleneck_size=16)
    data = [make_domain(n, "toy", n_train=16) for n in toy]
    if toy:
        mbert.add_scheme("toy", TYPES)
    for d in data:
        mbert.add_domain(d.name, "toy", spec)
    if holiday:
        mbert.add_scheme("places", ["PER", "LOC"])
        travel_only = make_domain("travel", "places", n_train=16)
        travel_only.name = "holiday"
        mbert.add_domain("holiday", "places", spec)
        data.append(travel_only)
    return mbert, data


def snapshot(mbert, prefix):
    return {n: p.detach().clone() for n, p in mbert.model.named_parameters() if n.startswith(prefix) or
            any(part.startswith(prefix) for part in n.split("."))}


def changed(before, after):
    return {n for n in before if not torch.equal(before[n], after[n])}


@pytest.fixture
def spy(monkeypatch):
    """Record, for every train_adapter run, which adapters and heads changed."""
    log = []
    original = training_module.train_adapter

    def recording(mbert, domain, *args, **kwargs):
        before = {k: snapshot(mbert, k) for k in ("ad_", "heads.")}
        result = original(mbert, domain, *args, **kwargs)
        after = {k: snapshot(mbert, k) for k in ("ad_", "heads.")}
        adapters = {n.split(".")[n.split(".").index(next(p for p in n.split(".") if p.startswith("ad_")))]
                    for n in changed(before["ad_"], after["ad_"])}
        heads = {n.split(".")[1] for n in changed(before["heads."], after["heads."])}
        log.append((kwargs["run_name"], kwargs["train_head"], adapters, heads, result))
        return result

    monkeypatch.setattr(training_module, "train_adapter", recording)
    return log


def test_leave_one_out_two_steps(core, tmp_path, spy):
    mbert, data = model_with(core)
    results = train_multibert(mbert, data, arguments(tmp_path))
    runs = [(name, train_head, adapters, heads) for name, train_head, adapters, heads, _ in spy]
    assert [r.name for r in results] == [r[0] for r in runs]
    assert runs == [
        # the head trains once, with the general adapter, on all of the scheme's domains
        ("multibert-head-toy", True, {"ad_general-toy"}, {"head_toy"}),
        # step 1: each adapter on the other domains, against that head (frozen)
        ("multibert-step1-news", False, {"ad_news"}, set()),
        ("multibert-step1-sports", False, {"ad_sports"}, set()),
        ("multibert-step1-travel", False, {"ad_travel"}, set()),
        # step 2: each adapter on its own domain, the shared head frozen
        ("multibert-step2-news", False, {"ad_news"}, set()),
        ("multibert-step2-sports", False, {"ad_sports"}, set()),
        ("multibert-step2-travel", False, {"ad_travel"}, set()),
        ("multibert-general-toy", False, {"ad_general-toy"}, set()),
        # a single-domain scheme: no other domains to pre-train on, adapter and head train together
        ("multibert-holiday", True, {"ad_holiday"}, {"head_places"}),
    ]
    sizes = {name: result.train_sentences for name, *_, result in spy}
    assert sizes["multibert-step1-news"] == 32 and sizes["multibert-step2-news"] == 16
    assert sizes["multibert-general-toy"] == sizes["multibert-head-toy"] == 48
    trainable = {name: result.trainable_parameters for name, *_, result in spy}
    head = mbert.head_parameters("toy")
    assert trainable["multibert-head-toy"] == mbert.adapter_parameters("general-toy") + head
    assert trainable["multibert-step1-news"] == mbert.adapter_parameters("news")
    assert trainable["multibert-step2-news"] == mbert.adapter_parameters("news")
    assert not list((tmp_path / "out" / "runs").glob("*"))  # checkpoints removed unless keep_checkpoints


@pytest.mark.parametrize("mode", ["leave_one_out", "shared"])
def test_head_epochs_set_the_run_that_trains_the_shared_head(core, tmp_path, monkeypatch, mode):
    epochs_of: dict[str, float] = {}  # run name -> the epochs it was asked for (nothing is trained)
    monkeypatch.setattr(training_module, "train_adapter",
                        lambda mbert, domain, *args, epochs, run_name, **kwargs: epochs_of.update({run_name: epochs}))
    mbert, data = model_with(core, toy=("news", "sports"), holiday=False)
    train_multibert(mbert, data, arguments(tmp_path, pretrain_mode=mode, pretrain_epochs=1, head_epochs=3,
                                           num_train_epochs=2))
    head_run = "multibert-head-toy" if mode == "leave_one_out" else "multibert-step1-toy"
    assert epochs_of[head_run] == 3
    step1 = {e for r, e in epochs_of.items() if "-step1-" in r and r != head_run}
    assert step1 == ({1} if mode == "leave_one_out" else set())
    assert {e for r, e in epochs_of.items() if "-step2-" in r} == {2}
    epochs_of.clear()
    train_multibert(mbert, data, arguments(tmp_path, pretrain_mode=mode, pretrain_epochs=1))  # null: pretrain_epochs
    assert epochs_of[head_run] == 1
    with pytest.raises(ConfigError, match="head_epochs must be > 0"):
        arguments(tmp_path, head_epochs=0)


def test_best_checkpoint_is_restored_with_its_head(core, tmp_path, spy):
    mbert, data = model_with(core, toy=())
    train_multibert(mbert, data, arguments(tmp_path, num_train_epochs=4, learning_rate=5e-2))
    (_, _, _, _, result), = spy
    history = [entry["eval_f1"] for entry in result.log_history if "eval_f1" in entry]
    assert len(history) == 4 and result.best_dev_metric == max(history)
    # the restored adapter + head reproduce the best epoch's dev F1 (not the last epoch's)
    dev = data[0].dev
    predicted = mbert.predict([s.tokens for s in dev], "holiday")
    f1 = span_scores([s.spans for s in dev], [[e.span for e in p] for p in predicted]).micro.f1
    assert f1 == pytest.approx(result.best_dev_metric)


def test_shared_mode_copies_the_general_adapter(core, tmp_path, spy, monkeypatch):
    mbert, data = model_with(core, holiday=False)
    copies = []
    original = MultiBertModel.copy_adapter
    monkeypatch.setattr(MultiBertModel, "copy_adapter", lambda self, s, t: copies.append((s, t)) or original(self, s, t))
    train_multibert(mbert, data, arguments(tmp_path, pretrain_mode="shared"))
    assert [(name, adapters, heads) for name, _, adapters, heads, _ in spy] == [
        ("multibert-step1-toy", {"ad_general-toy"}, {"head_toy"}),
        ("multibert-step2-news", {"ad_news"}, set()),
        ("multibert-step2-sports", {"ad_sports"}, set()),
        ("multibert-step2-travel", {"ad_travel"}, set()),
    ]
    assert copies == [("general-toy", "news"), ("general-toy", "sports"), ("general-toy", "travel")]


def test_prefix_adapters_are_ejected_after_training(core, tmp_path):
    mbert, data = model_with(core, "prefix", toy=())
    train_multibert(mbert, data, arguments(tmp_path, num_train_epochs=1))
    assert mbert.adapter_specs["holiday"].prefix_flat
    assert mbert.adapter_parameters("holiday") == 4 * 2 * 2 * 32


def test_labels_outside_the_scheme_raise(core, tmp_path):
    mbert, data = model_with(core, toy=())
    data[0].train.append(Sentence(["arsenal", "won"], [Span(0, 1, "ORG")], id="bad-1"))
    with pytest.raises(DataFormatError, match=r"multibert-holiday train: sentence 'bad-1' .*\['ORG'\]"):
        train_multibert(mbert, data, arguments(tmp_path))
    with pytest.raises(ValueError, match="no data given"):
        train_multibert(mbert, [], arguments(tmp_path))


def test_full_fine_tuning_baseline(core, tmp_path):
    data = make_domain("news", "toy", n_train=16)
    labels = label_names(TYPES)
    general, result = train_full(str(core), labels, data.train, data.dev, arguments(tmp_path), max_length=32,
                                 run_name="general")
    assert result.trainable_parameters == general.parameters() > 20_000  # everything trains
    spec, _ = train_full(str(core), labels, data.train, data.dev, arguments(tmp_path), max_length=32,
                         run_name="spec", init=general)
    assert spec.model is not general.model and spec.model.config is not general.model.config
    assert len(spec.predict([s.tokens for s in data.test])) == len(data.test)
    with pytest.raises(ValueError, match="initial model has labels"):
        train_full(str(core), ["O", "B-X", "I-X"], data.train, data.dev, arguments(tmp_path), max_length=32,
                   run_name="x", init=general)


def test_full_fine_tuning_has_its_own_warmup(core, tmp_path, monkeypatch):
    """``full_warmup_ratio`` reaches General-/Spec-BERT's runs only; null falls back to ``warmup_ratio``."""
    built = []  # the TrainingArguments of every run, in order
    original = training_module.trainer_arguments
    monkeypatch.setattr(training_module, "trainer_arguments", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
    data = make_domain("news", "toy", n_train=16)
    labels = label_names(TYPES)
    train_full(str(core), labels, data.train, data.dev, arguments(tmp_path, full_warmup_ratio=0.25), max_length=32,
               run_name="general")
    assert built[-1].warmup_ratio == 0.25
    train_full(str(core), labels, data.train, data.dev, arguments(tmp_path, warmup_ratio=0.05), max_length=32,
               run_name="general2")
    assert built[-1].warmup_ratio == 0.05
    mbert, domains = model_with(core, toy=())
    train_multibert(mbert, domains, arguments(tmp_path, num_train_epochs=1, full_warmup_ratio=0.25))
    assert built[-1].warmup_ratio == 0.0  # the adapters keep warmup_ratio
    with pytest.raises(ConfigError, match=r"full_warmup_ratio must be in \[0, 1\), got 1.5"):
        arguments(tmp_path, full_warmup_ratio=1.5)


# --- best-epoch selection: ties in dev F1 (all-zero F1 too) are broken by dev loss -------------------------


def scripted_f1(monkeypatch, values):
    """Make every dev evaluation report the next F1 of ``values`` (the dev loss stays the real one)."""
    calls = iter(values)
    monkeypatch.setattr(training_module, "span_f1_metric",
                        lambda labels: lambda prediction: {"f1": next(calls), "precision": 0.0, "recall": 0.0})


def dev_loss(mbert, domain, sentences):
    """The mean token loss of ``domain``'s adapter and head on ``sentences`` (one batch, as the Trainer's eval)."""
    from transformers import DataCollatorForTokenClassification

    scheme = mbert.scheme_of(domain)
    encoded = training_module.tagging_dataset(mbert.tokenizer, sentences, mbert.schemes[scheme], mbert.max_length)
    batch = DataCollatorForTokenClassification(mbert.tokenizer)([encoded[i] for i in range(len(encoded))])
    with torch.no_grad():
        mbert.activate(domain)
        return mbert.model(**batch).loss.item()


@pytest.mark.parametrize("f1_values", [[0.0] * 5, [0.2, 0.4, 0.4, 0.4, 0.4]], ids=["all-zero", "tied"])
def test_tied_dev_f1_keeps_the_epoch_with_the_lowest_dev_loss(core, tmp_path, spy, monkeypatch, f1_values):
    """A tagger predicting no entity (dev F1 0) while its dev loss falls must keep training and keep its best
    epoch by loss; with strict 'higher F1' selection it would restore epoch 1 (or 2) and stop after patience."""
    scripted_f1(monkeypatch, f1_values)
    mbert, data = model_with(core, toy=())
    train_multibert(mbert, data, arguments(tmp_path, num_train_epochs=5, learning_rate=2e-2,
                                           early_stopping_patience=2, early_stopping_min_epochs=0))
    (_, _, _, _, result), = spy
    evals = [entry for entry in result.log_history if "eval_f1" in entry]
    assert len(evals) == 5  # no early stop: every epoch improved the loss among tied F1
    losses = [entry["eval_loss"] for entry in evals]
    best_f1 = max(f1_values)
    expected = min((loss for loss, f1 in zip(losses, f1_values) if f1 == best_f1))
    assert losses.index(expected) > f1_values.index(best_f1)  # the test means something: a later epoch is better
    assert result.best_dev_metric == best_f1 and result.best_dev_loss == pytest.approx(expected)
    # the restored adapter + head are that epoch's
    assert dev_loss(mbert, "holiday", data[0].dev) == pytest.approx(expected, rel=1e-5)


def test_early_stopping_patience_and_minimum_epochs(core, tmp_path, spy, monkeypatch):
    """Early stopping counts epochs without a better one (F1, then loss) and never stops before min_epochs."""
    from ner_adapters.multibert.training import is_better_epoch

    assert is_better_epoch({"eval_f1": 0.0, "eval_loss": 1.0}, {"eval_f1": 0.0, "eval_loss": 2.0}, "f1")
    assert not is_better_epoch({"eval_f1": 0.0, "eval_loss": 2.0}, {"eval_f1": 0.0, "eval_loss": 2.0}, "f1")
    assert is_better_epoch({"eval_f1": 0.5, "eval_loss": 9.0}, {"eval_f1": 0.4, "eval_loss": 1.0}, "f1")
    assert not is_better_epoch({"eval_f1": 0.3, "eval_loss": 0.1}, {"eval_f1": 0.4, "eval_loss": 1.0}, "f1")
    # F1 falls after epoch 1: patience 1 alone would stop at epoch 2; min_epochs 4 keeps going to epoch 4
    scripted_f1(monkeypatch, [0.9, 0.1, 0.1, 0.1, 0.1, 0.1])
    mbert, data = model_with(core, toy=())
    train_multibert(mbert, data, arguments(tmp_path, num_train_epochs=6, early_stopping_patience=1,
                                           early_stopping_min_epochs=4))
    (_, _, _, _, result), = spy
    assert result.epochs == 4 and result.best_dev_metric == 0.9


def test_every_adapter_meets_the_head_it_was_pre_trained_with(core, tmp_path, monkeypatch):
    """leave_one_out: the head a step-2 run starts from (and that tags at inference) is the head its own step-1
    run ended with. Before, the step-1 runs trained one shared head in turn, so all but the last adapter were
    fine-tuned and used with a head they had not been pre-trained with."""
    heads = {}
    original = training_module.train_adapter

    def recording(mbert, domain, *args, **kwargs):
        heads[kwargs["run_name"], "start"] = snapshot(mbert, "heads.head_toy")
        result = original(mbert, domain, *args, **kwargs)
        heads[kwargs["run_name"], "end"] = snapshot(mbert, "heads.head_toy")
        return result

    monkeypatch.setattr(training_module, "train_adapter", recording)
    mbert, data = model_with(core, holiday=False)
    train_multibert(mbert, data, arguments(tmp_path, learning_rate=5e-2))
    final = snapshot(mbert, "heads.head_toy")
    assert changed(next(iter(heads.values())), final) == set(final)  # the head did train
    for domain in ("news", "sports", "travel"):
        step1_end, step2_start = heads[f"multibert-step1-{domain}", "end"], heads[f"multibert-step2-{domain}", "start"]
        assert not changed(step1_end, step2_start), domain
        assert not changed(step2_start, final), domain  # and it is the head the saved set tags with


def test_a_trainer_built_after_a_bfloat16_one_gets_its_own_precision(tmp_path, monkeypatch):
    """accelerate keeps the first Trainer's mixed precision for the process: after a bf16 run (CLLMFS with
    ``bf16: true``) a Multi-BERT Trainer would train in bf16 autocast too, unless its arguments reset that."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import Trainer

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what bf16 TrainingArguments leave in the environment
    AcceleratorState._reset_state(reset_partial_state=False)  # earlier tests' Trainers set it up in float32
    Accelerator(mixed_precision="bf16", cpu=True)  # and what a bf16 Trainer leaves in accelerate's state
    try:
        assert AcceleratorState().mixed_precision == "bf16"
        trainer = Trainer(model=torch.nn.Linear(2, 2), eval_dataset=[{}], args=training_module.trainer_arguments(
            tmp_path, arguments(tmp_path), epochs=1, learning_rate=1e-3))
        assert trainer.accelerator.mixed_precision == "no"
    finally:
        AcceleratorState._reset_state(reset_partial_state=False)


# --- step 2 keeps the pre-trained adapter when fine-tuning does not beat it on dev ------------------------


@pytest.mark.parametrize("f1_values, kept", [([0.9, 0.1, 0.2], True), ([0.1, 0.5, 0.3], False)],
                         ids=["start-best", "epoch-2-best"])
def test_a_run_can_keep_the_weights_it_started_from(core, tmp_path, monkeypatch, caplog, f1_values, kept):
    """With keep_start_if_better the starting weights are scored first (an epoch 0): kept and reported when no
    epoch beats them, else the best epoch as always; the run's log line names the score it keeps."""
    caplog.set_level(logging.INFO, logger=training_module.__name__)
    scripted_f1(monkeypatch, f1_values)
    mbert, data = model_with(core, toy=())
    with mbert.training("holiday", train_head=True):
        start = {n: p.detach().clone() for n, p in mbert.model.named_parameters() if p.requires_grad}
    result = training_module.train_adapter(mbert, "holiday", data[0].train, data[0].dev,
                                           arguments(tmp_path, learning_rate=5e-2, early_stopping_min_epochs=0),
                                           train_head=True, epochs=2, run_name="keep", keep_start_if_better=True)
    end = {n: p.detach().clone() for n, p in mbert.model.named_parameters() if n in start}
    assert result.kept_start is kept and result.summary()["kept_start"] is kept
    assert result.best_dev_metric == max(f1_values)
    assert result.epochs == 2  # both epochs were trained either way
    summary = [r.getMessage() for r in caplog.records if r.getMessage().startswith("keep: best dev")]
    assert len(summary) == 1 and summary[0].startswith(f"keep: best dev {max(f1_values)} after 2.0 epochs")
    assert ("(the starting weights, kept)" in summary[0]) is kept
    if kept:
        assert not changed(start, end)
    else:
        assert changed(start, end) == set(start)
        # scoring the start draws nothing from the training's random stream: the same weights as without it
        scripted_f1(monkeypatch, f1_values[1:])
        plain, _ = model_with(core, toy=())
        training_module.train_adapter(plain, "holiday", data[0].train, data[0].dev,
                                      arguments(tmp_path / "plain", learning_rate=5e-2, early_stopping_min_epochs=0),
                                      train_head=True, epochs=2, run_name="plain")
        assert not changed(end, {n: p.detach() for n, p in plain.model.named_parameters() if n in end})


def test_step2_keeps_pretrained_applies_to_step_2_only(core, tmp_path, monkeypatch):
    asked = {}
    monkeypatch.setattr(training_module, "train_adapter", lambda mbert, domain, *a, run_name, keep_start_if_better=False,
                        **k: asked.update({run_name: keep_start_if_better}))
    mbert, data = model_with(core, toy=("news", "sports"), holiday=False)
    train_multibert(mbert, data, arguments(tmp_path, step2_keeps_pretrained=True))
    assert {name for name, keep in asked.items() if keep} == {"multibert-step2-news", "multibert-step2-sports"}
    asked.clear()
    train_multibert(mbert, data, arguments(tmp_path))
    assert not any(asked.values()) and len(asked) == 6


def test_step2_learning_rate_applies_to_step_2_only(core, tmp_path, monkeypatch):
    asked = {}  # run name -> the learning rate it was given (None: args.learning_rate)
    monkeypatch.setattr(training_module, "train_adapter", lambda mbert, domain, *a, run_name, learning_rate=None,
                        **k: asked.update({run_name: learning_rate}))
    mbert, data = model_with(core, toy=("news", "sports"), holiday=False)
    train_multibert(mbert, data, arguments(tmp_path, step2_learning_rate=1e-3))
    assert {name: lr for name, lr in asked.items() if lr is not None} == {"multibert-step2-news": 1e-3,
                                                                          "multibert-step2-sports": 1e-3}
    assert len(asked) == 6
    asked.clear()
    train_multibert(mbert, data, arguments(tmp_path))
    assert not any(asked.values()) and len(asked) == 6
    with pytest.raises(ConfigError, match="step2_learning_rate must be > 0"):
        arguments(tmp_path, step2_learning_rate=0)


def test_step2_learning_rate_reaches_the_trainer(core, tmp_path, monkeypatch):
    rates = {}
    original = training_module.trainer_arguments

    def recording(run_dir, args, **kwargs):
        rates[run_dir.name] = kwargs["learning_rate"]
        return original(run_dir, args, **kwargs)

    monkeypatch.setattr(training_module, "trainer_arguments", recording)
    mbert, data = model_with(core, toy=("news", "sports"), holiday=False)
    train_multibert(mbert, data, arguments(tmp_path, pretrain_mode="shared", step2_learning_rate=1e-3))
    assert rates == {"multibert-step1-toy": 2e-2, "multibert-step2-news": 1e-3, "multibert-step2-sports": 1e-3}
