"""Write a corpus of bad inputs in the published layouts, with the outcome each should get.

Used by the source-index and segmenter tests: every file here must be either
processed correctly or recorded with the expected reason, and the folder must be
left byte-for-byte unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rcmg.data.sources import MAESTRO_COLUMNS, MAESTRO_CSV
from rcmg.standins.demo_corpus import AudioFormat, write_wav

TONE_HZ = 1000.0
TONE_AMPLITUDE = 0.5
NON_UTF8_FOLDER = b"05_Caf\xe9_vn_vc"


@dataclass(frozen=True)
class Expectation:
    """``outcome`` is 'segments' (with ``windows`` kept) or a skip/audit reason."""

    dataset: str
    path: str
    outcome: str
    windows: int = 0


def tone(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    mono = TONE_AMPLITUDE * np.sin(2.0 * np.pi * TONE_HZ * t)
    return np.repeat(mono[:, None], channels, axis=1)


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict], header: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if header:
            writer.writeheader()
        writer.writerows(rows)


def _truncated_wav(path: Path) -> None:
    write_wav(path, tone(4.0, 16000), AudioFormat(16000, 1, "PCM_16"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _nan_wav(path: Path) -> None:
    write_wav(path, tone(2.0, 16000), AudioFormat(16000, 1, "FLOAT"))
    data = bytearray(path.read_bytes())
    nan = np.full(2 * 16000, np.nan, dtype="<f4").tobytes()
    data[-len(nan) :] = nan
    path.write_bytes(bytes(data))


def _half_silent(path: Path) -> None:
    audio = np.concatenate([tone(10.0, 44100), np.zeros((441000, 1))])
    write_wav(path, audio, AudioFormat(44100, 1, "PCM_16"))


def _write_fsd50k(root: Path) -> list[Expectation]:
    dev = root / "FSD50K.dev_audio"
    dev.mkdir(parents=True)
    (root / "FSD50K.eval_audio").mkdir()
    write_wav(dev / "201.wav", tone(3.0, 44100), AudioFormat(44100, 1, "PCM_16"))
    _truncated_wav(dev / "202.wav")
    (dev / "203.wav").write_bytes(b"")
    _nan_wav(dev / "204.wav")
    write_wav(dev / "205.wav", tone(12.0, 8000), AudioFormat(8000, 1, "PCM_U8"))
    write_wav(dev / "206.wav", tone(10.0, 96000, channels=6), AudioFormat(96000, 6, "PCM_24"))
    _half_silent(dev / "208.wav")
    write_wav(
        root / "FSD50K.eval_audio" / "301.wav", tone(1.5, 22050), AudioFormat(22050, 1, "FLOAT")
    )
    dev_rows = [
        {"fname": fname, "labels": "Bell", "mids": "/m/0395lw", "split": "train"}
        for fname in ("201", "202", "203", "204", "205", "206", "207", "208")
    ]
    _write_csv(
        root / "FSD50K.ground_truth" / "dev.csv", ("fname", "labels", "mids", "split"), dev_rows
    )
    eval_rows = [{"fname": "301", "labels": "Bell", "mids": "/m/0395lw"}]
    _write_csv(root / "FSD50K.ground_truth" / "eval.csv", ("fname", "labels", "mids"), eval_rows)
    vocab = [{"index": "0", "label": "Bell", "mid": "/m/0395lw"}]
    _write_csv(
        root / "FSD50K.ground_truth" / "vocabulary.csv",
        ("index", "label", "mid"),
        vocab,
        header=False,
    )
    return [
        Expectation("fsd50k", "FSD50K.dev_audio/201.wav", "segments", 1),
        Expectation("fsd50k", "FSD50K.dev_audio/202.wav", "truncated"),
        Expectation("fsd50k", "FSD50K.dev_audio/203.wav", "unreadable"),
        Expectation("fsd50k", "FSD50K.dev_audio/204.wav", "non-finite samples"),
        Expectation("fsd50k", "FSD50K.dev_audio/205.wav", "segments", 2),
        Expectation("fsd50k", "FSD50K.dev_audio/206.wav", "segments", 1),
        Expectation("fsd50k", "FSD50K.dev_audio/207.wav", "missing file"),
        Expectation("fsd50k", "FSD50K.dev_audio/208.wav", "segments", 1),
        Expectation("fsd50k", "FSD50K.eval_audio/301.wav", "segments", 1),
    ]


def _write_maestro(root: Path) -> list[Expectation]:
    write_wav(root / "2011" / "good.wav", tone(10.0, 48000, 2), AudioFormat(48000, 2, "PCM_16"))
    rows = [
        {
            "canonical_composer": "Erik Satie",
            "canonical_title": "Gymnopédie No. 1",
            "split": "train",
            "year": "2011",
            "midi_filename": f"2011/{name}.midi",
            "audio_filename": f"2011/{name}.wav",
            "duration": "10.0",
        }
        for name in ("good", "gone")
    ]
    _write_csv(root / MAESTRO_CSV, MAESTRO_COLUMNS, rows)
    return [
        Expectation("maestro", "2011/good.wav", "segments", 1),
        Expectation("maestro", "2011/gone.wav", "missing file"),
    ]


def _write_urmp(root: Path) -> list[Expectation]:
    folder = root / os.fsdecode(NON_UTF8_FOLDER)
    name = os.fsdecode(NON_UTF8_FOLDER)
    title = name.split("_")[1]
    fmt = AudioFormat(48000, 1, "PCM_24")
    write_wav(folder / f"AuMix_{name}.wav", tone(10.0, 48000), fmt)
    write_wav(folder / f"AuSep_1_vn_05_{title}.wav", tone(10.0, 48000), fmt)
    (root / "Supplementary_Files").mkdir(parents=True)
    shown = NON_UTF8_FOLDER.decode("utf-8", errors="backslashreplace")
    shown_title = shown.split("_")[1]
    return [
        Expectation("urmp", f"{shown}/AuMix_{shown}.wav", "segments", 1),
        Expectation("urmp", f"{shown}/AuSep_2_vc_05_{shown_title}.wav", "missing file"),
        Expectation("urmp", "Supplementary_Files", "not a URMP piece folder"),
    ]


def write_bad_corpus(root: Path) -> list[Expectation]:
    """Write ``root/{fsd50k,maestro,urmp}`` full of bad inputs; returns what each should become."""
    root = Path(root)
    return (
        _write_fsd50k(root / "fsd50k")
        + _write_maestro(root / "maestro")
        + _write_urmp(root / "urmp")
    )


def tree_digest(root: Path) -> dict[bytes, str]:
    """SHA-256 of every file under ``root`` keyed by its raw relative path (to prove it is untouched)."""
    digests = {}
    for dirpath, _dirs, files in os.walk(os.fsencode(root)):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                digests[os.path.relpath(full, os.fsencode(root))] = hashlib.sha256(
                    fh.read()
                ).hexdigest()
    return digests
