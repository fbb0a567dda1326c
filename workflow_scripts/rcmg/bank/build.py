"""Style bank: filter CLAP embeddings by metadata, drop near-duplicates, L2-normalise.

Memory stays bounded for million-row inputs: the embeddings are read in row blocks
with plain file reads (no whole-file memmap pages pinned), the mapping is streamed
twice (decide, then write), per-row state is one ``int8`` reason code, and the bank
is streamed to disk. The only structure that grows with the bank is the duplicate
finder's index (exact float32 for small banks, float16 IVF above
``FLAT_DEDUPE_MAX_ROWS``).

Every input row is either kept or gets exactly one drop reason (the first that
applies, in ``DROP_REASONS`` order).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rcmg.data.licences import check_classes, normalize_license
from rcmg.workflow.atomic import atomic_dir, atomic_path, write_json
from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

FILTER_KEYS = (
    "include_tags",
    "exclude_tags",
    "min_source_seconds",
    "max_source_seconds",
    "min_rms_dbfs",
    "splits",
    "exclude_licenses",
)
DROP_REASONS = (
    "missing_metadata",
    "split",
    "exclude_tag",
    "include_tag",
    "exclude_license",
    "too_short",
    "too_long",
    "too_quiet",
    "non_finite_embedding",
    "zero_norm_embedding",
    "near_duplicate",
)
KEPT = 0
REASON_CODE = {reason: code for code, reason in enumerate(DROP_REASONS, start=1)}
READ_BLOCK_ROWS = 16384
DEDUPE_BLOCK_ROWS = 2048
FLAT_DEDUPE_MAX_ROWS = 20000
DEDUPE_NPROBE = 8
DEDUPE_TOLERANCE = 1e-6  # float32 rounding: identical unit vectors can score 0.9999999


class EmptyBankError(InputError):
    """Raised when the filters and dedupe leave no row in the bank."""


@dataclass(frozen=True)
class BankFilter:
    """Row filters for the style bank (empty lists and ``None`` mean "no filter")."""

    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    min_source_seconds: float | None = None
    max_source_seconds: float | None = None
    min_rms_dbfs: float | None = None
    splits: tuple[str, ...] = ()
    exclude_licenses: tuple[str, ...] = ()  # licence classes (rcmg.data.licences)
    _include_keys: frozenset[str] = field(default=frozenset(), repr=False, compare=False)
    _exclude_keys: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_include_keys", frozenset(map(normalize_tag, self.include_tags)))
        object.__setattr__(self, "_exclude_keys", frozenset(map(normalize_tag, self.exclude_tags)))

    def as_dict(self) -> dict:
        return {
            k: (list(v) if isinstance(v, tuple) else v)
            for k, v in asdict(self).items()
            if not k.startswith("_")
        }


def normalize_tag(tag: str) -> str:
    """Case-, underscore- and spacing-insensitive tag key ("Human_voice" == "human voice")."""
    return " ".join(str(tag).replace("_", " ").split()).casefold()


def _string_list(value, key: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{source}: '{key}' must be a list of strings, got {value!r}")
    return tuple(value)


def _optional_number(value, key: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{source}: '{key}' must be a finite number or null, got {value!r}")
    return float(value)


def filter_from_dict(data: dict | None, source: str = "filter") -> BankFilter:
    """Validate a filter mapping (unknown keys and wrong types raise, naming ``source``)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ValueError(f"{source}: the filter must be a mapping of keys {', '.join(FILTER_KEYS)}")
    unknown = sorted(set(data) - set(FILTER_KEYS))
    if unknown:
        raise ValueError(
            f"{source}: unknown filter key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(FILTER_KEYS)}"
        )
    spec = BankFilter(
        include_tags=_string_list(data.get("include_tags"), "include_tags", source),
        exclude_tags=_string_list(data.get("exclude_tags"), "exclude_tags", source),
        min_source_seconds=_optional_number(
            data.get("min_source_seconds"), "min_source_seconds", source
        ),
        max_source_seconds=_optional_number(
            data.get("max_source_seconds"), "max_source_seconds", source
        ),
        min_rms_dbfs=_optional_number(data.get("min_rms_dbfs"), "min_rms_dbfs", source),
        splits=_string_list(data.get("splits"), "splits", source),
        exclude_licenses=check_classes(
            _string_list(data.get("exclude_licenses"), "exclude_licenses", source),
            f"{source}: exclude_licenses",
        ),
    )
    if (
        spec.min_source_seconds is not None
        and spec.max_source_seconds is not None
        and spec.min_source_seconds > spec.max_source_seconds
    ):
        raise ValueError(f"{source}: min_source_seconds > max_source_seconds")
    return spec


def load_filter(path: str | os.PathLike) -> BankFilter:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"filter file {path} does not exist (see config/fsd50k_filter.yaml)"
        )
    with open(path, encoding="utf-8") as fh:
        return filter_from_dict(yaml.safe_load(fh), source=str(path))


def _number_field(row: dict, key: str) -> float | None:
    value = row.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metadata_drop_reason(row: dict, spec: BankFilter) -> str | None:
    """First metadata reason to drop ``row`` under ``spec``, or ``None`` to keep it."""
    needs_tags = bool(spec.include_tags or spec.exclude_tags)
    needs_duration = spec.min_source_seconds is not None or spec.max_source_seconds is not None
    duration = _number_field(row, "source_duration_s")
    rms = _number_field(row, "rms_dbfs")
    if (
        (needs_tags and not isinstance(row.get("tags"), list))
        or (spec.splits and not isinstance(row.get("split"), str))
        or (needs_duration and duration is None)
        or (spec.min_rms_dbfs is not None and rms is None)
        or (spec.exclude_licenses and "license" not in row)
    ):
        return "missing_metadata"
    if spec.splits and row["split"] not in spec.splits:
        return "split"
    tag_keys = {normalize_tag(t) for t in row.get("tags") or ()}
    if tag_keys & spec._exclude_keys:
        return "exclude_tag"
    if spec.include_tags and not tag_keys & spec._include_keys:
        return "include_tag"
    if spec.exclude_licenses and normalize_license(row["license"]).cls in spec.exclude_licenses:
        return "exclude_license"
    if spec.min_source_seconds is not None and duration < spec.min_source_seconds:
        return "too_short"
    if spec.max_source_seconds is not None and duration > spec.max_source_seconds:
        return "too_long"
    if spec.min_rms_dbfs is not None and rms < spec.min_rms_dbfs:
        return "too_quiet"
    return None


def iter_mapping(path: Path):
    """Yield ``(row_index, row_dict)`` from a mapping ``.jsonl``, checking the row numbering."""
    with open(path, encoding="utf-8") as fh:
        index = 0
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{line_no}: invalid JSON ({err}); regenerate the mapping"
                ) from err
            if row.get("row", index) != index:
                raise ValueError(
                    f"{path}:{line_no}: 'row' is {row.get('row')} but the line is row {index}; "
                    "the mapping must list embedding rows in order"
                )
            if "segment_id" not in row:
                raise ValueError(f"{path}:{line_no}: row {index} has no 'segment_id'")
            yield index, row
            index += 1


def scan_mapping(path: Path, spec: BankFilter, n_rows: int) -> np.ndarray:
    """Reason codes (``int8``, 0 = kept so far) from the metadata filters."""
    from tqdm import tqdm

    reasons = np.zeros(n_rows, dtype=np.int8)
    count = 0
    for index, row in tqdm(iter_mapping(path), total=n_rows, desc="filter mapping", unit="row"):
        if index >= n_rows:
            raise ValueError(
                f"{path} has more rows than the {n_rows} embeddings; regenerate both together"
            )
        reason = metadata_drop_reason(row, spec)
        if reason is not None:
            reasons[index] = REASON_CODE[reason]
        count += 1
    if count != n_rows:
        raise ValueError(
            f"{path} has {count} rows but the embeddings have {n_rows}; regenerate both together"
        )
    return reasons


@dataclass(frozen=True)
class NpyLayout:
    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    data_offset: int


def read_npy_layout(path: str | os.PathLike) -> NpyLayout:
    """Header of a 2-D, C-ordered float ``.npy`` file (no data read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"embeddings file {path} does not exist")
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = reader(fh)
        offset = fh.tell()
    if len(shape) != 2 or fortran or dtype.kind != "f":
        raise ValueError(
            f"{path}: expected a C-ordered 2-D float array [N, d], got shape {shape}, dtype {dtype}, "
            f"fortran_order={fortran}"
        )
    return NpyLayout(path, (int(shape[0]), int(shape[1])), dtype, offset)


def iter_blocks(layout: NpyLayout, block_rows: int = READ_BLOCK_ROWS):
    """Yield ``(start_row, float32 block)`` by plain reads (bounded resident memory)."""
    n_rows, dim = layout.shape
    with open(layout.path, "rb") as fh:
        fh.seek(layout.data_offset)
        for start in range(0, n_rows, block_rows):
            count = min(block_rows, n_rows - start)
            block = np.fromfile(fh, dtype=layout.dtype, count=count * dim)
            if block.size != count * dim:
                raise ValueError(
                    f"{layout.path} is truncated at row {start} (expected {n_rows} rows)"
                )
            yield start, block.reshape(count, dim).astype(np.float32, copy=False)


def unit_rows(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(normalised rows, finite mask, nonzero mask)``; bad rows come back as zeros.

    A row whose norm overflows float32 counts as non-finite.
    """
    finite = np.all(np.isfinite(block), axis=1)
    safe = np.where(finite[:, None], block, np.float32(0.0)).astype(np.float32, copy=False)
    with np.errstate(over="ignore"):
        norms = np.linalg.norm(safe, axis=1)
    overflow = ~np.isfinite(norms)  # float32 squares of huge values
    finite &= ~overflow
    safe[overflow] = 0.0  # a fresh array from np.where, never the caller's block
    norms[overflow] = 0.0
    nonzero = norms > 0
    unit = safe / np.where(nonzero, norms, 1.0)[:, None]
    return unit.astype(np.float32, copy=False), finite, nonzero


class DuplicateFinder:
    """Greedy near-duplicate removal: a row is a duplicate if it is within ``threshold``
    cosine of any row kept before it (row order). Kept rows live in a FAISS index."""

    def __init__(self, dim: int, threshold: float, index):
        self.dim = dim
        self.threshold = threshold - DEDUPE_TOLERANCE
        self.index = index

    @classmethod
    def create(
        cls, dim: int, threshold: float, n_candidates: int, kind: str, training=None, seed: int = 0
    ):
        import faiss

        if kind == "auto":
            kind = "flat" if n_candidates <= FLAT_DEDUPE_MAX_ROWS else "ivf"
        if kind == "flat" or training is None or len(training) < 2:
            return cls(dim, threshold, faiss.IndexFlatIP(dim)), "flat"
        nlist = max(1, min(int(math.sqrt(n_candidates)), len(training) // 39, 4096))
        index = faiss.index_factory(dim, f"IVF{nlist},SQfp16", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(training)
        index.nprobe = min(DEDUPE_NPROBE, nlist)
        return cls(dim, threshold, index), f"ivf{nlist}-sqfp16-nprobe{index.nprobe}"

    def keep_mask(self, unit: np.ndarray) -> np.ndarray:
        """Which rows of ``unit`` (normalised, in row order) to keep; adds them to the index."""
        if len(unit) == 0:
            return np.zeros(0, dtype=bool)
        keep = np.ones(len(unit), dtype=bool)
        if self.index.ntotal:
            scores, _ = self.index.search(unit, 1)
            keep &= scores[:, 0] < self.threshold
        later, earlier = np.nonzero(np.tril(unit @ unit.T >= self.threshold, k=-1))
        for row, partner in zip(later.tolist(), earlier.tolist(), strict=True):
            if keep[row] and keep[partner]:
                keep[row] = False
        if keep.any():
            self.index.add(np.ascontiguousarray(unit[keep]))
        return keep


def _training_sample(layout: NpyLayout, reasons: np.ndarray, n_train: int, seed: int) -> np.ndarray:
    candidates = np.flatnonzero(reasons == KEPT)
    chosen = np.zeros(len(reasons), dtype=bool)
    chosen[
        np.random.default_rng(seed).choice(candidates, min(n_train, len(candidates)), replace=False)
    ] = True
    parts = []
    for start, block in iter_blocks(layout):
        unit, finite, nonzero = unit_rows(block)
        parts.append(unit[chosen[start : start + len(block)] & finite & nonzero])
    return (
        np.ascontiguousarray(np.concatenate(parts))
        if parts
        else np.zeros((0, layout.shape[1]), np.float32)
    )


def embedding_pass(
    layout: NpyLayout,
    reasons: np.ndarray,
    dedupe_cosine: float | None,
    dedupe_index: str = "auto",
    seed: int = 0,
) -> str:
    """Mark bad embeddings and near-duplicates in ``reasons`` (in place); return the dedupe method."""
    from tqdm import tqdm

    finder, method = None, "off"
    if dedupe_cosine is not None:
        n_candidates = int(np.sum(reasons == KEPT))
        wants_ivf = dedupe_index == "ivf" or (
            dedupe_index == "auto" and n_candidates > FLAT_DEDUPE_MAX_ROWS
        )
        training = None
        if wants_ivf:
            n_train = 50 * max(1, min(int(math.sqrt(n_candidates)), 4096))
            training = _training_sample(layout, reasons, n_train, seed)
        finder, method = DuplicateFinder.create(
            layout.shape[1], dedupe_cosine, n_candidates, dedupe_index, training, seed
        )
    progress = tqdm(total=layout.shape[0], desc="check + dedupe", unit="row")
    for start, block in iter_blocks(layout):
        unit, finite, nonzero = unit_rows(block)
        view = reasons[start : start + len(block)]
        view[(view == KEPT) & ~finite] = REASON_CODE["non_finite_embedding"]
        view[(view == KEPT) & ~nonzero] = REASON_CODE["zero_norm_embedding"]
        if finder is not None:
            for sub in range(0, len(block), DEDUPE_BLOCK_ROWS):
                rows = np.flatnonzero(view[sub : sub + DEDUPE_BLOCK_ROWS] == KEPT) + sub
                duplicate = ~finder.keep_mask(np.ascontiguousarray(unit[rows]))
                view[rows[duplicate]] = REASON_CODE["near_duplicate"]
        progress.update(len(block))
    progress.close()
    return method


def reason_counts(reasons: np.ndarray) -> dict[str, int]:
    counts = np.bincount(reasons.astype(np.int64), minlength=len(DROP_REASONS) + 1)
    return {reason: int(counts[code]) for reason, code in REASON_CODE.items()}


def empty_bank_message(reasons: np.ndarray, filter_path: str) -> str:
    counts = {r: c for r, c in reason_counts(reasons).items() if c}
    summary = ", ".join(f"{r}={c}" for r, c in sorted(counts.items(), key=lambda kv: -kv[1]))
    main = max(counts, key=counts.get) if counts else "none (the input has no rows)"
    return (
        f"the style bank would be empty: all {len(reasons)} rows were dropped ({summary}); "
        f"the '{main}' filter removed the most. Loosen {filter_path} (or --dedupe-cosine) "
        "and rerun build_bank.py"
    )


def write_bank_npy(layout: NpyLayout, reasons: np.ndarray, out_path: str | os.PathLike) -> int:
    """Stream the kept rows, L2-normalised float32, into a memmap-able ``.npy``."""
    n_kept = int(np.sum(reasons == KEPT))
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
        "fortran_order": False,
        "shape": (n_kept, layout.shape[1]),
    }
    with atomic_path(out_path, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for start, block in iter_blocks(layout):
            keep = reasons[start : start + len(block)] == KEPT
            unit, _, _ = unit_rows(block[keep])
            fh.write(unit.astype("<f4", copy=False).tobytes())
    return n_kept


def _write_audit_plot(
    path: Path, counts: dict[str, int], kept: int, tag_rows: list[tuple[str, int, int]]
) -> None:
    from rcmg.workflow.figures import pyplot, save_png

    plt = pyplot()
    fig, (ax_reasons, ax_tags) = plt.subplots(1, 2, figsize=(13, 5))
    labels = ["kept", *counts]
    values = [kept, *counts.values()]
    ax_reasons.bar(labels, values, color=["tab:green"] + ["tab:red"] * len(counts))
    ax_reasons.set_title("rows kept / dropped by reason")
    ax_reasons.tick_params(axis="x", rotation=60)
    top = tag_rows[:20][::-1]
    names = [t for t, _, _ in top]
    ax_tags.barh(names, [k for _, k, _ in top], color="tab:green", label="kept")
    ax_tags.barh(
        names, [d for _, _, d in top], left=[k for _, k, _ in top], color="tab:red", label="dropped"
    )
    ax_tags.set_title("top tags: kept vs dropped")
    ax_tags.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def write_mapping_and_audit(
    mapping_path: Path,
    reasons: np.ndarray,
    out_mapping: str | os.PathLike,
    audit_dir: str | os.PathLike,
    audit: dict,
) -> None:
    """Second mapping pass: kept rows (renumbered, ``orig_row``) + dropped.csv + tag histogram."""
    from tqdm import tqdm

    tag_counts: dict[str, list[int]] = {}
    with (
        atomic_dir(audit_dir) as tmp_dir,
        atomic_path(out_mapping) as tmp_mapping,
        open(tmp_mapping, "w", encoding="utf-8") as mapping_out,
        open(tmp_dir / "dropped.csv", "w", newline="", encoding="utf-8") as dropped_out,
    ):
        dropped = csv.writer(dropped_out)
        dropped.writerow(["row", "segment_id", "dataset", "reason"])
        new_row = 0
        rows = tqdm(
            iter_mapping(mapping_path), total=len(reasons), desc="write mapping", unit="row"
        )
        for index, row in rows:
            code = int(reasons[index])
            for tag in row.get("tags") or ():
                tag_counts.setdefault(str(tag), [0, 0])[0 if code == KEPT else 1] += 1
            if code == KEPT:
                mapping_out.write(json.dumps({**row, "row": new_row, "orig_row": index}) + "\n")
                new_row += 1
            else:
                dropped.writerow(
                    [index, row["segment_id"], row.get("dataset", ""), DROP_REASONS[code - 1]]
                )
        tag_rows = sorted(
            ((t, k, d) for t, (k, d) in tag_counts.items()), key=lambda r: (-(r[1] + r[2]), r[0])
        )
        with open(tmp_dir / "tag_histogram.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["tag", "kept", "dropped"])
            writer.writerows(tag_rows)
        write_json(tmp_dir / "audit.json", audit)
        _write_audit_plot(
            tmp_dir / "audit.png", audit["dropped_by_reason"], audit["totals"]["kept"], tag_rows
        )


def build_bank(
    embeddings: str | os.PathLike,
    mapping: str | os.PathLike,
    filter_path: str | os.PathLike,
    out_bank: str | os.PathLike,
    out_mapping: str | os.PathLike,
    audit_dir: str | os.PathLike,
    dedupe_cosine: float | None = 0.98,
    dedupe_index: str = "auto",
    threads: int | None = None,
    seed: int = 0,
) -> dict:
    """Filter, dedupe and normalise a dataset's embeddings into a style bank; return the audit."""
    from rcmg.bank.retrieval import set_threads

    if dedupe_cosine is not None and not (0.0 < dedupe_cosine <= 1.0):
        raise ValueError(f"--dedupe-cosine must be in (0, 1], got {dedupe_cosine}")
    if dedupe_index not in ("auto", "flat", "ivf"):
        raise ValueError(f"dedupe_index must be auto, flat or ivf, got {dedupe_index!r}")
    set_threads(threads)
    spec = load_filter(filter_path)
    layout = read_npy_layout(embeddings)
    reasons = scan_mapping(Path(mapping), spec, layout.shape[0])
    method = embedding_pass(layout, reasons, dedupe_cosine, dedupe_index, seed)
    n_kept = int(np.sum(reasons == KEPT))
    if n_kept == 0:
        raise EmptyBankError(empty_bank_message(reasons, str(filter_path)))
    counts = reason_counts(reasons)
    audit = {
        "inputs": {
            "embeddings": str(embeddings),
            "mapping": str(mapping),
            "filter": str(filter_path),
        },
        "parameters": {
            "filter": spec.as_dict(),
            "dedupe_cosine": dedupe_cosine,
            "dedupe_method": method,
            "seed": seed,
        },
        "dim": layout.shape[1],
        "totals": {
            "input_rows": layout.shape[0],
            "kept": n_kept,
            "dropped": layout.shape[0] - n_kept,
        },
        "dropped_by_reason": counts,
    }
    write_mapping_and_audit(Path(mapping), reasons, out_mapping, audit_dir, audit)
    write_bank_npy(layout, reasons, out_bank)
    log.info("style bank: kept %d of %d rows (%s)", n_kept, layout.shape[0], counts)
    return audit
