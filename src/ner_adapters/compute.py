"""Compute dtypes: run a forward in bfloat16 (or float16) autocast where the device does that natively.

Shared by the Multi-BERT domain classifier (``router_dtype``) and CLLMFS extraction (``compute_dtype``). On a CPU
with AMX / AVX512-BF16 bfloat16 autocast makes a CLLMFS LoRA training step 1.7x faster for Qwen2.5-0.5B and 1.3x
for SmolLM2-135M (``benchmarks/bench_cllmfs_train.py``, docs/results.md); without them autocast to bfloat16 is
slower than float32, hence ``"auto"``.
"""

from __future__ import annotations

import contextlib

import torch

COMPUTE_DTYPES = ("float32", "bfloat16", "float16", "auto")


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively (else autocast to it is slower)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence getattr
        return any(getattr(cpu, probe, lambda: False)() for probe in probes)
    return False


def resolve_compute_dtype(name: str, device: torch.device | str) -> str:
    """``"auto"`` made concrete for ``device``: ``"bfloat16"`` where native, else ``"float32"``."""
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute dtype {name!r} is not one of {list(COMPUTE_DTYPES)}")
    if name == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return name


def compute_dtype(name: str, device: torch.device | str):
    """The autocast context of a compute dtype name (``"float32"``: none)."""
    device = torch.device(device)
    name = resolve_compute_dtype(name, device)
    if name == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, name))


__all__ = ["COMPUTE_DTYPES", "compute_dtype", "native_bfloat16", "resolve_compute_dtype"]
