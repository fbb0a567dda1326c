"""rcmg.workflow.pause_point: a job pauses only at the point and job a test names."""

from __future__ import annotations

import json
import multiprocessing
import time

from rcmg.workflow.pause_point import ENV, pause_point


def test_without_the_variable_nothing_happens(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    pause_point("generate.first_batch", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_other_points_and_jobs_pass_and_the_match_after_skip_pauses(monkeypatch, tmp_path):
    marker = tmp_path / "paused.json"
    spec = {"point": "p", "job": "runs/m/c/", "marker": str(marker), "skip": 1, "seconds": 0.2}
    monkeypatch.setenv(ENV, json.dumps(spec))
    pause_point("other", "results/runs/m/c/seed0")  # another point
    pause_point("p", "results/runs/m/c_random/seed0")  # another job (the slash matters)
    assert not marker.exists()
    pause_point("p", "results/runs/m/c/seed0")  # first match: skipped
    assert not marker.exists()
    start = time.monotonic()
    pause_point("p", "results/runs/m/c/seed1")  # second match: pauses, marker first
    assert time.monotonic() - start >= 0.2
    assert json.loads(marker.read_text())["job"] == "results/runs/m/c/seed1"
    marker.unlink()
    pause_point("p", "results/runs/m/c/seed2")  # later ones pass
    assert not marker.exists()


def _pause(spec: str) -> None:
    import os

    os.environ[ENV] = spec
    pause_point("p", "job")


def test_the_marker_is_written_before_the_pause_so_a_kill_lands_inside_it(tmp_path):
    marker = tmp_path / "paused.json"
    spec = json.dumps({"point": "p", "job": "job", "marker": str(marker), "seconds": 60})
    proc = multiprocessing.get_context("spawn").Process(target=_pause, args=(spec,))
    proc.start()
    deadline = time.monotonic() + 60
    while not marker.is_file() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.is_file() and proc.is_alive()  # paused, not finished
    proc.kill()
    proc.join()
    assert json.loads(marker.read_text())["pid"] == proc.pid
