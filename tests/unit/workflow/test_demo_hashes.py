"""tests/tools/demo_hashes.py: a run's audio is hashed by its samples (two writes of the
same samples hash alike, whatever libsndfile's PEAK timestamp), metrics CSVs by bytes."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import soundfile as sf

TOOL = Path(__file__).resolve().parents[2] / "tools" / "demo_hashes.py"


def _tool():
    spec = importlib.util.spec_from_file_location("demo_hashes", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(root: Path, audio: np.ndarray) -> None:
    run = root / "results" / "demo" / "runs" / "m" / "prompt" / "seed0"
    (run / "wav").mkdir(parents=True)
    (run / "metrics").mkdir()
    sf.write(run / "wav" / "0000.wav", audio, 16000, subtype="FLOAT")
    (run / "metrics" / "per_item.csv").write_text("item,x\n0,1\n")
    (run / "report.html").write_text("not hashed")


def test_same_samples_hash_alike_and_a_changed_sample_does_not(tmp_path):
    tool = _tool()
    audio = np.random.default_rng(0).standard_normal(1600).astype(np.float32) * 0.1
    _build(tmp_path / "a", audio)
    time.sleep(1.1)  # another PEAK timestamp
    _build(tmp_path / "b", audio)
    a, b = tool.demo_hashes(tmp_path / "a"), tool.demo_hashes(tmp_path / "b")
    assert a == b and len(a) == 2
    changed = audio.copy()
    changed[5] += 1e-3
    _build(tmp_path / "c", changed)
    by_path = {line.split()[1]: line.split()[0] for line in tool.demo_hashes(tmp_path / "c")}
    before = {line.split()[1]: line.split()[0] for line in a}
    csv, wav = sorted(before)
    assert by_path[csv] == before[csv] and by_path[wav] != before[wav]
