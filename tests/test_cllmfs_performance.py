"""The training optimisations of issue 6: compact LM head on CPU and boolean-mask LoRA dropout (same results)."""

import pytest
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

from ner_adapters.cllmfs import CLLMFSConfig, CLLMFSTrainer, PromptFormat, build_sft_dataset, dataset_entity_types
from ner_adapters.cllmfs.cllmfs_trainer import MaskDropout, use_mask_dropout
from ner_adapters.internals.trl import compact_fused_lm_head
from ner_adapters.data import Sentence
from ner_adapters.spans import Span

SUPPORT = [
    Sentence("Andrew Little met Jacinda Ardern in Wellington".split(), [Span(0, 2, "person"), Span(3, 5, "person"),
                                                                     Span(6, 7, "location")], id="a"),
    Sentence("I flew from Paris to Tokyo with Maria".split(), [Span(3, 4, "location"), Span(5, 6, "location"),
                                                              Span(7, 8, "person")], id="b"),
]
LORA = dict(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"],
            task_type="CAUSAL_LM")


@pytest.fixture(scope="module")
def trainer(tiny_llm_dir, tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    dataset = build_sft_dataset(SUPPORT, dataset_entity_types("wnut17", ["person", "location"]), PromptFormat(tokenizer))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    args = CLLMFSConfig(output_dir=str(tmp_path_factory.mktemp("perf")), max_steps=1, per_device_train_batch_size=2,
                        report_to=[], use_cpu=True, save_strategy="no", disable_tqdm=True, cl_weight=0.5,
                        cl_noise_scale=0.0)
    return CLLMFSTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=LoraConfig(**LORA))


def loss_and_grads(trainer, batch, compact: bool):
    model = trainer.model
    model.zero_grad(set_to_none=True)
    trainer.args.compact_lm_head = compact
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_compact_lm_head_gives_the_same_loss_and_gradients(trainer):
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    dataset = trainer.train_dataset
    batch = trainer.data_collator([dataset[0], dataset[1], dataset[2]])
    trainer.model.eval()  # no dropout: both runs see the same network
    try:
        full_loss, full_grads = loss_and_grads(trainer, batch, compact=False)
        compact_loss, compact_grads = loss_and_grads(trainer, batch, compact=True)
    finally:
        trainer.args.compact_lm_head = True
    assert trl_utils._use_triton is original  # the switch is scoped to the call
    assert torch.allclose(full_loss, compact_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == compact_grads.keys() and full_grads
    for name, grad in full_grads.items():
        assert torch.allclose(grad, compact_grads[name], rtol=1e-4, atol=1e-6), name


def test_compact_switch_restores_trl_even_on_error():
    from trl.trainer import utils as trl_utils

    original = trl_utils._use_triton
    with pytest.raises(RuntimeError):
        with compact_fused_lm_head(True):
            assert trl_utils._use_triton(torch.device("cpu"))
            raise RuntimeError("boom")
    assert trl_utils._use_triton is original
    with compact_fused_lm_head(False):
        assert trl_utils._use_triton is original


def test_trainer_uses_mask_dropout_in_its_lora_layers(trainer):
    dropouts = [m for m in trainer.model.modules() if isinstance(m, torch.nn.Dropout)]
    lora = [m for m in dropouts if isinstance(m, MaskDropout)]
    assert len(lora) == 5 * 5  # five adapted projections in each of the tiny model's five layers
    assert use_mask_dropout(trainer.model) == 0  # already swapped


def test_mask_dropout_is_inverted_dropout_with_a_boolean_mask():
    torch.manual_seed(0)
    x = torch.randn(64, 128, requires_grad=True)
    dropout = MaskDropout(0.25)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = dropout(x)
    kept = y != 0
    assert 0.65 < kept.float().mean() < 0.85
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert [t.dtype for t in saved] == [torch.bool]  # not a float32 copy of the noise
    y.sum().backward()
    assert torch.allclose(x.grad, kept.float() / 0.75)
    dropout.eval()
    assert torch.equal(dropout(x), x)
    with torch.no_grad():
        dropout.train()
        assert dropout(x).shape == x.shape


# --- extraction: per-group prefix caches in mixed batches ------------------------------------------------------


def test_mixed_type_batches_reuse_each_groups_prefix_and_match_unbatched_logits(tiny_llm_dir):
    from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig, EntityType

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    types = [EntityType("person", "Person", "a named person"),
             EntityType("location", "Location", "the name of a place, such as a city, a country or a mountain")]
    extractor = CLLMFSExtractor(model, tokenizer, types, decoding=DecodingConfig(batch_size=8))
    texts = ["Ali met Sara in Rome", "Tokyo", "Nothing here at all today , really"]
    jobs = extractor._jobs(texts, types, None)
    extractor._prefix_caches = {}
    extractor._group_prefixes = extractor._shared_prefixes(jobs)
    assert len(set(extractor._group_prefixes.values())) == 2  # one instruction prefix per type
    batches = extractor._batches(jobs)
    assert len(batches) == 1 and len({tuple(t.label for t in jobs[j].types) for j in batches[0]}) == 2
    batch = extractor._encode_batch([jobs[j] for j in batches[0]])
    assert len(extractor._prefix_caches) == 2  # computed once per group, not per batch
    mask = batch["attention_mask"]
    past_length = batch["past_key_values"].get_seq_length()
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, past_length:]  # as generate() derives them
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"][:, past_length:], attention_mask=mask, position_ids=positions,
                    past_key_values=batch["past_key_values"], use_cache=True)
        for row, j in enumerate(batches[0]):
            ids = tokenizer(jobs[j].prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            alone = model(input_ids=ids).logits[0, -1]
            assert torch.allclose(out.logits[row, -1], alone, atol=1e-4), row


# --- extraction: finished rows leave the batch ------------------------------------------------------------------


def test_decode_batch_drops_finished_rows_and_matches_generate(tiny_llm_dir):
    from ner_adapters.cllmfs.decoding import decode_batch

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir).eval()
    texts = ["Ali met Sara in Rome", "Tokyo", "Nothing here at all today , really", "a b c"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    steps = 10
    with torch.no_grad():
        reference = model.generate(**batch, max_new_tokens=steps, do_sample=False, temperature=None, top_p=None,
                                   top_k=None, pad_token_id=tokenizer.pad_token_id, eos_token_id=None)
    answers = reference[:, batch["input_ids"].shape[1]:].tolist()
    # Stop tokens that end the rows at different steps: row 0's 3rd token and row 2's 6th.
    stops = [answers[0][2], answers[2][5]]
    expected = []
    for row in answers:
        ends = [i for i, token in enumerate(row) if token in stops]
        expected.append(row[: ends[0] + 1] if ends else row)
    assert len({len(e) for e in expected}) > 1
    sizes = []
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        decoded = decode_batch(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=steps, stop_ids=stops)
    finally:
        hook.remove()
    assert [row.token_ids for row in decoded] == expected
    assert [row.stopped for row in decoded] == [len(e) < steps or e[-1] in stops for e in expected]
    assert all(len(row.logprobs) == len(row.token_ids) and all(lp <= 0 for lp in row.logprobs) for row in decoded)
    # One forward per step; a row stops being computed after its stop token.
    assert sizes[0] == 4 and sizes == sorted(sizes, reverse=True) and sizes[-1] < 4
    assert sum(sizes) - len(texts) == sum(len(e) for e in expected) - len(texts)
    # A logits processor that cannot follow dropped rows (no keep()) keeps the batch whole, as generate does.
    seen = []
    sizes.clear()
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: sizes.append(kwargs["input_ids"].shape[0]),
                                           with_kwargs=True)
    try:
        whole = decode_batch(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=steps, stop_ids=stops,
                             processors=[lambda ids, scores: seen.append(ids.shape) or scores])
    finally:
        hook.remove()
    assert [row.token_ids for row in whole] == expected and set(sizes) == {4}
    assert seen[0] == batch["input_ids"].shape and seen[1] == (4, batch["input_ids"].shape[1] + 1)


def test_prefill_slices_bound_padding_and_keep_order(tiny_llm_dir):
    from ner_adapters.cllmfs import CLLMFSExtractor, DecodingConfig, EntityType

    tokenizer = AutoTokenizer.from_pretrained(tiny_llm_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llm_dir)
    types = [EntityType("person", "Person", "a named person"), EntityType("location", "Location", "a named place")]
    extractor = CLLMFSExtractor(model, tokenizer, types, decoding=DecodingConfig(batch_size=64, prefill_tokens=200))
    texts = [" ".join(["word"] * n) for n in (1, 2, 3, 5, 8, 13, 21, 34, 3, 2)]
    jobs = extractor._jobs(texts, types, None)
    extractor._group_prefixes = extractor._shared_prefixes(jobs)
    for batch in extractor._batches(jobs):
        ordered = [jobs[j] for j in batch]
        lengths = [extractor._own_length(job) for job in ordered]
        assert lengths == sorted(lengths)
        slices = extractor._prefill_slices(ordered)
        assert [job for piece in slices for job in piece] == ordered
        for piece in slices:
            own = [extractor._own_length(job) for job in piece]
            assert max(own) <= 1.25 * own[0] or len(piece) == 1
            assert len(piece) * max(own) <= 200 or len(piece) == 1
