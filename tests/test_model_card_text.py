"""Pieces of the model cards that are plain text from the manifests."""

from ner_adapters.hub.model_card import _adapter_description


def test_the_lora_description_names_its_target_matrices():
    assert _adapter_description({"kind": "lora", "lora_r": 3, "lora_alpha": 1}) == \
        "LoRA, r=3, alpha=1, on the query, value matrices"  # manifests from before the targets were recorded
    spec = {"kind": "lora", "lora_r": 8, "lora_alpha": 16, "lora_attn_matrices": ["q", "k", "v"],
            "lora_intermediate": True, "lora_output": True}
    assert _adapter_description(spec) == ("LoRA, r=8, alpha=16, on the query, key, value, feed-forward intermediate, "
                                          "feed-forward output matrices")
    assert _adapter_description({"kind": "prefix", "prefix_length": 22, "prefix_flat": True}) == \
        "prefix tuning, prefix length 22, flat"
