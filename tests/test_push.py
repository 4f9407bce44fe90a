"""Hub delivery against the local Hub: push every artifact kind, load it back from a fresh cache, cards,
idempotent re-pushes, pushes that fail midway and are run again, and the Space repo."""

from __future__ import annotations

import json
import os
import re
import tomllib
import uuid
from pathlib import Path

import pytest
import requests
from huggingface_hub import ModelCard, SpaceCard, snapshot_download
from huggingface_hub.utils import HfHubHTTPError

from hub_tiny import EXAMPLE, load_recipe
from multibert_tiny import one_torch_thread
from ner_adapters import pipeline
from ner_adapters.hub.push import local_files

REPO_ROOT = Path(__file__).resolve().parents[1]
TEXTS = [EXAMPLE, "john playing jumped in berlin .", "we flew from london to tehran ."]


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_torch_thread():
        yield


def _by_kind(report: list[dict], kind: str) -> list[dict]:
    return [r for r in report if r["kind"] == kind]


def _domain_of(repo_id: str, prefix: str) -> str:
    return repo_id.split("/")[1][len(prefix) + 1:]


def _commit_posts(hub, repo_id: str, kind: str = "models") -> int:
    path = f"/api/{kind}/{repo_id}/commit/"
    return sum(1 for method, seen in hub.requests if method == "POST" and seen.startswith(path))


def _push_args(recipe, multibert_run, cllmfs_run, root: Path, prefix: str):
    return recipe.PushArguments(multibert_dir=str(multibert_run.model_dir), cllmfs_runs=[str(cllmfs_run.run_dir)],
                                repo_prefix=prefix, export_dir=str(root / "export"),
                                report_file=str(root / "report.json"), example="mary visited paris today .")


@pytest.fixture(scope="module")
def local_multibert(multibert_run):
    """The pipeline on the saved model folder, before any push: the reference predictions."""
    return pipeline("token-classification", model=multibert_run.core_id, adapter=str(multibert_run.model_dir))


def test_every_artifact_round_trips_through_a_fresh_cache(published, multibert_run, cllmfs_run, local_multibert,
                                                          tmp_path, hub):
    report, prefix = published["report"], published["prefix"]
    assert {r["kind"] for r in report} == {"multibert-domain", "multibert-router", "cllmfs"}
    assert all(r["committed"] and re.fullmatch(r"[0-9a-f]{40}", r["commit"]) for r in report)
    domains = {_domain_of(r["repo_id"], prefix): r["repo_id"] for r in _by_kind(report, "multibert-domain")}
    assert set(domains) == {"email", "reviews", "newsgroup", "general-uner_en_ewt"}
    cache = tmp_path / "fresh-cache"
    downloads_before = sum(1 for method, path in hub.requests if method == "GET" and "/resolve/" in path)

    for domain, repo_id in domains.items():  # each domain adapter on its own
        remote = pipeline("token-classification", model=multibert_run.core_id, adapter=repo_id, cache_dir=cache)
        assert remote.domains == [domain]
        for text in TEXTS:
            assert remote(text) == local_multibert(text, domain=domain)

    router = _by_kind(report, "multibert-router")[0]["repo_id"]
    routed = pipeline("token-classification", adapter=router, cache_dir=cache)  # core from the repo's record
    assert routed.has_router and sorted(routed.domains) == sorted(domains)
    for text in TEXTS:
        assert routed(text, return_domain=True) == local_multibert(text, return_domain=True)
        assert routed(text) == local_multibert(text)

    listed = pipeline("token-classification", model=multibert_run.core_id,
                      adapter=[domains["email"], domains["reviews"]], cache_dir=cache)
    assert not listed.has_router
    assert listed(TEXTS[1], domain="reviews") == local_multibert(TEXTS[1], domain="reviews")

    (cllmfs,) = _by_kind(report, "cllmfs")
    local = pipeline("token-classification", model=cllmfs_run.base_id, adapter=str(cllmfs_run.adapter_dir))
    remote = pipeline("token-classification", adapter=cllmfs["repo_id"], cache_dir=cache)
    for text in ("Ali met Sara in Rome", "we flew from Paris to London"):
        assert remote(text) == local(text)
    assert remote("Ali met Sara in Rome", entity_types=["person"]) == local("Ali met Sara in Rome", entity_types=["person"])

    for repo in [r["repo_id"] for r in report]:  # every artifact came from the Hub into the fresh cache
        assert (cache / ("models--" + repo.replace("/", "--"))).is_dir(), repo
    assert sum(1 for method, path in hub.requests if method == "GET" and "/resolve/" in path) > downloads_before


def test_adapter_repos_also_load_with_the_adapters_library(published, multibert_run, local_multibert):
    """The card's AdapterHub snippet: adapter + head straight from the repo, same logits as ner-adapters."""
    import torch
    from adapters import AutoAdapterModel

    (repo_id,) = [r["repo_id"] for r in _by_kind(published["report"], "multibert-domain")
                  if r["repo_id"].endswith("-email")]
    model = AutoAdapterModel.from_pretrained(multibert_run.core_id)
    name = model.load_adapter(repo_id, set_active=True, use_safetensors=True)
    model.eval()
    assert name == "ad_email" and model.active_head == "head_uner_en_ewt"
    assert [model.config.id2label[i] for i in range(7)] == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    encoding = local_multibert.tokenizer("mary visited paris today .", return_tensors="pt")
    mbert = local_multibert.mbert
    with torch.no_grad(), mbert.active("email"):
        expected = mbert.model(**encoding).logits
    with torch.no_grad():
        assert torch.allclose(model(**encoding).logits, expected, atol=1e-6)


def _pushed_text_files(repo_id: str, tmp_path: Path) -> dict[str, str]:
    folder = Path(snapshot_download(repo_id, cache_dir=tmp_path / "scan"))
    return {p.name: p.read_text(encoding="utf-8") for p in folder.rglob("*")
            if p.is_file() and p.suffix in (".json", ".md", ".jinja", ".txt")}


def test_model_cards_parse_and_carry_the_measured_metrics(published, multibert_run, cllmfs_run, tmp_path,
                                                          tmp_path_factory, tiny_llm_dir):
    report, results = published["report"], multibert_run.results
    commits = {r["repo_id"]: r["commit"] for r in report}
    for entry in report:
        repo_id = entry["repo_id"]
        card = ModelCard.load(repo_id)
        data = card.data
        assert data.pipeline_tag == "token-classification"
        assert "ner-adapters" in data.tags
        assert f'adapter="{repo_id}"' in card.text  # the exact usage snippet
        assert data.eval_results, repo_id
        files = _pushed_text_files(repo_id, tmp_path)
        for name, content in files.items():  # no token, no local path, in any pushed text file
            assert os.environ["HF_TOKEN"] not in content, (repo_id, name)
            assert str(tmp_path_factory.getbasetemp()) not in content, (repo_id, name)
            assert str(tiny_llm_dir) not in content, (repo_id, name)
        metrics = {(r.dataset_config, r.metric_name): r.metric_value for r in data.eval_results}
        if entry["kind"] == "multibert-domain":
            assert data.library_name == "adapter-transformers" and data.base_model == multibert_run.core_id
            assert data.license == "cc-by-sa-4.0" and data.datasets == ["universalner/universal_ner"]  # UNER EWT
            domain = _domain_of(repo_id, published["prefix"])
            if domain.startswith("general-"):
                for name in ("email", "reviews", "newsgroup"):
                    assert metrics[(name, "micro f1")] == round(results["scores"]["general_adapter"][name]["micro"]["f1"], 4)
                continue
            scores = results["scores"]["multibert"][domain]
            assert metrics[(domain, "micro f1")] == round(scores["micro"]["f1"], 4)
            assert metrics[(domain, "micro precision")] == round(scores["micro"]["precision"], 4)
            for label, value in scores["per_type"].items():
                assert metrics[(domain, f"F1 ({label})")] == round(value["f1"], 4)
                row = (f"| {label} | {100 * value['precision']:.1f} | {100 * value['recall']:.1f} | "
                       f"{100 * value['f1']:.1f} | {value['gold']} | {value['predicted']} |")
                assert row in card.text
            assert f"| multibert: Multi-BERT (two-step domain adapter) | {100 * results['f1']['multibert'][domain]:.1f} |" \
                in card.text
            manifest = json.loads(files["ner_adapters.json"])
            assert manifest["core_model"] == multibert_run.core_id and manifest["domain"] == domain
            assert manifest["labels"] == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
        elif entry["kind"] == "multibert-router":
            assert metrics[(None, "domain accuracy")] == round(results["router"]["accuracy"], 4)
            assert f"{100 * results['router']['accuracy']:.1f}%" in card.text
            manifest = json.loads(files["ner_adapters.json"])
            for domain, ref in manifest["domain_adapters"].items():  # pinned to what was just pushed
                assert ref["revision"] == commits[ref["repo_id"]] and ref["revision"] in card.text
        else:
            episode = json.loads((cllmfs_run.run_dir / "episode-0" / "results.json").read_text())["scores"]
            assert data.library_name == "peft" and data.base_model == cllmfs_run.base_id
            assert data.license == "cc-by-4.0" and data.datasets == ["wnut_17"]  # WNUT-17, from the registry
            assert metrics[(None, "micro f1")] == round(episode["micro"]["f1"], 4)
            for label, value in episode["per_type"].items():
                assert metrics[(None, f"F1 ({label})")] == round(value["f1"], 4)
            assert "entity_types=[\"person\", \"location\"]" in card.text
            assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == cllmfs_run.base_id
            assert "library_name: peft\n---\n" not in files["README.md"]  # PEFT's own card was replaced


def test_pushing_again_makes_no_commit(published, multibert_run, cllmfs_run, hub, hub_api, tmp_path, capfd, caplog):
    caplog.set_level("DEBUG")
    recipe = load_recipe("push_to_hub")
    posts_before = sum(1 for method, path in hub.requests if method == "POST" and "/commit/" in path)
    args = _push_args(recipe, multibert_run, cllmfs_run, tmp_path, published["prefix"])
    again = recipe.run(args)
    assert [(r["repo_id"], r["commit"]) for r in again] == [(r["repo_id"], r["commit"]) for r in published["report"]]
    assert not any(r["committed"] for r in again)
    assert sum(1 for method, path in hub.requests if method == "POST" and "/commit/" in path) == posts_before
    for entry in again:
        assert hub_api.repo_info(entry["repo_id"]).sha == entry["commit"]
    printed = capfd.readouterr()
    assert "unchanged" in printed.out
    for text in (printed.out, printed.err, caplog.text, Path(args.report_file).read_text()):
        assert os.environ["HF_TOKEN"] not in text  # the token is never printed or logged


def test_a_push_that_fails_midway_completes_when_run_again(multibert_run, cllmfs_run, local_multibert, hub,
                                                           hub_api, tmp_path):
    recipe = load_recipe("push_to_hub")
    prefix = f"retry-{uuid.uuid4().hex[:6]}"
    args = _push_args(recipe, multibert_run, cllmfs_run, tmp_path, prefix)
    router, cllmfs = f"tester/{prefix}-router", f"tester/{prefix}-cllmfs-{cllmfs_run.run_dir.name}"
    domains = [f"tester/{prefix}-{d}" for d in ("email", "reviews", "newsgroup", "general-uner_en_ewt")]

    hub.inject_failure("POST", rf"^/api/models/{re.escape(router)}/commit/", status=500)
    with pytest.raises(HfHubHTTPError):
        recipe.run(args)
    assert hub_api.list_repo_files(router) == [".gitattributes"]  # never half a repo
    for repo in domains:
        assert sorted(hub_api.list_repo_files(repo)) == sorted([".gitattributes", *local_files(
            tmp_path / "export" / repo.split("/")[1])])

    hub.inject_failure("POST", rf"^/api/models/{re.escape(cllmfs)}/commit/", drop=True)
    with pytest.raises(requests.ConnectionError):
        recipe.run(args)
    assert len(hub_api.list_repo_files(router)) > 1 and hub_api.list_repo_files(cllmfs) == [".gitattributes"]

    final = recipe.run(args)
    assert all(len(hub_api.list_repo_commits(r["repo_id"])) == 2 for r in final)  # the initial one + one push
    assert [_commit_posts(hub, repo) for repo in domains] == [1, 1, 1, 1]  # never pushed twice
    assert _commit_posts(hub, router) == 2 and _commit_posts(hub, cllmfs) == 2
    for entry in final:
        expected = local_files(Path(entry["folder"]))
        assert sorted(hub_api.list_repo_files(entry["repo_id"])) == sorted([".gitattributes", *expected])
    routed = pipeline("token-classification", adapter=router, cache_dir=tmp_path / "cache")
    assert routed(TEXTS[0], return_domain=True) == local_multibert(TEXTS[0], return_domain=True)


def test_dry_run_exports_folders_and_cards_without_network(multibert_run, cllmfs_run, hub, tmp_path):
    recipe = load_recipe("push_to_hub")
    requests_before = len(hub.requests)
    report = recipe.main(["--config", str(REPO_ROOT / "recipes" / "push" / "default.yaml"),  # YAML, then flags
                          "--multibert_dir", str(multibert_run.model_dir), "--cllmfs_runs", str(cllmfs_run.run_dir),
                          "--dry_run", "true", "--export_dir", str(tmp_path / "export"),
                          "--report_file", str(tmp_path / "report.json")])
    assert len(hub.requests) == requests_before
    assert all(r["commit"] is None for r in report) and len(report) == 6
    assert all(r["repo_id"].startswith("local/ner-adapters-") for r in report)  # repo_prefix from the YAML
    assert "I emailed Mary Smith" in (Path(report[0]["folder"]) / "README.md").read_text()  # its example
    for entry in report:
        assert ModelCard.load(Path(entry["folder"]) / "README.md").data.pipeline_tag == "token-classification"
    # the exported folders load offline as they are (the router finds its adapters beside it)
    router = next(r["folder"] for r in report if r["kind"] == "multibert-router")
    local = pipeline("token-classification", model=multibert_run.core_id, adapter=router)
    assert local(TEXTS[0], return_domain=True)["domain"] in ("email", "reviews")


def test_push_space_uploads_a_ready_space(published, hub_api, tmp_path):
    recipe = load_recipe("push_space")
    space_id = f"tester/space-{uuid.uuid4().hex[:6]}"
    args = recipe.SpaceArguments(space_id=space_id, report_file=str(published["report_file"]),
                                 export_dir=str(tmp_path / "export"))
    result = recipe.run(args)
    assert result.committed and result.repo_type == "space"
    files = set(hub_api.list_repo_files(space_id, repo_type="space"))
    assert {"app.py", "requirements.txt", "README.md", "space_config.json", "ner_adapters/__init__.py",
            "ner_adapters/pipelines.py", "ner_adapters/data/bundled/wnut17/README.md"} <= files
    assert not any("__pycache__" in f for f in files)
    card = SpaceCard.load(space_id, repo_type="space")
    assert (card.data.sdk, card.data.app_file, card.data.sdk_version) == ("gradio", "app.py", "6.17.3")
    report = published["report"]
    router = _by_kind(report, "multibert-router")[0]
    cllmfs = _by_kind(report, "cllmfs")[0]
    assert card.data.models == sorted([router["repo_id"], cllmfs["repo_id"]])
    config = json.loads((tmp_path / "export" / space_id.split("/")[1] / "space_config.json").read_text())
    assert config == {"multibert": [f"{router['repo_id']}@{router['commit']}"],
                      "cllmfs": f"{cllmfs['repo_id']}@{cllmfs['commit']}"}
    assert not recipe.run(args).committed  # unchanged: no second commit


def test_space_requirements_are_the_package_runtime_dependencies():
    from ner_adapters.hub.push import space_requirements

    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    from packaging.requirements import Requirement

    lines = [line.strip() for line in space_requirements().splitlines() if line.strip() and not line.startswith("#")]
    as_set = lambda reqs: {(r.name.lower(), r.specifier) for r in map(Requirement, reqs)}  # noqa: E731
    assert as_set(lines) == as_set(declared["dependencies"])
    assert not any(line.lower().startswith("gradio") for line in lines)  # from the README's sdk_version
    assert not (REPO_ROOT / "spaces" / "requirements.txt").exists(), "a second, hand-kept copy of the pins"
    gradio = Requirement(next(r for r in declared["optional-dependencies"]["space"] if r.startswith("gradio>")))
    header = (REPO_ROOT / "spaces" / "README.md").read_text().split("---")[1]
    assert re.search(r"sdk_version: (\S+)", header).group(1) in gradio.specifier


def test_local_paths_never_reach_a_repo(multibert_run, cllmfs_run, tmp_path, caplog):
    import shutil

    from ner_adapters.hub.push import push_cllmfs_run, push_multibert

    model = tmp_path / "model"
    shutil.copytree(multibert_run.model_dir, model)
    manifest = json.loads((model / "multibert.json").read_text())
    manifest["core_model"] = str(multibert_run.core_dir)  # trained from a local folder
    (model / "multibert.json").write_text(json.dumps(manifest))

    def exported_texts(results):
        return {p: p.read_text(encoding="utf-8") for r in results for p in Path(r.folder).iterdir()
                if p.suffix in (".json", ".md")}

    with caplog.at_level("WARNING"):
        results = push_multibert(model, namespace="me", prefix="p", export_dir=tmp_path / "a", dry_run=True)
    assert "is not a Hub id" in caplog.text
    assert json.loads((Path(results[0].folder) / "ner_adapters.json").read_text())["core_model"] == \
        multibert_run.core_dir.name
    assert not any(str(multibert_run.core_dir) in text for text in exported_texts(results).values())
    results = push_multibert(model, namespace="me", prefix="p", export_dir=tmp_path / "b", core_model="me/core",
                             dry_run=True)
    assert {json.loads((Path(r.folder) / "ner_adapters.json").read_text())["core_model"] for r in results} == {"me/core"}
    assert ModelCard.load(Path(results[0].folder) / "README.md").data.base_model == "me/core"

    (result,) = push_cllmfs_run(cllmfs_run.run_dir, namespace="me", prefix="p", export_dir=tmp_path / "c",
                                base_model="me/llm", dry_run=True)
    folder = Path(result.folder)
    assert json.loads((folder / "cllmfs_config.json").read_text())["base_model"] == "me/llm"
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "me/llm"


def _lfs_puts(hub, since: int) -> int:
    return sum(1 for method, seen in hub.requests[since:] if method == "PUT" and seen.startswith("/__lfs__/upload/"))


def test_a_push_that_fails_while_uploading_files_leaves_no_partial_repo(hub, hub_api, tiny_llm_dir, tmp_path):
    """Failures in the upload stage (before the commit POST): the preupload call, the LFS batch, the LFS object
    PUT and its verify call. No failed run leaves a commit (never a card without its weights); the next run
    completes, and the repos load with the predictions of the local model. The runs get their own random weights:
    the server stores LFS objects by content, and objects it already holds (from other tests' pushes) would not be
    uploaded again, so the upload stage would not run."""
    from hub_tiny import build_cllmfs_run, build_multibert_run

    multibert_run = build_multibert_run(tmp_path / "multibert", hub_api, seed=11)
    cllmfs_run = build_cllmfs_run(tmp_path / "cllmfs", hub_api, tiny_llm_dir, seed=11)
    local_multibert = pipeline("token-classification", model=multibert_run.core_id,
                               adapter=str(multibert_run.model_dir))
    recipe = load_recipe("push_to_hub")
    prefix = f"upfail-{uuid.uuid4().hex[:6]}"
    args = _push_args(recipe, multibert_run, cllmfs_run, tmp_path, prefix)
    router, cllmfs = f"tester/{prefix}-router", f"tester/{prefix}-cllmfs-{cllmfs_run.run_dir.name}"
    export = tmp_path / "export"

    def only_initial(repo: str) -> bool:
        return hub_api.list_repo_files(repo) == [".gitattributes"] and len(hub_api.list_repo_commits(repo)) == 1

    # 1. a 5xx from the preupload call of the router (a multi-file repo): no commit
    hub.inject_failure("POST", rf"^/api/models/{re.escape(router)}/preupload/", status=500)
    with pytest.raises(HfHubHTTPError) as failed:
        recipe.run(args)
    assert failed.value.response.status_code == 500 and only_initial(router)

    # 2. the connection dropped at the LFS verify call, after an object's PUT: objects stored, still no commit
    started = len(hub.requests)
    hub.inject_failure("POST", r"^/__lfs__/verify", drop=True)
    with pytest.raises(RuntimeError, match="Error while uploading") as failed:  # huggingface_hub wraps it
        recipe.run(args)
    assert isinstance(failed.value.__cause__, requests.ConnectionError)
    assert _lfs_puts(hub, started) >= 1 and only_initial(router)
    router_files = local_files(export / router.split("/")[1])
    assert len(router_files) >= 3 and "README.md" in router_files

    # 3. the router goes through; then a 503 from the CLLMFS repo's LFS batch call stops the run: no commit there
    hub.inject_failure("POST", rf"^/{re.escape(cllmfs)}\.git/info/lfs/objects/batch", status=503)
    with pytest.raises(HfHubHTTPError) as failed:
        recipe.run(args)
    assert failed.value.response.status_code == 503
    assert sorted(hub_api.list_repo_files(router)) == sorted([".gitattributes", *router_files])
    assert only_initial(cllmfs)

    # 4. run again, the CLLMFS object PUTs meeting a 5xx and a dropped connection (huggingface_hub retries them):
    # complete, every repo committed once, loading with the local model's predictions
    started = len(hub.requests)
    hub.inject_failure("PUT", r"^/__lfs__/upload/", status=500)
    hub.inject_failure("PUT", r"^/__lfs__/upload/", drop=True)
    final = recipe.run(args)
    assert _lfs_puts(hub, started) >= 3  # the two failed attempts and at least one that went through
    for entry in final:
        assert sorted(hub_api.list_repo_files(entry["repo_id"])) == \
            sorted([".gitattributes", *local_files(Path(entry["folder"]))])
        assert len(hub_api.list_repo_commits(entry["repo_id"])) == 2  # the initial one + one complete push
    assert _commit_posts(hub, router) == 1 and _commit_posts(hub, cllmfs) == 1
    routed = pipeline("token-classification", adapter=router, cache_dir=tmp_path / "cache")
    for text in TEXTS:
        assert routed(text, return_domain=True) == local_multibert(text, return_domain=True)
    extractor = pipeline("token-classification", adapter=cllmfs, cache_dir=tmp_path / "cache")
    local = pipeline("token-classification", model=cllmfs_run.base_id, adapter=str(cllmfs_run.adapter_dir))
    assert extractor("Ali met Sara in Rome") == local("Ali met Sara in Rome")


def test_a_repush_of_changed_weights_that_fails_midway_leaves_the_previous_revision(hub, hub_api, tmp_path):
    """Pushing NEW weights over a published set: a failure at one repo's commit (or while its objects upload)
    leaves that repo exactly at its previous revision (old weights, old card), never a mix; the next run
    publishes the new weights, and the pipeline then loads the new model's predictions."""
    from huggingface_hub import hf_hub_download

    from hub_tiny import build_multibert_run

    recipe = load_recipe("push_to_hub")
    prefix = f"change-{uuid.uuid4().hex[:6]}"
    old = build_multibert_run(tmp_path / "old", hub_api, seed=21)
    first = recipe.run(recipe.PushArguments(multibert_dir=str(old.model_dir), repo_prefix=prefix,
                                            export_dir=str(tmp_path / "export-old"),
                                            report_file=str(tmp_path / "old.json"), example=EXAMPLE))
    before = {entry["repo_id"]: entry["commit"] for entry in first}
    email = f"tester/{prefix}-email"

    def weights_at(repo: str, revision: str | None = None) -> dict[str, bytes]:
        files = [f for f in hub_api.list_repo_files(repo, revision=revision) if f.endswith(".safetensors")]
        assert files, f"{repo} holds no weights"
        return {f: Path(hf_hub_download(repo, f, revision=revision, cache_dir=tmp_path / "dl")).read_bytes()
                for f in files}

    old_weights = weights_at(email)
    new = build_multibert_run(tmp_path / "new", hub_api, seed=22)
    args = recipe.PushArguments(multibert_dir=str(new.model_dir), repo_prefix=prefix,
                                export_dir=str(tmp_path / "export-new"), report_file=str(tmp_path / "new.json"),
                                example=EXAMPLE)
    hub.inject_failure("POST", rf"^/api/models/{re.escape(email)}/commit/", status=500)
    with pytest.raises(HfHubHTTPError):
        recipe.run(args)
    assert hub_api.repo_info(email).sha == before[email]  # the previous revision, untouched
    assert weights_at(email) == old_weights

    # The email repo's objects were stored by the failed run (the server keeps objects by content), so this run
    # commits it; another repo's object upload then fails past huggingface_hub's retries. Every repo is at its
    # previous revision with the old weights, or at a new one with all the new weights: never a mix.
    hub.inject_failure("PUT", r"^/__lfs__/upload/", drop=True, times=10)
    with pytest.raises(Exception):
        recipe.run(args)
    hub.clear_failures()
    old_exports, new_exports = tmp_path / "export-old", tmp_path / "export-new"
    moved = []
    for repo, commit in before.items():
        folder, held = repo.split("/")[1], weights_at(repo)
        if hub_api.repo_info(repo).sha == commit:
            assert held == {f: (old_exports / folder / f).read_bytes() for f in held}
        else:
            assert held == {f: (new_exports / folder / f).read_bytes() for f in held}
            moved.append(repo)
    assert email in moved and len(moved) < len(before), "the second run failed part-way"

    final = recipe.run(args)
    after = {entry["repo_id"]: entry["commit"] for entry in final}
    assert after[email] != before[email] and weights_at(email) != old_weights
    assert len(hub_api.list_repo_commits(email)) == 3  # the initial one, the old set, the new set
    local = pipeline("token-classification", model=new.core_id, adapter=str(new.model_dir))
    routed = pipeline("token-classification", adapter=f"tester/{prefix}-router", cache_dir=tmp_path / "cache")
    for text in TEXTS:
        assert routed(text, return_domain=True) == local(text, return_domain=True)
