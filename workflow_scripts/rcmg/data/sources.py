"""Index a dataset in its published layout (MAESTRO v1-v3, URMP, FSD50K) into one source table.

Every dataset maps onto the same columns (``SOURCE_COLUMNS``). Metadata rows whose
audio is missing, folders that are not URMP pieces, stems whose name disagrees with
their folder, durations the file header contradicts and headers that cannot be read
are recorded in an audit table (``AUDIT_COLUMNS``), never dropped silently. A missing
or malformed metadata file is an error naming the file and what was expected; so is a
dataset root that yields no usable source. ``IndexResult.coverage`` says how much of
what the metadata lists is on disk (reports quote it: a partial download silently
changes the style bank and the reference set).

Accepted layouts (checked against the public loaders' fixtures, mirdata / soundata):

* MAESTRO ``maestro-v{1,2,3}.0.0.{csv,json}`` beside ``YEAR/*.wav``; the JSON of v1/v2 is
  a list of records, v3's is column-oriented (``{column: {row_index: value}}``).
* URMP ``NN_Title_inst_inst/{AuMix_*.wav, AuSep_K_inst_NN_Title.wav}``, either directly
  under ``--root`` or under ``--root/Dataset/`` (the folder the download extracts to).
* FSD50K ``FSD50K.ground_truth/{dev,eval}.csv``, ``FSD50K.{dev,eval}_audio/<fname>.wav``
  and, when present, ``FSD50K.metadata/{dev,eval}_clips_info_FSD50K.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rcmg.data.audio_io import AudioDecodeError, audio_info, printable
from rcmg.workflow.cli import InputError
from rcmg.workflow.kinds import DATASET_KINDS

log = logging.getLogger(__name__)

KINDS = DATASET_KINDS

# Published layouts (file and folder names, metadata columns) this module reads.
MAESTRO_VERSIONS = ("v3.0.0", "v2.0.0", "v1.0.0")  # newest first: the one read when several
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
FSD_METADATA = "FSD50K.metadata"
FSD_CLIPS_INFO = "{part}_clips_info_FSD50K.json"  # part: dev | eval
FSD_CLIPS_INFO_FIELDS = ("title", "description", "tags", "license", "uploader")
URMP_DOWNLOAD_FOLDER = "Dataset"

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
    "mids",
    "description",
    "freesound_tags",
    "license",
    "uploader",
)
AUDIT_COLUMNS = ("dataset", "path", "reason", "detail", "action")

REASON_MISSING_FILE = "missing file"
REASON_UNREADABLE_HEADER = "unreadable header"
REASON_NOT_A_PIECE = "not a URMP piece folder"
REASON_BAD_METADATA_ROW = "malformed metadata row"
REASON_DURATION_MISMATCH = "duration mismatch"
REASON_STEM_MISMATCH = "stem disagrees with folder name"
REASON_UNRECOGNISED_STEM = "unrecognised stem file"
REASON_MIX_NAME = "mix name differs from folder"
REASON_METADATA_MISSING = "metadata file missing"
REASON_NO_CLIP_INFO = "no clips_info entry"

SUMMARY_EXAMPLES = 5  # paths quoted per reason in the one-line log summaries

_URMP_FOLDER = re.compile(r"^(\d+)_([^_]+)_([a-z]+(?:_[a-z]+)*)$")
_URMP_STEM = re.compile(r"^AuSep_(\d+)_([A-Za-z]+)_(.+)\.wav$")


class MetadataError(InputError):
    """A metadata file is missing or does not have the published structure."""


class NoUsableSourcesError(InputError):
    """A dataset root yields no source with a readable audio file."""


@dataclass(frozen=True)
class IndexOptions:
    """How strictly the metadata is checked against the files."""

    max_duration_mismatch_s: float = 1.0  # metadata vs header duration; beyond it: audit row

    def __post_init__(self) -> None:
        if not self.max_duration_mismatch_s >= 0:
            raise ValueError(
                f"max_duration_mismatch_s must be >= 0, got {self.max_duration_mismatch_s}"
            )


@dataclass
class IndexResult:
    """Source rows (sorted by id), audit rows, and the coverage record of one dataset."""

    rows: list[dict]
    audits: list[dict]
    coverage: dict = field(default_factory=dict)


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


def _read_json(path: Path, fix: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{path}: not UTF-8 text ({exc}); {fix}") from exc
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{path}: not valid JSON ({exc}); {fix}") from exc


def describe_folder(path: Path, limit: int = 8) -> str:
    """What a folder holds, for error messages (``'a.csv, 2004/ (3 entries, 3 .wav)'``)."""
    if not path.exists():
        return "the folder does not exist"
    if not path.is_dir():
        return "it is a file, not a folder"
    entries = sorted(os.listdir(path), key=os.fsencode)
    if not entries:
        return "an empty folder"
    shown = []
    for name in entries[:limit]:
        full = path / name
        if full.is_dir():
            inside = os.listdir(full)
            wavs = sum(1 for n in inside if n.lower().endswith(".wav"))
            shown.append(f"{display_path(name)}/ ({len(inside)} entries, {wavs} .wav)")
        else:
            shown.append(display_path(name))
    more = f" and {len(entries) - limit} more" if len(entries) > limit else ""
    return ", ".join(shown) + more


def _audit(dataset: str, relpath: str, reason: str, detail: str, action: str) -> dict:
    return {
        "dataset": dataset,
        "path": display_path(relpath),
        "reason": reason,
        "detail": printable(detail),
        "action": action,
    }


def _source_row(dataset: str, relpath: str, id_path: str | None = None, **fields) -> dict:
    """A row for ``relpath`` (relative to --root); ``id_path`` names it independently of
    where --root points inside the layout (URMP's ``Dataset/`` prefix)."""
    stem_id = (id_path or relpath).rsplit(".", 1)[0]
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
        "mids": [],
        "description": "",
        "freesound_tags": [],
        "license": "",
        "uploader": "",
    }
    row.update(fields)
    return row


def _with_header(root: Path, row: dict, audits: list[dict], options: IndexOptions) -> dict | None:
    """Fill sample rate/channels (and duration when metadata lacks it) from the header.

    Returns ``None`` (and records the reason) when the file does not exist. A file
    whose header cannot be read stays in the table so the segmenter records why it
    cannot be decoded. A metadata duration the header contradicts by more than
    ``options.max_duration_mismatch_s`` is replaced by the header's and audited.
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
    listed = row["duration_s"]
    if not listed == listed:  # NaN: no duration in the metadata
        row["duration_s"] = info.duration_s
    elif abs(listed - info.duration_s) > options.max_duration_mismatch_s:
        detail = (
            f"metadata says {listed:.3f} s, file header {info.duration_s:.3f} s "
            f"(tolerance {options.max_duration_mismatch_s:g} s)"
        )
        audits.append(
            _audit(
                row["dataset"],
                relpath,
                REASON_DURATION_MISMATCH,
                detail,
                "kept; duration_s from the file header",
            )
        )
        row["duration_s"] = info.duration_s
    return row


def _float_or_nan(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


# ---------------------------------------------------------------- MAESTRO


def maestro_metadata_files(root: Path) -> list[Path]:
    """The MAESTRO metadata files present in ``root``, newest version first, CSV before JSON."""
    return [
        root / f"maestro-{version}.{ext}"
        for version in MAESTRO_VERSIONS
        for ext in ("csv", "json")
        if (root / f"maestro-{version}.{ext}").is_file()
    ]


def _maestro_json_records(path: Path, fix: str) -> list[dict]:
    data = _read_json(path, fix)
    if isinstance(data, list):  # v1/v2: a list of records
        records = data
    elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
        # v3: {column: {row_index: value}}
        indices = sorted({k for col in data.values() for k in col}, key=lambda k: int(k))
        records = [{col: data[col].get(i) for col in data} for i in indices]
    else:
        raise MetadataError(
            f"{path}: expected a list of records (MAESTRO v1/v2) or a column-oriented object "
            f"(v3), found {type(data).__name__}; {fix}"
        )
    if not all(isinstance(r, dict) for r in records):
        raise MetadataError(f"{path}: a record is not a JSON object; {fix}")
    columns = set().union(*records) if records else set()
    missing = [c for c in MAESTRO_COLUMNS if c not in columns]
    if records and missing:
        raise MetadataError(
            f"{path.name} missing column {missing[0]!r} ({path}); expected columns "
            f"{list(MAESTRO_COLUMNS)}, found {sorted(columns)}; {fix}"
        )
    return records


def _maestro_not_found(root: Path) -> MetadataError:
    expected = " or ".join(f"maestro-{v}.csv/.json" for v in MAESTRO_VERSIONS)
    hint = ""
    if root.is_dir():
        nested = [
            name
            for name in sorted(os.listdir(root))
            if (root / name).is_dir() and maestro_metadata_files(root / name)
        ]
        if nested:
            hint = f"; point --root at {root / nested[0]}"
    return MetadataError(
        f"{root}: MAESTRO metadata file missing; expected {expected} beside the YEAR/ "
        f"audio folders, found: {describe_folder(root)}{hint}"
    )


def index_maestro(root: Path, options: IndexOptions) -> IndexResult:
    """Rows of the newest ``maestro-v*.{csv,json}`` whose audio exists; audits for the others."""
    found = maestro_metadata_files(root)
    if not found:
        raise _maestro_not_found(root)
    meta = found[0]
    version = meta.name.removeprefix("maestro-").rsplit(".", 1)[0]
    fix = f"point --root at the extracted maestro-{version} folder (it holds {meta.name})"
    if meta.suffix == ".csv":
        records = _read_csv(meta, MAESTRO_COLUMNS, fix)
    else:
        records = _maestro_json_records(meta, fix)
    rows, audits = [], []
    for line, rec in enumerate(records, start=2 if meta.suffix == ".csv" else 0):
        relpath = _text(rec.get("audio_filename"))
        if not relpath:
            where = f"line {line}" if meta.suffix == ".csv" else f"record {line}"
            audits.append(
                _audit(
                    "maestro",
                    "",
                    REASON_BAD_METADATA_ROW,
                    f"{meta.name} {where}: empty audio_filename",
                    "dropped",
                )
            )
            continue
        year = _text(rec.get("year"))
        row = _source_row(
            "maestro",
            relpath,
            split=_text(rec.get("split")),
            duration_s=_float_or_nan(rec.get("duration")),
            tags=["piano"],
            title=_text(rec.get("canonical_title")),
            composer=_text(rec.get("canonical_composer")),
            year=int(year) if year.isdigit() else None,
            instruments=["piano"],
        )
        kept = _with_header(root, row, audits, options)
        if kept is not None:
            rows.append(kept)
    warnings = [
        f"{other.name} also present; read {meta.name}"
        for other in found[1:]
        if not other.name.startswith(f"maestro-{version}.")
    ]
    coverage = {
        "layout": f"MAESTRO {version} ({meta.suffix[1:].upper()})",
        "version": version,
        "metadata_files": [meta.name],
        "listed": len(records),
        "warnings": warnings,
        "expected": f"the audio files listed in {meta.name} (YEAR/<name>.wav)",
    }
    return IndexResult(rows, audits, coverage)


# ---------------------------------------------------------------- FSD50K


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _clips_info(root: Path, part: str, n_clips: int, audits: list[dict]) -> dict | None:
    """``{fname: {title, ...}}`` from ``FSD50K.metadata/<part>_clips_info_FSD50K.json``."""
    relpath = f"{FSD_METADATA}/{FSD_CLIPS_INFO.format(part=part)}"
    path = root / relpath
    if not path.is_file():
        detail = (
            f"Freesound title, description, tags, license and uploader left empty for the "
            f"{n_clips} {part} clips"
        )
        audits.append(_audit("fsd50k", relpath, REASON_METADATA_MISSING, detail, "kept"))
        return None
    fix = f"{relpath} maps each fname to {{{', '.join(FSD_CLIPS_INFO_FIELDS)}}}"
    data = _read_json(path, fix)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise MetadataError(f"{path}: expected an object of objects; {fix}")
    return {str(k).strip(): v for k, v in data.items()}


def _clip_fields(info: dict) -> dict:
    tags = info.get("tags") or []
    return {
        "title": _text(info.get("title")),
        "description": _text(info.get("description")),
        "freesound_tags": [str(t) for t in tags] if isinstance(tags, list) else _split_list(tags),
        "license": _text(info.get("license")),
        "uploader": _text(info.get("uploader")),
    }


def index_fsd50k(root: Path, options: IndexOptions) -> IndexResult:
    """Rows of ``FSD50K.ground_truth/{dev,eval}.csv``; split is train/val (dev) or eval."""
    truth = root / FSD_GROUND_TRUTH
    fix = (
        f"point --root at the FSD50K folder holding {FSD_GROUND_TRUTH}/, {FSD_DEV_AUDIO}/, "
        f"{FSD_EVAL_AUDIO}/"
    )
    tables = (
        ("dev", truth / "dev.csv", ("fname", "labels", "mids", "split"), FSD_DEV_AUDIO),
        ("eval", truth / "eval.csv", ("fname", "labels", "mids"), FSD_EVAL_AUDIO),
    )
    rows, audits, listed, metadata_files, warnings = [], [], 0, [], []
    for part, csv_path, required, audio_dir in tables:
        if not csv_path.is_file():
            raise MetadataError(
                f"{csv_path}: metadata file missing; {fix} (found: {describe_folder(root)})"
            )
        records = _read_csv(csv_path, required, fix)
        listed += len(records)
        metadata_files.append(f"{FSD_GROUND_TRUTH}/{csv_path.name}")
        info = _clips_info(root, part, len(records), audits)
        if info is None:
            warnings.append(
                f"{FSD_METADATA}/{FSD_CLIPS_INFO.format(part=part)} missing: Freesound "
                f"title/description/tags/license/uploader empty for {part} clips"
            )
        else:
            metadata_files.append(f"{FSD_METADATA}/{FSD_CLIPS_INFO.format(part=part)}")
        for line, rec in enumerate(records, start=2):
            fname = _text(rec.get("fname"))
            if not fname:
                detail = f"{csv_path.name} line {line}: empty fname"
                audits.append(_audit("fsd50k", "", REASON_BAD_METADATA_ROW, detail, "dropped"))
                continue
            relpath = f"{audio_dir}/{fname}.wav"
            extra = {}
            if info is not None:
                if fname in info:
                    extra = _clip_fields(info[fname])
                else:
                    audits.append(
                        _audit(
                            "fsd50k",
                            relpath,
                            REASON_NO_CLIP_INFO,
                            f"fname {fname} not in {FSD_CLIPS_INFO.format(part=part)}",
                            "kept; title/description/license/uploader empty",
                        )
                    )
            row = _source_row(
                "fsd50k",
                relpath,
                split=_text(rec.get("split")) or "eval",
                tags=_split_list(rec.get("labels")),
                mids=_split_list(rec.get("mids")),
                **extra,
            )
            kept = _with_header(root, row, audits, options)
            if kept is not None:
                rows.append(kept)
    coverage = {
        "layout": "FSD50K (ground truth CSVs + audio folders)",
        "version": "FSD50K",
        "metadata_files": metadata_files,
        "listed": listed,
        "warnings": warnings,
        "expected": (
            f"the clips listed in {FSD_GROUND_TRUTH}/dev.csv and eval.csv as "
            f"{FSD_DEV_AUDIO}/<fname>.wav and {FSD_EVAL_AUDIO}/<fname>.wav"
        ),
    }
    return IndexResult(rows, audits, coverage)


# ---------------------------------------------------------------- URMP


def parse_urmp_folder(name: str) -> tuple[int, str, list[str]] | None:
    """``'01_Jupiter_vn_vc'`` -> ``(1, 'Jupiter', ['vn', 'vc'])``; None if not a piece folder."""
    match = _URMP_FOLDER.match(name)
    if match is None:
        return None
    abbrevs = match.group(3).split("_")
    if any(a not in URMP_INSTRUMENTS for a in abbrevs):
        return None
    return int(match.group(1)), match.group(2), abbrevs


def parse_urmp_stem(name: str) -> tuple[int, str] | None:
    """``'AuSep_3_tpt_39_Fanfare.wav'`` -> ``(3, 'tpt')``; None if not an AuSep file name."""
    match = _URMP_STEM.match(name)
    if match is None or int(match.group(1)) < 1:
        return None
    return int(match.group(1)), match.group(2)


def _urmp_pieces(root: Path) -> tuple[str, list[str]]:
    """``(prefix, piece folder names)``: prefix is ``''`` or ``'Dataset/'`` (the download)."""

    def pieces(folder: Path) -> list[str]:
        return [
            e
            for e in sorted(os.listdir(folder), key=os.fsencode)
            if (folder / e).is_dir() and parse_urmp_folder(e) is not None
        ]

    if not root.is_dir():
        raise MetadataError(
            f"{root}: URMP root folder missing; point --root at the URMP download folder "
            f"(holding {URMP_DOWNLOAD_FOLDER}/) or at {URMP_DOWNLOAD_FOLDER}/ itself"
        )
    direct = pieces(root)
    if direct:
        return "", direct
    download = root / URMP_DOWNLOAD_FOLDER
    if download.is_dir():
        nested = pieces(download)
        if nested:
            return f"{URMP_DOWNLOAD_FOLDER}/", nested
        raise MetadataError(
            f"{download}: no URMP piece folders (NN_Title_inst_inst/ holding AuMix_*.wav); "
            f"found: {describe_folder(download)}"
        )
    raise MetadataError(
        f"{root}: no URMP piece folders (NN_Title_inst_inst/ holding AuMix_*.wav) and no "
        f"{URMP_DOWNLOAD_FOLDER}/ folder holding them; found: {describe_folder(root)}"
    )


def _urmp_piece(
    root: Path, prefix: str, folder: str, parsed: tuple[int, str, list[str]], audits: list[dict]
) -> tuple[list[tuple[str, dict]], int]:
    """``([(relpath, fields)], files expected)`` for one piece folder; audits disagreements.

    Stems are the ``AuSep_*`` files present; each one's instrument comes from its own
    file name, and a part whose code differs from the folder's is audited and kept.
    """
    number_text = folder.split("_", 1)[0]
    _number, title, abbrevs = parsed
    names = sorted(os.listdir(root / prefix / folder), key=os.fsencode)
    shown_title = display_path(title)
    stems: dict[int, tuple[str, str]] = {}
    for name in names:
        if not (name.startswith("AuSep_") and name.lower().endswith(".wav")):
            continue
        parsed_stem = parse_urmp_stem(name)
        if parsed_stem is None or parsed_stem[1] not in URMP_INSTRUMENTS:
            detail = "expected AuSep_K_inst_NN_Title.wav with a URMP instrument code"
            audits.append(
                _audit(
                    "urmp", f"{prefix}{folder}/{name}", REASON_UNRECOGNISED_STEM, detail, "skipped"
                )
            )
            continue
        part, code = parsed_stem
        if part in stems:
            detail = f"part {part} already taken by {stems[part][0]}"
            audits.append(
                _audit(
                    "urmp", f"{prefix}{folder}/{name}", REASON_UNRECOGNISED_STEM, detail, "skipped"
                )
            )
            continue
        stems[part] = (name, code)
    entries: list[tuple[str, dict]] = []
    instruments = []
    for part in sorted(set(range(1, len(abbrevs) + 1)) | set(stems)):
        folder_code = abbrevs[part - 1] if part <= len(abbrevs) else None
        if part not in stems:
            expected = f"{prefix}{folder}/AuSep_{part}_{folder_code}_{number_text}_{title}.wav"
            detail = f"expected at {root / expected}"
            audits.append(_audit("urmp", expected, REASON_MISSING_FILE, detail, "dropped"))
            instruments.append(URMP_INSTRUMENTS[folder_code])
            continue
        name, code = stems[part]
        if code != folder_code:
            said = (
                f"folder name says {folder_code} ({URMP_INSTRUMENTS[folder_code]})"
                if folder_code
                else f"folder name lists {len(abbrevs)} parts"
            )
            detail = f"part {part}: file name says {code} ({URMP_INSTRUMENTS[code]}), {said}"
            audits.append(
                _audit(
                    "urmp",
                    f"{prefix}{folder}/{name}",
                    REASON_STEM_MISMATCH,
                    detail,
                    "kept; instrument from the file name",
                )
            )
        instruments.append(URMP_INSTRUMENTS[code])
        entries.append(
            (
                f"{prefix}{folder}/{name}",
                {
                    "tags": [URMP_INSTRUMENTS[code]],
                    "instruments": [URMP_INSTRUMENTS[code]],
                    "stem": "sep",
                },
            )
        )
    mix_name = f"AuMix_{folder}.wav"
    mixes = [n for n in names if n.startswith("AuMix_") and n.lower().endswith(".wav")]
    if mix_name not in mixes and len(mixes) == 1:
        detail = f"expected {display_path(mix_name)}, found {display_path(mixes[0])}"
        audits.append(
            _audit("urmp", f"{prefix}{folder}/{mixes[0]}", REASON_MIX_NAME, detail, "kept")
        )
        mix_name = mixes[0]
    mix_fields = {
        "tags": list(dict.fromkeys(instruments)),
        "instruments": instruments,
        "stem": "mix",
    }
    entries.insert(0, (f"{prefix}{folder}/{mix_name}", mix_fields))
    for _relpath, fields in entries:
        fields["title"] = shown_title
    return entries, 1 + len(set(range(1, len(abbrevs) + 1)) | set(stems))


def index_urmp(root: Path, options: IndexOptions) -> IndexResult:
    """AuMix and AuSep rows for every ``NN_Title_inst_inst`` piece folder.

    ``root`` may be the folder holding the piece folders or the download folder holding
    ``Dataset/``; source ids are the same either way.
    """
    prefix, _pieces = _urmp_pieces(root)
    base = root / prefix
    rows, audits, listed = [], [], 0
    for entry in sorted(os.listdir(base), key=os.fsencode):
        if not (base / entry).is_dir():
            continue
        parsed = parse_urmp_folder(entry)
        if parsed is None:
            detail = "expected NN_Title_inst[_inst...] with URMP instrument codes"
            audits.append(_audit("urmp", f"{prefix}{entry}", REASON_NOT_A_PIECE, detail, "skipped"))
            continue
        entries, expected = _urmp_piece(root, prefix, entry, parsed, audits)
        listed += expected
        for relpath, fields in entries:
            row = _source_row("urmp", relpath, id_path=relpath.removeprefix(prefix), **fields)
            kept = _with_header(root, row, audits, options)
            if kept is not None:
                rows.append(kept)
    layout = (
        f"URMP download folder ({URMP_DOWNLOAD_FOLDER}/NN_Title_inst_inst/)"
        if prefix
        else "URMP piece folders (NN_Title_inst_inst/)"
    )
    coverage = {
        "layout": layout,
        "version": "URMP",
        "metadata_files": [],
        "listed": listed,
        "warnings": [],
        "expected": (
            f"AuMix_<folder>.wav and one AuSep_K_inst_NN_Title.wav per part in each "
            f"{prefix}NN_Title_inst_inst/ piece folder"
        ),
    }
    return IndexResult(rows, audits, coverage)


# ---------------------------------------------------------------- all datasets

_INDEXERS = {"maestro": index_maestro, "urmp": index_urmp, "fsd50k": index_fsd50k}


def _examples(paths: list[str], n: int = SUMMARY_EXAMPLES) -> str:
    shown = ", ".join(paths[:n])
    return f"{shown}, ..." if len(paths) > n else shown


def index_dataset(
    kind: str, root: str | os.PathLike, options: IndexOptions | None = None
) -> IndexResult:
    """Index one dataset; raises :class:`NoUsableSourcesError` when nothing is usable."""
    if kind not in _INDEXERS:
        raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
    options = options or IndexOptions()
    root = Path(root)
    result = _INDEXERS[kind](root, options)
    rows, audits = result.rows, result.audits
    rows.sort(key=lambda r: r["source_id"])
    ids = [r["source_id"] for r in rows]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise MetadataError(
            f"{root}: duplicate source ids {dupes[:5]}; the metadata lists a file twice"
        )
    missing = [a["path"] for a in audits if a["reason"] == REASON_MISSING_FILE]
    unreadable = [a["path"] for a in audits if a["reason"] == REASON_UNREADABLE_HEADER]
    usable = sum(1 for r in rows if r["sample_rate"] is not None)
    cov = result.coverage
    expected = cov.pop("expected")
    if usable == 0:
        found = (
            f"{len(rows)} listed files present but none has a readable header "
            f"({_examples(unreadable)})"
            if rows
            else f"none of the {cov['listed']} listed files; the root holds: {describe_folder(root)}"
        )
        raise NoUsableSourcesError(
            f"{root}: no usable {kind} source; expected {expected}; found {found}"
        )
    result.coverage = {
        "dataset": kind,
        "root": str(root),
        **cov,
        "present": len(rows),
        "missing": len(missing),
        "unreadable": len(unreadable),
        "usable": usable,
        "fraction_present": len(rows) / cov["listed"] if cov["listed"] else 0.0,
        "audit_rows": len(audits),
    }
    log.info("%s: %d sources, %d audit rows", kind, len(rows), len(audits))
    return result


def index_sources(kind: str, root: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Index one dataset: ``(source rows, audit rows)``, sources sorted by ``source_id``."""
    result = index_dataset(kind, root)
    return result.rows, result.audits


def audit_summary(result: IndexResult) -> list[str]:
    """One log line per audit reason: count and the first few paths (all are in the table)."""
    by_reason: dict[str, list[str]] = {}
    for audit in result.audits:
        by_reason.setdefault(audit["reason"], []).append(audit["path"] or audit["detail"])
    cov = result.coverage
    lines = []
    for reason, paths in by_reason.items():
        what = (
            f"{len(paths)} of {cov['listed']} listed files missing"
            if reason == REASON_MISSING_FILE
            else f"{len(paths)} x {reason}"
        )
        lines.append(
            f"{cov['dataset']}: {what} ({_examples(paths)}); all {len(paths)} are in the "
            "audit table"
        )
    return lines + [f"{cov['dataset']}: {w}" for w in cov.get("warnings", [])]


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
            ("mids", pa.list_(pa.string())),
            ("description", pa.string()),
            ("freesound_tags", pa.list_(pa.string())),
            ("license", pa.string()),
            ("uploader", pa.string()),
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
