"""Atomic outputs: nothing that looks finished after a failure; stale temporaries cleaned."""

from __future__ import annotations

import os
import stat

import pytest
from rcmg.atomic import atomic_dir, atomic_path, remove_stale_parts, write_json


def test_failed_write_leaves_no_output(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_dir_keeps_previous_complete_version(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("v2-partial")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_stale_parts_of_a_killed_writer_are_removed_on_next_write(tmp_path):
    target = tmp_path / "run"
    (tmp_path / ".run.abc.partdir").mkdir()
    (tmp_path / ".run.abc.partdir" / "x.wav").write_bytes(b"0")
    (tmp_path / ".other.abc.partdir").mkdir()  # another output's temporary: untouched
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc.partdir", "run"]
    assert remove_stale_parts(tmp_path / "other") == [tmp_path / ".other.abc.partdir"]


def test_outputs_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
