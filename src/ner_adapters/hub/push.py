"""Pushes that can simply be run again: one atomic commit per repo, none when nothing changed.

For each repo the artifact is exported to a folder (:mod:`ner_adapters.hub.layout`) with its model card,
then compared with the repo's current files by hash (git blob sha1 for regular files, sha256 for LFS).
Nothing differs: no commit at all. Otherwise every changed file, and the deletion of files the artifact no
longer has, go into one ``create_commit`` against the revision that was compared (``parent_commit``), so a
repo never shows half an upload. A push interrupted anywhere leaves every repo at a complete commit, and
running it again finishes the job: repos already up to date are skipped, uploaded LFS objects are not
sent twice. Domain adapters are pushed before the domain classifier that pins their revisions.

Tokens come from ``huggingface_hub``'s usual places (``HF_TOKEN``, ``huggingface-cli login``) unless one is
passed; they are never logged or written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from ..artifacts import CLLMFS_CONFIG, KIND_CLLMFS, KIND_DOMAIN, KIND_ROUTER, read_json, read_multibert_manifest
from ..errors import ArtifactError
from .layout import export_cllmfs, export_domain_adapter, export_router, file_sha256, is_repo_id, portable_name, router_needs

logger = logging.getLogger(__name__)

KIND_SPACE = "space"


@dataclass
class PushResult:
    """What one repo push did."""

    repo_id: str
    kind: str
    commit: str | None  # the repo's head after the push (None in a dry run)
    committed: bool  # False: the repo already had exactly these files
    changed: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    repo_type: str = "model"
    folder: str | None = None  # the exported folder that was pushed

    def to_dict(self) -> dict:
        return asdict(self)


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file: what the Hub reports for a regular (non-LFS) file."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_files(folder: Path) -> dict[str, Path]:
    """Files to push, by path in the repo (hidden files and caches left out)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in relative.parts):
            files[relative.as_posix()] = path
    return files


def _unchanged(remote, path: Path) -> bool:
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == file_sha256(path)
    return remote.blob_id == git_blob_sha1(path)


def _api(api=None, token: str | bool | None = None):
    if api is not None:
        return api
    from huggingface_hub import HfApi

    return HfApi(token=token)


def push_folder(folder: str | os.PathLike, repo_id: str, *, kind: str, api=None, token: str | bool | None = None,
                repo_type: str = "model", private: bool | None = None, space_sdk: str | None = None,
                commit_message: str | None = None) -> PushResult:
    """Make ``repo_id`` hold exactly ``folder``'s files (plus ``.gitattributes``), in at most one commit.

    Files already on the Hub with the same content are not uploaded again, and files the folder no longer has are
    deleted, in the same commit; that commit names the revision it builds on (``parent_commit``), so a push that
    fails midway leaves the repo at its previous revision and can simply be run again.

    Args:
        folder: the exported artifact (every file under it is pushed, paths kept).
        repo_id: ``namespace/name`` on the Hub; created when missing.
        kind: what the folder is (``multibert-domain``, ``multibert-router``, ``cllmfs``, ``space``), for the
            result and the default commit message.
        api: a ``huggingface_hub.HfApi`` (one is made from ``token`` otherwise).
        token: a Hub token, or ``None`` for the logged-in one. Never logged.
        repo_type: ``"model"`` or ``"space"``.
        private: create the repo private (an existing repo keeps its visibility).
        space_sdk: the Space SDK when creating a Space.
        commit_message: overrides ``"Upload <kind> with ner-adapters"``.

    Returns:
        :class:`PushResult`: the repo, its revision after the push, whether a commit was made, and the files
        changed and deleted.

    Raises:
        huggingface_hub.errors.HfHubHTTPError: the Hub refused the request (no access, a concurrent commit moved
            the repo past the revision read here).

    Example:
        >>> push_folder("exports/ner-router", "me/ner-router", kind="multibert-router")  # doctest: +SKIP
        PushResult(repo_id='me/ner-router', kind='multibert-router', commit='9f1c...', committed=True, ...)
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.hf_api import RepoFile

    api = _api(api, token)
    folder = Path(folder)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
    head = api.repo_info(repo_id, repo_type=repo_type).sha
    remote = {entry.path: entry for entry in api.list_repo_tree(repo_id, repo_type=repo_type, recursive=True,
                                                                 revision=head) if isinstance(entry, RepoFile)}
    files = local_files(folder)
    changed = [p for p, path in files.items() if p not in remote or not _unchanged(remote[p], path)]
    deleted = sorted(p for p in remote if p not in files and p != ".gitattributes")
    if not changed and not deleted:
        logger.info("%s is up to date (%s): nothing to commit", repo_id, head[:8])
        return PushResult(repo_id, kind, head, False, repo_type=repo_type, folder=str(folder))
    operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(files[p])) for p in changed]
    operations += [CommitOperationDelete(path_in_repo=p) for p in deleted]
    info = api.create_commit(repo_id, operations, repo_type=repo_type, parent_commit=head,
                             commit_message=commit_message or f"Upload {kind} with ner-adapters",
                             commit_description=f"{len(changed)} file(s) added or changed, {len(deleted)} deleted")
    logger.info("%s: committed %s (%d changed, %d deleted)", repo_id, info.oid[:8], len(changed), len(deleted))
    return PushResult(repo_id, kind, info.oid, True, changed, deleted, repo_type, str(folder))


# --- Multi-BERT ------------------------------------------------------------------------------------------------


def repo_names(namespace: str, prefix: str, model_dir: str | os.PathLike) -> dict[str, str]:
    """Repo id of each domain adapter (``<prefix>-<domain>``) and of the router (``<prefix>-router``)."""
    manifest = read_multibert_manifest(Path(model_dir))
    names = {domain: f"{namespace}/{prefix}-{domain}" for domain in manifest["domains"]}
    if manifest.get("router"):
        if "router" in manifest["domains"]:
            raise ArtifactError("a domain named 'router' would collide with the router's repo name")
        names["router"] = f"{namespace}/{prefix}-router"
    return names


def _save_card(card, folder: Path) -> None:
    (folder / "README.md").write_text(str(card), encoding="utf-8")


def push_multibert(model_dir: str | os.PathLike, *, namespace: str, prefix: str, export_dir: str | os.PathLike,
                   results: Mapping | None = None, domains: Sequence[str] | None = None, push_router: bool = True,
                   api=None, token: str | bool | None = None, private: bool | None = None,
                   template_dir: str | os.PathLike | None = None, example: str | None = None,
                   licence: str | None = None, core_model: str | None = None,
                   dry_run: bool = False) -> list[PushResult]:
    """Push a saved Multi-BERT set to the Hub: each domain adapter (with its head and label map) as its own repo
    ``<namespace>/<prefix>-<domain>``, then the domain classifier ``<namespace>/<prefix>-router``, pinned to the
    adapter revisions just pushed. One atomic commit per repo; an unchanged repo gets no commit, and a push that
    failed midway is finished by calling again (each repo is at its previous revision or complete at the new one).

    Args:
        model_dir (`str` or `os.PathLike`): a saved set (`MultiBertModel.save`, the recipe's `<output_dir>/model`).
        namespace (`str`), prefix (`str`): the repos' owner and name prefix.
        export_dir (`str` or `os.PathLike`): where each repo's folder (weights, manifest, card) is written first.
        results (`dict`, *optional*): the run's `results.json`, whose measured scores go into the cards.
        domains (`list[str]`, *optional*): only these adapters (default: all, general adapters included); the
            router needs every adapter it routes to, so it is pushed only when all of those are.
        push_router (`bool`, defaults to `True`): push the domain classifier too.
        api (`HfApi`, *optional*), token (`str` or `bool`, *optional*), private (`bool`, *optional*): as in
            `huggingface_hub`; the token is never printed or logged.
        template_dir (*optional*), example (`str`, *optional*), licence (`str`, *optional*): card template folder,
            the usage example's text, the licence id.
        core_model (`str`, *optional*): the core's Hub id when the set was trained from a local folder (loading
            still checks the weights' fingerprint).
        dry_run (`bool`, defaults to `False`): export the folders and cards only, with no network call.

    Returns:
        `list[PushResult]`: per repo, its id, kind, commit, whether it committed, and the exported folder.

    Raises:
        `ner_adapters.errors.ArtifactError`: `model_dir` is not a saved set, or the adapters do not fit together.
        `huggingface_hub.utils.HfHubHTTPError`: the Hub refused a call (nothing half-written is left).

    Example:

    ```python
    >>> from ner_adapters.hub.push import push_multibert
    >>> push_multibert("outputs/multibert/default/model", namespace="my-org", prefix="ner-adapters",
    ...                export_dir="outputs/export")
    [PushResult(repo_id='my-org/ner-adapters-email', kind='multibert-domain', ...), ...]
    ```
    """
    from .model_card import DEFAULT_EXAMPLE, multibert_domain_card, multibert_router_card

    model_dir, export_dir = Path(model_dir), Path(export_dir)
    manifest = read_multibert_manifest(model_dir)
    names = repo_names(namespace, prefix, model_dir)
    chosen = list(domains) if domains else list(manifest["domains"])
    unknown = [d for d in chosen if d not in manifest["domains"]]
    if unknown:
        raise ArtifactError(f"{model_dir} has no domain(s) {unknown}; it has {sorted(manifest['domains'])}")
    needs = router_needs(manifest)
    with_router = push_router and bool(manifest.get("router")) and all(d in chosen for d in needs)
    if push_router and manifest.get("router") and not with_router:
        logger.warning("the router is not pushed: it needs the adapters of %s", [d for d in needs if d not in chosen])
    api = None if dry_run else _api(api, token)
    example = example or DEFAULT_EXAMPLE
    core = core_model or manifest["core_model"]
    if not is_repo_id(core):
        logger.warning("the core %r is not a Hub id: the pushed adapters name it %r, so users must pass model=; "
                       "set core_model to its Hub id", core, portable_name(core))
    results_out: list[PushResult] = []
    refs = {}
    for domain in chosen:
        repo_id = names[domain]
        folder = export_domain_adapter(model_dir, domain, export_dir / repo_id.split("/")[1], core_model=core)
        _save_card(multibert_domain_card(repo_id, folder, results, router_repo=names.get("router") if with_router else None,
                                         example=example, licence=licence, template_dir=template_dir,
                                         network=not dry_run), folder)
        if dry_run:
            result = PushResult(repo_id, KIND_DOMAIN, None, False, folder=str(folder))
        else:
            result = push_folder(folder, repo_id, kind=KIND_DOMAIN, api=api, private=private,
                                 commit_message=f"Upload Multi-BERT adapter {domain!r}")
        results_out.append(result)
        refs[domain] = {"repo_id": repo_id, "revision": result.commit, "folder": folder.name}
    if with_router:
        repo_id = names["router"]
        folder = export_router(model_dir, export_dir / repo_id.split("/")[1], refs, core_model=core)
        _save_card(multibert_router_card(repo_id, folder, results, example=example, licence=licence,
                                         endpoint=getattr(api, "endpoint", None), template_dir=template_dir,
                                         network=not dry_run), folder)
        if dry_run:
            results_out.append(PushResult(repo_id, KIND_ROUTER, None, False, folder=str(folder)))
        else:
            results_out.append(push_folder(folder, repo_id, kind=KIND_ROUTER, api=api, private=private,
                                           commit_message="Upload Multi-BERT domain classifier"))
    return results_out


# --- CLLMFS ------------------------------------------------------------------------------------------------------


def cllmfs_episodes(run_dir: Path) -> list[int]:
    """Episode indices of a CLLMFS run folder that hold an adapter."""
    found = []
    for folder in sorted(run_dir.glob("episode-*"), key=lambda p: int(p.name.split("-")[1])
                         if p.name.split("-")[1].isdigit() else -1):
        if (folder / "adapter" / CLLMFS_CONFIG).is_file():
            found.append(int(folder.name.split("-")[1]))
    return found


def push_cllmfs_run(run_dir: str | os.PathLike, *, namespace: str, prefix: str, export_dir: str | os.PathLike,
                    episodes: Sequence[int] | None = None, api=None, token: str | bool | None = None,
                    private: bool | None = None, template_dir: str | os.PathLike | None = None,
                    example: str | None = None, licence: str | None = None, base_model: str | None = None,
                    dry_run: bool = False) -> list[PushResult]:
    """Push the LoRA adapter of each episode of a CLLMFS run (``outputs/cllmfs/<run>``) as its own repo
    ``<namespace>/<prefix>-cllmfs-<run>``, with ``-episode-<i>`` when the run has several episodes, with a card
    carrying the episode's measured scores. Same guarantees as :func:`push_multibert`.

    Args:
        run_dir (`str` or `os.PathLike`): the recipe's run folder (`episode-<i>/adapter`, `results.json`).
        episodes (`list[int]`, *optional*): only these episodes (default: all).
        base_model (`str`, *optional*): the LLM's Hub id when it was trained from a local folder (loading still
            checks its architecture).
        Other arguments: as :func:`push_multibert`.

    Returns:
        `list[PushResult]`, one per episode pushed.

    Example:

    ```python
    >>> from ner_adapters.hub.push import push_cllmfs_run
    >>> push_cllmfs_run("outputs/cllmfs/wnut17_intra_5shot", namespace="my-org", prefix="ner-adapters",
    ...                 export_dir="outputs/export", dry_run=True)
    ```
    """
    import yaml

    from .model_card import DEFAULT_EXAMPLE, cllmfs_card

    run_dir, export_dir = Path(run_dir), Path(export_dir)
    available = cllmfs_episodes(run_dir)
    chosen = list(episodes) if episodes is not None else available
    missing = [i for i in chosen if i not in available]
    if not chosen or missing:
        raise ArtifactError(f"{run_dir}: no CLLMFS adapter for episode(s) {missing or 'any'} "
                            f"(episodes with an adapter: {available}); did the run finish?")
    run_results = read_json(run_dir / "results.json") if (run_dir / "results.json").is_file() else {}
    config_path = run_dir / "config.yaml"
    run_config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    support_sizes = _support_sizes(run_dir / "episodes.jsonl")
    api = None if dry_run else _api(api, token)
    results_out = []
    run_name = run_dir.resolve().name
    for index in chosen:
        episode_dir = run_dir / f"episode-{index}"
        suffix = f"-episode-{index}" if len(available) > 1 else ""
        repo_id = f"{namespace}/{prefix}-cllmfs-{run_name}{suffix}"
        folder = export_cllmfs(episode_dir / "adapter", export_dir / repo_id.split("/")[1], base_model=base_model)
        episode_results = read_json(episode_dir / "results.json") if (episode_dir / "results.json").is_file() else {}
        card = cllmfs_card(repo_id, folder, episode_results=episode_results, run_results=run_results,
                           run_config=run_config, episode_index=index, example=example or DEFAULT_EXAMPLE,
                           licence=licence, template_dir=template_dir, network=not dry_run,
                           support_sentences=support_sizes.get(index))
        _save_card(card, folder)
        if dry_run:
            results_out.append(PushResult(repo_id, KIND_CLLMFS, None, False, folder=str(folder)))
        else:
            results_out.append(push_folder(folder, repo_id, kind=KIND_CLLMFS, api=api, private=private,
                                           commit_message=f"Upload CLLMFS adapter ({run_name}, episode {index})"))
    return results_out


def _support_sizes(path: Path) -> dict[int, int]:
    """Support sentences per episode index of a CLLMFS run (its ``episodes.jsonl``), for the cards; {} without it."""
    from ..episodes import load_episodes

    if not path.is_file():
        return {}
    return {i: len(episode.support) for i, episode in enumerate(load_episodes(path))}


# --- the Space ----------------------------------------------------------------------------------------------------

SPACE_FILES = ("app.py", "README.md")
SPACE_CONFIG = "space_config.json"
SPACE_REQUIREMENTS = "requirements.txt"


def space_requirements(distribution: str = "ner-adapters") -> str:
    """The Space's ``requirements.txt``: the runtime dependencies of the installed package it copies.

    Read from the package metadata (``pyproject.toml`` as installed), not kept as a second list; optional
    extras are left out, gradio too (a Space gets it from ``sdk_version`` in its README).
    """
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires(distribution) or []
    except PackageNotFoundError as err:
        raise ArtifactError(f"{distribution} is not installed: its dependencies make the Space's requirements") from err
    runtime = [r.strip() for r in declared if "extra ==" not in r and not r.lower().startswith("gradio")]
    header = "# Generated by ner_adapters.hub.push.space_requirements from the package's dependencies.\n"
    return header + "\n".join(sorted(runtime, key=str.lower)) + "\n"


def export_space(space_dir: str | os.PathLike, out: str | os.PathLike, *, models: Mapping[str, object],
                 package_dir: str | os.PathLike | None = None) -> Path:
    """The Space repo folder: ``spaces/`` files, ``requirements.txt`` from the package's dependencies,
    ``space_config.json`` naming the models to load, the
    ``models:`` list of its card, and a copy of the ``ner_adapters`` package (so the Space needs no git
    install of this project)."""
    from huggingface_hub import SpaceCard

    space_dir, out = Path(space_dir), Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in SPACE_FILES:
        if not (space_dir / name).is_file():
            raise ArtifactError(f"{space_dir} has no {name}")
        if name != "README.md":
            shutil.copyfile(space_dir / name, out / name)
    (out / SPACE_REQUIREMENTS).write_text(space_requirements(), encoding="utf-8")
    card = SpaceCard.load(space_dir / "README.md")
    repos = []
    for value in models.values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and "/" in item and not os.path.exists(item):
                repos.append(item.split("@")[0])
    card.data.models = sorted(set(repos)) or None
    (out / "README.md").write_text(str(card), encoding="utf-8")
    (out / SPACE_CONFIG).write_text(json.dumps(dict(models), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    package = Path(package_dir) if package_dir else Path(__file__).resolve().parents[1]
    shutil.copytree(package, out / "ner_adapters", ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    return out


def push_space(space_dir: str | os.PathLike, space_id: str, *, models: Mapping[str, object],
               export_dir: str | os.PathLike, api=None, token: str | bool | None = None, private: bool | None = None,
               dry_run: bool = False) -> PushResult:
    """Push the Gradio Space (``spaces/``) configured to load ``models`` (see :func:`export_space`).

    Args:
        space_dir: the Space's source folder (the project's ``spaces/``).
        space_id: ``namespace/name`` of the Space repo; created (Gradio SDK) when missing.
        models: what the Space loads: ``{"multibert": [router or domain repo ids], "cllmfs": repo id or None}``,
            ids pinned with ``@revision`` where possible (:func:`space_models` builds it from a push's results).
        export_dir: where the Space's files are assembled before the push (its ``requirements.txt`` generated
            from this package's dependencies).
        api, token, private: as for :func:`push_folder`.
        dry_run: assemble the folder only, push nothing.

    Returns:
        :class:`PushResult` of the Space repo (``commit`` is ``None`` for a dry run).

    Raises:
        ner_adapters.errors.ArtifactError: ``space_dir`` lacks one of the Space's files (``app.py``, its card...).
        huggingface_hub.errors.HfHubHTTPError: the Hub refused the push.

    Example:
        >>> results = push_multibert("outputs/multibert/default/model", namespace="me", prefix="ner",
        ...                          export_dir="exports")  # doctest: +SKIP
        >>> push_space("spaces", "me/ner-demo", models=space_models(results), export_dir="exports")  # doctest: +SKIP
    """
    folder = export_space(space_dir, Path(export_dir) / space_id.split("/")[1], models=models)
    if dry_run:
        return PushResult(space_id, KIND_SPACE, None, False, repo_type="space", folder=str(folder))
    return push_folder(folder, space_id, kind=KIND_SPACE, api=_api(api, token), repo_type="space", private=private,
                       space_sdk="gradio", commit_message="Upload the ner-adapters demo Space")


def space_models(results: Iterable[PushResult]) -> dict[str, object]:
    """What the Space should load, from a push's results: the router (or the domain adapters) and the
    first CLLMFS adapter, each pinned to the revision just pushed."""
    results = list(results)

    def pinned(result: PushResult) -> str:
        return f"{result.repo_id}@{result.commit}" if result.commit else result.repo_id

    routers = [r for r in results if r.kind == KIND_ROUTER]
    domains = [r for r in results if r.kind == KIND_DOMAIN]
    cllmfs = [r for r in results if r.kind == KIND_CLLMFS]
    return {"multibert": [pinned(routers[0])] if routers else [pinned(r) for r in domains],
            "cllmfs": pinned(cllmfs[0]) if cllmfs else None}


__all__ = ["PushResult", "cllmfs_episodes", "space_requirements", "export_space", "git_blob_sha1", "local_files", "push_cllmfs_run",
           "push_folder", "push_multibert", "push_space", "repo_names", "space_models"]
