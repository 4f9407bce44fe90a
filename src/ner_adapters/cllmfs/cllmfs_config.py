"""Training configuration of CLLMFS: TRL's ``SFTConfig`` plus the contrastive term's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import SFTConfig


@dataclass
class CLLMFSConfig(SFTConfig):
    r"""
    [`SFTConfig`] for [`CLLMFSTrainer`]: loss = completion-only cross-entropy + ``cl_weight`` * InfoNCE.

    Parameters specific to CLLMFS:
        cl_weight (`float`, defaults to `0.001`): lambda of the paper (Eq. 6); 0 trains LoRA alone.
        cl_layer (`int` or `None`): index of the hidden state used for the contrastive term (``hidden_states[k]``
            of transformers, i.e. the output of decoder layer k). `None` picks the layer at 0.8 of the depth, as
            the paper's layer 26 of 32 (24 of 30 for SmolLM2-135M).
        cl_temperature (`float`, defaults to `0.1`): tau of the InfoNCE softmax.
        cl_noise_scale (`float`, defaults to `0.1`): norm of the noise added to the perturbed positive, relative to
            the positive's norm; 0 disables the noisy positive.
        cl_noise_kind (`str`, defaults to `"uniform"`): ``"uniform"`` (SimGCL: sign-aligned uniform noise) or
            ``"gaussian"``.
        cl_max_negatives (`int`, defaults to `8`): neighbouring spans used as negatives per entity.
        compact_lm_head (`bool`, defaults to `True`): project only the scored (completion) positions through TRL's
            fused LM head on every device. TRL does so only where Triton runs (GPUs) and scores every position
            elsewhere; in CLLMFS most positions are prompt tokens, so on CPU this cuts the LM head's work several
            times over (see ``benchmarks/README.md``). The loss is the same.
        keep_checkpoints (`bool`, defaults to `False`): keep an episode's periodic checkpoints once its adapter and
            results are written (they only serve to resume an unfinished episode).

    Defaults that differ from [`SFTConfig`]: ``gradient_checkpointing=False`` (the models this targets are small
    and it costs time), ``bf16`` only when a GPU is present (on a CPU set it where bfloat16 is native, AMX or
    AVX512-BF16: a Qwen2.5-0.5B LoRA step took 17.6 s instead of 29.5 s here; elsewhere it is slower), and
    ``save_safetensors``/``save_only_model`` left at the Trainer's defaults so checkpoints resume fully.
    """

    cl_weight: float = field(default=0.001, metadata={"help": "Weight (lambda) of the contrastive loss."})
    cl_layer: int | None = field(
        default=None, metadata={"help": "Hidden-state index for the contrastive loss (default: 0.8 of the depth)."}
    )
    cl_temperature: float = field(default=0.1, metadata={"help": "InfoNCE temperature tau."})
    cl_noise_scale: float = field(default=0.1, metadata={"help": "Relative norm of the positive's noise (0: off)."})
    cl_noise_kind: str = field(default="uniform", metadata={"help": "'uniform' (SimGCL) or 'gaussian' noise."})
    cl_max_negatives: int = field(default=8, metadata={"help": "Neighbouring-span negatives per entity."})
    compact_lm_head: bool = field(
        default=True, metadata={"help": "Project only the completion positions through the LM head (CPU too)."}
    )
    keep_checkpoints: bool = field(
        default=False, metadata={"help": "Keep the periodic checkpoints (with optimizer state) of a finished episode."}
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations in backward."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (LoRA)."})

    def __post_init__(self):
        if self.bf16 is None and not self.fp16:
            self.bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        if self.use_cpu or not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for; torch warns once per dataloader otherwise
        if self.bf16 and not torch.accelerator.is_available():
            # transformers only takes bf16 on a CPU-only machine when told use_cpu ("doesn't support bf16/gpu")
            self.use_cpu = True
        super().__post_init__()
        if self.cl_weight < 0:
            raise ValueError(f"cl_weight must be >= 0, got {self.cl_weight}")
        if self.cl_temperature <= 0:
            raise ValueError(f"cl_temperature must be > 0, got {self.cl_temperature}")
        if self.cl_noise_kind not in ("uniform", "gaussian"):
            raise ValueError(f"cl_noise_kind must be 'uniform' or 'gaussian', got {self.cl_noise_kind!r}")
        if self.gradient_checkpointing:
            # Reentrant checkpointing runs the first forward without grad, so the hooked hidden states could not
            # carry the contrastive gradient; the non-reentrant variant keeps it.
            self.gradient_checkpointing_kwargs = {**(self.gradient_checkpointing_kwargs or {}), "use_reentrant": False}
