"""Compute dtypes shared by the router and CLLMFS extraction: 'auto' follows the device, names are checked."""

import pytest
import torch

from ner_adapters.cllmfs.extraction import DecodingConfig
from ner_adapters.compute import compute_dtype, native_bfloat16, resolve_compute_dtype


def test_auto_is_bfloat16_exactly_where_the_device_computes_it_natively():
    expected = "bfloat16" if native_bfloat16("cpu") else "float32"
    assert resolve_compute_dtype("auto", "cpu") == expected
    assert resolve_compute_dtype("auto", "meta") == "float32"  # no native bfloat16 known there
    assert resolve_compute_dtype("float16", "cpu") == "float16"


def test_the_context_turns_autocast_on_only_for_a_lower_precision():
    with compute_dtype("float32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with compute_dtype("bfloat16", "cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert (torch.nn.Linear(4, 2)(torch.ones(1, 4))).dtype == torch.bfloat16


def test_unknown_names_are_refused_where_they_are_given():
    with pytest.raises(ValueError, match=r"compute dtype 'int8' is not one of"):
        resolve_compute_dtype("int8", "cpu")
    with pytest.raises(ValueError, match=r"compute_dtype must be one of .* got 'bf16'"):
        DecodingConfig(compute_dtype="bf16")
