"""A stdlib-only HTTP server that speaks enough of the Hugging Face Hub API for the test suite.

Why it exists: the tests must drive the real clients (``huggingface_hub``, ``transformers``
``push_to_hub``/``from_pretrained``, ``peft``, ``datasets``) end to end, and the machines that run
them have no internet access. This server implements the part of the Hub HTTP API those clients
use (checked against huggingface_hub 0.36.2): repo creation and deletion, preupload, the git-LFS
batch/upload/verify protocol ("basic" transfer only, never Xet), ndjson commits, ``resolve``
downloads (with ``Range``), repo info, tree listings, paths-info, refs, commit history, branches
and whoami.

Storage lives on disk under ``root_dir`` so a standalone server survives restarts:

* ``objects/<sha256>``: file contents, shared by all repos (regular and LFS files alike);
* ``repos/<type>s/<namespace>/<name>/meta.json``: visibility, creation date and branches;
* ``repos/<type>s/<namespace>/<name>/commits/<oid>.json``: one full file manifest per commit,
  so any old revision resolves.

Reliability tests can make the server misbehave with :meth:`HubServer.inject_failure`, and can
count calls through :attr:`HubServer.requests` (method and path only: headers, and therefore
tokens, are never recorded or logged).

Standalone: ``python tests/hub_server.py --port 8765 --root /tmp/hub`` (the write token, if any,
is read from the ``HUB_SERVER_TOKEN`` environment variable so that it does not show in ``ps``).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import os
import posixpath
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]

DEFAULT_USER = "tester"
"""The account every valid token belongs to (what ``whoami`` answers)."""

URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""How each repo type is spelled in non-API URLs (resolve, LFS), as the client expects."""
_PREFIX_TYPES = {prefix: repo_type for repo_type, prefix in URL_PREFIXES.items()}

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
"""Files above this size always go through LFS, like on the real Hub."""

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5",
        "*.joblib", "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx",
        "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar",
        "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
        "*.xz", "*.zip", "*.zst", "*tfevents*",
    )
)  # fmt: skip
"""The ``.gitattributes`` the real Hub seeds new repos with (abridged): decides LFS vs regular."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}")


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _now() -> str:
    """The Hub's date format, which ``huggingface_hub.utils.parse_datetime`` expects."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_blob_oid(content: bytes) -> str:
    """Git's blob sha1: what the Hub reports as a regular file's ``oid``/``ETag``."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _lfs_entry(sha256: str, size: int) -> dict[str, Any]:
    """Manifest entry of an LFS file: git stores a pointer file, whose sha1 is the entry's oid."""
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    return {"oid": _git_blob_oid(pointer), "sha256": sha256, "size": size, "lfs": True, "pointerSize": len(pointer)}


def _lfs_patterns(gitattributes: str) -> list[str]:
    """Patterns marked ``filter=lfs`` in a ``.gitattributes`` text."""
    patterns = []
    for line in gitattributes.splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
            patterns.append(fields[0])
    return patterns


def _matches_pattern(path: str, pattern: str) -> bool:
    """A close-enough reading of gitattributes matching (basename patterns vs. path patterns)."""
    if "/" not in pattern:
        return fnmatch.fnmatchcase(posixpath.basename(path), pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


def _truthy(values: list[str] | None) -> bool:
    """Query flags arrive as ``True``/``true``/``1`` depending on the caller."""
    return bool(values) and values[0].lower() in ("1", "true", "yes")


# ----------------------------------------------------------------------------------------------
# Requests, responses and errors (transport-independent)
# ----------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    base_url: str
    authorized: bool

    def json(self) -> Any:
        """The JSON body (``{}`` when empty), or a 400 error."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HubError(400, f"Invalid JSON body: {exc}") from exc


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> _Response:
    return _Response(
        status=status,
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json; charset=utf-8", **(headers or {})},
    )


class HubError(Exception):
    """An error answered the Hub's way: the ``X-Error-Code`` header drives the client's exceptions."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> _Response:
        # Header values must be latin-1 without line breaks; messages may quote user paths.
        safe_message = re.sub(r"[\x00-\x1f]", " ", self.message).encode("ascii", "backslashreplace").decode()
        headers = {"X-Error-Message": safe_message, **self.headers}
        if self.code:
            headers["X-Error-Code"] = self.code
        return _json_response({"error": self.message, **self.extra}, self.status, headers)


def _repo_not_found(repo_id: str) -> HubError:
    return HubError(404, f"Repository {repo_id} not found", "RepoNotFound")


# ----------------------------------------------------------------------------------------------
# On-disk storage
# ----------------------------------------------------------------------------------------------


@dataclass
class _Repo:
    """A repo's metadata, as kept in ``meta.json``. ``branches`` also holds ``refs/pr/N`` refs."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str]
    sdk: str | None = None

    @property
    def url_path(self) -> str:
        return URL_PREFIXES[self.repo_type] + self.repo_id


class _Store:
    """Content-addressed objects plus per-repo metadata and commits, all plain files.

    Not thread-safe on its own: the server serialises access with one lock.
    """

    def __init__(self, root: Path):
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "repos").mkdir(parents=True, exist_ok=True)

    # Objects --------------------------------------------------------------------------------

    def _object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def put_object(self, content: bytes) -> str:
        sha256 = hashlib.sha256(content).hexdigest()
        path = self._object_path(sha256)
        if not path.exists():
            tmp = path.with_name(f"{sha256}.{secrets.token_hex(4)}.tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        return sha256

    def put_regular(self, content: bytes) -> dict[str, Any]:
        """Store ``content`` and return its manifest entry as a plain git blob."""
        return {"oid": _git_blob_oid(content), "sha256": self.put_object(content), "size": len(content), "lfs": False}

    def has_object(self, sha256: str, size: int) -> bool:
        path = self._object_path(sha256)
        return path.is_file() and path.stat().st_size == size

    def read_object(self, sha256: str) -> bytes:
        return self._object_path(sha256).read_bytes()

    # Repos ----------------------------------------------------------------------------------

    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        return self.root / "repos" / f"{repo_type}s" / repo_id

    def load_repo(self, repo_type: str, repo_id: str) -> _Repo | None:
        """The repo, or ``None``; ids that are not ``<namespace>/<name>`` never touch the disk."""
        parts = repo_id.split("/")
        if repo_type not in URL_PREFIXES or len(parts) != 2 or not all(_NAME_RE.fullmatch(p) for p in parts):
            return None
        path = self._repo_dir(repo_type, repo_id) / "meta.json"
        return _Repo(**json.loads(path.read_text())) if path.is_file() else None

    def save_repo(self, repo: _Repo) -> None:
        directory = self._repo_dir(repo.repo_type, repo.repo_id)
        (directory / "commits").mkdir(parents=True, exist_ok=True)
        (directory / "meta.json").write_text(json.dumps(repo.__dict__, indent=1))

    def delete_repo(self, repo: _Repo) -> None:
        shutil.rmtree(self._repo_dir(repo.repo_type, repo.repo_id))

    def load_commit(self, repo: _Repo, oid: str) -> dict[str, Any] | None:
        path = self._repo_dir(repo.repo_type, repo.repo_id) / "commits" / f"{oid}.json"
        return json.loads(path.read_text()) if _COMMIT_RE.fullmatch(oid) and path.is_file() else None

    def save_commit(self, repo: _Repo, commit: dict[str, Any]) -> None:
        path = self._repo_dir(repo.repo_type, repo.repo_id) / "commits" / f"{commit['id']}.json"
        path.write_text(json.dumps(commit, indent=1))


def _new_commit(parent: str | None, files: dict[str, dict], title: str, message: str, author: str) -> dict:
    """A commit record: 40-hex oid, first-parent link and the full file manifest."""
    commit = {
        "parents": [parent] if parent else [],
        "title": title,
        "message": message,
        "author": author,
        "date": _now(),
        "files": files,
    }
    nonce = secrets.token_hex(8)  # two identical commits in the same millisecond still differ
    commit["id"] = hashlib.sha1((json.dumps(commit, sort_keys=True) + nonce).encode()).hexdigest()
    return commit


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------

_API_REPO = r"/api/(?P<kind>models|datasets|spaces)/(?P<ns>[^/]+)/(?P<name>[^/]+)"
_GIT_REPO = r"/(?P<prefix>datasets/|spaces/)?(?P<ns>[^/]+)/(?P<name>[^/]+)"


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    status: int
    drop: bool
    remaining: int


class HubServer:
    """A Hub-compatible server running in a background thread.

    ``token``: when set, write endpoints need ``Authorization: Bearer <token>`` (401 otherwise),
    private repos are hidden (404) from requests without it, and a wrong token is always refused.
    When ``None``, everything is allowed.
    """

    def __init__(
        self, root_dir: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ):
        self._store = _Store(Path(root_dir))
        self._token = token
        self._lock = threading.RLock()
        self._failures: list[_Failure] = []
        self._upload_tickets: dict[str, tuple[str, int]] = {}
        self._thread: threading.Thread | None = None
        self.requests: list[tuple[str, str]] = []
        """Every request received, as ``(method, path)`` with the path still URL-quoted and
        without its query string. Never holds headers."""
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self.host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._routes: list[tuple[tuple[str, ...], re.Pattern[str], Callable[..., _Response], bool]] = [
            # (methods, path regex, handler, needs write access)
            (("POST",), re.compile(r"/api/repos/create"), self._create_repo, True),
            (("DELETE",), re.compile(r"/api/repos/delete"), self._delete_repo, True),
            (("POST",), re.compile(r"/api/validate-yaml"), self._validate_yaml, False),
            (("GET",), re.compile(r"/api/whoami-v2"), self._whoami, False),
            (("GET",), re.compile(_API_REPO + r"(?:/revision/(?P<rev>[^/]+))?"), self._repo_info, False),
            (("POST",), re.compile(_API_REPO + r"/preupload/(?P<rev>[^/]+)"), self._preupload, True),
            (("POST",), re.compile(_API_REPO + r"/commit/(?P<rev>[^/]+)"), self._commit, True),
            (("GET",), re.compile(_API_REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?"), self._tree, False),
            (("POST",), re.compile(_API_REPO + r"/paths-info/(?P<rev>[^/]+)"), self._paths_info, False),
            (("GET",), re.compile(_API_REPO + r"/commits/(?P<rev>[^/]+)"), self._list_commits, False),
            (("GET",), re.compile(_API_REPO + r"/refs"), self._refs, False),
            (("POST",), re.compile(_API_REPO + r"/branch/(?P<branch>[^/]+)"), self._create_branch, True),
            (("PUT",), re.compile(_API_REPO + r"/settings"), self._settings, True),
            (("POST",), re.compile(_GIT_REPO + r"\.git/info/lfs/objects/batch"), self._lfs_batch, True),
            # The upload URL carries a one-time ticket instead of auth: the client sends none there.
            (("PUT",), re.compile(r"/__lfs__/upload/(?P<ticket>[0-9a-f]+)"), self._lfs_upload, False),
            (("POST",), re.compile(r"/__lfs__/verify"), self._lfs_verify, True),
            (("GET", "HEAD"), re.compile(_GIT_REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)"), self._resolve, False),
        ]

    # Lifecycle --------------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Serve in a daemon thread; returns ``self`` so ``HubServer(...).start()`` reads well."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (the standalone mode)."""
        try:
            self._httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Failure injection ------------------------------------------------------------------------

    def inject_failure(
        self, method: str, path_regex: str, *, status: int = 500, drop: bool = False, times: int = 1
    ) -> None:
        """Make the next ``times`` requests matching ``method`` (case-insensitive, ``*`` for any)
        and ``path_regex`` (``re.search`` on the URL-quoted path, without query string) fail with
        ``status``, or have their connection closed without any response when ``drop`` is true.
        """
        with self._lock:
            self._failures.append(_Failure(method.upper(), re.compile(path_regex), status, drop, times))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, method: str, path: str) -> _Failure | None:
        for failure in self._failures:
            if failure.remaining > 0 and failure.method in ("*", method) and failure.pattern.search(path):
                failure.remaining -= 1
                return failure
        return None

    # Dispatch ---------------------------------------------------------------------------------

    def _check_auth(self, authorization: str | None) -> bool:
        """Whether the request carries the configured token; raises 401 for a wrong one."""
        if self._token is None:
            return True
        if not authorization:
            return False
        if secrets.compare_digest(authorization.encode(), f"Bearer {self._token}".encode()):
            return True
        raise HubError(401, "Invalid credentials in Authorization header")

    def _handle(self, method: str, raw_path: str, headers: Message, body: bytes) -> _Response | None:
        """Answer one request; ``None`` means "drop the connection" (an injected failure)."""
        split = urlsplit(raw_path)
        with self._lock:
            self.requests.append((method, split.path))
            failure = self._take_failure(method, split.path)
            if failure is not None:
                return None if failure.drop else HubError(failure.status, "Injected failure").response()
            try:
                authorized = self._check_auth(headers.get("Authorization"))
                host = headers.get("Host")
                request = _Request(
                    method=method,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers=headers,
                    body=body,
                    base_url=f"http://{host}" if host else self.url,
                    authorized=authorized,
                )
                return self._dispatch(request)
            except HubError as exc:
                return exc.response()
            except Exception as exc:  # a server bug: report it to the client rather than hang
                return HubError(500, f"Internal error: {type(exc).__name__}: {exc}").response()

    def _dispatch(self, request: _Request) -> _Response:
        for methods, pattern, handler, needs_write in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None or request.method not in methods:
                continue
            if needs_write and not request.authorized:
                raise HubError(401, "You must be authenticated with a write token to do this")
            params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
            return handler(request, **params)
        raise HubError(404, f"Not found: {request.method} {request.path}")

    # Repo and revision lookup -----------------------------------------------------------------

    def _get_repo(self, request: _Request, repo_type: str, repo_id: str) -> _Repo:
        """The repo, or RepoNotFound when it is missing or private and the caller is anonymous."""
        repo = self._store.load_repo(repo_type, repo_id)
        if repo is None or (repo.private and not request.authorized):
            raise _repo_not_found(repo_id)
        return repo

    def _resolve_revision(self, repo: _Repo, revision: str) -> dict[str, Any]:
        """A branch name, ``refs/heads/<branch>``, ``refs/pr/<n>`` or a full commit oid."""
        name = revision.removeprefix("refs/heads/")
        oid = repo.branches.get(name, revision)
        commit = self._store.load_commit(repo, oid)
        if commit is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    def _head(self, request: _Request, repo_type: str, repo_id: str, rev: str) -> tuple[_Repo, dict[str, Any]]:
        repo = self._get_repo(request, repo_type, repo_id)
        return repo, self._resolve_revision(repo, rev)

    # Listing helpers --------------------------------------------------------------------------

    def _history(self, repo: _Repo, commit: dict[str, Any]) -> list[tuple[dict[str, Any], set[str]]]:
        """First-parent history from ``commit``, newest first, with the paths each commit changed."""
        history = []
        current: dict[str, Any] | None = commit
        while current is not None:
            parent = self._store.load_commit(repo, current["parents"][0]) if current["parents"] else None
            before = parent["files"] if parent else {}
            after = current["files"]
            changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
            history.append((current, changed))
            current = parent
        return history

    @staticmethod
    def _file_entry(path: str, entry: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"type": "file", "path": path, "oid": entry["oid"], "size": entry["size"]}
        if entry["lfs"]:
            info["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": entry["pointerSize"]}
        return info

    @staticmethod
    def _folder_entry(path: str, files: dict[str, dict]) -> dict[str, Any]:
        prefix = path + "/"
        listing = "".join(f"{p} {e['oid']}\n" for p, e in sorted(files.items()) if p.startswith(prefix))
        return {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode()).hexdigest()}

    def _entries(self, repo: _Repo, commit: dict[str, Any], paths: list[str], expand: bool) -> list[dict[str, Any]]:
        """Tree/paths-info entries for existing ``paths`` (files or folders), in the given order."""
        files = commit["files"]
        entries = []
        for path in paths:
            if path in files:
                entries.append(self._file_entry(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                entries.append(self._folder_entry(path, files))
        if expand:
            history = self._history(repo, commit)
            for entry in entries:
                prefix = entry["path"] + "/"
                for past, changed in history:
                    if entry["path"] in changed or any(p.startswith(prefix) for p in changed):
                        entry["lastCommit"] = {"id": past["id"], "title": past["title"], "date": past["date"]}
                        break
        return entries

    # Endpoints: account and repos -------------------------------------------------------------

    def _whoami(self, request: _Request) -> _Response:
        if self._token is not None and not request.authorized:
            raise HubError(401, "Invalid user token")
        return _json_response(
            {
                "type": "user",
                "name": DEFAULT_USER,
                "fullname": "Local Tester",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}},
            }
        )

    def _validate_yaml(self, request: _Request) -> _Response:
        return _json_response({"errors": [], "warnings": []})

    def _create_repo(self, request: _Request) -> _Response:
        payload = request.json()
        repo_type = payload.get("type") or "model"
        name, namespace = payload.get("name") or "", payload.get("organization") or DEFAULT_USER
        if repo_type not in URL_PREFIXES or not _NAME_RE.fullmatch(name) or not _NAME_RE.fullmatch(namespace):
            raise HubError(400, f"Invalid repo type or name: {repo_type!r} {namespace!r}/{name!r}")
        repo_id = f"{namespace}/{name}"
        url = f"{request.base_url}/{URL_PREFIXES[repo_type]}{repo_id}"
        if self._store.load_repo(repo_type, repo_id) is not None:  # create_repo(exist_ok=True) reads "url"
            raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url})
        repo = _Repo(
            repo_type=repo_type,
            repo_id=repo_id,
            private=bool(payload.get("private")) or payload.get("visibility") == "private",
            created_at=_now(),
            branches={},
            sdk=payload.get("sdk"),
        )
        entry = self._store.put_regular(DEFAULT_GITATTRIBUTES.encode())
        commit = _new_commit(None, {".gitattributes": entry}, "initial commit", "", DEFAULT_USER)
        repo.branches["main"] = commit["id"]
        self._store.save_repo(repo)
        self._store.save_commit(repo, commit)
        return _json_response({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, request: _Request) -> _Response:
        payload = request.json()
        repo_id = f"{payload.get('organization') or DEFAULT_USER}/{payload.get('name')}"
        repo = self._get_repo(request, payload.get("type") or "model", repo_id)
        self._store.delete_repo(repo)
        return _json_response({})

    def _settings(self, request: _Request, kind: str, ns: str, name: str) -> _Response:
        repo = self._get_repo(request, kind[:-1], f"{ns}/{name}")
        payload = request.json()
        if "private" in payload:
            repo.private = bool(payload["private"])
        self._store.save_repo(repo)
        return _json_response({"private": repo.private})

    def _repo_info(self, request: _Request, kind: str, ns: str, name: str, rev: str = "main") -> _Response:
        repo, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        with_blobs = _truthy(request.query.get("blobs"))
        siblings = []
        for path, entry in sorted(commit["files"].items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if entry["lfs"]:
                    sibling["lfs"] = {
                        "sha256": entry["sha256"],
                        "size": entry["size"],
                        "pointerSize": entry["pointerSize"],
                    }
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}".encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": ns,
            "sha": commit["id"],
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "createdAt": repo.created_at,
            "lastModified": commit["date"],
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": siblings,
        }
        if repo.sdk:
            info["sdk"] = repo.sdk
        return _json_response(info)

    def _refs(self, request: _Request, kind: str, ns: str, name: str) -> _Response:
        repo = self._get_repo(request, kind[:-1], f"{ns}/{name}")
        branches, pulls = [], []
        for branch, oid in sorted(repo.branches.items()):
            if branch.startswith("refs/pr/"):
                pulls.append({"name": branch, "ref": branch, "targetCommit": oid})
            else:
                branches.append({"name": branch, "ref": f"refs/heads/{branch}", "targetCommit": oid})
        return _json_response({"branches": branches, "converts": [], "tags": [], "pullRequests": pulls})

    def _create_branch(self, request: _Request, kind: str, ns: str, name: str, branch: str) -> _Response:
        repo = self._get_repo(request, kind[:-1], f"{ns}/{name}")
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        start = self._resolve_revision(repo, request.json().get("startingPoint") or "main")
        repo.branches[branch] = start["id"]
        self._store.save_repo(repo)
        return _json_response({})

    def _list_commits(self, request: _Request, kind: str, ns: str, name: str, rev: str) -> _Response:
        repo, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        return _json_response(
            [
                {
                    "id": past["id"],
                    "title": past["title"],
                    "message": past["message"],
                    "date": past["date"],
                    "authors": [{"user": past["author"]}],
                }
                for past, _ in self._history(repo, commit)
            ]
        )

    # Endpoints: uploads -----------------------------------------------------------------------

    def _preupload(self, request: _Request, kind: str, ns: str, name: str, rev: str) -> _Response:
        """Regular vs LFS per file (like the Hub: .gitattributes, size, binary sample), plus the
        current remote oid in the matching flavour so that the client skips unchanged files."""
        _, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        files = commit["files"]
        attributes = files.get(".gitattributes")
        patterns = _lfs_patterns(self._store.read_object(attributes["sha256"]).decode()) if attributes else []
        answers = []
        for item in request.json().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample") or "")
            lfs = size > LFS_SIZE_THRESHOLD or b"\0" in sample or any(_matches_pattern(path, p) for p in patterns)
            current = files.get(path)
            oid = None
            if current is not None:
                oid = current["sha256"] if lfs else current["oid"]
            answers.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        return _json_response({"files": answers})

    def _lfs_batch(self, request: _Request, ns: str, name: str, prefix: str = "") -> _Response:
        """Git-LFS batch API, "basic" transfer only (never Xet, never multipart)."""
        repo_type = _PREFIX_TYPES[prefix]
        self._get_repo(request, repo_type, f"{ns}/{name}")
        payload = request.json()
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = str(obj.get("oid")), obj.get("size")
            if not _SHA256_RE.fullmatch(oid) or not isinstance(size, int):
                raise HubError(400, f"Invalid LFS object: {obj!r}")
            answer: dict[str, Any] = {"oid": oid, "size": size}  # without "actions": already stored
            if not self._store.has_object(oid, size):
                ticket = secrets.token_hex(16)
                self._upload_tickets[ticket] = (oid, size)
                answer["authenticated"] = True
                answer["actions"] = {
                    "upload": {"href": f"{request.base_url}/__lfs__/upload/{ticket}"},
                    "verify": {"href": f"{request.base_url}/__lfs__/verify"},
                }
            objects.append(answer)
        return _json_response({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_upload(self, request: _Request, ticket: str) -> _Response:
        expected = self._upload_tickets.get(ticket)
        if expected is None:
            raise HubError(403, "Unknown or used upload ticket")
        oid, size = expected
        if len(request.body) != size or hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match oid {oid} / size {size}")
        self._store.put_object(request.body)
        del self._upload_tickets[ticket]
        return _Response(200)

    def _lfs_verify(self, request: _Request) -> _Response:
        payload = request.json()
        if not self._store.has_object(str(payload.get("oid")), payload.get("size")):
            raise HubError(404, f"LFS object {payload.get('oid')} not found")
        return _json_response({})

    def _commit(self, request: _Request, kind: str, ns: str, name: str, rev: str) -> _Response:
        """ndjson commit: header, then file / lfsFile / deletedFile / deletedFolder lines."""
        repo, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        branch = rev.removeprefix("refs/heads/")
        if branch not in repo.branches:
            raise HubError(400, f"Can only commit to a branch, not to {rev}")
        try:
            lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        except ValueError as exc:
            raise HubError(400, f"Invalid ndjson payload: {exc}") from exc
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first ndjson line must be the commit header")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent is not None and parent != commit["id"]:
            raise HubError(412, f"A commit has happened since {parent}: the parent commit is not the head")

        files = dict(commit["files"])
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = str(value.get("path", "")).strip("/")
            if key == "file":
                files[path] = self._store.put_regular(base64.b64decode(value["content"]))
            elif key == "lfsFile":
                sha256, size = value["oid"], int(value["size"])
                if not self._store.has_object(sha256, size):
                    raise HubError(422, f"LFS object {sha256} for {path} was never uploaded")
                files[path] = _lfs_entry(sha256, size)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                inside = [p for p in files if p.startswith(path + "/")]
                if not inside:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in inside:
                    del files[p]
            else:
                raise HubError(400, f"Unsupported commit operation: {key!r}")

        pull_request_url = None
        if _truthy(request.query.get("create_pr")):
            number = 1 + sum(b.startswith("refs/pr/") for b in repo.branches)
            branch = f"refs/pr/{number}"
            pull_request_url = f"{request.base_url}/{repo.url_path}/discussions/{number}"
        title, message = header.get("summary") or "", header.get("description") or ""
        new = _new_commit(commit["id"], files, title, message, DEFAULT_USER)
        self._store.save_commit(repo, new)
        repo.branches[branch] = new["id"]
        self._store.save_repo(repo)
        return _json_response(
            {
                "commitOid": new["id"],
                "commitUrl": f"{request.base_url}/{repo.url_path}/commit/{new['id']}",
                "pullRequestUrl": pull_request_url,
            }
        )

    # Endpoints: reads -------------------------------------------------------------------------

    def _tree(self, request: _Request, kind: str, ns: str, name: str, rev: str, path: str = "") -> _Response:
        repo, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        base = path.strip("/")
        prefix = f"{base}/" if base else ""
        recursive = _truthy(request.query.get("recursive"))
        children: set[str] = set()
        for file_path in commit["files"]:
            if not file_path.startswith(prefix):
                continue
            parts = file_path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            children.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if base and not children:
            raise HubError(404, f"{base} does not exist or is not a folder at {rev}", "EntryNotFound")
        entries = self._entries(repo, commit, sorted(children), _truthy(request.query.get("expand")))
        return _json_response(entries)

    def _paths_info(self, request: _Request, kind: str, ns: str, name: str, rev: str) -> _Response:
        repo, commit = self._head(request, kind[:-1], f"{ns}/{name}", rev)
        if request.headers.get_content_type() == "application/json":
            payload = request.json()
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:  # what huggingface_hub sends: a form with repeated "paths" fields
            form = parse_qs(request.body.decode())
            paths, expand = form.get("paths", []), _truthy(form.get("expand"))
        wanted = [p.strip("/") for p in paths if p.strip("/")]
        return _json_response(self._entries(repo, commit, wanted, expand))

    def _resolve(self, request: _Request, ns: str, name: str, rev: str, path: str, prefix: str = "") -> _Response:
        """File download. LFS files are served directly (200) with the X-Linked-* headers."""
        repo_type = _PREFIX_TYPES[prefix]
        _, commit = self._head(request, repo_type, f"{ns}/{name}", rev)
        entry = commit["files"].get(path)
        if entry is None:  # X-Repo-Commit lets the client cache the miss under .no_exist/<commit>
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit["id"]})
        content = self._store.read_object(entry["sha256"])
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "X-Repo-Commit": commit["id"],
            "ETag": f'"{entry["sha256"] if entry["lfs"] else entry["oid"]}"',
        }
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(entry["size"])
        byte_range = _parse_range(request.headers.get("Range"), len(content))
        if byte_range is None:
            return _Response(200, content, headers)
        start, end = byte_range
        if start >= len(content) or start > end:
            raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        return _Response(206, content[start : end + 1], headers)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range, clipped to the content."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        return max(size - int(last), 0), size - 1
    return int(first), min(int(last), size - 1) if last else size - 1


# ----------------------------------------------------------------------------------------------
# HTTP plumbing
# ----------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    hub: HubServer


class _Handler(BaseHTTPRequestHandler):
    """Reads the whole request, hands it to the HubServer, writes the answer. Logs nothing."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the client's pooled sessions expect
    server: _HTTPServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        """Silence: the default access log would be noise, and headers must never be echoed."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # optional trailers, then a blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, method: str) -> None:
        body = self._read_body()
        response = self.server.hub._handle(method, self.path, self.headers, body)
        if response is None:
            self.close_connection = True  # injected "drop": no status line at all
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(response.body)


def main() -> None:
    """Run the server in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--root", required=True, help="storage directory (created if missing)")
    args = parser.parse_args()
    token = os.environ.get("HUB_SERVER_TOKEN") or None
    server = HubServer(args.root, host=args.host, port=args.port, token=token)
    print(f"Hub server on {server.url} (storage: {args.root}, auth: {'on' if token else 'off'})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
