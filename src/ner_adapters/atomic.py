"""Atomic saves: everything is written beside its target first, then renamed into place.

A crash or an error midway leaves the previous file or folder as it was, never a half-written one that
loads. Used by every writer of artifacts and results (adapters, Multi-BERT sets, converted models,
episodes, predictions, results JSON).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) through a temporary file renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


@contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target`` in one rename.

    If the body raises, the staging folder is removed and ``target`` is untouched. If the final rename fails,
    the previous ``target`` (moved aside first) is moved back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        yield staging
        staging.chmod(0o755)
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(target, backup)
            try:
                os.replace(staging, target)
            except BaseException:
                os.replace(backup, target)  # the previous version goes back where it was
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


__all__ = ["atomic_directory", "atomic_write_text"]
