"""Named pause points: a test stops a job at a known point of its work, deterministically.

A job calls :func:`pause_point` at a point of its work (the generate job: after its first
batch, ``generate.first_batch``). Nothing happens unless the environment names that point in
``RCMG_PAUSE_AT``, a JSON object::

    {"point": "generate.first_batch",  # the point
     "job": "runs/audioldm2/retrieval_native/",  # a substring of the job's key (its output path)
     "marker": "/tmp/paused.json",  # written (atomically) when the job pauses there
     "skip": 0,  # let this many matching jobs pass first (counted in marker.hitN files)
     "seconds": 600}  # then go on (a test that forgot to kill never hangs CI)

A test that kills a job "mid-run" waits for the marker and kills: the job is then at that
point for certain (a job that finishes within one poll of a log file raced such a test).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "RCMG_PAUSE_AT"


def pause_point(point: str, job: str) -> None:
    """Pause here if ``RCMG_PAUSE_AT`` names ``point`` and a substring of ``job``."""
    raw = os.environ.get(ENV)
    if not raw:
        return
    spec = json.loads(raw)
    if spec.get("point") != point or str(spec.get("job", "")) not in job:
        return
    marker = Path(spec["marker"])
    if not _take_turn(marker, int(spec.get("skip", 0))):
        return
    tmp = marker.with_name(f".{marker.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"point": point, "job": job, "pid": os.getpid()}))
    os.replace(tmp, marker)
    deadline = time.monotonic() + float(spec.get("seconds", 600))
    while time.monotonic() < deadline:
        time.sleep(0.05)


def _take_turn(marker: Path, skip: int) -> bool:
    """True for the matching job after ``skip`` others (each claims one ``hitN`` file)."""
    for n in range(skip + 1):
        try:
            os.close(os.open(marker.with_name(f"{marker.name}.hit{n}"), os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        return n == skip
    return False
