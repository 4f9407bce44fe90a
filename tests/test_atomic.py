import os
from pathlib import Path

import pytest

from ner_adapters.atomic import atomic_directory, atomic_write_text


def test_atomic_write_text_replaces_and_leaves_no_temp_file(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "r.json", "one")
    atomic_write_text(target, "two")
    assert target.read_text(encoding="utf-8") == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]


def test_atomic_directory_keeps_the_previous_folder_on_any_failure(tmp_path, monkeypatch):
    target = tmp_path / "artifact"
    with atomic_directory(target) as staging:
        (staging / "w.bin").write_bytes(b"v1")
    with pytest.raises(OSError, match="disk full"), atomic_directory(target) as staging:
        (staging / "w.bin").write_bytes(b"half")
        raise OSError("disk full")
    real_replace = os.replace

    def failing_replace(src, dst):
        if ".saving-" in Path(src).name:
            raise OSError("rename failed")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"), atomic_directory(target) as staging:
        (staging / "w.bin").write_bytes(b"v2")
    monkeypatch.setattr(os, "replace", real_replace)
    assert (target / "w.bin").read_bytes() == b"v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # no staging or backup folder left
    with atomic_directory(target) as staging:
        (staging / "w.bin").write_bytes(b"v2")
    assert (target / "w.bin").read_bytes() == b"v2" and sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]
