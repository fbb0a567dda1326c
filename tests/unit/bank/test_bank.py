"""Style bank: filters, near-duplicate removal, the kept-or-one-reason invariant, audit files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import yaml
from rcmg.bank.build import (
    DROP_REASONS,
    EmptyBankError,
    build_bank,
    filter_from_dict,
    load_filter,
    metadata_drop_reason,
    unit_rows,
)
from rcmg.workflow.atomic import read_jsonl, write_jsonl

DIM = 16


def synthetic_inputs(tmp_path, n: int = 200, seed: int = 0):
    """Embeddings + mapping with known problem rows (see the returned dict)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, DIM)).astype(np.float32) * 3.0
    tags_cycle = [["Piano", "Music"], ["Speech"], ["Acoustic_guitar"], ["human voice", "Music"], []]
    rows = []
    for i in range(n):
        rows.append(
            {
                "row": i,
                "segment_id": f"seg{i:04d}",
                "source_id": f"src{i // 2}",
                "dataset": "fsd50k",
                "path": f"audio/{i}.wav",
                "offset_s": 0.0,
                "duration_s": 10.0,
                "split": "eval" if i % 11 == 0 else "dev",
                "tags": tags_cycle[i % len(tags_cycle)],
                "rms_dbfs": -70.0 if i % 13 == 0 else -20.0,
                "source_duration_s": 0.5 if i % 17 == 0 else (40.0 if i % 19 == 0 else 12.0),
            }
        )
    # near-duplicates of earlier rows (same direction, different scale + tiny noise)
    duplicate_of = {}
    for later, earlier in ((151, 1), (152, 2), (153, 151), (198, 196)):
        vectors[later] = vectors[earlier] * 0.5 + rng.normal(size=DIM).astype(np.float32) * 1e-3
        duplicate_of[later] = earlier
    vectors[7] = np.nan
    vectors[8] = 0.0
    del rows[9]["rms_dbfs"]
    emb_path, mapping_path = tmp_path / "embeddings.npy", tmp_path / "mapping.jsonl"
    np.save(emb_path, vectors)
    write_jsonl(mapping_path, rows)
    return emb_path, mapping_path, vectors, rows, duplicate_of


def write_filter(path, **overrides):
    data = {
        "include_tags": [],
        "exclude_tags": ["Speech", "Human_voice"],
        "min_source_seconds": 1.0,
        "max_source_seconds": 30.0,
        "min_rms_dbfs": -50.0,
        "splits": ["dev"],
    }
    data.update(overrides)
    path.write_text(yaml.safe_dump(data))
    return path


def run_build(tmp_path, emb, mapping, filter_path, **kwargs):
    out = tmp_path / "out"
    audit = build_bank(
        emb,
        mapping,
        filter_path,
        out / "bank.npy",
        out / "bank.jsonl",
        out / "audit",
        **kwargs,
    )
    return audit, out


def expected_reason(i, row, vectors, duplicate_of):
    """Independent restatement of the documented precedence for the synthetic rows."""
    tags = {t.lower().replace("_", " ") for t in row["tags"]}
    if "rms_dbfs" not in row:
        return "missing_metadata"
    if row["split"] != "dev":
        return "split"
    if tags & {"speech", "human voice"}:
        return "exclude_tag"
    if row["source_duration_s"] < 1.0:
        return "too_short"
    if row["source_duration_s"] > 30.0:
        return "too_long"
    if row["rms_dbfs"] < -50.0:
        return "too_quiet"
    if not np.all(np.isfinite(vectors[i])):
        return "non_finite_embedding"
    if not np.any(vectors[i]):
        return "zero_norm_embedding"
    return None


def test_every_row_kept_or_exactly_one_reason(tmp_path):
    emb, mapping, vectors, rows, duplicate_of = synthetic_inputs(tmp_path)
    filter_path = write_filter(tmp_path / "filter.yaml")
    audit, out = run_build(tmp_path, emb, mapping, filter_path, dedupe_cosine=0.98)

    kept = read_jsonl(out / "bank.jsonl")
    with open(out / "audit" / "dropped.csv", newline="") as fh:
        dropped = list(csv.DictReader(fh))
    kept_rows = [r["orig_row"] for r in kept]
    dropped_rows = [int(r["row"]) for r in dropped]
    assert sorted(kept_rows + dropped_rows) == list(range(len(rows)))
    assert len(set(dropped_rows)) == len(dropped_rows)
    assert {r["reason"] for r in dropped} <= set(DROP_REASONS)

    reasons = {int(r["row"]): r["reason"] for r in dropped}
    for i, row in enumerate(rows):
        meta_reason = expected_reason(i, row, vectors, duplicate_of)
        if meta_reason is not None:
            assert reasons.get(i) == meta_reason, (i, row)
    survivors_before_dedupe = [
        i for i, row in enumerate(rows) if expected_reason(i, row, vectors, duplicate_of) is None
    ]
    for later, earlier in duplicate_of.items():
        if later in survivors_before_dedupe and earlier in survivors_before_dedupe:
            assert reasons.get(later) == "near_duplicate"
    assert Counter(reasons.values()) == {k: v for k, v in audit["dropped_by_reason"].items() if v}
    assert audit["totals"] == {"input_rows": 200, "kept": len(kept), "dropped": len(dropped)}


def test_bank_is_normalised_memmap_with_renumbered_mapping(tmp_path):
    emb, mapping, vectors, rows, _ = synthetic_inputs(tmp_path)
    _, out = run_build(tmp_path, emb, mapping, write_filter(tmp_path / "f.yaml"))
    bank = np.load(out / "bank.npy", mmap_mode="r")
    kept = read_jsonl(out / "bank.jsonl")
    assert bank.dtype == np.float32 and bank.shape == (len(kept), DIM)
    np.testing.assert_allclose(np.linalg.norm(bank, axis=1), 1.0, rtol=1e-6)
    for new_row, row in enumerate(kept):
        assert row["row"] == new_row
        source = vectors[row["orig_row"]]
        np.testing.assert_allclose(bank[new_row], source / np.linalg.norm(source), rtol=1e-5)
        assert row["segment_id"] == rows[row["orig_row"]]["segment_id"]
    assert np.min(np.diff([r["orig_row"] for r in kept])) > 0


def test_dedupe_keeps_first_and_no_kept_pair_is_too_close(tmp_path):
    emb, mapping, vectors, rows, duplicate_of = synthetic_inputs(tmp_path)
    filter_path = write_filter(
        tmp_path / "f.yaml", exclude_tags=[], splits=[], min_source_seconds=None,
        max_source_seconds=None, min_rms_dbfs=None,
    )  # fmt: skip
    audit, out = run_build(tmp_path, emb, mapping, filter_path, dedupe_cosine=0.98)
    kept = {r["orig_row"] for r in read_jsonl(out / "bank.jsonl")}
    assert {1, 2, 196} <= kept
    assert not {151, 152, 153, 198} & kept
    assert audit["dropped_by_reason"]["near_duplicate"] == 4
    bank = np.load(out / "bank.npy")
    sims = bank @ bank.T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.98


def test_dedupe_ivf_path_matches_flat(tmp_path):
    rng = np.random.default_rng(5)
    base = rng.normal(size=(3000, DIM)).astype(np.float32)
    dup_rows = np.sort(rng.choice(np.arange(1, 3000), 300, replace=False))
    originals = np.setdiff1d(np.arange(3000), dup_rows)
    for row in dup_rows:
        source = rng.choice(originals[originals < row])
        base[row] = base[source] + rng.normal(size=DIM).astype(np.float32) * 1e-3
    emb, mapping = tmp_path / "e.npy", tmp_path / "m.jsonl"
    np.save(emb, base)
    write_jsonl(mapping, [{"row": i, "segment_id": f"s{i}"} for i in range(len(base))])
    empty_filter = tmp_path / "f.yaml"
    empty_filter.write_text("{}\n")
    kept = {}
    for kind in ("flat", "ivf"):
        out = tmp_path / kind
        audit = build_bank(
            emb, mapping, empty_filter, out / "b.npy", out / "b.jsonl", out / "a", dedupe_index=kind
        )
        kept[kind] = [r["orig_row"] for r in read_jsonl(out / "b.jsonl")]
        assert audit["parameters"]["dedupe_method"].startswith(kind)
    overlap = len(set(kept["flat"]) & set(kept["ivf"])) / len(kept["flat"])
    assert overlap > 0.99
    assert set(kept["flat"]) == set(originals.tolist())


def test_audit_files(tmp_path):
    emb, mapping, _, _, _ = synthetic_inputs(tmp_path)
    audit, out = run_build(
        tmp_path, emb, mapping, write_filter(tmp_path / "f.yaml"), dedupe_cosine=0.98
    )
    audit_dir = out / "audit"
    on_disk = json.loads((audit_dir / "audit.json").read_text())
    assert on_disk["dropped_by_reason"] == audit["dropped_by_reason"]
    assert set(on_disk["dropped_by_reason"]) == set(DROP_REASONS)
    assert on_disk["parameters"]["filter"]["exclude_tags"] == ["Speech", "Human_voice"]
    assert on_disk["parameters"]["dedupe_cosine"] == 0.98
    with open(audit_dir / "tag_histogram.csv", newline="") as fh:
        histogram = {r["tag"]: (int(r["kept"]), int(r["dropped"])) for r in csv.DictReader(fh)}
    assert histogram["Speech"][0] == 0 and histogram["Speech"][1] == 40
    kept_piano = sum("Piano" in r["tags"] for r in read_jsonl(out / "bank.jsonl"))
    assert histogram["Piano"][0] == kept_piano
    png = (audit_dir / "audit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not [p for p in out.rglob("*") if ".part" in p.name]


def test_include_tags_and_tag_normalisation():
    spec = filter_from_dict({"include_tags": ["acoustic guitar"]})
    assert metadata_drop_reason({"tags": ["Acoustic_guitar"]}, spec) is None
    assert metadata_drop_reason({"tags": ["Piano"]}, spec) == "include_tag"
    assert metadata_drop_reason({"segment_id": "x"}, spec) == "missing_metadata"
    assert metadata_drop_reason({"tags": []}, filter_from_dict({})) is None


def test_exclude_licenses_drops_those_classes_and_needs_the_field():
    spec = filter_from_dict({"exclude_licenses": ["CC-BY-NC", "unknown"]})
    nc = "http://creativecommons.org/licenses/by-nc/3.0/"
    by = "http://creativecommons.org/licenses/by/3.0/"
    assert metadata_drop_reason({"tags": [], "license": nc}, spec) == "exclude_license"
    assert metadata_drop_reason({"tags": [], "license": ""}, spec) == "exclude_license"
    assert metadata_drop_reason({"tags": [], "license": by}, spec) is None
    # a mapping from before licences were carried cannot be filtered on them
    assert metadata_drop_reason({"tags": []}, spec) == "missing_metadata"
    assert metadata_drop_reason({"tags": [], "license": nc}, filter_from_dict({})) is None
    with pytest.raises(ValueError, match="unknown licence class.*CC-BY-SA"):
        filter_from_dict({"exclude_licenses": ["CC-BY-SA"]})


def test_empty_bank_error_names_filter_and_reason(tmp_path):
    emb, mapping, _, _, _ = synthetic_inputs(tmp_path)
    filter_path = write_filter(tmp_path / "strict.yaml", include_tags=["Theremin"])
    with pytest.raises(EmptyBankError, match=r"strict.yaml.*|include_tag") as info:
        run_build(tmp_path, emb, mapping, filter_path)
    message = str(info.value)
    assert "strict.yaml" in message and "'include_tag' filter removed the most" in message
    assert not (tmp_path / "out").exists()


def test_filter_validation(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("exclude_tags: [Speech]\nmin_loudness: -40\n")
    with pytest.raises(
        ValueError, match=r"bad.yaml: unknown filter key\(s\) 'min_loudness'; valid keys"
    ):
        load_filter(bad)
    with pytest.raises(ValueError, match="list of strings"):
        filter_from_dict({"splits": "dev"})
    with pytest.raises(ValueError, match="finite number"):
        filter_from_dict({"min_rms_dbfs": "loud"})
    with pytest.raises(ValueError, match="min_source_seconds > max_source_seconds"):
        filter_from_dict({"min_source_seconds": 5, "max_source_seconds": 1})


def test_shipped_filter_file_is_valid(repo_root):
    spec = load_filter(repo_root / "config" / "fsd50k_filter.yaml")
    assert "Speech" in spec.exclude_tags and spec.include_tags == ()
    assert (
        metadata_drop_reason(
            {
                "tags": ["Male_speech_and_man_speaking"],
                "source_duration_s": 5.0,
                "rms_dbfs": -20.0,
                "split": "dev",
            },
            spec,
        )
        == "exclude_tag"
    )


def test_mapping_row_mismatch_errors(tmp_path):
    emb, mapping, _, rows, _ = synthetic_inputs(tmp_path)
    filter_path = write_filter(tmp_path / "f.yaml")
    short = tmp_path / "short.jsonl"
    write_jsonl(short, rows[:-1])
    with pytest.raises(ValueError, match="short.jsonl has 199 rows but the embeddings have 200"):
        run_build(tmp_path, emb, short, filter_path)
    shuffled = tmp_path / "shuffled.jsonl"
    write_jsonl(shuffled, [rows[1], rows[0], *rows[2:]])
    with pytest.raises(ValueError, match="shuffled.jsonl:1: 'row' is 1"):
        run_build(tmp_path, emb, shuffled, filter_path)


def test_build_bank_cli(tmp_path, repo_root):
    emb, mapping, _, _, _ = synthetic_inputs(tmp_path)
    script = str(repo_root / "workflow_scripts" / "build_bank.py")
    base = [
        sys.executable, script,
        "--embeddings", str(emb),
        "--mapping", str(mapping),
        "--out-bank", str(tmp_path / "cli" / "bank.npy"),
        "--out-mapping", str(tmp_path / "cli" / "bank.jsonl"),
        "--audit-dir", str(tmp_path / "cli" / "audit"),
    ]  # fmt: skip
    ok = subprocess.run(
        [*base, "--filter", str(repo_root / "config" / "fsd50k_filter.yaml"), "--dedupe-cosine", "0.98"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    audit = json.loads((tmp_path / "cli" / "audit" / "audit.json").read_text())
    assert audit["totals"]["kept"] == len(np.load(tmp_path / "cli" / "bank.npy"))
    assert "filter mapping" in ok.stderr  # tqdm progress on stderr

    strict = write_filter(tmp_path / "strict.yaml", splits=["train"])
    failed = subprocess.run(
        [*base, "--filter", str(strict)], capture_output=True, text=True, timeout=120
    )
    assert failed.returncode == 2
    assert "strict.yaml" in failed.stderr and "'split' filter removed the most" in failed.stderr


def test_unit_rows_flags_bad_rows():
    block = np.array([[3.0, 4.0], [np.nan, 1.0], [0.0, 0.0], [1e30, 1e30]], dtype=np.float32)
    unit, finite, nonzero = unit_rows(block)
    assert finite.tolist() == [True, False, True, False]
    assert nonzero.tolist() == [True, False, False, False]
    np.testing.assert_allclose(unit[0], [0.6, 0.8])
    assert not np.any(unit[1:])
