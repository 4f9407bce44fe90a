"""TRL private API used by ``CLLMFSTrainer`` (checked against TRL 1.16 by ``tests/test_upstream_internals.py``).

- ``trl.trainer.utils._use_triton(device)``: whether TRL's fused LM head compacts to the labelled positions;
  :func:`compact_fused_lm_head` makes it do so on CPU too.
- ``trl.trainer.utils.add_fused_lm_head``'s forward runs ``model.base_model`` and reads its ``last_hidden_state``;
  :func:`fused_lm_head_backbone` gives it the decoder where ``base_model`` is the causal LM itself (Gemma 3).
- ``SFTTrainer._metrics[mode][name]``: the lists TRL averages into each logging step; :func:`log_metric` adds
  the contrastive run's CE and CL losses to them, so they show up beside TRL's own.
- ``Trainer._set_signature_columns_if_needed`` / ``_signature_columns``: the dataset columns the Trainer keeps;
  :func:`keep_signature_columns` adds the contrastive positions so ``remove_unused_columns`` does not drop them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch

#: (module, attribute) pairs this module relies on, for the upgrade test.
PRIVATE_API = (
    ("trl.trainer.utils", "_use_triton"),
    ("trl", "SFTTrainer._set_signature_columns_if_needed"),
    ("transformers", "Trainer._get_train_sampler"),
)


@contextmanager
def compact_fused_lm_head(enabled: bool = True) -> Iterator[None]:
    """Make TRL's fused LM head project only the positions with a label, on every device.

    TRL 1.16 compacts to the labelled positions only where its Triton kernels run (CUDA, XPU); elsewhere it
    scores every position, to keep tile shapes fixed for compilers. On CPU nothing recompiles, and in CLLMFS
    about nine tokens in ten are prompt tokens without a label, so most of the LM head's work (a third of a
    step for SmolLM2-135M) and its temporary logits go to positions that are masked out afterwards. The
    per-token outputs are the same (zero on ignored positions either way). A no-op if TRL's internals differ.
    """
    try:
        from trl.trainer import utils as trl_utils
    except ImportError:  # pragma: no cover
        enabled = False
    original = getattr(trl_utils, "_use_triton", None) if enabled else None
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: original(device) or device.type == "cpu"
    try:
        yield
    finally:
        trl_utils._use_triton = original


@contextmanager
def fused_lm_head_backbone(model) -> Iterator[None]:
    """Let TRL's fused LM head reach the decoder of a causal LM whose ``base_model`` is the model itself.

    TRL 1.16's fused forward calls ``model.base_model`` and reads ``last_hidden_state`` from it. Under
    transformers 4.57 Gemma 3's causal LM names its base model ``language_model`` (the attribute of the
    vision-language model) while its decoder is ``model``, so ``base_model`` falls back to the causal LM itself,
    whose output has logits and no ``last_hidden_state``, and training fails on its first step. While the block runs, the prefix names the
    decoder (``model.model``); it is restored after, so saving and loading see the class's own value. A no-op for
    models whose ``base_model`` is already their decoder (Llama, Qwen2, SmolLM2...).

    Args:
        model: the causal LM (unwrapped: no PEFT or accelerate wrapper).
    """
    decoder = getattr(model, "model", None)
    needed = (getattr(model, "base_model", None) is model and isinstance(decoder, torch.nn.Module)
              and hasattr(decoder, "layers"))
    if not needed:
        yield
        return
    model.base_model_prefix = "model"  # an instance attribute over the class's ""
    try:
        yield
    finally:
        del model.base_model_prefix


def log_metric(trainer, mode: str, name: str, value: float) -> None:
    """Add one value to what TRL averages into the next log line of ``mode`` ("train" or "eval")."""
    trainer._metrics[mode][name].append(value)


def keep_signature_columns(trainer, columns: Sequence[str]) -> None:
    """After ``Trainer._set_signature_columns_if_needed``: keep ``columns`` too (the Trainer drops the rest)."""
    trainer._signature_columns = list(dict.fromkeys([*trainer._signature_columns, *columns]))


__all__ = ["PRIVATE_API", "compact_fused_lm_head", "fused_lm_head_backbone", "keep_signature_columns", "log_metric"]
