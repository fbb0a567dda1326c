"""index_sources: the published layouts become one source table; bad metadata is named."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import soundfile as sf
from rcmg.data.sources import (
    SOURCE_COLUMNS,
    MetadataError,
    index_sources,
    parse_urmp_folder,
    read_sources,
    resolve_source_path,
    sources_table,
)

from tests.unit.bad_corpus import NON_UTF8_FOLDER, tree_digest, write_bad_corpus

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "workflow_scripts" / "index_sources.py"


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_raw")
    return root, write_bad_corpus(root)


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], capture_output=True, text=True)


def test_maestro_rows_carry_metadata(demo_corpus):
    rows, audits = index_sources("maestro", demo_corpus / "maestro")
    assert audits == [] and len(rows) == 4
    with open(demo_corpus / "maestro" / "maestro-v3.0.0.csv", newline="", encoding="utf-8") as fh:
        by_path = {r["audio_filename"]: r for r in csv.DictReader(fh)}
    for row in rows:
        meta = by_path[row["path"]]
        assert row["split"] == meta["split"] and row["year"] == int(meta["year"])
        assert (
            row["composer"] == meta["canonical_composer"]
            and row["title"] == meta["canonical_title"]
        )
        assert row["duration_s"] == float(meta["duration"])
        assert row["tags"] == ["piano"] and row["instruments"] == ["piano"] and row["stem"] == ""
        assert row["sample_rate"] in (44100, 48000) and row["channels"] == 2
    assert any(r["composer"] == "Frédéric Chopin" for r in rows)


def test_urmp_has_mix_and_separated_stems(demo_corpus):
    rows, audits = index_sources("urmp", demo_corpus / "urmp")
    assert audits == []
    mixes = [r for r in rows if r["stem"] == "mix"]
    stems = [r for r in rows if r["stem"] == "sep"]
    assert len(mixes) == 3 and len(stems) == 7
    spring = next(r for r in mixes if r["title"] == "Spring")
    assert spring["instruments"] == ["violin", "violin", "cello"]
    assert spring["tags"] == ["violin", "cello"]
    for row in rows:
        info = sf.info(resolve_source_path(demo_corpus / "urmp", row))
        assert row["duration_s"] == pytest.approx(info.duration)
        assert row["sample_rate"] == 48000 and row["split"] == "" and row["year"] is None


def test_fsd50k_rows_have_labels_and_splits(demo_corpus):
    rows, audits = index_sources("fsd50k", demo_corpus / "fsd50k")
    assert audits == [] and len(rows) == 16
    assert {r["split"] for r in rows} == {"train", "val", "eval"}
    assert all(r["path"].startswith("FSD50K.eval_audio/") for r in rows if r["split"] == "eval")
    drum = next(r for r in rows if r["tags"][0] == "Drum")
    assert drum["tags"] == ["Drum", "Percussion", "Musical_instrument", "Music"]
    durations = sorted(r["duration_s"] for r in rows)
    assert durations[0] == pytest.approx(0.5) and durations[-1] == pytest.approx(30.0)
    assert [r["source_id"] for r in rows] == sorted(r["source_id"] for r in rows)


def test_cli_writes_parquet_with_fixed_schema(demo_corpus, tmp_path):
    out, audit = tmp_path / "idx" / "sources.parquet", tmp_path / "idx" / "missing.csv"
    result = _run_cli(
        "--kind",
        "urmp",
        "--root",
        str(demo_corpus / "urmp"),
        "--out",
        str(out),
        "--audit-out",
        str(audit),
    )
    assert result.returncode == 0, result.stderr
    table = pq.read_table(out)
    assert tuple(table.column_names) == SOURCE_COLUMNS and table.num_rows == 10
    assert read_sources(out) == sorted(
        index_sources("urmp", demo_corpus / "urmp")[0], key=lambda r: r["source_id"]
    )
    assert audit.read_text(encoding="utf-8").splitlines() == ["dataset,path,reason,detail,action"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["missing.csv", "sources.parquet"]


def test_empty_table_keeps_schema():
    assert tuple(sources_table([]).column_names) == SOURCE_COLUMNS


def test_missing_metadata_file_is_named(tmp_path):
    with pytest.raises(MetadataError, match=r"maestro-v3\.0\.0\.csv: metadata file missing"):
        index_sources("maestro", tmp_path)
    (tmp_path / "FSD50K.ground_truth").mkdir()
    with pytest.raises(MetadataError, match=r"dev\.csv: metadata file missing"):
        index_sources("fsd50k", tmp_path)
    with pytest.raises(MetadataError, match="no URMP piece folders"):
        index_sources("urmp", tmp_path)


def test_missing_column_is_named_by_cli(demo_corpus, tmp_path):
    root = tmp_path / "maestro"
    shutil.copytree(demo_corpus / "maestro", root)
    csv_path = root / "maestro-v3.0.0.csv"
    lines = csv_path.read_text(encoding="utf-8").splitlines()
    csv_path.write_text(
        "\n".join(line.replace(",split,", ",part,") for line in lines) + "\n", encoding="utf-8"
    )
    result = _run_cli(
        "--kind", "maestro", "--root", str(root), "--out", str(tmp_path / "s.parquet")
    )
    assert result.returncode == 2
    assert "maestro-v3.0.0.csv missing column 'split'" in result.stderr
    assert not (tmp_path / "s.parquet").exists()


def test_non_utf8_metadata_is_an_error(tmp_path):
    (tmp_path / "maestro-v3.0.0.csv").write_bytes(b"canonical_composer\n\xff\xfe\n")
    with pytest.raises(MetadataError, match="not UTF-8"):
        index_sources("maestro", tmp_path)


def test_urmp_folder_parsing():
    assert parse_urmp_folder("12_Spring_vn_vn_vc") == (12, "Spring", ["vn", "vn", "vc"])
    assert parse_urmp_folder("Supplementary_Files") is None
    assert parse_urmp_folder("01_Jupiter_kazoo") is None


def _audit_by_path(audits: list[dict]) -> dict[str, str]:
    return {a["path"]: a["reason"] for a in audits}


def test_bad_corpus_audits_missing_and_unreadable_files(bad_corpus):
    root, expectations = bad_corpus
    before = tree_digest(root)
    fsd_rows, fsd_audits = index_sources("fsd50k", root / "fsd50k")
    maestro_rows, maestro_audits = index_sources("maestro", root / "maestro")
    urmp_rows, urmp_audits = index_sources("urmp", root / "urmp")
    audits = _audit_by_path(fsd_audits + maestro_audits + urmp_audits)
    indexed = {r["path"] for r in fsd_rows + maestro_rows + urmp_rows}
    for exp in expectations:
        if exp.outcome in ("missing file", "not a URMP piece folder"):
            assert audits[exp.path] == exp.outcome and exp.path not in indexed
        else:
            assert exp.path in indexed, exp
    assert audits["FSD50K.dev_audio/203.wav"] == "unreadable header"
    zero_length = next(r for r in fsd_rows if r["path"] == "FSD50K.dev_audio/203.wav")
    assert zero_length["sample_rate"] is None and math.isnan(zero_length["duration_s"])
    assert tree_digest(root) == before


def test_non_utf8_names_round_trip_through_parquet(bad_corpus, tmp_path):
    root, _ = bad_corpus
    out = tmp_path / "urmp.parquet"
    result = _run_cli("--kind", "urmp", "--root", str(root / "urmp"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = read_sources(out)
    mix = next(r for r in rows if r["stem"] == "mix")
    assert mix["path"] == "05_Caf\\xe9_vn_vc/AuMix_05_Caf\\xe9_vn_vc.wav"
    assert bytes(mix["path_bytes"]).startswith(NON_UTF8_FOLDER + b"/")
    resolved = resolve_source_path(root / "urmp", mix)
    assert resolved.is_file() and os.fsencode(resolved).endswith(
        b"AuMix_" + NON_UTF8_FOLDER + b".wav"
    )
