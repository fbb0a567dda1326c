"""A deterministic synthetic corpus in the published MAESTRO v3, URMP and FSD50K layouts.

The audio is synthesised (piano-like decaying notes, string/wind melodies, tagged
sound events) so the whole pipeline can be exercised offline. File formats vary the
way the real sets do (44.1/48/22.05/16 kHz, mono/stereo, PCM_16/PCM_24/FLOAT), and
the same seed always gives the same bytes. FSD50K carries its Freesound clip metadata
(``FSD50K.metadata/{dev,eval}_clips_info_FSD50K.json``: title, description, tags,
Creative Commons licence URL, uploader).

Layout variants users also have (``write_demo_variant``, not part of the default demo):
``maestro_v2`` (the same recordings with ``maestro-v2.0.0.{csv,json}``, the JSON a list
of records) and ``urmp_download`` (the URMP download folder: pieces under ``Dataset/``,
plus a piece whose third stem's file name says trumpet where the folder says trombone).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.data.sources import (
    FSD_CLIPS_INFO,
    FSD_DEV_AUDIO,
    FSD_EVAL_AUDIO,
    FSD_GROUND_TRUTH,
    FSD_METADATA,
    MAESTRO_COLUMNS,
    URMP_DOWNLOAD_FOLDER,
)
from rcmg.workflow.kinds import DATASET_KINDS

# FSD50K labels (AudioSet ontology names and ids); each event carries its ancestors.
FSD_VOCABULARY = (
    ("Animal", "/m/0jbk"),
    ("Bell", "/m/0395lw"),
    ("Bird", "/m/015p6"),
    ("Drum", "/m/026t6"),
    ("Guitar", "/m/0342h"),
    ("Human_voice", "/m/09l8g"),
    ("Music", "/m/04rlf"),
    ("Musical_instrument", "/m/04szw"),
    ("Percussion", "/m/0l14md"),
    ("Plucked_string_instrument", "/m/0fx80y"),
    ("Rain", "/m/06mb1"),
    ("Speech", "/m/09x0r"),
    ("Water", "/m/0838f"),
    ("Wind", "/m/03m9d0z"),
)
FSD_EVENT_LABELS = {
    "Rain": ("Rain", "Water"),
    "Drum": ("Drum", "Percussion", "Musical_instrument", "Music"),
    "Bell": ("Bell", "Musical_instrument", "Music"),
    "Guitar": ("Guitar", "Plucked_string_instrument", "Musical_instrument", "Music"),
    "Wind": ("Wind",),
    "Speech": ("Speech", "Human_voice"),
    "Water": ("Water",),
    "Bird": ("Bird", "Animal"),
}


@dataclass(frozen=True)
class AudioFormat:
    sample_rate: int
    channels: int
    subtype: str


@dataclass(frozen=True)
class MaestroPiece:
    composer: str
    title: str
    split: str
    year: int
    stem: str
    seconds: float
    fmt: AudioFormat


@dataclass(frozen=True)
class UrmpPiece:
    number: int
    title: str
    instruments: tuple[str, ...]  # as the folder name lists them
    seconds: float
    file_instruments: tuple[str, ...] | None = None  # as the AuSep file names say, if different

    @property
    def stem_instruments(self) -> tuple[str, ...]:
        return self.file_instruments or self.instruments


@dataclass(frozen=True)
class FsdClip:
    fname: int
    event: str
    split: str  # train | val | eval
    seconds: float
    fmt: AudioFormat


MAESTRO_PIECES = (
    MaestroPiece(
        "Frédéric Chopin",
        'Ballade No. 1 in G Minor, Op. 23 "Ballade"',
        "train",
        2004,
        "MIDI-Unprocessed_XP_14_R1_2004_01-03_ORIG_MID--AUDIO_14_R1_2004_03_Track03_wav",
        24.0,
        AudioFormat(44100, 2, "PCM_16"),
    ),
    MaestroPiece(
        "Johann Sebastian Bach",
        "Prelude and Fugue in C Major, WTC I, BWV 846",
        "train",
        2006,
        "MIDI-Unprocessed_07_R1_2006_01-04_ORIG_MID--AUDIO_07_R1_2006_02_Track02_wav",
        31.0,
        AudioFormat(44100, 2, "PCM_16"),
    ),
    MaestroPiece(
        "Franz Schubert",
        "Sonata in A Minor, D. 784",
        "validation",
        2017,
        "MIDI-Unprocessed_066_PIANO066_MID--AUDIO-split_07-07-17_Piano-e_3-02_wav--3",
        18.0,
        AudioFormat(44100, 2, "PCM_16"),
    ),
    MaestroPiece(
        "Claude Debussy",
        "Estampes",
        "test",
        2018,
        "MIDI-Unprocessed_Chamber3_MID--AUDIO_10_R3_2018_wav--1",
        27.0,
        AudioFormat(48000, 2, "PCM_16"),
    ),
)

URMP_PIECES = (
    UrmpPiece(1, "Jupiter", ("vn", "vc"), 20.0),
    UrmpPiece(3, "Dance", ("fl", "cl"), 15.0),
    UrmpPiece(12, "Spring", ("vn", "vn", "vc"), 25.0),
)
URMP_FORMAT = AudioFormat(48000, 1, "PCM_24")
# The download variant's extra piece: part 3's file name says tpt, the folder says tbn.
URMP_IRREGULAR_PIECE = UrmpPiece(30, "Fanfare", ("tpt", "tpt", "tbn"), 6.0, ("tpt", "tpt", "tpt"))

# Freesound licences found in FSD50K's clips_info (Creative Commons deed URLs).
FSD_LICENSES = (
    "http://creativecommons.org/publicdomain/zero/1.0/",
    "http://creativecommons.org/licenses/by/3.0/",
    "http://creativecommons.org/licenses/by-nc/3.0/",
    "http://creativecommons.org/licenses/sampling+/1.0/",
)
FSD_UPLOADERS = ("rainmaker_field", "klangwerk", "dr_bells", "ana.sounds", "tapeloop77")

_FSD_FORMATS = (
    AudioFormat(44100, 1, "PCM_16"),
    AudioFormat(48000, 2, "PCM_24"),
    AudioFormat(22050, 1, "FLOAT"),
    AudioFormat(16000, 1, "PCM_16"),
    AudioFormat(44100, 2, "FLOAT"),
)
_FSD_EVENTS = tuple(FSD_EVENT_LABELS)
_FSD_SECONDS = (0.5, 2.0, 30.0, 4.5, 12.0, 1.0, 7.5, 3.0, 10.0, 6.0, 0.8, 15.0, 2.5, 9.0, 5.0, 1.5)
_FSD_SPLITS = ("train",) * 9 + ("val",) * 3 + ("eval",) * 4


def fsd_clips() -> tuple[FsdClip, ...]:
    """The demo FSD50K clips: every event at least twice, lengths 0.5 s to 30 s."""
    return tuple(
        FsdClip(
            fname=100_000 + 37 * i,
            event=_FSD_EVENTS[i % len(_FSD_EVENTS)],
            split=_FSD_SPLITS[i],
            seconds=seconds,
            fmt=_FSD_FORMATS[i % len(_FSD_FORMATS)],
        )
        for i, seconds in enumerate(_FSD_SECONDS)
    )


# ---------------------------------------------------------------- signal synthesis


def _midi_hz(note: np.ndarray | float) -> np.ndarray | float:
    return 440.0 * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def _time(seconds: float, sr: int) -> np.ndarray:
    return np.arange(max(1, round(seconds * sr)), dtype=np.float64) / sr


def band_noise(rng: np.random.Generator, n: int, sr: int, lo_hz: float, hi_hz: float) -> np.ndarray:
    """White noise band-limited to [lo_hz, hi_hz] in the FFT domain, unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[(freqs < lo_hz) | (freqs > hi_hz)] = 0.0
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def _add_note(out: np.ndarray, start: int, note: np.ndarray) -> None:
    end = min(out.shape[0], start + note.shape[0])
    if end > start:
        out[start:end] += note[: end - start]


def _harmonic_sum(phase: np.ndarray, partials: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_k weights[k] * sin(partials[k] * phase), for integer partials via complex powers."""
    if np.allclose(partials, np.round(partials)):
        base = np.exp(1j * phase)
        power = np.ones_like(base)
        out = np.zeros(phase.shape)
        previous = 0
        for partial, weight in zip(partials.astype(int), weights, strict=True):
            power = power * base ** (partial - previous)
            previous = partial
            out += weight * power.imag
        return out
    return np.sin(np.multiply.outer(phase, partials)) @ weights


class _ToneBank:
    """Cached undamped harmonic tones per (pitch, sample rate); notes only add an envelope."""

    def __init__(self, partials: np.ndarray, weights: np.ndarray, seconds: float) -> None:
        self.partials, self.weights, self.seconds = partials, weights, seconds
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def tone(self, note: int, sr: int) -> np.ndarray:
        key = (int(note), sr)
        if key not in self._cache:
            t = _time(self.seconds, sr)
            phase = 2.0 * np.pi * float(_midi_hz(note)) * t
            self._cache[key] = _harmonic_sum(phase, self.partials, self.weights)
        return self._cache[key]

    def note(self, note: int, sr: int, seconds: float, tau: float) -> np.ndarray:
        n = min(round(seconds * sr), round(self.seconds * sr))
        t = np.arange(n) / sr
        envelope = np.minimum(1.0, t / 0.004) * np.exp(-t / tau)
        return self.tone(note, sr)[:n] * envelope


def piano_bank() -> _ToneBank:
    """Six slightly stretched (inharmonic) partials, two seconds per cached tone."""
    harmonics = np.arange(1, 7, dtype=np.float64)
    return _ToneBank(harmonics * np.sqrt(1.0 + 0.0004 * harmonics**2), 1.0 / harmonics**1.5, 2.0)


def piano_like(
    rng: np.random.Generator, seconds: float, sr: int, bank: _ToneBank | None = None
) -> np.ndarray:
    """Decaying, slightly inharmonic notes on a scale, about three onsets per second."""
    out = np.zeros(max(1, round(seconds * sr)))
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    bank = bank or piano_bank()
    onset = 0.0
    while onset < seconds:
        note = 48 + 12 * rng.integers(0, 3) + scale[rng.integers(0, len(scale))]
        tone = bank.note(note, sr, seconds - onset, rng.uniform(0.3, 0.9))
        _add_note(out, round(onset * sr), rng.uniform(0.3, 0.8) * tone)
        onset += rng.choice([0.25, 0.33, 0.5])
    return out


def melody_like(rng: np.random.Generator, seconds: float, sr: int, family: str) -> np.ndarray:
    """Sustained notes with vibrato: strings (all harmonics) or winds (odd harmonics + breath)."""
    t = _time(seconds, sr)
    note_len = rng.uniform(0.4, 0.9)
    base = {"strings": 55, "winds": 67, "brass": 50}[family]
    notes = base + rng.integers(0, 12, size=int(np.ceil(seconds / note_len)) + 1)
    freq = np.asarray(_midi_hz(notes[(t / note_len).astype(int)]))
    freq = freq * (1.0 + 0.006 * np.sin(2.0 * np.pi * 5.5 * t))
    phase = 2.0 * np.pi * np.cumsum(freq) / sr
    harmonics = np.arange(1, 9) if family != "winds" else np.arange(1, 9, 2)
    signal = _harmonic_sum(phase, harmonics.astype(np.float64), 1.0 / harmonics)
    position = (t % note_len) / note_len
    envelope = np.minimum(1.0, position / 0.1) * np.minimum(1.0, (1.0 - position) / 0.1)
    signal = signal * envelope
    if family == "winds":
        signal = signal + 0.05 * band_noise(rng, t.size, sr, 1000.0, 6000.0)
    return 0.3 * signal / (np.max(np.abs(signal)) + 1e-12)


def _pulses(rng: np.random.Generator, n: int, sr: int, rate_hz: float, tau: float) -> np.ndarray:
    """Random decaying clicks: an impulse train convolved with an exponential."""
    train = np.zeros(n)
    count = max(1, int(rate_hz * n / sr))
    train[rng.integers(0, n, size=count)] = rng.uniform(0.3, 1.0, size=count)
    kernel = np.exp(-np.arange(int(tau * sr * 6) + 1) / (tau * sr))
    return np.fft.irfft(np.fft.rfft(train, 2 * n) * np.fft.rfft(kernel, 2 * n), 2 * n)[:n]


def _event_rain(rng, t, sr):
    hiss = 0.15 * band_noise(rng, t.size, sr, 2000.0, 9000.0)
    drops = _pulses(rng, t.size, sr, 40.0, 0.003) * band_noise(rng, t.size, sr, 1500.0, 5000.0)
    return hiss + 0.4 * drops


def _event_drum(rng, t, sr):
    beat = rng.uniform(0.4, 0.6)
    local = t % beat
    thump = np.sin(2.0 * np.pi * (60.0 + 80.0 * np.exp(-local / 0.03)) * local)
    return np.exp(-local / 0.12) * (0.8 * thump + 0.2 * band_noise(rng, t.size, sr, 100.0, 3000.0))


def _event_bell(rng, t, sr):
    partials = np.array([1.0, 2.76, 5.40, 8.93])
    freq = rng.uniform(400.0, 900.0)
    local = t % 3.0
    tones = _harmonic_sum(2.0 * np.pi * freq * local, partials, 1.0 / partials)
    return 0.5 * tones * np.exp(-local / 1.2)


def _event_guitar(rng, t, sr):
    out = np.zeros(t.size)
    harmonics = np.arange(1, 9, dtype=np.float64)
    bank = _ToneBank(harmonics, 1.0 / harmonics, 1.5)
    for onset in np.arange(0.0, t[-1] + 1e-9, 0.4):
        tone = bank.note(40 + int(rng.integers(0, 24)), sr, t[-1] - onset + 1.0 / sr, 0.35)
        _add_note(out, round(onset * sr), 0.4 * tone)
    return out


def _event_wind(rng, t, sr):
    gust = 0.6 + 0.4 * np.sin(2.0 * np.pi * rng.uniform(0.1, 0.3) * t)
    return 0.3 * gust * band_noise(rng, t.size, sr, 40.0, 500.0)


def _event_speech(rng, t, sr):
    f0 = rng.uniform(110.0, 180.0) + 30.0 * np.sin(2.0 * np.pi * rng.uniform(0.5, 1.0) * t)
    phase = 2.0 * np.pi * np.cumsum(f0) / sr
    harmonics = np.arange(1, 20, dtype=np.float64)
    formant = np.exp(-(((harmonics * 140.0) - rng.uniform(600.0, 800.0)) ** 2) / 4e5)
    voiced = _harmonic_sum(phase, harmonics, formant)
    syllables = np.clip(np.sin(2.0 * np.pi * rng.uniform(3.0, 5.0) * t), 0.0, None)
    return 0.5 * voiced * syllables


def _event_water(rng, t, sr):
    bubbles = _pulses(rng, t.size, sr, 15.0, 0.01) * np.sin(2.0 * np.pi * 900.0 * t)
    return 0.2 * band_noise(rng, t.size, sr, 200.0, 2500.0) + 0.5 * bubbles


def _event_bird(rng, t, sr):
    local = t % rng.uniform(0.5, 0.7)
    sweep = rng.uniform(2500.0, 3000.0) + 3000.0 * local / 0.15
    phase = 2.0 * np.pi * np.cumsum(np.where(local < 0.15, sweep, 0.0)) / sr
    return 0.5 * np.sin(phase) * (local < 0.15) * np.sin(np.pi * np.minimum(local / 0.15, 1.0))


_EVENT_SYNTHS = {
    "Rain": _event_rain,
    "Drum": _event_drum,
    "Bell": _event_bell,
    "Guitar": _event_guitar,
    "Wind": _event_wind,
    "Speech": _event_speech,
    "Water": _event_water,
    "Bird": _event_bird,
}


def sound_event(rng: np.random.Generator, event: str, seconds: float, sr: int) -> np.ndarray:
    """Audio that roughly matches an FSD50K tag (noise bands, clicks, tones)."""
    return _EVENT_SYNTHS[event](rng, _time(seconds, sr), sr)


def _to_channels(mono: np.ndarray, channels: int, rng: np.random.Generator) -> np.ndarray:
    if channels == 1:
        return mono[:, None]
    gains = 0.8 + 0.2 * rng.random(channels)
    return np.stack([mono * g for g in gains], axis=1)


# ---------------------------------------------------------------- file writers


def write_wav(path: Path, audio: np.ndarray, fmt: AudioFormat) -> None:
    """Write a WAV with no timestamped PEAK chunk, so the bytes are reproducible."""
    import soundfile as sf
    from soundfile import _ffi, _snd

    sfc_set_add_peak_chunk = 0x1050
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(audio, -1.0, 1.0).astype(np.float32)
    with sf.SoundFile(
        os.fsencode(path), "w", fmt.sample_rate, fmt.channels, subtype=fmt.subtype, format="WAV"
    ) as fh:
        _snd.sf_command(fh._file, sfc_set_add_peak_chunk, _ffi.NULL, 0)
        fh.write(data)


def _scaled(seconds: float, scale: float) -> float:
    return max(0.25, seconds * scale)


def _write_maestro(
    root: Path, rng: np.random.Generator, scale: float, version: str = "v3.0.0"
) -> None:
    rows = []
    bank = piano_bank()
    for piece in MAESTRO_PIECES:
        seconds = _scaled(piece.seconds, scale)
        audio_filename = f"{piece.year}/{piece.stem}.wav"
        mono = piano_like(rng, seconds, piece.fmt.sample_rate, bank)
        mono = 0.6 * mono / (np.max(np.abs(mono)) + 1e-12)
        audio = _to_channels(mono, piece.fmt.channels, rng)
        write_wav(root / audio_filename, audio, piece.fmt)
        rows.append(
            {
                "canonical_composer": piece.composer,
                "canonical_title": piece.title,
                "split": piece.split,
                "year": piece.year,
                "midi_filename": f"{piece.year}/{piece.stem}.midi",
                "audio_filename": audio_filename,
                "duration": audio.shape[0] / piece.fmt.sample_rate,
            }
        )
    with open(root / f"maestro-{version}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MAESTRO_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    if version.startswith("v3"):  # column-oriented: {column: {row_index: value}}
        data = {col: {str(i): row[col] for i, row in enumerate(rows)} for col in MAESTRO_COLUMNS}
    else:  # v1/v2: a list of records
        data = rows
    (root / f"maestro-{version}.json").write_text(
        json.dumps(data, ensure_ascii=False), encoding="utf-8"
    )


def _instrument_family(abbrev: str) -> str:
    if abbrev in ("vn", "va", "vc", "db"):
        return "strings"
    if abbrev in ("tpt", "hn", "tbn", "tba"):
        return "brass"
    return "winds"


def urmp_folder_name(piece: UrmpPiece) -> str:
    return f"{piece.number:02d}_{piece.title}_{'_'.join(piece.instruments)}"


def _write_urmp(
    root: Path, rng: np.random.Generator, scale: float, pieces: tuple[UrmpPiece, ...] = URMP_PIECES
) -> None:
    sr = URMP_FORMAT.sample_rate
    for piece in pieces:
        folder = urmp_folder_name(piece)
        seconds = _scaled(piece.seconds, scale)
        codes = piece.stem_instruments
        stems = [melody_like(rng, seconds, sr, _instrument_family(a)) for a in codes]
        for k, (abbrev, stem) in enumerate(zip(codes, stems, strict=True), start=1):
            name = f"AuSep_{k}_{abbrev}_{piece.number:02d}_{piece.title}.wav"
            write_wav(root / folder / name, stem[:, None], URMP_FORMAT)
        mix = np.sum(stems, axis=0) / len(stems)
        write_wav(root / folder / f"AuMix_{folder}.wav", mix[:, None], URMP_FORMAT)


def _fsd_row(clip: FsdClip) -> dict[str, str]:
    labels = FSD_EVENT_LABELS[clip.event]
    mids = dict(FSD_VOCABULARY)
    row = {
        "fname": str(clip.fname),
        "labels": ",".join(labels),
        "mids": ",".join(mids[label] for label in labels),
    }
    if clip.split != "eval":
        row["split"] = clip.split
    return row


_FSD_TITLES = {
    "Rain": ("rain on the skylight.wav", "Light rain, garden"),
    "Drum": ("floor tom hits 120bpm", "kick_loop_dry.wav"),
    "Bell": ("Church bell, distant", "handbell C5.aif"),
    "Guitar": ("nylon guitar arpeggio", "guitarras_12.wav"),
    "Wind": ("wind through pines", "Gusty wind, mic covered"),
    "Speech": ("counting in Spanish", "voice memo - hello"),
    "Water": ("stream bubbling close", "Dripping tap, kitchen"),
    "Bird": ("blackbird morning song", "sparrow chirps.wav"),
}


def fsd_clip_info(clip: FsdClip, index: int) -> dict:
    """The clip's Freesound metadata, as in ``*_clips_info_FSD50K.json``."""
    labels = FSD_EVENT_LABELS[clip.event]
    return {
        "title": _FSD_TITLES[clip.event][index // len(_FSD_EVENTS) % 2],
        "description": f"Synthetic {clip.event.lower()} recording ({clip.seconds:g} s), demo stand-in.",
        "tags": [label.lower().replace("_", "-") for label in labels] + ["field-recording"],
        "license": FSD_LICENSES[index % len(FSD_LICENSES)],
        "uploader": FSD_UPLOADERS[index % len(FSD_UPLOADERS)],
    }


def _write_fsd50k(root: Path, rng: np.random.Generator, scale: float) -> None:
    dev_rows, eval_rows = [], []
    clips_info: dict[str, dict[str, dict]] = {"dev": {}, "eval": {}}
    for index, clip in enumerate(fsd_clips()):
        part = "eval" if clip.split == "eval" else "dev"
        clips_info[part][str(clip.fname)] = fsd_clip_info(clip, index)
        seconds = _scaled(clip.seconds, scale)
        mono = sound_event(rng, clip.event, seconds, clip.fmt.sample_rate)
        mono = 0.5 * mono / (np.max(np.abs(mono)) + 1e-12)
        audio_dir = FSD_EVAL_AUDIO if clip.split == "eval" else FSD_DEV_AUDIO
        write_wav(
            root / audio_dir / f"{clip.fname}.wav",
            _to_channels(mono, clip.fmt.channels, rng),
            clip.fmt,
        )
        (eval_rows if clip.split == "eval" else dev_rows).append(_fsd_row(clip))
    truth = root / FSD_GROUND_TRUTH
    truth.mkdir(parents=True, exist_ok=True)
    _write_csv(truth / "dev.csv", ("fname", "labels", "mids", "split"), dev_rows)
    _write_csv(truth / "eval.csv", ("fname", "labels", "mids"), eval_rows)
    with open(truth / "vocabulary.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows((i, label, mid) for i, (label, mid) in enumerate(FSD_VOCABULARY))
    metadata = root / FSD_METADATA
    metadata.mkdir(parents=True, exist_ok=True)
    for part, info in clips_info.items():
        (metadata / FSD_CLIPS_INFO.format(part=part)).write_text(
            json.dumps(info, indent=4, ensure_ascii=False) + "\n", encoding="utf-8"
        )


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


DATASETS = DATASET_KINDS


def write_demo_dataset(name: str, out_dir: Path, seed: int = 0, seconds_scale: float = 1.0) -> Path:
    """Write one synthetic dataset (``maestro``, ``urmp`` or ``fsd50k``) into ``out_dir``.

    The bytes equal those ``write_demo_corpus`` writes under ``root/name``.
    """
    if seconds_scale <= 0:
        raise ValueError(f"seconds_scale must be > 0, got {seconds_scale}")
    if name not in DATASETS:
        raise ValueError(f"unknown demo dataset {name!r}; expected one of {', '.join(DATASETS)}")
    writer = {"maestro": _write_maestro, "urmp": _write_urmp, "fsd50k": _write_fsd50k}[name]
    writer(Path(out_dir), np.random.default_rng([seed, DATASETS.index(name)]), seconds_scale)
    return Path(out_dir)


VARIANTS = ("maestro_v2", "urmp_download")


def write_demo_variant(name: str, out_dir: Path, seed: int = 0, seconds_scale: float = 1.0) -> Path:
    """Write a layout variant of a demo dataset into ``out_dir`` (see the module docstring).

    ``maestro_v2``'s audio equals ``maestro``'s; ``urmp_download``'s first pieces equal
    ``urmp``'s (same bytes, under ``Dataset/``), then comes ``URMP_IRREGULAR_PIECE``.
    """
    if seconds_scale <= 0:
        raise ValueError(f"seconds_scale must be > 0, got {seconds_scale}")
    out_dir = Path(out_dir)
    if name == "maestro_v2":
        rng = np.random.default_rng([seed, DATASETS.index("maestro")])
        _write_maestro(out_dir, rng, seconds_scale, version="v2.0.0")
    elif name == "urmp_download":
        rng = np.random.default_rng([seed, DATASETS.index("urmp")])
        pieces = (*URMP_PIECES, URMP_IRREGULAR_PIECE)
        _write_urmp(out_dir / URMP_DOWNLOAD_FOLDER, rng, seconds_scale, pieces)
    else:
        raise ValueError(f"unknown demo variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return out_dir


def write_demo_corpus(root: Path, seed: int = 0, seconds_scale: float = 1.0) -> Path:
    """Write ``root/{maestro,urmp,fsd50k}`` deterministically; returns ``root``.

    ``seconds_scale`` multiplies every file's length (benchmarks use larger values).
    """
    root = Path(root)
    for name in DATASETS:
        write_demo_dataset(name, root / name, seed=seed, seconds_scale=seconds_scale)
    return root
