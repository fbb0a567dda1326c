"""The synthetic demo corpus: real layouts and columns, varied formats, determinism."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.data.audio_io import read_audio
from rcmg.data.sources import FSD_CLIPS_INFO_FIELDS, MAESTRO_COLUMNS, URMP_INSTRUMENTS
from rcmg.standins.demo_corpus import (
    FSD_EVENT_LABELS,
    FSD_LICENSES,
    URMP_IRREGULAR_PIECE,
    band_noise,
    fsd_clips,
    urmp_folder_name,
    write_demo_variant,
)

REPO = Path(__file__).resolve().parents[3]


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _all_wavs(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


def test_maestro_csv_has_published_columns_and_matching_files(demo_corpus):
    root = demo_corpus / "maestro"
    with open(root / "maestro-v3.0.0.csv", encoding="utf-8") as fh:
        header = fh.readline().strip().split(",")
    assert tuple(header) == MAESTRO_COLUMNS
    rows = _read_csv(root / "maestro-v3.0.0.csv")
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    for row in rows:
        year, name = row["audio_filename"].split("/")
        assert year == row["year"] and name.startswith("MIDI-Unprocessed_")
        info = sf.info(root / row["audio_filename"])
        assert info.duration == pytest.approx(float(row["duration"]), abs=1e-6)
        assert info.channels == 2
    columns = json.loads((root / "maestro-v3.0.0.json").read_text(encoding="utf-8"))
    assert set(columns) == set(MAESTRO_COLUMNS)
    assert len(columns["audio_filename"]) == len(rows)


def test_urmp_pieces_use_published_naming(demo_corpus):
    root = demo_corpus / "urmp"
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert folders
    for folder in folders:
        number, title, *instruments = folder.name.split("_")
        assert number.isdigit() and len(number) == 2
        assert all(code in URMP_INSTRUMENTS for code in instruments)
        mix = folder / f"AuMix_{folder.name}.wav"
        stems = [
            folder / f"AuSep_{k}_{code}_{number}_{title}.wav"
            for k, code in enumerate(instruments, 1)
        ]
        assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in [mix, *stems])
        mix_audio, _ = read_audio(mix)
        stem_sum = np.mean([read_audio(s)[0] for s in stems], axis=0)
        np.testing.assert_allclose(mix_audio, stem_sum, atol=1e-4)  # PCM_24 rounding


def test_fsd50k_ground_truth_matches_published_format(demo_corpus):
    truth = demo_corpus / "fsd50k" / "FSD50K.ground_truth"
    dev, evaluation = _read_csv(truth / "dev.csv"), _read_csv(truth / "eval.csv")
    assert list(dev[0]) == ["fname", "labels", "mids", "split"]
    assert list(evaluation[0]) == ["fname", "labels", "mids"]
    assert {r["split"] for r in dev} == {"train", "val"}
    with open(truth / "vocabulary.csv", newline="", encoding="utf-8") as fh:
        vocabulary = list(csv.reader(fh))
    assert vocabulary[0][0] == "0"  # no header row, like the published file
    known = {label: mid for _index, label, mid in vocabulary}
    for row, folder in [(r, "FSD50K.dev_audio") for r in dev] + [
        (r, "FSD50K.eval_audio") for r in evaluation
    ]:
        labels, mids = row["labels"].split(","), row["mids"].split(",")
        assert [known[label] for label in labels] == mids
        assert (demo_corpus / "fsd50k" / folder / f"{row['fname']}.wav").is_file()


def test_formats_vary_like_the_real_sets(demo_corpus):
    infos = [sf.info(p) for p in _all_wavs(demo_corpus)]
    assert {i.samplerate for i in infos} >= {44100, 48000, 22050, 16000}
    assert {i.channels for i in infos} == {1, 2}
    assert {i.subtype for i in infos} >= {"PCM_16", "PCM_24", "FLOAT"}
    fsd = [sf.info(p).duration for p in _all_wavs(demo_corpus / "fsd50k")]
    assert min(fsd) == pytest.approx(0.5) and max(fsd) == pytest.approx(30.0)
    total_minutes = sum(i.duration for i in infos) / 60
    assert 3 <= total_minutes <= 15


def _spectral_centroid(path: Path) -> float:
    x, sr = read_audio(path)
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(np.sum(np.fft.rfftfreq(x.size, 1 / sr) * power) / np.sum(power))


def test_event_audio_roughly_matches_its_tag(demo_corpus):
    centroids: dict[str, list[float]] = {}
    for clip in fsd_clips():
        folder = "FSD50K.eval_audio" if clip.split == "eval" else "FSD50K.dev_audio"
        path = demo_corpus / "fsd50k" / folder / f"{clip.fname}.wav"
        centroids.setdefault(clip.event, []).append(_spectral_centroid(path))
    assert set(centroids) == set(FSD_EVENT_LABELS)
    assert max(centroids["Wind"]) < 600 < min(centroids["Bird"]) and min(centroids["Bird"]) > 2500
    assert min(centroids["Rain"]) > 1500 > max(centroids["Drum"])


def test_band_noise_is_band_limited():
    x = band_noise(np.random.default_rng(0), 48000, 48000, 1000.0, 2000.0)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / 48000)
    assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0)
    assert power[(freqs < 1000) | (freqs > 2000)].sum() < 1e-9 * power.sum()


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_cli_writes_identical_bytes_for_the_same_seed(demo_corpus, tmp_path):
    out = tmp_path / "corpus"
    cmd = [
        sys.executable,
        str(REPO / "workflow_scripts" / "demo_dataset.py"),
        "--out",
        str(out),
        "--seed",
        "0",
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == ["fsd50k", "maestro", "urmp"]
    assert _digest(out) == _digest(demo_corpus)
    assert not list(tmp_path.glob(".*partdir"))


def test_other_seed_and_scale_change_the_audio(tmp_path):
    from rcmg.standins.demo_corpus import write_demo_corpus

    write_demo_corpus(tmp_path / "a", seed=1, seconds_scale=0.1)
    write_demo_corpus(tmp_path / "b", seed=2, seconds_scale=0.1)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a if k.endswith(".wav")) == sum(k.endswith(".wav") for k in a)
    durations = [sf.info(p).duration for p in _all_wavs(tmp_path / "a" / "maestro")]
    assert max(durations) == pytest.approx(3.1)


def test_fsd50k_clips_info_carries_freesound_fields(demo_corpus):
    root = demo_corpus / "fsd50k"
    licences, uploaders = set(), set()
    for part in ("dev", "eval"):
        info = json.loads(
            (root / "FSD50K.metadata" / f"{part}_clips_info_FSD50K.json").read_text("utf-8")
        )
        listed = {r["fname"] for r in _read_csv(root / "FSD50K.ground_truth" / f"{part}.csv")}
        assert set(info) == listed
        for entry in info.values():
            assert tuple(entry) == FSD_CLIPS_INFO_FIELDS
            assert entry["title"] and entry["description"] and entry["uploader"]
            assert entry["tags"] and all(isinstance(t, str) for t in entry["tags"])
            assert entry["license"].startswith("http://creativecommons.org/")
            licences.add(entry["license"])
            uploaders.add(entry["uploader"])
    assert licences == set(FSD_LICENSES) and len(uploaders) >= 3


def test_maestro_v2_variant_has_record_json_and_the_same_audio(demo_corpus, tmp_path):
    root = write_demo_variant("maestro_v2", tmp_path / "m2")
    records = json.loads((root / "maestro-v2.0.0.json").read_text("utf-8"))
    assert isinstance(records, list) and all(tuple(r) == MAESTRO_COLUMNS for r in records)
    assert records == [
        {**r, "year": int(r["year"]), "duration": float(r["duration"])}
        for r in _read_csv(root / "maestro-v2.0.0.csv")
    ]
    assert not list(root.glob("maestro-v3*"))
    wavs = {k: v for k, v in _digest(root).items() if k.endswith(".wav")}
    assert wavs == {k: v for k, v in _digest(demo_corpus / "maestro").items() if k.endswith(".wav")}


def test_urmp_download_variant_has_dataset_folder_and_an_irregular_stem(demo_corpus, tmp_path):
    root = write_demo_variant("urmp_download", tmp_path / "ud")
    assert [p.name for p in root.iterdir()] == ["Dataset"]
    flat = _digest(demo_corpus / "urmp")
    nested = _digest(root / "Dataset")
    assert {k: nested[k] for k in flat} == flat
    folder = root / "Dataset" / urmp_folder_name(URMP_IRREGULAR_PIECE)
    assert folder.name == "30_Fanfare_tpt_tpt_tbn"
    assert sorted(p.name for p in folder.iterdir()) == [
        "AuMix_30_Fanfare_tpt_tpt_tbn.wav",
        "AuSep_1_tpt_30_Fanfare.wav",
        "AuSep_2_tpt_30_Fanfare.wav",
        "AuSep_3_tpt_30_Fanfare.wav",
    ]
