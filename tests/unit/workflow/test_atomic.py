"""Atomic outputs: nothing that looks finished after a failure; stale temporaries cleaned."""

from __future__ import annotations

import os
import stat

import pytest
from rcmg.workflow.atomic import (
    atomic_dir,
    atomic_members,
    atomic_path,
    remove_stale_parts,
    write_json,
)


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


def test_atomic_members_publishes_own_files_and_keeps_other_steps(tmp_path):
    run = tmp_path / "seed0"
    with atomic_members(
        run, last="run_config.json", owned=("wav", "style.npy", "run_config.json")
    ) as tmp:
        (tmp / "wav").mkdir()
        (tmp / "wav" / "0000.wav").write_bytes(b"v1")
        (tmp / "style.npy").write_bytes(b"s")
        (tmp / "run_config.json").write_text("{}")
    (run / "report.html").write_text("evaluate's")  # another step's output
    with atomic_members(
        run, last="run_config.json", owned=("wav", "style.npy", "run_config.json")
    ) as tmp:
        (tmp / "wav").mkdir()
        (tmp / "wav" / "0001.wav").write_bytes(b"v2")
        (tmp / "run_config.json").write_text('{"v": 2}')
    assert sorted(p.name for p in run.iterdir()) == ["report.html", "run_config.json", "wav"]
    assert [p.name for p in (run / "wav").iterdir()] == ["0001.wav"]  # replaced, not merged
    assert [p.name for p in tmp_path.iterdir()] == ["seed0"]


def test_atomic_members_failure_changes_nothing(tmp_path):
    with (
        pytest.raises(RuntimeError),
        atomic_members(tmp_path / "new", last="run_config.json") as tmp,
    ):
        (tmp / "run_config.json").write_text("{}")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
