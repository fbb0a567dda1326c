"""Benchmark prompt sets in their published formats, with paired reference audio.

* **MusicCaps** ``musiccaps-public.csv`` (Agostinelli et al. 2023, Kaggle
  ``googleai/musiccaps``): ``ytid, start_s, end_s, audioset_positive_labels, aspect_list,
  caption, author_id, is_balanced_subset, is_audioset_eval``. One 10-s YouTube excerpt per
  row. Subsets: ``all``, ``balanced`` (``is_balanced_subset``), ``audioset_eval``
  (``is_audioset_eval``). Paired audio: ``AUDIO_DIR/{ytid}.wav`` (the name most download
  scripts write). The crop: a file as long as the excerpt (``end_s - start_s``, +-0.5 s) is
  the excerpt already and is used from 0; a longer file reaching ``end_s`` is the whole
  video and is cut at ``start_s .. end_s``; anything else is a recorded skip.
* **Song Describer** ``song_describer.csv`` (Manco et al. 2023; columns from the dataset's
  data card, github.com/mulab-mir/song-describer-dataset ``docs/datacard.md``):
  ``caption_id, track_id, caption, is_valid_subset, familiarity, artist_id, album_id, path,
  duration, genre, instrument, mood/theme``. Several captions per track. Subsets: ``all``,
  ``valid`` (``is_valid_subset``). Paired audio: ``AUDIO_DIR/{path}`` (``path`` as in the
  CSV, e.g. ``00/18500.2min.mp3``), or ``AUDIO_DIR/{track_id % 100:02d}/{track_id}.2min.mp3``
  (the published ``audio/`` layout) when the CSV has no ``path``. Tracks are ~2-min
  excerpts; the crop is the **centred** ``seconds`` window: captions describe the whole
  track, and a centred window avoids intros and fade-outs (the first seconds are often a
  sparse intro unlike what the caption describes). Shorter tracks are a recorded skip.

:func:`import_benchmark` writes a prompt TSV (``prompt``, ``reference``) and the cropped
clips (mono, source sample rate, float WAV) beside it, and a JSON summary with the count
of prompts whose paired clip was found and the reason for every one that was not. A
missing or unreadable clip never stops the import.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.workflow.cli import InputError

MUSICCAPS_COLUMNS = (
    "ytid",
    "start_s",
    "end_s",
    "audioset_positive_labels",
    "aspect_list",
    "caption",
    "author_id",
    "is_balanced_subset",
    "is_audioset_eval",
)
SONG_DESCRIBER_COLUMNS = ("caption_id", "track_id", "caption", "is_valid_subset")
KINDS = ("musiccaps", "song_describer")
SUBSETS = {
    "musiccaps": {
        "all": None,
        "balanced": "is_balanced_subset",
        "audioset_eval": "is_audioset_eval",
    },
    "song_describer": {"all": None, "valid": "is_valid_subset"},
}
PRECUT_TOLERANCE_S = 0.5


class BenchmarkError(InputError):
    """A benchmark file that cannot be read; the message names the file and the fix."""


@dataclass(frozen=True)
class BenchmarkPrompt:
    key: str  # ytid (MusicCaps) or caption_id (Song Describer)
    caption: str
    audio: str  # the paired clip's path relative to the audio folder
    start_s: float | None = None  # MusicCaps excerpt; None: centred crop (Song Describer)
    end_s: float | None = None


def _flag(value: str) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _read_rows(csv_path: Path, required: tuple[str, ...]) -> list[dict]:
    if not csv_path.is_file():
        raise BenchmarkError(f"{csv_path}: not found; pass the benchmark's CSV")
    with open(csv_path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise BenchmarkError(
                f"{csv_path}: missing column(s) {missing} (found {reader.fieldnames}); "
                "pass the published CSV unchanged"
            )
        return list(reader)


def _prompt(kind: str, row: dict) -> BenchmarkPrompt:
    caption = " ".join(str(row["caption"]).split()).lstrip("#").strip()  # one TSV cell
    if kind == "musiccaps":
        return BenchmarkPrompt(
            key=row["ytid"],
            caption=caption,
            audio=f"{row['ytid']}.wav",
            start_s=float(row["start_s"]),
            end_s=float(row["end_s"]),
        )
    track = int(row["track_id"])
    audio = (row.get("path") or "").strip() or f"{track % 100:02d}/{track}.2min.mp3"
    return BenchmarkPrompt(key=str(row["caption_id"]), caption=caption, audio=audio)


def read_benchmark(
    kind: str,
    csv_path: str | Path,
    subset: str = "all",
    max_count: int | None = None,
    seed: int = 0,
) -> list[BenchmarkPrompt]:
    """The subset's rows (with a non-empty caption) as prompts, in file order; with
    ``max_count`` a seeded sample of that many (still in file order)."""
    if kind not in KINDS:
        raise BenchmarkError(f"unknown benchmark {kind!r}; one of {', '.join(KINDS)}")
    if subset not in SUBSETS[kind]:
        raise BenchmarkError(
            f"{kind}: unknown subset {subset!r}; one of {', '.join(SUBSETS[kind])}"
        )
    required = MUSICCAPS_COLUMNS if kind == "musiccaps" else SONG_DESCRIBER_COLUMNS
    rows = _read_rows(Path(csv_path), required)
    flag = SUBSETS[kind][subset]
    prompts = [_prompt(kind, r) for r in rows if flag is None or _flag(r[flag])]
    prompts = [p for p in prompts if p.caption]
    if max_count is not None and max_count < len(prompts):
        keep = sorted(random.Random(seed).sample(range(len(prompts)), max_count))
        prompts = [prompts[i] for i in keep]
    return prompts


class ReferenceSkip(Exception):
    """The paired clip cannot be used; the message is the recorded reason."""


def crop_reference(
    prompt: BenchmarkPrompt, audio: np.ndarray, sr: int, seconds: float
) -> np.ndarray:
    """The paired clip's window (rules in the module docstring)."""
    duration = len(audio) / sr
    if prompt.start_s is not None:  # MusicCaps
        length = prompt.end_s - prompt.start_s
        if abs(duration - length) <= PRECUT_TOLERANCE_S:
            start, stop = 0.0, min(length, duration)
        elif duration >= prompt.end_s - 0.05:
            start, stop = prompt.start_s, prompt.end_s
        else:
            raise ReferenceSkip(
                f"audio is {duration:.2f} s: neither the {length:g}-s excerpt nor the video "
                f"through end_s = {prompt.end_s:g} s"
            )
    else:  # Song Describer: centred window
        if duration < seconds:
            raise ReferenceSkip(f"track is {duration:.2f} s, shorter than the {seconds:g}-s crop")
        start = (duration - seconds) / 2
        stop = start + seconds
    return np.asarray(audio[int(round(start * sr)) : int(round(stop * sr))], np.float32)


def paired_clip(prompt: BenchmarkPrompt, audio_dir: Path, seconds: float):
    """``(clip, sr)`` of a prompt's paired audio; raises :class:`ReferenceSkip` with why not."""
    from rcmg.data.audio_io import AudioDecodeError, read_audio

    path = audio_dir / prompt.audio
    if not path.is_file():
        raise ReferenceSkip(f"no file {path}")
    try:
        audio, sr = read_audio(path)
    except AudioDecodeError as err:
        raise ReferenceSkip(f"unreadable: {err}") from err
    return crop_reference(prompt, audio, sr, seconds), sr


def import_benchmark(
    kind: str,
    csv_path: str | Path,
    out_tsv: str | Path,
    audio_dir: str | Path | None = None,
    subset: str = "all",
    max_count: int | None = None,
    seed: int = 0,
    seconds: float = 10.0,
) -> dict:
    """Write the prompt TSV, the cropped paired clips (``<out stem>_reference/``) and a
    summary JSON (``<out>.json``); returns the summary."""
    import soundfile as sf

    from rcmg.workflow.atomic import atomic_dir, write_json, write_text

    out_tsv = Path(out_tsv)
    prompts = read_benchmark(kind, csv_path, subset, max_count, seed)
    if not prompts:
        raise BenchmarkError(f"{csv_path}: no rows with a caption in subset {subset!r}")
    clip_dir = out_tsv.parent / f"{out_tsv.stem}_reference"
    lines, items = ["prompt\treference"], []
    with atomic_dir(clip_dir) as tmp:
        for i, p in enumerate(prompts):
            record = {"item": i, "key": p.key, "audio": p.audio}
            if audio_dir is None:
                cell = "missing:no audio folder given"
            else:
                try:
                    clip, sr = paired_clip(p, Path(audio_dir), seconds)
                    name = f"{i:05d}.wav"
                    sf.write(tmp / name, clip, sr, subtype="FLOAT")
                    cell = f"audio:{clip_dir.name}/{name}"
                    record.update(clip=f"{clip_dir.name}/{name}", seconds=round(len(clip) / sr, 3))
                except ReferenceSkip as why:
                    cell = f"missing:{' '.join(str(why).split())}"
            record["reference"] = cell
            items.append(record)
            lines.append(f"{p.caption}\t{cell}")
    write_text(out_tsv, "\n".join(lines) + "\n")
    found = sum(r["reference"].startswith("audio:") for r in items)
    summary = {
        "benchmark": kind,
        "csv": str(csv_path),
        "subset": subset,
        "max_count": max_count,
        "seed": seed,
        "audio_dir": None if audio_dir is None else str(audio_dir),
        "crop": "MusicCaps start_s..end_s (or the pre-cut excerpt)"
        if kind == "musiccaps"
        else f"centred {seconds:g} s",
        "n_prompts": len(items),
        "n_reference_found": found,
        "items": items,
    }
    write_json(out_tsv.with_suffix(".json"), summary)
    return summary
