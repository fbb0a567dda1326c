"""Benchmark prompt sets (MusicCaps, Song Describer) in their published layouts, with paired
reference clips: subsets, seeded samples, the crop rules, and missing/corrupt audio as a
recorded skip that is counted in run_config.json and shown in the run report."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.data.audio_io import read_audio
from rcmg.generation.benchmark_prompts import (
    MUSICCAPS_COLUMNS,
    BenchmarkError,
    import_benchmark,
    read_benchmark,
)
from rcmg.generation.prompts import paired_reference_summary, read_prompt_file

REPO = Path(__file__).resolve().parents[3]
SR = 8000
SD_COLUMNS = (
    "caption_id,track_id,caption,is_valid_subset,familiarity,artist_id,album_id,path,"
    "duration,genre,instrument,mood/theme"
).split(",")


def _tone(seconds: float, sr: int = SR, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t) * (1 + t / seconds)).astype(
        np.float32
    )  # ramps: crops differ


def _write_csv(path: Path, columns, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def musiccaps(tmp_path_factory):
    """musiccaps-public.csv + audio/{ytid}.wav: pre-cut, whole video, missing, corrupt, short."""
    root = tmp_path_factory.mktemp("musiccaps")
    audio = root / "audio"
    audio.mkdir()
    spec = [  # ytid, start, end, balanced, eval, audio seconds (None: no file, -1: corrupt)
        ("aaa", 30, 40, True, False, 10.0),
        ("bbb", 5, 15, False, True, 20.0),
        ("ccc", 0, 10, False, True, None),
        ("ddd", 0, 10, True, True, -1),
        ("eee", 20, 30, False, True, 3.0),
        ("fff", 0, 10, False, False, None),
    ]
    rows = []
    for ytid, start, end, balanced, evaluation, seconds in spec:
        caption = f"The {ytid} recording:\ta piano\nplays softly."
        if ytid == "fff":
            caption = "# hash-led caption"
        rows.append(
            {
                "ytid": ytid,
                "start_s": start,
                "end_s": end,
                "audioset_positive_labels": "/m/05r5c",
                "aspect_list": "['piano']",
                "caption": caption,
                "author_id": 1,
                "is_balanced_subset": balanced,
                "is_audioset_eval": evaluation,
            }
        )
        if seconds == -1:
            (audio / f"{ytid}.wav").write_bytes(b"RIFF\x00\x00not a wav at all")
        elif seconds is not None:
            sf.write(audio / f"{ytid}.wav", _tone(seconds), SR, subtype="FLOAT")
    return _write_csv(root / "musiccaps-public.csv", MUSICCAPS_COLUMNS, rows), audio


@pytest.fixture(scope="module")
def song_describer(tmp_path_factory):
    """song_describer.csv + audio/NN/{track}.2min.mp3 (the published layout)."""
    root = tmp_path_factory.mktemp("sdd")
    (root / "audio" / "00").mkdir(parents=True)
    sf.write(root / "audio" / "00" / "18500.2min.mp3", _tone(12.0, 16000), 16000, format="MP3")
    sf.write(root / "audio" / "00" / "33300.2min.mp3", _tone(2.0, 16000), 16000, format="MP3")
    base = {"familiarity": 0, "artist_id": 1, "album_id": 2, "duration": 120, "genre": "['pop']"}
    base |= {"instrument": "['piano']", "mood/theme": "['calm']"}
    rows = [
        {**base, "caption_id": 1, "track_id": 18500, "caption": "calm piano", "is_valid_subset": True, "path": "00/18500.2min.mp3"},
        {**base, "caption_id": 2, "track_id": 18500, "caption": "a soft piano tune", "is_valid_subset": False, "path": "00/18500.2min.mp3"},
        {**base, "caption_id": 3, "track_id": 12301, "caption": "guitar and drums", "is_valid_subset": True, "path": ""},
        {**base, "caption_id": 4, "track_id": 33300, "caption": "a short jingle", "is_valid_subset": True, "path": "00/33300.2min.mp3"},
    ]  # fmt: skip
    return _write_csv(root / "song_describer.csv", SD_COLUMNS, rows), root / "audio"


def _summary_reasons(summary):
    return {r["key"]: r["reference"] for r in summary["items"]}


def test_musiccaps_subset_crops_and_records_every_missing_clip(musiccaps, tmp_path):
    csv_path, audio = musiccaps
    out = tmp_path / "mc.tsv"
    summary = import_benchmark("musiccaps", csv_path, out, audio, subset="audioset_eval")
    assert summary["n_prompts"] == 4 and summary["n_reference_found"] == 1
    reasons = _summary_reasons(summary)
    assert reasons["bbb"].startswith("audio:")
    assert "no file" in reasons["ccc"] and "unreadable" in reasons["ddd"]
    assert "neither the 10-s excerpt" in reasons["eee"]
    # the whole 20-s "video" is cut at start_s..end_s = 5..15 s
    clip, sr = sf.read(out.parent / reasons["bbb"].removeprefix("audio:"), dtype="float32")
    source, _ = read_audio(audio / "bbb.wav")
    assert sr == SR and np.array_equal(clip, source[5 * SR : 15 * SR])
    prompts = read_prompt_file(out)
    assert [it.prompt for it in prompts.items][0] == "The bbb recording: a piano plays softly."
    assert prompts.items[0].reference["status"] == "found"
    assert Path(prompts.items[0].reference["path"]).is_file()
    assert prompts.items[1].reference == {"status": "missing", "reason": reasons["ccc"][8:]}
    assert paired_reference_summary(prompts) == {"n_prompts": 4, "n_found": 1}
    assert json.loads(out.with_suffix(".json").read_text())["n_reference_found"] == 1


def test_musiccaps_precut_excerpt_balanced_subset_and_seeded_sample(musiccaps, tmp_path):
    csv_path, audio = musiccaps
    summary = import_benchmark("musiccaps", csv_path, tmp_path / "b.tsv", audio, subset="balanced")
    assert [r["key"] for r in summary["items"]] == ["aaa", "ddd"]
    clip, _ = sf.read(tmp_path / summary["items"][0]["clip"], dtype="float32")
    assert np.array_equal(clip, read_audio(audio / "aaa.wav")[0])  # already the 10-s excerpt
    every = read_benchmark("musiccaps", csv_path)
    assert [p.key for p in every] == ["aaa", "bbb", "ccc", "ddd", "eee", "fff"]
    assert every[-1].caption == "hash-led caption"  # never read back as a comment line
    a = read_benchmark("musiccaps", csv_path, max_count=3, seed=5)
    assert a == read_benchmark("musiccaps", csv_path, max_count=3, seed=5) and len(a) == 3
    assert [p.key for p in a] == sorted(p.key for p in a)  # file order kept
    samples = {
        tuple(p.key for p in read_benchmark("musiccaps", csv_path, max_count=3, seed=s))
        for s in range(8)
    }
    assert len(samples) > 1
    none = import_benchmark("musiccaps", csv_path, tmp_path / "n.tsv", None)
    assert none["n_reference_found"] == 0 and all(
        "no audio folder" in r["reference"] for r in none["items"]
    )


def test_song_describer_valid_subset_centred_crop_and_published_audio_layout(
    song_describer, tmp_path
):
    csv_path, audio = song_describer
    out = tmp_path / "sd.tsv"
    summary = import_benchmark("song_describer", csv_path, out, audio, subset="valid", seconds=4.0)
    assert [r["key"] for r in summary["items"]] == ["1", "3", "4"]
    assert summary["n_reference_found"] == 1
    reasons = _summary_reasons(summary)
    assert (
        "01/12301.2min.mp3" in reasons["3"]
    )  # no `path`: audio/{track % 100:02d}/{track}.2min.mp3
    assert "shorter than the 4-s crop" in reasons["4"]
    source, sr = read_audio(audio / "00" / "18500.2min.mp3")
    clip, clip_sr = sf.read(out.parent / summary["items"][0]["clip"], dtype="float32")
    start = int(round((len(source) / sr - 4.0) / 2 * sr))
    assert clip_sr == sr and np.array_equal(clip, source[start : start + 4 * sr])
    assert paired_reference_summary(read_prompt_file(out)) == {"n_prompts": 3, "n_found": 1}


def test_unpublished_columns_and_subsets_are_refused_naming_the_fix(musiccaps, tmp_path):
    bad = _write_csv(tmp_path / "bad.csv", ["ytid", "caption"], [{"ytid": "a", "caption": "x"}])
    with pytest.raises(BenchmarkError, match="missing column"):
        read_benchmark("musiccaps", bad)
    with pytest.raises(BenchmarkError, match="unknown subset"):
        read_benchmark("song_describer", musiccaps[0], subset="balanced")
    proc = subprocess.run(
        [sys.executable, "workflow_scripts/import_prompts.py", "--benchmark", "musiccaps",
         "--csv", str(bad), "--out", str(tmp_path / "o.tsv")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2 and "missing column" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_generated_rows_carry_the_reference_clip_and_the_report_counts_it(musiccaps, tmp_path):
    """items.jsonl ``reference_clip`` per item; run_config ``paired_reference``; the report
    line "paired reference audio: 1 of 4 prompts"."""
    from rcmg.generation.job import GenerateConfig, ItemPlan
    from rcmg.generation.provenance import item_rows

    from tests.unit import fake_runs

    csv_path, audio = musiccaps
    out = tmp_path / "mc.tsv"
    import_benchmark("musiccaps", csv_path, out, audio, subset="audioset_eval")
    prompts = read_prompt_file(out)
    cfg = GenerateConfig("m", "m", "audioldm2", "prompt", "prompt", str(out), str(tmp_path / "r"))
    plans = [ItemPlan(source=it, prompt_used=it.prompt) for it in prompts.items]
    rows = item_rows(cfg, plans, {})
    assert [r["reference_clip"]["status"] for r in rows] == [
        "found",
        "missing",
        "missing",
        "missing",
    ]
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    config = json.loads((run_dir / "run_config.json").read_text())
    config["paired_reference"] = paired_reference_summary(prompts)
    (run_dir / "run_config.json").write_text(json.dumps(config))
    fake_runs.evaluate_with_fake_embedder(
        run_dir, fake_runs.write_fake_reference(tmp_path / "ref.npz")
    )
    html = (run_dir / "report.html").read_text()
    assert "paired reference audio: 1 of 4 prompts" in html
