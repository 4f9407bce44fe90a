"""The private upstream API ner-adapters relies on (``ner_adapters/internals/``) still exists in the installed
versions. A failure names the upstream function that changed, so an upgrade that breaks one is found here first."""

import importlib
import inspect

import pytest

from ner_adapters.internals import trl as trl_internals


def _resolve(module: str, dotted: str):
    obj = importlib.import_module(module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("module, name", trl_internals.PRIVATE_API, ids=lambda v: str(v))
def test_private_names_exist(module, name):
    try:
        _resolve(module, name)
    except AttributeError:
        pytest.fail(f"{module}.{name} is gone from the installed version: update ner_adapters/internals/trl.py")


def test_trl_use_triton_takes_a_device_and_sft_trainer_keeps_metrics_per_mode():
    from trl import SFTTrainer
    from trl.trainer import utils as trl_utils

    params = list(inspect.signature(trl_utils._use_triton).parameters)
    assert params == ["device"], f"trl.trainer.utils._use_triton now takes {params}"
    source = inspect.getsource(SFTTrainer.__init__)
    assert "self._metrics" in source and '"train"' in source, "SFTTrainer.__init__ no longer builds self._metrics"
    assert "_signature_columns" in inspect.getsource(SFTTrainer._set_signature_columns_if_needed), \
        "SFTTrainer._set_signature_columns_if_needed no longer sets self._signature_columns"


def test_compaction_switch_is_restored():
    from trl.trainer import utils as trl_utils

    import torch

    original = trl_utils._use_triton
    with trl_internals.compact_fused_lm_head(True):
        assert trl_utils._use_triton(torch.device("cpu")) is True
    assert trl_utils._use_triton is original
