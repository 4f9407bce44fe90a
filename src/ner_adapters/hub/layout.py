"""Hub repo layouts of the trained artifacts, and turning repo ids or folders back into local folders.

One repo per artifact, each loadable on its own:

- **Multi-BERT domain adapter** (``kind: multibert-domain``): the AdapterHub adapter and its scheme's tagging
  head side by side in the repo root, which is the layout ``adapters``' own
  ``model.load_adapter(repo, with_head=True)`` reads, plus ``ner_adapters.json`` with the domain, scheme,
  label list, adapter settings, core model and a fingerprint of the core's weights (a different core is
  refused when loading);
- **domain classifier** (``kind: multibert-router``): its adapter and classification head, the domains and
  threshold, and the repo id, revision (commit) and export folder of every domain adapter it routes to,
  general adapters included, so one id brings back the whole routed model;
- **CLLMFS LoRA adapter**: PEFT's files plus ``cllmfs_config.json`` (entity types, prompt mode, base model
  and its architecture fingerprint).

Exports are deterministic (files copied byte for byte, JSON written in a fixed order, local paths replaced
by Hub ids), so re-exporting an unchanged artifact gives identical files and the push has nothing to commit.
Manifest names, formats and fingerprints come from :mod:`ner_adapters.artifacts`. This module is light: torch
and the Hub client are imported only where needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping
from ..artifacts import (
    CLLMFS_CONFIG,
    HUB_FORMAT,
    HUB_FORMAT_VERSION,
    HUB_MANIFEST,
    KIND_CLLMFS,
    KIND_DOMAIN,
    KIND_MULTIBERT,
    KIND_ROUTER,
    MULTIBERT_FORMAT,
    MULTIBERT_FORMAT_VERSION,
    MULTIBERT_MANIFEST,
    artifact_kind,
    read_hub_manifest,
    read_json,
    read_multibert_manifest,
)
from ..errors import ArtifactError  # noqa: F401  (re-exported: raised here)

ADAPTER_FILES = ("adapter_config.json", "adapter.safetensors", "pytorch_adapter.bin")
HEAD_FILES = ("head_config.json", "model_head.safetensors", "pytorch_model_head.bin")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


# --- names ---------------------------------------------------------------------------------------------


def is_repo_id(name: object) -> bool:
    """``namespace/name`` that is not an existing local path."""
    return (isinstance(name, str) and bool(_REPO_ID.match(name)) and ".." not in name
            and not os.path.exists(name))


def split_revision(spec: str) -> tuple[str, str | None]:
    """``namespace/name@revision`` -> (``namespace/name``, ``revision``); anything else unchanged."""
    if "@" in spec and not os.path.exists(spec):
        name, _, revision = spec.rpartition("@")
        if is_repo_id(name) and revision:
            return name, revision
    return spec, None


def portable_name(model: str) -> str:
    """What may be written into a pushed file for a model reference: a Hub id, never a local path."""
    return model if is_repo_id(model) else Path(str(model)).name


def resolve_folder(spec: str | os.PathLike, *, revision: str | None = None, cache_dir: str | os.PathLike | None = None,
                   token: str | bool | None = None) -> Path:
    """A local folder as is; a Hub repo id (``ns/name`` or ``ns/name@revision``) downloaded (cached) first."""
    if os.path.isdir(spec):
        return Path(spec)
    spec = str(spec)
    repo_id, pinned = split_revision(spec)
    if not is_repo_id(repo_id):
        raise ArtifactError(f"{spec!r} is neither an existing folder nor a Hub repo id (namespace/name[@revision])")
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import RepositoryNotFoundError, RevisionNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=pinned or revision, cache_dir=cache_dir, token=token))
    except RepositoryNotFoundError:
        raise ArtifactError(f"{spec!r} is not a local folder, and the Hub has no repo {repo_id!r} "
                            "(or it is private and no token with access was found)") from None
    except RevisionNotFoundError:
        raise ArtifactError(f"the Hub repo {repo_id!r} has no revision {pinned or revision!r}") from None


# --- exporting -------------------------------------------------------------------------------------------


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _copy_component(source: Path, target: Path, names: Iterable[str], model_name: str) -> list[str]:
    """Copy an AdapterHub adapter or head folder's files; their configs name the core by Hub id only."""
    copied = []
    for name in names:
        if not (source / name).is_file():
            continue
        if name.endswith("_config.json"):
            data = read_json(source / name)
            if "model_name" in data:
                data["model_name"] = model_name
            _write_json(target / name, data)
        else:
            shutil.copyfile(source / name, target / name)
        copied.append(name)
    if not any(n.endswith("_config.json") for n in copied) or len(copied) < 2:
        raise ArtifactError(f"{source} is missing its config or weights (found {copied})")
    return copied


def _general_for(manifest: dict, domain: str) -> str | None:
    return next((scheme for scheme, name in manifest.get("general", {}).items() if name == domain), None)


def export_domain_adapter(model_dir: str | os.PathLike, domain: str, out: str | os.PathLike, *,
                          core_model: str | None = None) -> Path:
    """One domain of a saved Multi-BERT model as a repo folder: adapter + head + ``ner_adapters.json``."""
    model_dir, out = Path(model_dir), _fresh(Path(out))
    manifest = read_multibert_manifest(model_dir)
    if domain not in manifest["domains"]:
        raise ArtifactError(f"{model_dir} has no domain {domain!r}; it has {sorted(manifest['domains'])}")
    entry = manifest["domains"][domain]
    scheme = entry["scheme"]
    core = portable_name(core_model or manifest["core_model"])
    _copy_component(model_dir / "adapters" / domain, out, ADAPTER_FILES, core)
    _copy_component(model_dir / "heads" / scheme, out, HEAD_FILES, core)
    _write_json(out / HUB_MANIFEST, {
        "format": HUB_FORMAT, "format_version": HUB_FORMAT_VERSION, "kind": KIND_DOMAIN,
        "domain": domain, "scheme": scheme, "labels": list(manifest["schemes"][scheme]),
        "general_for": _general_for(manifest, domain), "adapter": entry["adapter"],
        "core_model": core, "core_fingerprint": manifest["core_fingerprint"], "max_length": manifest["max_length"],
    })
    return out


def router_needs(manifest: dict) -> list[str]:
    """The domains a saved model's router routes to, with the general adapters it falls back on."""
    router = manifest.get("router")
    if not router:
        return []
    needed = list(router["domains"])
    for domain in router["domains"]:
        general = manifest.get("general", {}).get(manifest["domains"][domain]["scheme"])
        if general and general not in needed:
            needed.append(general)
    return needed


def export_router(model_dir: str | os.PathLike, out: str | os.PathLike, domain_refs: Mapping[str, Mapping[str, str | None]],
                  *, core_model: str | None = None) -> Path:
    """The domain classifier as a repo folder; ``domain_refs`` maps each domain it needs to
    ``{"repo_id", "revision", "folder"}`` (where its adapter was pushed, and its export folder's name)."""
    model_dir, out = Path(model_dir), _fresh(Path(out))
    manifest = read_multibert_manifest(model_dir)
    router = manifest.get("router")
    if not router:
        raise ArtifactError(f"{model_dir} has no domain classifier (router)")
    missing = [d for d in router_needs(manifest) if d not in domain_refs]
    if missing:
        raise ArtifactError(f"the router needs the adapters of {missing}, which were not exported")
    core = portable_name(core_model or manifest["core_model"])
    _copy_component(model_dir / "router" / "adapter", out, ADAPTER_FILES, core)
    _copy_component(model_dir / "router" / "head", out, HEAD_FILES, core)
    refs = {d: {"repo_id": domain_refs[d].get("repo_id"), "revision": domain_refs[d].get("revision"),
                "folder": domain_refs[d].get("folder")} for d in router_needs(manifest)}
    _write_json(out / HUB_MANIFEST, {
        "format": HUB_FORMAT, "format_version": HUB_FORMAT_VERSION, "kind": KIND_ROUTER,
        "domains": list(router["domains"]), "threshold": router["threshold"], "max_length": router["max_length"],
        "adapter": router["adapter"], "general": dict(manifest.get("general", {})),
        "core_model": core, "core_fingerprint": manifest["core_fingerprint"],
        "tagging_max_length": manifest["max_length"], "domain_adapters": refs,
    })
    return out


def export_cllmfs(adapter_dir: str | os.PathLike, out: str | os.PathLike, *, base_model: str | None = None) -> Path:
    """A CLLMFS adapter folder as a repo folder: PEFT's own card is dropped (ours replaces it) and the
    base model is named by its Hub id (``base_model`` overrides the recorded one), never by a local folder."""
    adapter_dir, out = Path(adapter_dir), _fresh(Path(out))
    config = read_json(adapter_dir / CLLMFS_CONFIG)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ArtifactError(f"{adapter_dir} has {CLLMFS_CONFIG} but no PEFT adapter_config.json")
    base = base_model or config.get("base_model")
    config = {**config, "base_model": base}
    for path in sorted(adapter_dir.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name == "README.md":
            continue
        if path.name == "adapter_config.json":
            data = read_json(path)
            data["base_model_name_or_path"] = base if is_repo_id(base) else None
            _write_json(out / path.name, data)
        elif path.name == CLLMFS_CONFIG and (base_model or not is_repo_id(base)):
            _write_json(out / path.name, {**config, "base_model": base if is_repo_id(base) else portable_name(str(base))})
        else:
            shutil.copyfile(path, out / path.name)
    return out


# --- assembling a Multi-BERT model from parts (for loading) ----------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_file(folder: Path, names: Iterable[str]) -> Path:
    for name in names:
        if name.endswith(("safetensors", ".bin")) and (folder / name).is_file():
            return folder / name
    raise ArtifactError(f"{folder} has no weights file")


@dataclass
class _DomainPart:
    scheme: str
    labels: list[str]
    adapter_dir: Path
    head_dir: Path
    spec: dict
    general_for: str | None
    source: str
    explicit: bool  # given as its own adapter (wins over the same domain inside a saved model)


@dataclass
class MultiBertAssembly:
    """Domain adapters, routers and saved models from several places, joined into one ``multibert.json``
    folder (symlinks) that :meth:`ner_adapters.multibert.MultiBertModel.load` reads with all its checks."""

    domains: dict[str, _DomainPart] = field(default_factory=dict)
    router: dict | None = None
    router_source: str | None = None
    core_models: dict[str, str] = field(default_factory=dict)  # source -> core model name
    fingerprints: dict[str, dict] = field(default_factory=dict)  # source -> core fingerprint
    max_length: int = 0

    def _core(self, source: str, core_model: str, fingerprint: dict, max_length: int) -> None:
        for other, seen in self.fingerprints.items():
            if seen != fingerprint:
                from ..errors import AdapterMismatchError

                raise AdapterMismatchError(f"{source} was trained on another core ({core_model}) than {other} "
                                           f"({self.core_models[other]}); they cannot share one model")
        self.core_models[source] = core_model
        self.fingerprints[source] = fingerprint
        self.max_length = max(self.max_length, int(max_length))

    def _add_domain(self, name: str, part: _DomainPart) -> None:
        previous = self.domains.get(name)
        if previous is not None:
            if previous.explicit and not part.explicit:
                return  # an adapter given on its own wins over the same domain inside a saved model
            if previous.explicit == part.explicit:
                if file_sha256(_weights_file(previous.adapter_dir, ADAPTER_FILES)) != \
                        file_sha256(_weights_file(part.adapter_dir, ADAPTER_FILES)):
                    raise ArtifactError(f"two different adapters are named {name!r} "
                                        f"({previous.source} and {part.source})")
                return
        self.domains[name] = part

    def add(self, folder: Path, source: str, *, kind: str | None = None) -> str:
        """Add one artifact folder (domain adapter, router or saved model); returns its kind."""
        kind = kind or artifact_kind(folder)
        if kind == KIND_DOMAIN:
            m = read_hub_manifest(folder)
            self._core(source, m["core_model"], m["core_fingerprint"], m["max_length"])
            self._add_domain(m["domain"], _DomainPart(m["scheme"], list(m["labels"]), folder, folder, m["adapter"],
                                                      m.get("general_for"), source, True))
        elif kind == KIND_ROUTER:
            m = read_hub_manifest(folder)
            self._core(source, m["core_model"], m["core_fingerprint"], m["tagging_max_length"])
            self._set_router({"adapter_dir": folder, "head_dir": folder, "domains": m["domains"],
                              "threshold": m["threshold"], "max_length": m["max_length"], "adapter": m["adapter"],
                              "refs": m["domain_adapters"], "folder": folder}, source)
        elif kind == KIND_MULTIBERT:
            m = read_multibert_manifest(folder)
            self._core(source, m["core_model"], m["core_fingerprint"], m["max_length"])
            for domain, entry in m["domains"].items():
                scheme = entry["scheme"]
                self._add_domain(domain, _DomainPart(scheme, list(m["schemes"][scheme]), folder / "adapters" / domain,
                                                     folder / "heads" / scheme, entry["adapter"],
                                                     _general_for(m, domain), source, False))
            if m.get("router"):
                r = m["router"]
                self._set_router({"adapter_dir": folder / "router" / "adapter", "head_dir": folder / "router" / "head",
                                  "domains": r["domains"], "threshold": r["threshold"], "max_length": r["max_length"],
                                  "adapter": r["adapter"], "refs": {}, "folder": folder}, source)
        elif kind == KIND_CLLMFS:
            raise ArtifactError(f"{source} is a CLLMFS (LLM) adapter; it cannot be combined with Multi-BERT adapters")
        else:
            raise ArtifactError(f"{source}: unknown artifact kind {kind!r}")
        return kind

    def _set_router(self, router: dict, source: str) -> None:
        if self.router is not None:
            raise ArtifactError(f"two domain classifiers given ({self.router_source} and {source}); pass one")
        self.router, self.router_source = router, source

    def missing_router_domains(self) -> dict[str, dict]:
        """Adapters the router routes to that were not given: ``{domain: ref}`` to fetch."""
        if self.router is None:
            return {}
        return {d: ref for d, ref in self.router["refs"].items() if d not in self.domains}

    def write(self, staging: Path, core_model: str | None = None) -> Path:
        """The joined model as a ``multibert.json`` folder whose adapters and heads are symlinks."""
        if not self.domains:
            raise ArtifactError("no domain adapter was given")
        if self.router is not None:
            unknown = [d for d in self.router["domains"] if d not in self.domains]
            if unknown:
                raise ArtifactError(f"the domain classifier routes to {unknown}, whose adapters are missing")
        for folder in ("adapters", "heads", "router"):
            (staging / folder).mkdir(parents=True, exist_ok=True)
        schemes: dict[str, list[str]] = {}
        head_hashes: dict[str, str] = {}
        domains, general = {}, {}
        for name, part in self.domains.items():
            head_hash = file_sha256(_weights_file(part.head_dir, HEAD_FILES))
            key = part.scheme
            if key in schemes and (schemes[key] != part.labels or head_hashes[key] != head_hash):
                key = f"{part.scheme}-{name}"  # same scheme name, another head: keep both, apart
            if key not in schemes:
                schemes[key], head_hashes[key] = part.labels, head_hash
                os.symlink(part.head_dir.resolve(), staging / "heads" / key)
            os.symlink(part.adapter_dir.resolve(), staging / "adapters" / name)
            domains[name] = {"scheme": key, "adapter": part.spec}
            if part.general_for:
                general[key] = name
        router = None
        if self.router is not None:
            os.symlink(Path(self.router["adapter_dir"]).resolve(), staging / "router" / "adapter")
            os.symlink(Path(self.router["head_dir"]).resolve(), staging / "router" / "head")
            router = {key: self.router[key] for key in ("domains", "threshold", "max_length", "adapter")}
        fingerprint = next(iter(self.fingerprints.values()))
        _write_json(staging / MULTIBERT_MANIFEST, {
            "format": MULTIBERT_FORMAT, "format_version": MULTIBERT_FORMAT_VERSION,
            "core_model": core_model or next(iter(self.core_models.values())), "core_fingerprint": fingerprint,
            "max_length": self.max_length, "schemes": schemes, "domains": domains, "general": general, "router": router,
        })
        return staging


__all__ = ["ArtifactError", "MultiBertAssembly", "artifact_kind", "export_cllmfs", "export_domain_adapter",
           "export_router", "is_repo_id", "portable_name", "read_hub_manifest", "resolve_folder", "router_needs",
           "split_revision"]
