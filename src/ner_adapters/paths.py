"""Telling a mistyped local path from a Hub id, and saying where the nearest real folder is.

Every entry point that takes "a folder or a Hub id" (datasets, adapters, models) used to send anything
that is not an existing folder to the Hub, so ``outputs/adaptr`` ended in a network error about a repo
that never existed. :func:`looks_local` decides when a string can only be meant as a path, and
:func:`missing_path_error` builds the ``FileNotFoundError`` that names it and the closest existing folder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

#: Suffixes of data and model files: a name ending in one is a file name, never a Hub id.
FILE_SUFFIXES = (".conll", ".conllu", ".conllx", ".iob", ".iob2", ".bio", ".bioes", ".txt", ".tsv", ".json",
                 ".jsonl", ".ndjson", ".gz", ".arrow", ".parquet", ".csv", ".yaml", ".yml", ".safetensors", ".bin")


def looks_local(spec: str | os.PathLike) -> bool:
    """Whether ``spec`` can only be meant as a local path (whether or not it exists).

    True for absolute, ``./``, ``../`` and ``~`` paths, paths with more than one ``/`` (Hub ids have one),
    names ending in a data-file suffix, names with a backslash, and ``a/b`` whose ``a`` is an existing
    local folder (``outputs/adaptr``: ``outputs`` exists here, so this is not the Hub user ``outputs``).
    """
    text = os.fspath(spec)
    if not text:
        return False
    if isinstance(spec, Path) or text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in text:
        return True
    if text in (".", ".."):
        return True
    bare = text.split("@", 1)[0]
    if bare.count("/") > 1 or bare.lower().endswith(FILE_SUFFIXES):
        return True
    return "/" in bare and Path(bare.split("/", 1)[0]).is_dir()


def nearest_existing(path: str | os.PathLike) -> tuple[Path | None, Path | None]:
    """``(deepest existing parent folder, its near-named child)`` for a missing ``path``.

    ``outputs/adaptr`` gives ``(outputs, outputs/adapter)`` when ``outputs/adapter`` exists; the child is
    ``None`` when no name there is close to the missing one.
    """
    target = Path(os.path.expanduser(os.fspath(path)))
    parent, missing = target.parent, target.name
    while not parent.is_dir():
        if parent == parent.parent:
            return None, None
        parent, missing = parent.parent, parent.name
    try:
        children = sorted(child.name for child in parent.iterdir() if not child.name.startswith("."))
    except OSError:
        children = []
    close = difflib.get_close_matches(missing, children, n=1, cutoff=0.6)
    return parent, (parent / close[0] if close else None)


def missing_path_error(path: str | os.PathLike, what: str = "file or folder") -> FileNotFoundError:
    """``FileNotFoundError`` naming ``path`` and the nearest existing folder (or near-named file) there is."""
    parent, close = nearest_existing(path)
    if close is not None:
        hint = f"; did you mean {close}?"
    elif parent is not None:
        hint = f"; the nearest existing folder is {parent.resolve()}"
    else:
        hint = ""
    return FileNotFoundError(f"no such {what}: {os.fspath(path)}{hint}")


__all__ = ["FILE_SUFFIXES", "looks_local", "missing_path_error", "nearest_existing"]
