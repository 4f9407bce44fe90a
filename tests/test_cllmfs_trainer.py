"""CLLMFSTrainer: TRL's SFT path plus the contrastive term, on a tiny Llama."""

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from ner_adapters.cllmfs import CLLMFSConfig, CLLMFSTrainer, PromptFormat, build_sft_dataset, dataset_entity_types
from ner_adapters.cllmfs.cllmfs_trainer import default_cl_layer
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

SUPPORT = [
    Sentence("Andrew Little met Jacinda Ardern in Wellington".split(), [Span(0, 2, "person"), Span(3, 5, "person"),
                                                                     Span(6, 7, "location")], id="a"),
    Sentence("I flew from Paris to Tokyo with Maria".split(), [Span(3, 4, "location"), Span(5, 6, "location"),
                                                              Span(7, 8, "person")], id="b"),
    Sentence("Nothing to see here today".split(), [], id="c"),
]
LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"], task_type="CAUSAL_LM")


@pytest.fixture(scope="module")
def tokenizer(tiny_llm_dir):
    return AutoTokenizer.from_pretrained(tiny_llm_dir)


@pytest.fixture(scope="module")
def dataset(tokenizer):
    return build_sft_dataset(SUPPORT, dataset_entity_types("wnut17", ["person", "location"]), PromptFormat(tokenizer))


def make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, **overrides):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    settings = dict(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=2, logging_steps=1,
                    report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0, data_seed=0)
    settings.update(overrides)
    return CLLMFSTrainer(model=model, args=CLLMFSConfig(**settings), train_dataset=dataset, processing_class=tokenizer,
                         peft_config=LoraConfig(**LORA))


def test_default_layer_is_four_fifths_of_the_depth():
    assert default_cl_layer(32) == 26 and default_cl_layer(30) == 24 and default_cl_layer(5) == 4


def test_trains_and_logs_ce_and_cl_separately(tiny_llm_dir, tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_weight=0.5)
    assert trainer.cl_layer == 4
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for entry in logs:
        assert entry["cl_loss"] > 0 and entry["ce_loss"] > 0
        assert "mean_token_accuracy" in entry  # TRL's own logs are kept
        assert entry["loss"] == pytest.approx(entry["ce_loss"] + 0.5 * entry["cl_loss"], rel=1e-3)


def test_without_cl_weight_there_is_no_contrastive_term(tiny_llm_dir, tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_weight=0.0, max_steps=1)
    trainer.train()
    entry = next(e for e in trainer.state.log_history if "loss" in e)
    assert "cl_loss" not in entry and entry["loss"] == pytest.approx(entry["ce_loss"], rel=1e-4)


def test_hook_captures_hidden_states_of_the_layer(tiny_llm_dir, tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_layer=2)
    batch = trainer.data_collator([dataset[0], dataset[1]])
    model = trainer.model.eval()
    trainer._capturing = True
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    trainer._capturing = False
    assert torch.allclose(trainer._captured, out.hidden_states[2], atol=1e-6)


def test_contrastive_term_is_divided_over_accumulation_steps(tiny_llm_dir, tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_weight=1.0, cl_noise_scale=0.0)
    batch = trainer.data_collator([dataset[0], dataset[1]])
    assert batch["cl_pairs"].shape[0] > 0 and batch["cl_negatives"].shape[1] == 3
    trainer.model.train()
    losses = {}
    for steps in (1, 2):
        trainer.current_gradient_accumulation_steps = steps
        n_items = int((batch["labels"] != -100).sum())
        losses[steps] = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n_items).item()
        cl = trainer._metrics["train"]["cl_loss"][-1]
    assert losses[1] - losses[2] == pytest.approx(cl / 2, rel=1e-3)


def lora_gradients(trainer, batch) -> dict[str, torch.Tensor]:
    """The LoRA gradients of one batch's loss, after setting every LoRA B to the same nonzero values (B starts at
    zero, which would leave every A without a gradient)."""
    model = trainer.model
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    model.train()
    model.zero_grad()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); one micro-batch here
    n_items = int((batch["labels"] != -100).sum())
    trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items).backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def layer_of(name: str) -> int:
    return int(name.split("layers.")[1].split(".")[0])


def test_the_contrastive_term_reaches_the_lora_weights_up_to_its_layer(tiny_llm_dir, tokenizer, dataset, tmp_path):
    """lambda > 0 changes the gradient of every LoRA matrix at or below the contrastive layer (layer k's output
    depends on layers 1..k) and of none above it (only the cross-entropy reaches those)."""
    batch = None
    grads = {}
    for weight in (0.0, 1.0):
        trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_weight=weight, cl_layer=2,
                               cl_noise_scale=0.0)
        batch = batch or trainer.data_collator([dataset[0], dataset[1]])
        assert batch["cl_pairs"].shape[0] > 0
        grads[weight] = lora_gradients(trainer, batch)
    assert set(grads[0.0]) == set(grads[1.0]) and len(grads[0.0]) == 5 * 5 * 2  # 5 layers x 5 modules x (A, B)
    below = [name for name in grads[0.0] if layer_of(name) < 2]  # decoder layers 1 and 2 (indices 0, 1)
    above = [name for name in grads[0.0] if layer_of(name) >= 2]
    assert below and above
    for name in below:
        assert not torch.allclose(grads[0.0][name], grads[1.0][name], rtol=0, atol=1e-9), name
    for name in above:
        assert torch.allclose(grads[0.0][name], grads[1.0][name], rtol=0, atol=1e-9), name


def test_gradient_checkpointing_keeps_the_contrastive_gradient(tiny_llm_dir, tokenizer, dataset, tmp_path):
    trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, gradient_checkpointing=True, max_steps=1)
    assert trainer.args.gradient_checkpointing_kwargs["use_reentrant"] is False
    trainer.train()
    assert "cl_loss" in next(e for e in trainer.state.log_history if "loss" in e)
    # ... and the gradient itself is the one computed without checkpointing.
    grads = {}
    for checkpointing in (False, True):
        trainer = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_weight=1.0, cl_layer=2,
                               cl_noise_scale=0.0, gradient_checkpointing=checkpointing)
        if checkpointing:
            trainer.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            trainer.model.enable_input_require_grads()
        grads[checkpointing] = lora_gradients(trainer, trainer.data_collator([dataset[0], dataset[1]]))
    for name in grads[False]:
        assert torch.allclose(grads[False][name], grads[True][name], atol=1e-6), name


def test_invalid_settings(tiny_llm_dir, tokenizer, dataset, tmp_path):
    with pytest.raises(ValueError, match="cl_layer=9 is outside 1..5"):
        make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path, cl_layer=9)
    with pytest.raises(ValueError, match="cl_noise_kind"):
        CLLMFSConfig(output_dir=str(tmp_path), cl_noise_kind="laplace", use_cpu=True)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def lora_weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_resume_from_checkpoint_reaches_the_same_weights(tiny_llm_dir, tokenizer, dataset, tmp_path):
    common = dict(max_steps=4, save_strategy="steps", save_steps=2, cl_weight=0.1, gradient_accumulation_steps=2)
    straight = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path / "straight", **common)
    straight.train()
    interrupted = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path / "resumed", **common)
    interrupted.add_callback(StopAt(2))
    interrupted.train()
    assert interrupted.state.global_step == 2 and (tmp_path / "resumed" / "checkpoint-2").is_dir()
    resumed = make_trainer(tiny_llm_dir, tokenizer, dataset, tmp_path / "resumed", **common)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 4
    expected, found = lora_weights(straight.model), lora_weights(resumed.model)
    assert expected.keys() == found.keys()
    for key in expected:
        assert torch.allclose(expected[key], found[key], atol=1e-6), key


def test_trains_a_gemma3_causal_lm_whose_base_model_is_itself(tiny_llm_dir, tokenizer, dataset, tmp_path):
    """Gemma 3's causal LM names a base model it does not have under transformers 4.57 (so ``base_model`` is the
    model), where TRL's fused LM head needs the decoder: the trainer bridges it for the step, then restores it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=1, head_dim=8, max_position_embeddings=1024, sliding_window=16,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config)
    assert model.base_model is model  # the case this covers
    trainer = CLLMFSTrainer(model=model, args=CLLMFSConfig(output_dir=str(tmp_path), max_steps=2, cl_weight=0.5,
                                                           per_device_train_batch_size=2, logging_steps=1, report_to=[],
                                                           use_cpu=True, save_strategy="no", disable_tqdm=True, seed=0),
                            train_dataset=dataset, processing_class=tokenizer, peft_config=LoraConfig(**LORA))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(entry["ce_loss"] > 0 and entry["cl_loss"] > 0 for entry in logs)
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters() if n in before)
    assert model.base_model is model and "base_model_prefix" not in vars(model)  # restored after each step
