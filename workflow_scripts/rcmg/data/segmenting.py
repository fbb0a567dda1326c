"""Cut source files into fixed-length windows at the CLAP and generation sample rates.

One shard of the source table is decoded, downmixed, resampled (soxr HQ) and cut into
windows. Kept windows go into two memory-mappable ``.npy`` arrays (N x T, appended
file by file, never one file per segment) plus a manifest; files that cannot be
decoded and windows below the loudness floor are recorded in ``skipped.csv``.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rcmg.data.audio_io import AudioDecodeError, printable, read_audio, resample, rms_dbfs
from rcmg.data.sources import resolve_source_path
from rcmg.workflow.atomic import atomic_dir
from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

TAIL_POLICIES = ("pad", "drop")
STEM_POLICIES = ("mix", "all")
DTYPES = ("float32", "float16")
ARRAY_48K = "audio_48k.npy"
ARRAY_16K = "audio_16k.npy"
MANIFEST = "manifest.parquet"
SKIPPED = "skipped.csv"
SUMMARY = "summary.json"
SKIPPED_COLUMNS = ("path", "reason", "detail", "source_id", "offset_s")

REASON_SILENT = "silent window"
REASON_TOO_SHORT = "too short"
REASON_MISSING = "missing file"

_EPS = 1e-9


@dataclass(frozen=True)
class SegmentConfig:
    """Every parameter of the segmenter (all come from CLI flags)."""

    seconds: float = 10.0
    hop: float = 10.0
    tail: str = "pad"
    min_tail_seconds: float = 1.0
    sr_clap: int = 48000
    sr_gen: int = 16000
    min_rms_dbfs: float = -60.0
    dtype: str = "float32"
    stems: str = "mix"

    def __post_init__(self) -> None:
        problems = []
        if not self.seconds > 0:
            problems.append(f"seconds must be > 0 (got {self.seconds})")
        if not self.hop > 0:
            problems.append(f"hop must be > 0 (got {self.hop})")
        if self.tail not in TAIL_POLICIES:
            problems.append(f"tail must be one of {TAIL_POLICIES} (got {self.tail!r})")
        if not 0 <= self.min_tail_seconds <= self.seconds:
            problems.append(
                f"min_tail_seconds must be in [0, seconds] (got {self.min_tail_seconds})"
            )
        if self.sr_clap <= 0 or self.sr_gen <= 0:
            problems.append(f"sample rates must be > 0 (got {self.sr_clap}, {self.sr_gen})")
        if self.dtype not in DTYPES:
            problems.append(f"dtype must be one of {DTYPES} (got {self.dtype!r})")
        if self.stems not in STEM_POLICIES:
            problems.append(f"stems must be one of {STEM_POLICIES} (got {self.stems!r})")
        if problems:
            raise InputError("invalid segment config: " + "; ".join(problems))

    def window_samples(self, sample_rate: int) -> int:
        return round(self.seconds * sample_rate)


@dataclass(frozen=True)
class Window:
    offset_s: float
    content_s: float
    padded: bool


# ---------------------------------------------------------------- pure planning


def shard_of(source_id: str, num_shards: int) -> int:
    """Stable shard of a source id (BLAKE2b, independent of Python's hash seed)."""
    digest = hashlib.blake2b(source_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_shards


def select_shard(rows: list[dict], shard: int, num_shards: int, stems: str) -> list[dict]:
    """Rows of one shard, sorted by source id; ``stems='mix'`` drops separated stems."""
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise InputError(f"shard must be in [0, {num_shards}) with num_shards >= 1 (got {shard})")
    chosen = [r for r in rows if shard_of(r["source_id"], num_shards) == shard]
    if stems == "mix":
        chosen = [r for r in chosen if (r.get("stem") or "") != "sep"]
    return sorted(chosen, key=lambda r: r["source_id"])


def plan_windows(
    duration_s: float, seconds: float, hop: float, tail: str, min_tail_seconds: float
) -> list[Window]:
    """Window offsets for a signal of ``duration_s``.

    Full windows start every ``hop`` seconds. The audio after the last full window
    becomes one repeat-padded window when ``tail='pad'`` and that new audio lasts at
    least ``min_tail_seconds``; ``tail='drop'`` never pads.
    """
    if duration_s + _EPS >= seconds:
        n_full = int(math.floor((duration_s - seconds) / hop + _EPS)) + 1
    else:
        n_full = 0
    windows = [Window(k * hop, seconds, False) for k in range(n_full)]
    if tail != "pad":
        return windows
    start = n_full * hop
    covered_end = (n_full - 1) * hop + seconds if n_full else 0.0
    new_audio = duration_s - max(covered_end, start)
    if new_audio > _EPS and new_audio + _EPS >= min_tail_seconds:
        windows.append(Window(start, duration_s - start, True))
    return windows


def repeat_pad(x: np.ndarray, length: int) -> np.ndarray:
    """CLAP's 'repeatpad': tile the clip a whole number of times, then zero-pad to ``length``."""
    if x.shape[0] >= length:
        return x[:length]
    out = np.zeros(length, dtype=x.dtype)
    if x.shape[0] == 0:
        return out
    repeats = length // x.shape[0]
    out[: repeats * x.shape[0]] = np.tile(x, repeats)
    return out


def cut_window(x: np.ndarray, sample_rate: int, window: Window, length: int) -> np.ndarray:
    """The samples of ``window`` at ``sample_rate``, repeat-padded to ``length``."""
    start = int(math.floor(window.offset_s * sample_rate + _EPS))
    end = start + (length if not window.padded else round(window.content_s * sample_rate))
    return repeat_pad(x[start : min(end, x.shape[0])], length)


# ---------------------------------------------------------------- array output


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, total_len: int | None = None) -> bytes:
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    text = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    magic = b"\x93NUMPY\x01\x00"
    body_len = len(magic) + 2 + len(text) + 1
    if total_len is None:
        total_len = -(-body_len // 64) * 64
    if body_len > total_len:
        raise ValueError(f"npy header for shape {shape} does not fit in {total_len} bytes")
    text = text + " " * (total_len - body_len) + "\n"
    return magic + struct.pack("<H", len(text)) + text.encode("latin1")


class NpyRowWriter:
    """Append rows of a fixed length to a ``.npy`` file without knowing the row count.

    A header sized for the largest possible shape is reserved up front and rewritten
    with the real shape on :meth:`close`, so rows stream to disk file by file and the
    result loads with ``np.load(path, mmap_mode='r')``.
    """

    def __init__(self, path: Path, row_len: int, dtype: str) -> None:
        self.path = Path(path)
        self.row_len = row_len
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._header_len = len(_npy_header((10**15, row_len), self.dtype))
        self._fh = open(self.path, "wb")
        self._fh.write(b"\0" * self._header_len)

    def append(self, rows: np.ndarray) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.row_len:
            raise ValueError(
                f"{self.path}: expected rows of length {self.row_len}, got {rows.shape}"
            )
        self._fh.write(np.ascontiguousarray(rows, dtype=self.dtype).data)
        self.rows += rows.shape[0]

    def close(self) -> None:
        self._fh.seek(0)
        self._fh.write(_npy_header((self.rows, self.row_len), self.dtype, self._header_len))
        self._fh.close()


# ---------------------------------------------------------------- per-file work


@dataclass
class FileResult:
    """One file's kept windows (views into its resampled signals) and skipped rows."""

    rows_48k: list[np.ndarray] = field(default_factory=list)
    rows_16k: list[np.ndarray] = field(default_factory=list)
    manifest: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    audio_seconds: float = 0.0


def _skip(row: dict, reason: str, detail: str, offset_s: float | None = None) -> dict:
    return {
        "path": row["path"],
        "reason": reason,
        "detail": printable(detail),
        "source_id": row["source_id"],
        "offset_s": "" if offset_s is None else f"{offset_s:.3f}",
    }


def _too_short_detail(duration_s: float, cfg: SegmentConfig) -> str:
    if cfg.tail == "drop":
        return f"{duration_s:.3f} s < window {cfg.seconds} s and --tail drop"
    return f"{duration_s:.3f} s of audio < --min-tail-seconds {cfg.min_tail_seconds}"


def segment_file(root: Path, row: dict, cfg: SegmentConfig) -> FileResult:
    """Decode one source and cut its windows; failures become skipped rows, never exceptions."""
    result = FileResult()
    path = resolve_source_path(root, row)
    if not path.is_file():
        result.skipped.append(_skip(row, REASON_MISSING, f"{path} does not exist"))
        return result
    try:
        samples, sample_rate = read_audio(path)
    except AudioDecodeError as exc:
        result.skipped.append(_skip(row, exc.reason, exc.detail))
        return result
    source_duration = samples.shape[0] / sample_rate
    result.audio_seconds = source_duration
    x_clap = resample(samples, sample_rate, cfg.sr_clap)
    x_gen = resample(samples, sample_rate, cfg.sr_gen)
    duration = min(x_clap.shape[0] / cfg.sr_clap, x_gen.shape[0] / cfg.sr_gen)
    windows = plan_windows(duration, cfg.seconds, cfg.hop, cfg.tail, cfg.min_tail_seconds)
    if not windows:
        result.skipped.append(_skip(row, REASON_TOO_SHORT, _too_short_detail(duration, cfg)))
        return result
    for window in windows:
        _add_window(result, row, cfg, window, (x_clap, x_gen), source_duration)
    return result


def _add_window(
    result: FileResult,
    row: dict,
    cfg: SegmentConfig,
    window: Window,
    signals: tuple[np.ndarray, np.ndarray],
    source_duration: float,
) -> None:
    """Keep ``window`` (both rates + manifest entry) or record it as silent."""
    x_clap, x_gen = signals
    start = int(math.floor(window.offset_s * cfg.sr_clap + _EPS))
    content = x_clap[start : start + round(window.content_s * cfg.sr_clap)]
    level = rms_dbfs(content)
    if level < cfg.min_rms_dbfs:
        detail = f"rms {level:.1f} dBFS < --min-rms-dbfs {cfg.min_rms_dbfs}"
        result.skipped.append(_skip(row, REASON_SILENT, detail, window.offset_s))
        return
    result.rows_48k.append(cut_window(x_clap, cfg.sr_clap, window, cfg.window_samples(cfg.sr_clap)))
    result.rows_16k.append(cut_window(x_gen, cfg.sr_gen, window, cfg.window_samples(cfg.sr_gen)))
    result.manifest.append(
        {
            "segment_id": f"{row['source_id']}@{window.offset_s:.3f}",
            "source_id": row["source_id"],
            "dataset": row.get("dataset") or "",
            "path": row["path"],
            "offset_s": float(window.offset_s),
            "duration_s": float(window.content_s),
            "split": row.get("split") or "",
            "tags": list(row.get("tags") or []),
            "rms_dbfs": level,
            "source_duration_s": source_duration,
            "padded": window.padded,
            # provenance (FSD50K clips_info; '' where the dataset has none)
            "title": str(row.get("title") or ""),
            "license": str(row.get("license") or ""),
            "uploader": str(row.get("uploader") or ""),
        }
    )


# ---------------------------------------------------------------- shard output


def manifest_table(rows: list[dict]):
    """Manifest rows as a pyarrow Table with a fixed schema (also for zero rows)."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("row", pa.int64()),
            ("segment_id", pa.string()),
            ("source_id", pa.string()),
            ("dataset", pa.string()),
            ("path", pa.string()),
            ("offset_s", pa.float64()),
            ("duration_s", pa.float64()),
            ("split", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("rms_dbfs", pa.float64()),
            ("source_duration_s", pa.float64()),
            ("padded", pa.bool_()),
            ("title", pa.string()),
            ("license", pa.string()),
            ("uploader", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _write_skipped(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SKIPPED_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _progress(items: list[dict], desc: str):
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="file", disable=None)


def segment_shard(
    rows: list[dict], root: str | os.PathLike, out_dir: str | os.PathLike, cfg: SegmentConfig
) -> dict:
    """Segment ``rows`` (one shard) into ``out_dir`` atomically; returns the summary dict.

    ``out_dir`` receives ``audio_48k.npy`` and ``audio_16k.npy`` (N x T arrays of
    ``cfg.dtype``), ``manifest.parquet`` (row i describes array row i),
    ``skipped.csv`` and ``summary.json``. The raw ``root`` is only read.
    """
    import pyarrow.parquet as pq

    from rcmg.workflow.atomic import write_json

    root = Path(root)
    started = time.perf_counter()
    cpu_started = time.process_time()
    manifest, skipped, audio_seconds = [], [], 0.0
    with atomic_dir(out_dir) as tmp:
        writer_clap = NpyRowWriter(tmp / ARRAY_48K, cfg.window_samples(cfg.sr_clap), cfg.dtype)
        writer_gen = NpyRowWriter(tmp / ARRAY_16K, cfg.window_samples(cfg.sr_gen), cfg.dtype)
        for row in _progress(rows, "segment"):
            result = segment_file(root, row, cfg)
            audio_seconds += result.audio_seconds
            skipped.extend(result.skipped)
            for row_clap, row_gen, entry in zip(
                result.rows_48k, result.rows_16k, result.manifest, strict=True
            ):
                writer_clap.append(row_clap[None, :])
                writer_gen.append(row_gen[None, :])
                manifest.append({"row": len(manifest), **entry})
        writer_clap.close()
        writer_gen.close()
        pq.write_table(manifest_table(manifest), tmp / MANIFEST)
        _write_skipped(tmp / SKIPPED, skipped)
        summary = {
            "config": asdict(cfg),
            "files": len(rows),
            "segments": len(manifest),
            "skipped_rows": len(skipped),
            "audio_seconds": audio_seconds,
            "wall_seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu_started,
        }
        write_json(tmp / SUMMARY, summary)
    log.info(
        "%s: %d files -> %d segments, %d skipped rows",
        out_dir,
        len(rows),
        len(manifest),
        len(skipped),
    )
    return summary
