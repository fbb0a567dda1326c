"""segment: windows, sample rates, loudness floor, skips, sharding and atomic output."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from rcmg.data import segmenting
from rcmg.data.audio_io import AudioDecodeError, read_audio, resample, rms_dbfs
from rcmg.data.segmenting import (
    NpyRowWriter,
    SegmentConfig,
    Window,
    plan_windows,
    repeat_pad,
    segment_shard,
    select_shard,
    shard_of,
)
from rcmg.data.sources import index_sources, resolve_source_path, sources_table

from tests.unit.bad_corpus import TONE_AMPLITUDE, TONE_HZ, tree_digest, write_bad_corpus

REPO = Path(__file__).resolve().parents[3]
SEGMENT_CLI = REPO / "workflow_scripts" / "segment.py"


def _segment_cli(sources: Path, root: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SEGMENT_CLI), "--sources", str(sources), "--root", str(root)]
    cmd += ["--shard", "0", "--num-shards", "1", "--out-dir", str(out), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def _write_sources(rows: list[dict], path: Path) -> Path:
    pq.write_table(sources_table(rows), path)
    return path


def _read_skipped(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _expected_windows(duration: float, seconds: float, hop: float, min_tail: float) -> int:
    full = int(math.floor((duration - seconds) / hop + 1e-9)) + 1 if duration >= seconds else 0
    covered = (full - 1) * hop + seconds if full else 0.0
    return full + int(duration - max(covered, full * hop) >= min_tail - 1e-9)


# ---------------------------------------------------------------- pure functions


def test_plan_windows_policies():
    assert plan_windows(25.0, 10, 10, "pad", 1.0) == [
        Window(0, 10, False),
        Window(10, 10, False),
        Window(20, 5.0, True),
    ]
    assert plan_windows(25.0, 10, 10, "drop", 1.0) == [Window(0, 10, False), Window(10, 10, False)]
    assert plan_windows(20.5, 10, 10, "pad", 1.0) == [Window(0, 10, False), Window(10, 10, False)]
    assert plan_windows(0.5, 10, 10, "pad", 1.0) == []
    assert plan_windows(3.0, 10, 10, "pad", 1.0) == [Window(0, 3.0, True)]
    assert [w.offset_s for w in plan_windows(20.0, 10, 5, "pad", 1.0)] == [0, 5, 10]
    # hop larger than the window: the tail counts only audio after the gap
    assert plan_windows(23.0, 10, 15, "pad", 1.0) == [Window(0, 10, False), Window(15, 8.0, True)]


def test_repeat_pad_matches_clap_repeatpad():
    x = np.arange(1, 4, dtype=np.float32)
    np.testing.assert_array_equal(repeat_pad(x, 8), [1, 2, 3, 1, 2, 3, 0, 0])
    np.testing.assert_array_equal(repeat_pad(x, 2), [1, 2])
    assert not repeat_pad(np.zeros(0, np.float32), 4).any()


def test_shards_partition_sources_stably():
    rows = [{"source_id": f"fsd50k/x/{i}", "stem": ""} for i in range(200)]
    shards = [select_shard(rows, s, 4, "all") for s in range(4)]
    ids = [r["source_id"] for shard in shards for r in shard]
    assert sorted(ids) == sorted(r["source_id"] for r in rows)
    assert all(len(s) > 20 for s in shards)
    assert shard_of("maestro/2004/a", 7) == shard_of("maestro/2004/a", 7)
    with pytest.raises(ValueError, match="shard must be in"):
        select_shard(rows, 4, 4, "all")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="hop must be > 0.*tail must be one of"):
        SegmentConfig(hop=0, tail="loop")


def test_npy_row_writer_gives_memmappable_array(tmp_path):
    writer = NpyRowWriter(tmp_path / "a.npy", 5, "float16")
    writer.append(np.ones((2, 5)))
    writer.append(np.full((3, 5), 2.0))
    writer.close()
    arr = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert arr.shape == (5, 5) and arr.dtype == np.float16
    np.testing.assert_array_equal(arr[:, 0], [1, 1, 2, 2, 2])


def test_audio_io_levels_and_errors(tmp_path):
    assert rms_dbfs(np.zeros(100, np.float32)) == -120.0
    assert rms_dbfs(np.zeros(0, np.float32)) == -120.0
    assert rms_dbfs(np.ones(100, np.float32)) == pytest.approx(0.0)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioDecodeError, match="text.wav: unreadable") as info:
        read_audio(tmp_path / "text.wav")
    assert info.value.reason == "unreadable"
    with pytest.raises(AudioDecodeError, match="unreadable"):
        read_audio(tmp_path / "absent.wav")


def test_resample_keeps_a_tone():
    t = np.arange(44100) / 44100
    y = resample(np.sin(2 * np.pi * 1000 * t).astype(np.float32), 44100, 16000)
    assert y.dtype == np.float32 and y.shape == (16000,)
    expected = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    np.testing.assert_allclose(y[200:-200], expected[200:-200], atol=1e-3)


# ---------------------------------------------------------------- demo corpus


@pytest.fixture(scope="module")
def demo_sources(demo_corpus, tmp_path_factory):
    """Source tables of the demo corpus (index_sources.py itself is tested in test_sources)."""
    out = tmp_path_factory.mktemp("sources")
    for kind in ("maestro", "urmp", "fsd50k"):
        rows, _ = index_sources(kind, demo_corpus / kind)
        _write_sources(rows, out / f"{kind}.parquet")
    return out


def test_cli_segments_fsd50k_with_expected_counts(demo_corpus, demo_sources, tmp_path):
    out = tmp_path / "shard0"
    result = _segment_cli(demo_sources / "fsd50k.parquet", demo_corpus / "fsd50k", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["audio_48k.npy", "audio_16k.npy", "manifest.parquet", "skipped.csv", "summary.json"]
    )
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    sources, _ = index_sources("fsd50k", demo_corpus / "fsd50k")
    expected = {r["source_id"]: _expected_windows(r["duration_s"], 10, 10, 1.0) for r in sources}
    counted = {sid: sum(m["source_id"] == sid for m in manifest) for sid in expected}
    assert counted == expected
    too_short = {
        r["source_id"] for r in _read_skipped(out / "skipped.csv") if r["reason"] == "too short"
    }
    assert too_short == {sid for sid, n in expected.items() if n == 0}
    a48 = np.load(out / "audio_48k.npy", mmap_mode="r")
    a16 = np.load(out / "audio_16k.npy", mmap_mode="r")
    assert a48.shape == (len(manifest), 480000) and a16.shape == (len(manifest), 160000)
    assert [m["row"] for m in manifest] == list(range(len(manifest)))
    by_id = {r["source_id"]: r for r in sources}
    for m in manifest:
        assert m["padded"] == (m["duration_s"] < 10.0)
        assert m["rms_dbfs"] > -60 and m["tags"]
        # provenance from clips_info rides along with every window
        source = by_id[m["source_id"]]
        assert (m["title"], m["license"], m["uploader"]) == (
            source["title"],
            source["license"],
            source["uploader"],
        )
        assert m["license"].startswith("http://creativecommons.org/") and m["uploader"]


def test_array_rows_are_the_source_audio_at_both_rates(demo_corpus, demo_sources, tmp_path):
    out = tmp_path / "maestro"
    cfg = SegmentConfig(hop=7.0, tail="pad", min_tail_seconds=2.0)
    rows = select_shard(pq.read_table(demo_sources / "maestro.parquet").to_pylist(), 0, 1, "mix")
    segment_shard(rows, demo_corpus / "maestro", out, cfg)
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    a48, a16 = np.load(out / "audio_48k.npy"), np.load(out / "audio_16k.npy")
    by_id = {r["source_id"]: r for r in rows}
    for entry in (manifest[1], next(m for m in manifest if m["padded"])):
        x, sr = read_audio(resolve_source_path(demo_corpus / "maestro", by_id[entry["source_id"]]))
        for arr, rate in ((a48, 48000), (a16, 16000)):
            y = resample(x, sr, rate)
            start, n = round(entry["offset_s"] * rate), round(entry["duration_s"] * rate)
            expected = repeat_pad(y[start : start + n], arr.shape[1])
            np.testing.assert_allclose(arr[entry["row"]], expected, atol=1e-6)
        assert entry["rms_dbfs"] == pytest.approx(
            rms_dbfs(a48[entry["row"], : round(entry["duration_s"] * 48000)]), abs=1e-3
        )
    durations = {r["source_id"]: r["duration_s"] for r in rows}
    for sid, duration in durations.items():
        assert sum(m["source_id"] == sid for m in manifest) == _expected_windows(
            duration, 10, 7, 2.0
        )


def test_urmp_stems_policy_and_float16(demo_corpus, demo_sources, tmp_path):
    rows = pq.read_table(demo_sources / "urmp.parquet").to_pylist()
    mix_only = segment_shard(
        select_shard(rows, 0, 1, "mix"), demo_corpus / "urmp", tmp_path / "mix", SegmentConfig()
    )
    every = segment_shard(
        select_shard(rows, 0, 1, "all"),
        demo_corpus / "urmp",
        tmp_path / "all",
        SegmentConfig(dtype="float16", tail="drop"),
    )
    assert mix_only["files"] == 3 and every["files"] == 10
    assert np.load(tmp_path / "all" / "audio_16k.npy").dtype == np.float16
    manifest = pq.read_table(tmp_path / "all" / "manifest.parquet").to_pylist()
    assert not any(m["padded"] for m in manifest)
    assert {m["path"].split("/")[1][:5] for m in manifest} == {"AuMix", "AuSep"}


def test_empty_shard_gives_zero_row_outputs(tmp_path):
    sources = _write_sources([], tmp_path / "empty.parquet")
    (tmp_path / "raw").mkdir()
    result = _segment_cli(sources, tmp_path / "raw", tmp_path / "out" / "shard", "--seconds", "4")
    assert result.returncode == 0, result.stderr
    assert np.load(tmp_path / "out" / "shard" / "audio_48k.npy").shape == (0, 192000)
    assert np.load(tmp_path / "out" / "shard" / "audio_16k.npy").shape == (0, 64000)
    assert pq.read_table(tmp_path / "out" / "shard" / "manifest.parquet").num_rows == 0
    assert _read_skipped(tmp_path / "out" / "shard" / "skipped.csv") == []


def test_cli_refuses_output_inside_raw_root(demo_corpus, demo_sources):
    result = _segment_cli(
        demo_sources / "fsd50k.parquet", demo_corpus / "fsd50k", demo_corpus / "fsd50k" / "seg"
    )
    assert result.returncode == 2 and "read only" in result.stderr
    assert not (demo_corpus / "fsd50k" / "seg").exists()


def test_failure_mid_shard_leaves_no_output(demo_corpus, demo_sources, tmp_path, monkeypatch):
    rows = pq.read_table(demo_sources / "maestro.parquet").to_pylist()
    calls = []

    def explode_on_second(root, row, cfg):
        calls.append(row)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(root, row, cfg)

    real = segmenting.segment_file
    monkeypatch.setattr(segmenting, "segment_file", explode_on_second)
    with pytest.raises(KeyboardInterrupt):
        segment_shard(rows, demo_corpus / "maestro", tmp_path / "shard", SegmentConfig())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad inputs


def test_bad_corpus_each_file_processed_or_skipped_with_reason(tmp_path):
    raw = tmp_path / "raw"
    expectations = write_bad_corpus(raw)
    before = tree_digest(raw)
    manifest, skipped, audits = [], [], {}
    for kind in ("fsd50k", "maestro", "urmp"):
        rows, audit_rows = index_sources(kind, raw / kind)
        audits.update({a["path"]: a["reason"] for a in audit_rows})
        if kind == "fsd50k":  # the user's code path once; in-process for the rest (faster)
            sources = _write_sources(rows, tmp_path / f"{kind}.parquet")
            result = _segment_cli(sources, raw / kind, tmp_path / "seg" / kind)
            assert result.returncode == 0, result.stderr
        else:
            segment_shard(
                select_shard(rows, 0, 1, "mix"),
                raw / kind,
                tmp_path / "seg" / kind,
                SegmentConfig(),
            )
        manifest += pq.read_table(tmp_path / "seg" / kind / "manifest.parquet").to_pylist()
        skipped += _read_skipped(tmp_path / "seg" / kind / "skipped.csv")
        if kind == "fsd50k":
            fsd = np.load(tmp_path / "seg" / kind / "audio_48k.npy")
            fsd_manifest = list(manifest)
    skip_reasons = {(s["path"], s["reason"]) for s in skipped}
    for exp in expectations:
        kept = [m for m in manifest if m["path"] == exp.path]
        if exp.outcome == "segments":
            assert len(kept) == exp.windows, exp
            assert all(
                m["rms_dbfs"]
                == pytest.approx(20 * math.log10(TONE_AMPLITUDE / math.sqrt(2)), abs=0.1)
                for m in kept
            )
        elif exp.outcome in ("missing file", "not a URMP piece folder"):
            assert audits[exp.path] == exp.outcome and not kept
        else:
            assert (exp.path, exp.outcome) in skip_reasons and not kept
    assert ("FSD50K.dev_audio/208.wav", "silent window") in skip_reasons
    # 96 kHz, 6 channels: downmixed and resampled to the exact 1 kHz tone at 48 kHz
    row = next(m["row"] for m in fsd_manifest if m["path"] == "FSD50K.dev_audio/206.wav")
    t = np.arange(480000) / 48000
    np.testing.assert_allclose(
        fsd[row, 1000:-1000],
        TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)[1000:-1000],
        atol=2e-3,
    )
    assert tree_digest(raw) == before
