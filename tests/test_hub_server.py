"""The local Hub (tests/hub_server.py) against the real, pinned clients.

Why: every Hub-facing test in the project relies on this server behaving like huggingface.co for
huggingface_hub 0.36.2, transformers, peft and datasets. These tests pin that contract down, so a
client upgrade that needs a new endpoint fails here first, with a clear cause.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.utils import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_server import HubServer


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _make_folder(root: Path, weights: bytes) -> Path:
    """A model-like folder: text files (regular git blobs) and a safetensors file (LFS)."""
    (root / "nested").mkdir(parents=True)
    (root / "config.json").write_text('{"hidden_size": 32}\n')
    (root / "README.md").write_text("---\nlicense: mit\n---\n# Tiny test repo\n")
    (root / "nested" / "notes.txt").write_text("nested text\n")
    (root / "nested" / "weights.safetensors").write_bytes(weights)
    return root


def _commit_posts(hub: HubServer, repo_id: str, prefix: str = "models") -> int:
    """How many commit requests the server received for ``repo_id``."""
    path = f"/api/{prefix}/{repo_id}/commit/"
    return sum(1 for method, seen in hub.requests if method == "POST" and seen.startswith(path))


def _anonymous(hub: HubServer) -> HfApi:
    """A client that sends no token at all (``token=False`` overrides ``HF_TOKEN``)."""
    return HfApi(endpoint=hub.url, token=False)


# ----------------------------------------------------------------------------------------------
# Repos, uploads and downloads with huggingface_hub
# ----------------------------------------------------------------------------------------------


def test_create_repo_conflict_and_exist_ok(hub_api: HfApi, unique_repo_id: str) -> None:
    url = hub_api.create_repo(unique_repo_id)
    assert url.repo_id == unique_repo_id and url.endpoint == hub_api.endpoint

    info = hub_api.repo_info(unique_repo_id)
    assert re.fullmatch(r"[0-9a-f]{40}", info.sha)
    assert [s.rfilename for s in info.siblings] == [".gitattributes"]  # seeded like the real Hub

    with pytest.raises(HfHubHTTPError) as conflict:
        hub_api.create_repo(unique_repo_id)
    assert conflict.value.response.status_code == 409
    assert hub_api.create_repo(unique_repo_id, exist_ok=True).repo_id == unique_repo_id


def test_upload_folder_text_and_lfs_then_download(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    weights = os.urandom(4096)
    folder = _make_folder(tmp_path / "src", weights)
    hub_api.create_repo(unique_repo_id)
    commit = hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder, commit_message="add files")
    assert re.fullmatch(r"[0-9a-f]{40}", commit.oid)

    expected = [".gitattributes", "README.md", "config.json", "nested/notes.txt", "nested/weights.safetensors"]
    assert sorted(hub_api.list_repo_files(unique_repo_id)) == expected

    tree = {entry.path: entry for entry in hub_api.list_repo_tree(unique_repo_id, recursive=True)}
    assert tree["nested/weights.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    assert tree["nested/weights.safetensors"].size == len(weights)
    assert tree["config.json"].lfs is None
    assert not hasattr(tree["nested"], "lfs")  # a RepoFolder
    top_level = {entry.path for entry in hub_api.list_repo_tree(unique_repo_id)}
    assert top_level == {".gitattributes", "README.md", "config.json", "nested"}
    assert {e.path for e in hub_api.list_repo_tree(unique_repo_id, path_in_repo="nested")} == {
        "nested/notes.txt",
        "nested/weights.safetensors",
    }

    assert hub_api.file_exists(unique_repo_id, "nested/notes.txt")
    assert not hub_api.file_exists(unique_repo_id, "missing.txt")

    siblings = {s.rfilename: s for s in hub_api.model_info(unique_repo_id, files_metadata=True).siblings}
    assert siblings["nested/weights.safetensors"].lfs.size == len(weights)
    assert siblings["config.json"].size == len('{"hidden_size": 32}\n')

    cache = tmp_path / "cache"
    path = hf_hub_download(unique_repo_id, "nested/weights.safetensors", cache_dir=cache)
    assert Path(path).read_bytes() == weights
    snapshot = Path(snapshot_download(unique_repo_id, cache_dir=tmp_path / "snapshot_cache"))
    assert snapshot.name == commit.oid
    for name in expected[1:]:
        assert (snapshot / name).read_bytes() == (folder / name).read_bytes()


def test_upload_file_revision_pinning_and_delete(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    hub_api.create_repo(unique_repo_id)
    first = hub_api.upload_file(path_or_fileobj=b"version 1\n", path_in_repo="data.txt", repo_id=unique_repo_id)
    second = hub_api.upload_file(path_or_fileobj=b"version 2\n", path_in_repo="data.txt", repo_id=unique_repo_id)
    assert first.oid != second.oid

    cache = tmp_path / "cache"
    assert Path(hf_hub_download(unique_repo_id, "data.txt", cache_dir=cache)).read_bytes() == b"version 2\n"
    old = hf_hub_download(unique_repo_id, "data.txt", revision=first.oid, cache_dir=cache)
    assert Path(old).read_bytes() == b"version 1\n"

    hub_api.delete_file("data.txt", repo_id=unique_repo_id)
    assert not hub_api.file_exists(unique_repo_id, "data.txt")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(unique_repo_id, "data.txt", cache_dir=tmp_path / "fresh")
    assert hub_api.file_exists(unique_repo_id, "data.txt", revision=second.oid)  # history is kept

    commits = hub_api.list_repo_commits(unique_repo_id)
    assert len(commits) == 4  # initial, v1, v2, delete
    assert commits[-1].commit_id == hub_api.list_repo_commits(unique_repo_id, revision=first.oid)[-1].commit_id


def test_reupload_of_unchanged_files_makes_no_commit(
    hub: HubServer, hub_api: HfApi, unique_repo_id: str, tmp_path: Path
) -> None:
    folder = _make_folder(tmp_path / "src", os.urandom(2048))
    hub_api.create_repo(unique_repo_id)
    first = hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder)
    again = hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder)

    assert again.oid == first.oid
    assert _commit_posts(hub, unique_repo_id) == 1
    assert len(hub_api.list_repo_commits(unique_repo_id)) == 2  # initial + one upload


def test_delete_folder_and_repo(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    hub_api.create_repo(unique_repo_id)
    hub_api.upload_folder(repo_id=unique_repo_id, folder_path=_make_folder(tmp_path / "src", b"\0weights"))
    hub_api.delete_folder("nested", repo_id=unique_repo_id)
    assert sorted(hub_api.list_repo_files(unique_repo_id)) == [".gitattributes", "README.md", "config.json"]

    hub_api.delete_repo(unique_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hub_api.repo_info(unique_repo_id)
    hub_api.delete_repo(unique_repo_id, missing_ok=True)


def test_dataset_and_space_repo_types(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    for repo_type, extra in (("dataset", {}), ("space", {"space_sdk": "gradio"})):
        url = hub_api.create_repo(unique_repo_id, repo_type=repo_type, **extra)
        assert url.repo_type == repo_type
        hub_api.upload_file(
            path_or_fileobj=b"a,b\n1,2\n", path_in_repo="t.csv", repo_id=unique_repo_id, repo_type=repo_type
        )
        path = hf_hub_download(unique_repo_id, "t.csv", repo_type=repo_type, cache_dir=tmp_path / repo_type)
        assert Path(path).read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(RepositoryNotFoundError):  # same id, but no model repo of that name
        hub_api.repo_info(unique_repo_id)


def test_branches_refs_and_pull_requests(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    hub_api.create_repo(unique_repo_id)
    hub_api.create_branch(unique_repo_id, branch="dev")
    hub_api.create_branch(unique_repo_id, branch="dev", exist_ok=True)
    on_dev = hub_api.upload_file(path_or_fileobj=b"dev\n", path_in_repo="x.txt", repo_id=unique_repo_id, revision="dev")
    proposal = hub_api.upload_file(
        path_or_fileobj=b"pr\n", path_in_repo="x.txt", repo_id=unique_repo_id, create_pr=True
    )
    assert proposal.pr_num == 1

    refs = hub_api.list_repo_refs(unique_repo_id, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches}["dev"] == on_dev.oid
    assert [p.ref for p in refs.pull_requests] == ["refs/pr/1"]
    assert not hub_api.file_exists(unique_repo_id, "x.txt")  # main untouched
    pr_file = hf_hub_download(unique_repo_id, "x.txt", revision="refs/pr/1", cache_dir=tmp_path)
    assert Path(pr_file).read_bytes() == b"pr\n"


# ----------------------------------------------------------------------------------------------
# Errors, auth and raw HTTP details
# ----------------------------------------------------------------------------------------------


def test_missing_repo_revision_and_entry_errors(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(unique_repo_id, "config.json", cache_dir=tmp_path)
    hub_api.create_repo(unique_repo_id)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(unique_repo_id, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(unique_repo_id, "config.json", cache_dir=tmp_path)


def test_private_repo_is_invisible_without_token(
    hub: HubServer, hub_api: HfApi, unique_repo_id: str, tmp_path: Path
) -> None:
    hub_api.create_repo(unique_repo_id, private=True)
    hub_api.upload_file(path_or_fileobj=b"secret\n", path_in_repo="s.txt", repo_id=unique_repo_id)
    assert hub_api.repo_info(unique_repo_id).private

    anonymous = _anonymous(hub)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.repo_info(unique_repo_id)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(unique_repo_id, "s.txt", token=False, cache_dir=tmp_path / "anon")
    assert Path(hf_hub_download(unique_repo_id, "s.txt", cache_dir=tmp_path / "auth")).read_bytes() == b"secret\n"

    hub_api.update_repo_settings(unique_repo_id, private=False)
    assert anonymous.file_exists(unique_repo_id, "s.txt")


def test_writes_need_the_token(hub: HubServer, hub_api: HfApi, unique_repo_id: str) -> None:
    anonymous = _anonymous(hub)
    with pytest.raises(HfHubHTTPError) as no_token:
        anonymous.create_repo(unique_repo_id)
    assert no_token.value.response.status_code == 401

    hub_api.create_repo(unique_repo_id)
    with pytest.raises(HfHubHTTPError) as upload:
        anonymous.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=unique_repo_id)
    assert upload.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as wrong:
        HfApi(endpoint=hub.url, token="hf_wrong").upload_file(
            path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=unique_repo_id
        )
    assert wrong.value.response.status_code == 401

    assert anonymous.repo_info(unique_repo_id).id == unique_repo_id  # public reads stay open
    assert hub_api.whoami()["name"] == "tester"
    assert all(os.environ["HF_TOKEN"] not in path for _, path in hub.requests)  # never recorded


def test_resolve_http_headers_and_ranges(hub: HubServer, hub_api: HfApi, unique_repo_id: str) -> None:
    hub_api.create_repo(unique_repo_id)
    hub_api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="digits.txt", repo_id=unique_repo_id)
    sha = hub_api.upload_file(path_or_fileobj=b"\0" + b"x" * 99, path_in_repo="blob.bin", repo_id=unique_repo_id).oid
    base = f"{hub.url}/{unique_repo_id}/resolve/main"

    head = requests.head(f"{base}/digits.txt", timeout=10)
    assert head.status_code == 200 and head.headers["X-Repo-Commit"] == sha
    assert head.headers["ETag"].strip('"') == hub_api.get_paths_info(unique_repo_id, "digits.txt")[0].blob_id
    assert head.headers["Content-Length"] == "10" and "Content-Encoding" not in head.headers

    lfs = requests.head(f"{base}/blob.bin", timeout=10)
    assert lfs.headers["X-Linked-Size"] == "100" and len(lfs.headers["X-Linked-Etag"].strip('"')) == 64

    partial = requests.get(f"{base}/digits.txt", headers={"Range": "bytes=2-5"}, timeout=10)
    assert partial.status_code == 206 and partial.content == b"2345"
    assert partial.headers["Content-Range"] == "bytes 2-5/10"
    assert requests.get(f"{base}/digits.txt", headers={"Range": "bytes=-3"}, timeout=10).content == b"789"

    missing = requests.head(f"{base}/nope.txt", timeout=10)
    assert missing.status_code == 404
    assert missing.headers["X-Error-Code"] == "EntryNotFound" and missing.headers["X-Repo-Commit"] == sha


def test_standalone_mode(tmp_path: Path) -> None:
    command = [sys.executable, str(Path(__file__).with_name("hub_server.py")), "--port", "0", "--root", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "HUB_SERVER_TOKEN"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            url = re.search(r"http://\S+", process.stdout.readline()).group(0)
            assert requests.get(f"{url}/api/whoami-v2", timeout=10).json()["name"] == "tester"  # auth off
        finally:
            process.terminate()


# ----------------------------------------------------------------------------------------------
# Failure injection
# ----------------------------------------------------------------------------------------------


def test_failed_commit_raises_and_retry_completes(
    hub: HubServer, hub_api: HfApi, unique_repo_id: str, tmp_path: Path
) -> None:
    folder = _make_folder(tmp_path / "src", os.urandom(1024))
    hub_api.create_repo(unique_repo_id)
    commit_path = rf"^/api/models/{re.escape(unique_repo_id)}/commit/"

    hub.inject_failure("POST", commit_path, status=500)
    with pytest.raises(HfHubHTTPError) as failed:  # 0.36.2 does not retry the commit POST
        hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder)
    assert failed.value.response.status_code == 500
    assert hub_api.list_repo_files(unique_repo_id) == [".gitattributes"]

    hub.inject_failure("post", commit_path, drop=True)
    with pytest.raises(requests.ConnectionError):
        hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder)

    hub_api.upload_folder(repo_id=unique_repo_id, folder_path=folder)
    assert len(hub_api.list_repo_files(unique_repo_id)) == 5
    assert _commit_posts(hub, unique_repo_id) == 3


# ----------------------------------------------------------------------------------------------
# Library round trips: transformers, peft, datasets
# ----------------------------------------------------------------------------------------------


def _tiny_bert(seed: int = 0):
    """A BertForTokenClassification small enough to build in milliseconds, with no download."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=5,
    )
    return BertForTokenClassification(config).eval()


def test_transformers_push_to_hub_and_from_pretrained(hub_api: HfApi, unique_repo_id: str, tmp_path: Path) -> None:
    import torch
    from transformers import BertForTokenClassification

    model = _tiny_bert()
    model.push_to_hub(unique_repo_id, safe_serialization=True)
    tree = {entry.path: entry for entry in hub_api.list_repo_tree(unique_repo_id)}
    assert tree["model.safetensors"].lfs is not None and tree["config.json"].lfs is None

    loaded = BertForTokenClassification.from_pretrained(unique_repo_id, cache_dir=tmp_path / "cache").eval()
    input_ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, loaded(input_ids).logits)


def test_peft_lora_push_to_hub_and_from_pretrained(unique_repo_id: str, tmp_path: Path) -> None:
    import torch
    from peft import AutoPeftModelForTokenClassification, LoraConfig, get_peft_model
    from transformers import BertForTokenClassification

    base_repo, adapter_repo = f"{unique_repo_id}-base", f"{unique_repo_id}-lora"
    _tiny_bert().push_to_hub(base_repo)
    base = BertForTokenClassification.from_pretrained(base_repo)  # records base_repo as the base model
    torch.manual_seed(2)
    lora = LoraConfig(
        task_type="TOKEN_CLS", r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False
    )
    model = get_peft_model(base, lora).eval()
    model.push_to_hub(adapter_repo)

    reloaded = AutoPeftModelForTokenClassification.from_pretrained(adapter_repo, cache_dir=tmp_path / "cache").eval()
    input_ids = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(input_ids=input_ids).logits
        assert torch.equal(expected, reloaded(input_ids=input_ids).logits)
        plain = BertForTokenClassification.from_pretrained(base_repo).eval()
        assert not torch.allclose(expected, plain(input_ids).logits)  # the adapter really is applied


def test_datasets_push_to_hub_and_load_dataset(
    hub: HubServer, unique_repo_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    # load_dataset also asks the dataset viewer at "datasets-server.<endpoint host>" for exported
    # infos, a host name that only a DNS server could answer: keep the test on localhost.
    monkeypatch.setattr(datasets.config, "USE_PARQUET_EXPORT", False)

    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    rows = {"tokens": [["Ada", "Lovelace", "wrote"], ["hello"]], "ner_tags": [[1, 2, 0], [0]]}
    dataset = datasets.Dataset.from_dict(rows, features=features)
    dataset.push_to_hub(unique_repo_id)
    assert _commit_posts(hub, unique_repo_id, prefix="datasets") == 1

    loaded = datasets.load_dataset(unique_repo_id, split="train", cache_dir=str(tmp_path / "datasets"))
    assert loaded.features == features
    assert loaded.to_dict() == rows
