"""``CLLMFSTrainer``: TRL's ``SFTTrainer`` plus the contrastive term on one decoder layer.

TRL computes the completion-only cross-entropy with a fused LM head whose output carries neither logits
nor hidden states. Instead of a second forward, a forward hook on the chosen decoder layer captures its
output (equal to ``hidden_states[k]``) during TRL's own forward, so TRL's training path, logs (token
accuracy, entropy) and loss normalisation stay as they are; the InfoNCE term is added on top and CE and
CL are logged separately.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from trl import SFTTrainer

from ..internals.trl import compact_fused_lm_head, fused_lm_head_backbone, keep_signature_columns, log_metric
from ..training_logs import use_readable_logs
from .cllmfs_config import CLLMFSConfig
from .contrastive import contrastive_loss

CL_COLUMNS = ("cl_anchor", "cl_positive", "cl_negatives")


class ContrastiveCollator:
    """Wraps TRL's collator: pads ``input_ids``/``labels`` as TRL does and adds the contrastive positions.

    Returns ``cl_pairs`` ``(P, 5)`` = ``[batch, anchor_start, anchor_end, positive_start, positive_end]`` and
    ``cl_negatives`` ``(N, 3)`` = ``[pair, start, end]``; positions cut off by truncation are dropped.
    """

    def __init__(self, base):
        self.base = base

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.base([{k: v for k, v in ex.items() if k not in CL_COLUMNS} for ex in examples])
        pairs: list[list[int]] = []
        negatives: list[list[int]] = []
        for b, example in enumerate(examples):
            length = len(example["input_ids"])
            for anchor, positive, negs in zip(*(example.get(c) or [] for c in CL_COLUMNS)):
                kept = [n for n in negs if n[1] <= length]
                if max(anchor[1], positive[1]) > length or not kept:
                    continue
                negatives += [[len(pairs), n[0], n[1]] for n in kept]
                pairs.append([b, anchor[0], anchor[1], positive[0], positive[1]])
        batch["cl_pairs"] = torch.tensor(pairs, dtype=torch.long).reshape(-1, 5)
        batch["cl_negatives"] = torch.tensor(negatives, dtype=torch.long).reshape(-1, 3)
        return batch


class _BoolMaskDropout(torch.autograd.Function):
    """Inverted dropout that keeps a one-byte mask for the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        keep = torch.empty(x.shape, dtype=torch.bool, device=x.device).bernoulli_(1 - p)
        ctx.save_for_backward(keep)
        ctx.scale = 1 / (1 - p)
        return x.masked_fill(~keep, 0).mul_(ctx.scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (keep,) = ctx.saved_tensors
        return grad.masked_fill(~keep, 0).mul_(ctx.scale), None


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` that saves a boolean mask for backward on CPU, where torch saves a float32 noise tensor.

    On CUDA torch's fused kernel already keeps a boolean mask, so this defers to it. LoRA applies dropout to
    the input of each adapted projection (five per SmolLM2 layer), so on CPU that float noise alone was about
    0.3 GB of a batch-8 step's activations (see ``benchmarks/README.md``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or not torch.is_grad_enabled():
            return super().forward(x)
        return _BoolMaskDropout.apply(x, self.p)


def use_mask_dropout(model: nn.Module) -> int:
    """Swap the plain ``nn.Dropout`` modules of PEFT's LoRA layers for :class:`MaskDropout`; returns how many."""
    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if type(dropout) is nn.Dropout and dropout.p > 0:
                    replacement = MaskDropout(dropout.p, inplace=False)
                    replacement.train(dropout.training)
                    dropouts[name] = replacement
                    swapped += 1
    return swapped


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder's block list of a (PEFT-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n_layers = base.config.get_text_config().num_hidden_layers
    for name, module in base.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and name.split(".")[-1] in ("layers", "h", "blocks"):
            return module
    raise ValueError(f"cannot find the {n_layers} decoder layers of {type(base).__name__}")


def default_cl_layer(num_hidden_layers: int) -> int:
    """The paper's choice, 0.8 of the depth: layer 26 of 32 (Llama-2-7B), 24 of 30 (SmolLM2-135M)."""
    return max(1, round(0.8 * num_hidden_layers))


class CLLMFSTrainer(SFTTrainer):
    """[`SFTTrainer`] whose loss is completion-only CE + ``args.cl_weight`` * InfoNCE (see the module docstring).

    Args:
        model (`str` or `PreTrainedModel`): the causal LM (a Hub id, folder or model), as for TRL.
        args (`CLLMFSConfig`, *optional*): TRL's `SFTConfig` plus `cl_weight`, `cl_layer` (default: 0.8 of the
            depth), `cl_temperature`, `cl_noise_scale`, `cl_max_negatives`, `compact_lm_head`, `keep_checkpoints`.
        data_collator (*optional*): TRL's collator is wrapped so the contrastive token positions survive it.
        **kwargs: as for `SFTTrainer`: `train_dataset` (from
            :func:`ner_adapters.cllmfs.sft_data.build_sft_dataset`: tokenized, with `labels` and the contrastive
            positions), `processing_class`, `peft_config` (LoRA), `callbacks`...

    Raises:
        `TypeError`: `args` is not a `CLLMFSConfig`.
        `ValueError`: `cl_layer` is outside the model's layers.

    Example:

    ```python
    >>> from peft import LoraConfig
    >>> from ner_adapters.cllmfs import CLLMFSConfig, CLLMFSTrainer, PromptFormat, build_sft_dataset
    >>> train = build_sft_dataset(support_sentences, entity_types, PromptFormat(tokenizer))
    >>> trainer = CLLMFSTrainer(model, args=CLLMFSConfig("out", cl_weight=0.001, use_cpu=True), train_dataset=train,
    ...                         processing_class=tokenizer, peft_config=LoraConfig(r=16, task_type="CAUSAL_LM"))
    >>> trainer.train()   # logs ce_loss and cl_loss beside TRL's own metrics
    ```
    """

    _tag_names = ["trl", "sft", "cllmfs", "ner-adapters"]
    _name = "CLLMFS"

    def __init__(self, model, args: CLLMFSConfig | None = None, data_collator=None, **kwargs):
        if args is None:
            args = CLLMFSConfig("cllmfs-output")
        if not isinstance(args, CLLMFSConfig):
            raise TypeError(f"CLLMFSTrainer needs a CLLMFSConfig, got {type(args).__name__}")
        super().__init__(model=model, args=args, data_collator=data_collator, **kwargs)
        if not isinstance(self.data_collator, ContrastiveCollator):
            self.data_collator = ContrastiveCollator(self.data_collator)
        use_mask_dropout(self.model)
        layers = decoder_layers(self.model)
        self.cl_layer = args.cl_layer if args.cl_layer is not None else default_cl_layer(len(layers))
        if not 1 <= self.cl_layer <= len(layers):
            raise ValueError(f"cl_layer={self.cl_layer} is outside 1..{len(layers)} (hidden_states[k] of layer k)")
        self._captured: torch.Tensor | None = None
        self._capturing = False
        self._hook = layers[self.cl_layer - 1].register_forward_hook(self._capture_hidden)
        use_readable_logs(self)  # console lines at 4 significant digits; the state keeps full values

    def create_model_card(self, *args, **kwargs) -> None:
        """No TRL card in the run folder: it would name a local cache folder (or "None") as the base model.
        The adapter folder gets the project's card (:func:`ner_adapters.cllmfs.artifact.write_card`)."""

    def _get_train_sampler(self, train_dataset=None):
        """With ``group_by_length``, batches in an order fixed by (seed, epoch): a resumed run sees the same ones."""
        from ..resume import resumable_train_sampler

        return resumable_train_sampler(self, train_dataset) or super()._get_train_sampler(train_dataset)

    def _capture_hidden(self, module, inputs, output) -> None:
        if self._capturing:
            self._captured = output[0] if isinstance(output, tuple) else output

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        keep_signature_columns(self, CL_COLUMNS)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        pairs = inputs.pop("cl_pairs", None)
        negatives = inputs.pop("cl_negatives", None)
        use_cl = self.args.cl_weight > 0 and pairs is not None
        self._captured, self._capturing = None, use_cl
        try:
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            with compact_fused_lm_head(self.args.compact_lm_head), fused_lm_head_backbone(base):
                result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                              num_items_in_batch=num_items_in_batch)
        finally:
            self._capturing = False
        loss, outputs = result if return_outputs else (result, None)
        training = self.model.training
        mode = "train" if training else "eval"
        # With num_items_in_batch the Trainer leaves gradient accumulation to the loss (CE is normalised over
        # the whole accumulated batch), so a per-micro-batch mean like InfoNCE is divided by the steps here.
        steps = self.current_gradient_accumulation_steps if training and num_items_in_batch is not None else 1
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices and num_items_in_batch is not None else 1
        ce = loss.detach() * steps / processes
        log_metric(self, mode, "ce_loss", self.accelerator.gather_for_metrics(ce).mean().item())
        if use_cl:
            if self._captured is None:
                raise RuntimeError(f"the hook on decoder layer {self.cl_layer} captured nothing during the forward")
            if training and not self._captured.requires_grad:
                raise RuntimeError("the captured hidden states carry no gradient (reentrant gradient checkpointing?)")
            cl = contrastive_loss(
                self._captured,
                pairs.to(self._captured.device),
                negatives.to(self._captured.device),
                temperature=self.args.cl_temperature,
                noise_scale=self.args.cl_noise_scale if training else 0.0,
                noise_kind=self.args.cl_noise_kind,
            )
            loss = loss + self.args.cl_weight * cl / steps
            log_metric(self, mode, "cl_loss", self.accelerator.gather_for_metrics(cl.detach()).mean().item())
        self._captured = None
        return (loss, outputs) if return_outputs else loss
