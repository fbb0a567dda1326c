"""Index a dataset in its published layout (MAESTRO v3, URMP, FSD50K) into one source table.

Every dataset maps onto the same columns (``SOURCE_COLUMNS``). Metadata rows whose
audio is missing, folders that are not URMP pieces and headers that cannot be read
are recorded in an audit table (``AUDIT_COLUMNS``), never dropped silently. A missing
or malformed metadata file is an error naming the file and what was expected.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from rcmg.data.audio_io import AudioDecodeError, audio_info, printable
from rcmg.workflow.cli import InputError
from rcmg.workflow.kinds import DATASET_KINDS

log = logging.getLogger(__name__)

KINDS = DATASET_KINDS

# Published layouts (file and folder names, metadata columns) this module reads.
MAESTRO_CSV = "maestro-v3.0.0.csv"
MAESTRO_JSON = "maestro-v3.0.0.json"
MAESTRO_COLUMNS = (
    "canonical_composer",
    "canonical_title",
    "split",
    "year",
    "midi_filename",
    "audio_filename",
    "duration",
)
FSD_GROUND_TRUTH = "FSD50K.ground_truth"
FSD_DEV_AUDIO = "FSD50K.dev_audio"
FSD_EVAL_AUDIO = "FSD50K.eval_audio"

# URMP instrument abbreviations as used in its folder and file names.
URMP_INSTRUMENTS = {
    "vn": "violin",
    "va": "viola",
    "vc": "cello",
    "db": "double bass",
    "fl": "flute",
    "ob": "oboe",
    "cl": "clarinet",
    "sax": "saxophone",
    "bn": "bassoon",
    "tpt": "trumpet",
    "hn": "horn",
    "tbn": "trombone",
    "tba": "tuba",
}
SOURCE_COLUMNS = (
    "source_id",
    "dataset",
    "path",
    "path_bytes",
    "split",
    "duration_s",
    "sample_rate",
    "channels",
    "tags",
    "title",
    "composer",
    "year",
    "instruments",
    "stem",
)
AUDIT_COLUMNS = ("dataset", "path", "reason", "detail", "action")

REASON_MISSING_FILE = "missing file"
REASON_UNREADABLE_HEADER = "unreadable header"
REASON_NOT_A_PIECE = "not a URMP piece folder"
REASON_BAD_METADATA_ROW = "malformed metadata row"

_URMP_FOLDER = re.compile(r"^(\d+)_([^_]+)_([a-z]+(?:_[a-z]+)*)$")


class MetadataError(InputError):
    """A metadata file is missing or does not have the published structure."""


def display_path(relpath: str) -> str:
    """Human-readable UTF-8 form of a relative path (undecodable bytes shown as \\xNN)."""
    return printable(relpath)


def resolve_source_path(root: str | os.PathLike, row: dict) -> Path:
    """The file a source-table row points to: exact bytes when recorded, else ``path``."""
    raw = row.get("path_bytes")
    relpath = os.fsdecode(bytes(raw)) if raw is not None else row["path"]
    return Path(root) / relpath


def _read_csv(path: Path, required: Iterable[str], fix: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise MetadataError(f"{path}: metadata file missing; {fix}")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            missing = [c for c in required if c not in columns]
            if missing:
                raise MetadataError(
                    f"{path.name} missing column {missing[0]!r} ({path}); expected columns "
                    f"{list(required)}, found {columns}; {fix}"
                )
            return list(reader)
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path}: not UTF-8 text ({exc}); {fix}") from exc
    except csv.Error as exc:
        raise MetadataError(f"{path}: not valid CSV ({exc}); {fix}") from exc


def _audit(dataset: str, relpath: str, reason: str, detail: str, action: str) -> dict:
    return {
        "dataset": dataset,
        "path": display_path(relpath),
        "reason": reason,
        "detail": printable(detail),
        "action": action,
    }


def _source_row(dataset: str, relpath: str, **fields) -> dict:
    stem_id = relpath.rsplit(".", 1)[0]
    row = {
        "source_id": f"{dataset}/{display_path(stem_id)}",
        "dataset": dataset,
        "path": display_path(relpath),
        "path_bytes": os.fsencode(relpath),
        "split": "",
        "duration_s": float("nan"),
        "sample_rate": None,
        "channels": None,
        "tags": [],
        "title": "",
        "composer": "",
        "year": None,
        "instruments": [],
        "stem": "",
    }
    row.update(fields)
    return row


def _with_header(root: Path, row: dict, audits: list[dict]) -> dict | None:
    """Fill sample rate/channels (and duration when metadata lacks it) from the header.

    Returns ``None`` (and records the reason) when the file does not exist. A file
    whose header cannot be read stays in the table so the segmenter records why it
    cannot be decoded.
    """
    path = resolve_source_path(root, row)
    relpath = os.fsdecode(row["path_bytes"])
    if not path.is_file():
        audits.append(
            _audit(row["dataset"], relpath, REASON_MISSING_FILE, f"expected at {path}", "dropped")
        )
        return None
    try:
        info = audio_info(path)
    except AudioDecodeError as exc:
        audits.append(_audit(row["dataset"], relpath, REASON_UNREADABLE_HEADER, exc.detail, "kept"))
        return row
    row["sample_rate"] = info.sample_rate
    row["channels"] = info.channels
    if not row["duration_s"] == row["duration_s"]:  # NaN: no duration in the metadata
        row["duration_s"] = info.duration_s
    return row


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def index_maestro(root: Path) -> tuple[list[dict], list[dict]]:
    """Rows of ``maestro-v3.0.0.csv`` whose audio exists; audit rows for the others."""
    fix = "point --root at the extracted maestro-v3.0.0 folder (it holds maestro-v3.0.0.csv)"
    records = _read_csv(root / MAESTRO_CSV, MAESTRO_COLUMNS, fix)
    rows, audits = [], []
    for line, rec in enumerate(records, start=2):
        relpath = (rec.get("audio_filename") or "").strip()
        if not relpath:
            audits.append(
                _audit(
                    "maestro",
                    "",
                    REASON_BAD_METADATA_ROW,
                    f"line {line}: empty audio_filename",
                    "dropped",
                )
            )
            continue
        year = (rec.get("year") or "").strip()
        row = _source_row(
            "maestro",
            relpath,
            split=(rec.get("split") or "").strip(),
            duration_s=_float_or_nan(rec.get("duration", "")),
            tags=["piano"],
            title=rec.get("canonical_title") or "",
            composer=rec.get("canonical_composer") or "",
            year=int(year) if year.isdigit() else None,
            instruments=["piano"],
        )
        kept = _with_header(root, row, audits)
        if kept is not None:
            rows.append(kept)
    return rows, audits


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def index_fsd50k(root: Path) -> tuple[list[dict], list[dict]]:
    """Rows of ``FSD50K.ground_truth/{dev,eval}.csv``; split is train/val (dev) or eval."""
    truth = root / FSD_GROUND_TRUTH
    fix = f"point --root at the FSD50K folder holding {FSD_GROUND_TRUTH}/, {FSD_DEV_AUDIO}/, {FSD_EVAL_AUDIO}/"
    tables = (
        (truth / "dev.csv", ("fname", "labels", "mids", "split"), FSD_DEV_AUDIO),
        (truth / "eval.csv", ("fname", "labels", "mids"), FSD_EVAL_AUDIO),
    )
    rows, audits = [], []
    for csv_path, required, audio_dir in tables:
        for line, rec in enumerate(_read_csv(csv_path, required, fix), start=2):
            fname = (rec.get("fname") or "").strip()
            if not fname:
                detail = f"{csv_path.name} line {line}: empty fname"
                audits.append(_audit("fsd50k", "", REASON_BAD_METADATA_ROW, detail, "dropped"))
                continue
            tags = _split_list(rec.get("labels"))
            row = _source_row(
                "fsd50k",
                f"{audio_dir}/{fname}.wav",
                split=(rec.get("split") or "eval").strip(),
                tags=tags,
                title=tags[0].replace("_", " ") if tags else "",
            )
            kept = _with_header(root, row, audits)
            if kept is not None:
                rows.append(kept)
    return rows, audits


def parse_urmp_folder(name: str) -> tuple[int, str, list[str]] | None:
    """``'01_Jupiter_vn_vc'`` -> ``(1, 'Jupiter', ['vn', 'vc'])``; None if not a piece folder."""
    match = _URMP_FOLDER.match(name)
    if match is None:
        return None
    abbrevs = match.group(3).split("_")
    if any(a not in URMP_INSTRUMENTS for a in abbrevs):
        return None
    return int(match.group(1)), match.group(2), abbrevs


def _urmp_piece_rows(folder: str, number_text: str, title: str, abbrevs: list[str]) -> list[dict]:
    names = [URMP_INSTRUMENTS[a] for a in abbrevs]
    shown_title = display_path(title)
    rows = [
        _source_row(
            "urmp",
            f"{folder}/AuMix_{folder}.wav",
            tags=list(dict.fromkeys(names)),
            title=shown_title,
            instruments=names,
            stem="mix",
        )
    ]
    for k, (abbrev, name) in enumerate(zip(abbrevs, names, strict=True), start=1):
        rows.append(
            _source_row(
                "urmp",
                f"{folder}/AuSep_{k}_{abbrev}_{number_text}_{title}.wav",
                tags=[name],
                title=shown_title,
                instruments=[name],
                stem="sep",
            )
        )
    return rows


def index_urmp(root: Path) -> tuple[list[dict], list[dict]]:
    """AuMix and AuSep rows for every ``NN_Title_inst_inst`` folder (names carry the metadata)."""
    if not root.is_dir():
        raise MetadataError(f"{root}: URMP root folder missing; point --root at the URMP dataset")
    rows, audits, pieces = [], [], 0
    for entry in sorted(os.listdir(root), key=os.fsencode):
        if not (root / entry).is_dir():
            continue
        parsed = parse_urmp_folder(entry)
        if parsed is None:
            detail = "expected NN_Title_inst[_inst...] with URMP instrument codes"
            audits.append(_audit("urmp", entry, REASON_NOT_A_PIECE, detail, "skipped"))
            continue
        pieces += 1
        number_text = entry.split("_", 1)[0]
        for row in _urmp_piece_rows(entry, number_text, parsed[1], parsed[2]):
            kept = _with_header(root, row, audits)
            if kept is not None:
                rows.append(kept)
    if pieces == 0:
        raise MetadataError(
            f"{root}: no URMP piece folders (NN_Title_inst_inst/ holding AuMix_*.wav); "
            "point --root at the URMP dataset"
        )
    return rows, audits


_INDEXERS = {"maestro": index_maestro, "urmp": index_urmp, "fsd50k": index_fsd50k}


def index_sources(kind: str, root: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Index one dataset: ``(source rows, audit rows)``, sources sorted by ``source_id``."""
    if kind not in _INDEXERS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
    rows, audits = _INDEXERS[kind](Path(root))
    rows.sort(key=lambda r: r["source_id"])
    ids = [r["source_id"] for r in rows]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise MetadataError(
            f"{root}: duplicate source ids {dupes[:5]}; the metadata lists a file twice"
        )
    log.info("%s: %d sources, %d audit rows", kind, len(rows), len(audits))
    return rows, audits


def sources_table(rows: list[dict]):
    """The source rows as a pyarrow Table with a fixed schema (also for zero rows)."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("source_id", pa.string()),
            ("dataset", pa.string()),
            ("path", pa.string()),
            ("path_bytes", pa.binary()),
            ("split", pa.string()),
            ("duration_s", pa.float64()),
            ("sample_rate", pa.int64()),
            ("channels", pa.int64()),
            ("tags", pa.list_(pa.string())),
            ("title", pa.string()),
            ("composer", pa.string()),
            ("year", pa.int64()),
            ("instruments", pa.list_(pa.string())),
            ("stem", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def read_sources(path: str | os.PathLike) -> list[dict]:
    """Read a source table written by ``index_sources.py`` as a list of row dicts."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: source table missing; run index_sources.py first")
    table = pq.read_table(path)
    missing = [c for c in ("source_id", "dataset", "path") if c not in table.column_names]
    if missing:
        raise MetadataError(f"{path}: not a source table, missing column {missing[0]!r}")
    return table.to_pylist()
