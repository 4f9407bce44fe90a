"""The private upstream API ner-adapters relies on (``ner_adapters/internals/``) still exists in the installed
versions. A failure names the upstream function that changed, so an upgrade that breaks one is found here first."""

import importlib
import inspect

import pytest

from ner_adapters.internals import accelerate as accelerate_internals
from ner_adapters.internals import adapters as adapters_internals
from ner_adapters.internals import trl as trl_internals


def _resolve(module: str, dotted: str):
    obj = importlib.import_module(module)
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize("library, module, name", [("trl", *api) for api in trl_internals.PRIVATE_API]
                         + [("adapters", *api) for api in adapters_internals.PRIVATE_API]
                         + [("accelerate", *api) for api in accelerate_internals.PRIVATE_API], ids=lambda v: str(v))
def test_private_names_exist(library, module, name):
    try:
        _resolve(module, name)
    except AttributeError:
        pytest.fail(f"{module}.{name} is gone from the installed version: update ner_adapters/internals/{library}.py")


def test_adapters_classification_head_and_prefix_tuning_keep_the_shapes_relied_on():
    from adapters.heads import ClassificationHead
    from adapters.methods.prefix_tuning import PrefixTuning, PrefixTuningPool

    params = list(inspect.signature(ClassificationHead.forward).parameters)
    assert params[:5] == ["self", "outputs", "cls_output", "attention_mask", "return_dict"], \
        f"adapters.heads.ClassificationHead.forward now takes {params}"
    assert "cls_output is None" in inspect.getsource(ClassificationHead.forward), \
        "ClassificationHead.forward no longer pools [CLS] only when no cls_output is given"
    assert "self.prefix_tunings" in inspect.getsource(PrefixTuningPool.__init__), \
        "PrefixTuningPool no longer keeps its prefixes in prefix_tunings"
    assert "control_trans" in inspect.getsource(PrefixTuning.__init__), "PrefixTuning has no control_trans any more"


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
