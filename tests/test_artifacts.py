"""One module owns every artifact's manifest: names, formats, versions, fingerprints, checked reading."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ner_adapters import artifacts
from ner_adapters.errors import ArtifactError, MultiBertError, NerAdaptersError

SRC = Path(__file__).resolve().parents[1] / "src" / "ner_adapters"


def test_reading_manifests_does_not_import_torch():
    code = ("import sys, ner_adapters.artifacts, ner_adapters.hub.layout; "
            "print(sorted(m for m in ('torch', 'transformers', 'adapters', 'peft') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_manifest_names_are_written_in_one_module_only():
    names = (artifacts.CLLMFS_CONFIG, artifacts.MULTIBERT_MANIFEST, artifacts.HUB_MANIFEST, artifacts.MULTIBERT_FORMAT,
             artifacts.HUB_FORMAT)
    pattern = re.compile("|".join(re.escape(f'"{name}"') for name in names))
    elsewhere = [f"{path.relative_to(SRC)}:{n}" for path in SRC.rglob("*.py") if path.name != "artifacts.py"
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert elsewhere == []


def _write(folder: Path, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / artifacts.MULTIBERT_MANIFEST).write_text(json.dumps(data) if not isinstance(data, str) else data)
    return folder


def _valid() -> dict:
    return {"format": artifacts.MULTIBERT_FORMAT, "format_version": artifacts.MULTIBERT_FORMAT_VERSION,
            "core_model": "core", "core_fingerprint": {}, "max_length": 32, "schemes": {"s": ["O", "B-X", "I-X"]},
            "domains": {"d": {"scheme": "s", "adapter": {}}}, "general": {}, "router": None}


@pytest.mark.parametrize("change, message", [
    (lambda m: "{not json", "not valid JSON"),
    (lambda m: [1, 2], "expected a JSON object"),
    (lambda m: {**m, "format_version": 99}, "version 99 is not 'ner_adapters.multibert' version 1"),
    (lambda m: {k: v for k, v in m.items() if k != "router"}, "missing field(s) ['router']"),
    (lambda m: {**m, "domains": {"d": {"scheme": "other", "adapter": {}}}}, "scheme(s) ['other']"),
])
def test_a_bad_multibert_manifest_names_its_file_and_the_problem(tmp_path, change, message):
    folder = _write(tmp_path / "set", change(_valid()))
    with pytest.raises(MultiBertError) as caught:
        artifacts.read_multibert_manifest(folder, error=MultiBertError)
    assert str(folder / artifacts.MULTIBERT_MANIFEST) in str(caught.value) and message in str(caught.value)
    with pytest.raises(ArtifactError, match=re.escape(message)):  # the Hub side's error class, same check
        artifacts.read_multibert_manifest(folder)


def test_a_valid_manifest_reads_back_and_a_missing_one_is_named(tmp_path):
    assert artifacts.read_multibert_manifest(_write(tmp_path / "ok", _valid()))["schemes"] == {"s": ["O", "B-X", "I-X"]}
    with pytest.raises(NerAdaptersError, match="no multibert.json"):
        artifacts.read_multibert_manifest(tmp_path / "empty")


def test_artifact_kind_tells_the_three_manifests_apart(tmp_path):
    assert artifacts.artifact_kind(_write(tmp_path / "set", _valid())) == artifacts.KIND_MULTIBERT
    cllmfs = tmp_path / "cllmfs"
    cllmfs.mkdir()
    (cllmfs / artifacts.CLLMFS_CONFIG).write_text("{}")
    assert artifacts.artifact_kind(cllmfs) == artifacts.KIND_CLLMFS
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / artifacts.HUB_MANIFEST).write_text(json.dumps({"format": artifacts.HUB_FORMAT, "format_version": 1,
                                                         "kind": artifacts.KIND_ROUTER}))
    assert artifacts.artifact_kind(hub) == artifacts.KIND_ROUTER
    (hub / artifacts.HUB_MANIFEST).write_text(json.dumps({"format": artifacts.HUB_FORMAT, "format_version": 1,
                                                         "kind": "tokenizer"}))
    with pytest.raises(ArtifactError, match="unknown kind 'tokenizer'"):
        artifacts.artifact_kind(hub)


def test_fingerprints_tell_cores_apart_and_survive_a_copy(tiny_llm_dir):
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(tiny_llm_dir)
    assert artifacts.architecture_fingerprint(config)["num_hidden_layers"] == config.num_hidden_layers
    torch.manual_seed(0)
    a = AutoModel.from_config(config)
    b = AutoModel.from_config(config)
    b.load_state_dict(a.state_dict())
    assert artifacts.core_fingerprint(a) == artifacts.core_fingerprint(b)
    with torch.no_grad():
        b.get_input_embeddings().weight[0, 0] += 1e-3
    assert artifacts.core_fingerprint(a)["embeddings_sha256"] != artifacts.core_fingerprint(b)["embeddings_sha256"]
