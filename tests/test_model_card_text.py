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


def _cllmfs_folder(tmp_path, types):
    """The files an exported CLLMFS adapter folder holds, with a one-tensor LoRA."""
    import json

    import torch
    from safetensors.torch import save_file

    from ner_adapters.artifacts import CLLMFS_CONFIG

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / CLLMFS_CONFIG).write_text(json.dumps({
        "base_model": "me/tiny-llm", "prompt_mode": "per_type", "cl_layer": 3,
        "entity_types": [{"label": t, "description": f"a {t}"} for t in types]}))
    (folder / "adapter_config.json").write_text(json.dumps(
        {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj"]}))
    save_file({"lora_A.weight": torch.zeros(4, 8)}, str(folder / "adapter_model.safetensors"))
    return folder


def _scores():
    one = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "tp": 1, "predicted": 2, "gold": 4}
    return {"micro": one, "macro": {"precision": 0.5, "recall": 0.25, "f1": 1 / 3}, "per_type": {"person": one}}


def test_an_inter_card_names_its_sources_as_training_data_and_the_target_as_evaluation_only(tmp_path):
    """The zero-shot adapter's card: trained on several sources' support sets, scored on a dataset it never saw."""
    from ner_adapters.hub.model_card import cllmfs_card

    folder = _cllmfs_folder(tmp_path, ["person", "location", "PERSON"])
    run_results = {"source": "wnut17+presidio_synth", "target": "conll2003", "protocol": "inter", "k_shot": 5,
                   "n_way": 3, "query_sentences": [500]}
    run_config = {"episodes": {"dataset": "wnut17", "target_dataset": "conll2003", "n_support_sets": 5,
                               "source_datasets": ["wnut17", "presidio_synth"]}}
    card = cllmfs_card("me/zero-shot", folder, episode_results={"episode": "e0", "scores": _scores()},
                       run_results=run_results, run_config=run_config, network=False, support_sentences=694)
    training = card.text.split("## Training data")[1].split("## Evaluation")[0]
    assert "**wnut17**" in training and "**presidio_synth**" in training
    assert "**conll2003**" not in training and "Nothing of conll2003\nwas trained on" in training
    assert "5 5-shot support sets from each of 2 source datasets (3 types in all, 694 sentences)" in training
    assert "trained on 5 5-shot support sets from each of 2 source datasets" in card.text  # the limitation too
    assert card.data.eval_results[0].dataset_type == "conll2003"  # scored on the target
    assert "wnut_17" in card.data.datasets

    subset = dict(run_config["episodes"], source_datasets=["wnut17", "gum/news"])
    card = cllmfs_card("me/zero-shot", folder, episode_results={"episode": "e0", "scores": _scores()},
                       run_results=run_results, run_config={"episodes": subset}, network=False)
    training = card.text.split("## Training data")[1].split("## Evaluation")[0]
    assert "**gum** (" in training and "`news`" in training and "licence: unknown" not in training  # name/subset


def test_an_intra_card_counts_the_support_sentences_it_was_trained_on(tmp_path):
    from ner_adapters.hub.model_card import cllmfs_card

    folder = _cllmfs_folder(tmp_path, ["person", "location"])
    card = cllmfs_card("me/intra", folder, episode_results={"episode": "e0", "scores": _scores()},
                       run_results={"source": "wnut17", "target": "wnut17", "protocol": "intra", "k_shot": 5, "n_way": 2},
                       run_config={"episodes": {"dataset": "wnut17", "n_support_sets": 1}}, network=False,
                       support_sentences=31)
    assert "built from\na 2-way 5-shot support set (31 sentences)" in card.text
    assert "Nothing of" not in card.text and "**wnut17**" in card.text.split("## Training data")[1]
    several = cllmfs_card("me/intra", folder, episode_results={"episode": "e0", "scores": _scores()},
                          run_results={"source": "wnut17", "target": "wnut17", "protocol": "intra", "k_shot": 5, "n_way": 2},
                          run_config={"episodes": {"dataset": "wnut17", "n_support_sets": 5}}, network=False)
    assert "5 disjoint 2-way 5-shot support sets" in several.text
