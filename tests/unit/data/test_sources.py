"""index_sources: the published layouts become one source table; bad metadata is named."""

from __future__ import annotations

import csv
import json
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
    with pytest.raises(MetadataError, match=r"MAESTRO metadata file missing; expected maestro-v3"):
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


# ------------------------------------------------------------------ layouts users have
# (issue 18: MAESTRO v1/v2/v3 CSV or JSON, URMP's Dataset/ download folder and irregular
# stems, partial FSD50K downloads, FSD50K clips_info; coverage and audit summaries)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    from rcmg.standins.demo_corpus import write_demo_variant

    root = tmp_path_factory.mktemp("variants")
    for name in ("maestro_v2", "urmp_download"):
        write_demo_variant(name, root / name, seed=0)
    return root


def _index_cli(kind: str, root: Path, out_dir: Path, *extra: str):
    """Run index_sources.py like the rule does; returns (result, rows, audits, coverage)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table, audit, coverage = (
        out_dir / "sources.parquet",
        out_dir / "sources_audit.csv",
        out_dir / "coverage.json",
    )
    result = _run_cli(
        "--kind",
        kind,
        "--root",
        str(root),
        "--out",
        str(table),
        "--audit-out",
        str(audit),
        "--coverage-out",
        str(coverage),
        *extra,
    )
    if result.returncode != 0:
        return result, None, None, None
    with open(audit, newline="", encoding="utf-8") as fh:
        audits = list(csv.DictReader(fh))
    return result, read_sources(table), audits, json.loads(coverage.read_text(encoding="utf-8"))


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if " ERROR " in line]


def _comparable(rows: list[dict]) -> list[tuple]:
    keys = ("source_id", "path", "split", "title", "composer", "year", "sample_rate")
    return [tuple(r[k] for k in keys) + (round(r["duration_s"], 6),) for r in rows]


def test_maestro_v2_csv_and_json_read_into_the_same_table(demo_corpus, variants, tmp_path):
    v3 = index_sources("maestro", demo_corpus / "maestro")[0]
    result, rows, audits, cov = _index_cli("maestro", variants / "maestro_v2", tmp_path / "csv")
    assert result.returncode == 0, result.stderr
    assert cov["version"] == "v2.0.0" and cov["metadata_files"] == ["maestro-v2.0.0.csv"]
    assert _comparable(rows) == _comparable(v3) and audits == []
    # v2's JSON is a list of records; v1's has the same shape.
    root = tmp_path / "json_only"
    shutil.copytree(variants / "maestro_v2", root)
    (root / "maestro-v2.0.0.csv").unlink()
    assert isinstance(json.loads((root / "maestro-v2.0.0.json").read_text("utf-8")), list)
    result, rows, _, cov = _index_cli("maestro", root, tmp_path / "json")
    assert result.returncode == 0, result.stderr
    assert cov["metadata_files"] == ["maestro-v2.0.0.json"] and cov["layout"].endswith("(JSON)")
    assert _comparable(rows) == _comparable(v3)
    (root / "maestro-v2.0.0.json").rename(root / "maestro-v1.0.0.json")
    result, rows, _, cov = _index_cli("maestro", root, tmp_path / "v1")
    assert result.returncode == 0, result.stderr
    assert cov["version"] == "v1.0.0" and _comparable(rows) == _comparable(v3)


def test_maestro_v3_column_json_and_several_versions(demo_corpus, variants, tmp_path):
    v3 = index_sources("maestro", demo_corpus / "maestro")[0]
    root = tmp_path / "v3_json"
    shutil.copytree(demo_corpus / "maestro", root)
    (root / "maestro-v3.0.0.csv").unlink()
    assert isinstance(json.loads((root / "maestro-v3.0.0.json").read_text("utf-8")), dict)
    result, rows, _, cov = _index_cli("maestro", root, tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert cov["metadata_files"] == ["maestro-v3.0.0.json"] and cov["warnings"] == []
    assert _comparable(rows) == _comparable(v3)
    # v2 metadata beside v3: the newest is read and the other is a recorded warning.
    shutil.copy(variants / "maestro_v2" / "maestro-v2.0.0.csv", root)
    result, rows, _, cov = _index_cli("maestro", root, tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert cov["version"] == "v3.0.0"
    assert cov["warnings"] == ["maestro-v2.0.0.csv also present; read maestro-v3.0.0.json"]
    assert "maestro-v2.0.0.csv also present" in result.stderr


def test_maestro_duration_contradicted_by_header_is_audited(variants, tmp_path):
    root = tmp_path / "m"
    shutil.copytree(variants / "maestro_v2", root)
    (root / "maestro-v2.0.0.csv").unlink()
    records = json.loads((root / "maestro-v2.0.0.json").read_text("utf-8"))
    true_seconds = [r["duration"] for r in records]
    records[0]["duration"] = 698.661160312  # the 698-s listing of a short file
    records[1]["duration"] += 0.5  # within the default 1-s tolerance
    (root / "maestro-v2.0.0.json").write_text(json.dumps(records), encoding="utf-8")
    result, rows, audits, cov = _index_cli("maestro", root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert [(a["path"], a["reason"]) for a in audits] == [
        (records[0]["audio_filename"], "duration mismatch")
    ]
    assert "698.661 s" in audits[0]["detail"] and audits[0]["action"].startswith("kept")
    by_path = {r["path"]: r for r in rows}
    assert by_path[records[0]["audio_filename"]]["duration_s"] == pytest.approx(true_seconds[0])
    assert by_path[records[1]["audio_filename"]]["duration_s"] == pytest.approx(
        true_seconds[1] + 0.5
    )
    assert cov["present"] == cov["listed"] == 4
    # A tighter tolerance flags the second one too.
    result, _, audits, _ = _index_cli(
        "maestro", root, tmp_path / "strict", "--max-duration-mismatch", "0.1"
    )
    assert result.returncode == 0 and len(audits) == 2


def test_maestro_root_without_metadata_names_what_is_there(variants, tmp_path):
    parent = tmp_path / "download"
    shutil.copytree(variants / "maestro_v2", parent / "maestro-v2.0.0")
    result = _run_cli("--kind", "maestro", "--root", str(parent), "--out", str(tmp_path / "s.pq"))
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "expected maestro-v3.0.0.csv/.json or maestro-v2.0.0.csv/.json" in line
    assert "found: maestro-v2.0.0/ (" in line
    assert f"point --root at {parent / 'maestro-v2.0.0'}" in line


def test_urmp_download_folder_and_its_dataset_folder_give_the_same_ids(
    demo_corpus, variants, tmp_path
):
    download = variants / "urmp_download"
    result, from_parent, audits_parent, cov = _index_cli("urmp", download, tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert cov["layout"].startswith("URMP download folder")
    result, from_dataset, audits_dataset, _ = _index_cli(
        "urmp", download / "Dataset", tmp_path / "b"
    )
    assert result.returncode == 0, result.stderr
    assert [r["source_id"] for r in from_parent] == [r["source_id"] for r in from_dataset]
    assert all(
        r["path"] == "Dataset/" + s["path"] for r, s in zip(from_parent, from_dataset, strict=True)
    )
    for row in from_parent:  # what segment opens
        assert resolve_source_path(download, row).is_file()
    flat = {r["source_id"]: r for r in index_sources("urmp", demo_corpus / "urmp")[0]}
    shared = [r for r in from_parent if r["source_id"] in flat]
    assert len(shared) == len(flat) == 10
    for row in shared:
        assert row["duration_s"] == flat[row["source_id"]]["duration_s"]
        assert row["instruments"] == flat[row["source_id"]]["instruments"]
    assert [a["reason"] for a in audits_parent] == ["stem disagrees with folder name"]
    assert [a["path"].removeprefix("Dataset/") for a in audits_parent] == [
        a["path"] for a in audits_dataset
    ]


def test_urmp_stems_are_discovered_with_the_instrument_from_the_file(variants, tmp_path):
    result, rows, audits, cov = _index_cli("urmp", variants / "urmp_download", tmp_path / "o")
    assert result.returncode == 0, result.stderr
    piece = [r for r in rows if "30_Fanfare" in r["path"]]
    stems = {r["path"].rsplit("/", 1)[1]: r for r in piece if r["stem"] == "sep"}
    assert sorted(stems) == [
        "AuSep_1_tpt_30_Fanfare.wav",
        "AuSep_2_tpt_30_Fanfare.wav",
        "AuSep_3_tpt_30_Fanfare.wav",  # the folder name says tbn: not "missing"
    ]
    assert stems["AuSep_3_tpt_30_Fanfare.wav"]["instruments"] == ["trumpet"]
    mix = next(r for r in piece if r["stem"] == "mix")
    assert mix["instruments"] == ["trumpet"] * 3 and mix["tags"] == ["trumpet"]
    [audit] = audits
    assert audit == {
        "dataset": "urmp",
        "path": "Dataset/30_Fanfare_tpt_tpt_tbn/AuSep_3_tpt_30_Fanfare.wav",
        "reason": "stem disagrees with folder name",
        "detail": "part 3: file name says tpt (trumpet), folder name says tbn (trombone)",
        "action": "kept; instrument from the file name",
    }
    assert cov["listed"] == cov["present"] == 14 and cov["missing"] == 0
    assert sum("stem disagrees" in line for line in result.stderr.splitlines()) == 1


def test_urmp_root_without_pieces_names_the_dataset_folder(tmp_path):
    (tmp_path / "urmp" / "Supplementary_Files").mkdir(parents=True)
    result = _run_cli(
        "--kind", "urmp", "--root", str(tmp_path / "urmp"), "--out", str(tmp_path / "x.pq")
    )
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "no Dataset/ folder holding them" in line and "found: Supplementary_Files/" in line
    (tmp_path / "urmp" / "Dataset").mkdir()
    result = _run_cli(
        "--kind", "urmp", "--root", str(tmp_path / "urmp"), "--out", str(tmp_path / "x.pq")
    )
    [line] = _error_lines(result)
    assert f"{tmp_path / 'urmp' / 'Dataset'}: no URMP piece folders" in line


def _strip_wavs(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.wav"))


@pytest.mark.parametrize("kind", ["maestro", "urmp", "fsd50k"])
def test_dataset_without_usable_source_fails_with_one_line(demo_corpus, tmp_path, kind):
    root = tmp_path / kind
    _strip_wavs(demo_corpus / kind, root)
    out = tmp_path / "out"
    result, *_ = _index_cli(kind, root, out)
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert f"{root}: no usable {kind} source; expected " in line
    assert "; found none of the " in line and "the root holds: " in line
    assert "Traceback" not in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_fsd50k_partial_download_one_summary_line_and_full_audit(demo_corpus, tmp_path):
    root = tmp_path / "fsd50k"
    shutil.copytree(demo_corpus / "fsd50k", root)
    wavs = sorted(root.rglob("*.wav"))
    gone = [str(p.relative_to(root)) for p in wavs[:7]]
    for path in wavs[:7]:
        path.unlink()
    result, rows, audits, cov = _index_cli("fsd50k", root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    missing_lines = [line for line in result.stderr.splitlines() if "missing" in line]
    assert len(missing_lines) == 1
    [line] = missing_lines
    assert "fsd50k: 7 of 16 listed files missing (" in line and ", ..." in line
    assert sum(p in line for p in gone) == 5  # the first few, not all
    assert sorted(a["path"] for a in audits if a["reason"] == "missing file") == sorted(gone)
    assert len(rows) == 9
    assert (cov["listed"], cov["present"], cov["missing"], cov["usable"]) == (16, 9, 7, 9)
    assert cov["fraction_present"] == pytest.approx(9 / 16)
    assert "9 of 16 listed files present (56.2%)" in result.stderr


def test_fsd50k_keeps_mids_and_reads_clips_info(demo_corpus, tmp_path):
    root = demo_corpus / "fsd50k"
    result, rows, audits, cov = _index_cli("fsd50k", root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert audits == []
    info = {}
    for part in ("dev", "eval"):
        path = root / "FSD50K.metadata" / f"{part}_clips_info_FSD50K.json"
        info.update(json.loads(path.read_text(encoding="utf-8")))
    truth = {}
    for name in ("dev.csv", "eval.csv"):
        with open(root / "FSD50K.ground_truth" / name, newline="", encoding="utf-8") as fh:
            truth.update({r["fname"]: r for r in csv.DictReader(fh)})
    for row in rows:
        fname = row["path"].rsplit("/", 1)[1].removesuffix(".wav")
        assert row["mids"] == truth[fname]["mids"].split(",")
        assert row["tags"] == truth[fname]["labels"].split(",")
        for key in ("title", "description", "license", "uploader"):
            assert row[key] == info[fname][key]
        assert row["freesound_tags"] == info[fname]["tags"]
    assert "FSD50K.metadata/dev_clips_info_FSD50K.json" in cov["metadata_files"]
    assert len({r["license"] for r in rows}) >= 3 and len({r["uploader"] for r in rows}) >= 3


def test_fsd50k_without_clips_info_is_a_recorded_warning(demo_corpus, tmp_path):
    root = tmp_path / "fsd50k"
    shutil.copytree(demo_corpus / "fsd50k", root)
    (root / "FSD50K.metadata" / "dev_clips_info_FSD50K.json").unlink()
    eval_info = root / "FSD50K.metadata" / "eval_clips_info_FSD50K.json"
    entries = json.loads(eval_info.read_text(encoding="utf-8"))
    dropped = sorted(entries)[0]
    del entries[dropped]
    eval_info.write_text(json.dumps(entries), encoding="utf-8")
    result, rows, audits, cov = _index_cli("fsd50k", root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    reasons = {(a["path"], a["reason"]) for a in audits}
    assert ("FSD50K.metadata/dev_clips_info_FSD50K.json", "metadata file missing") in reasons
    assert (f"FSD50K.eval_audio/{dropped}.wav", "no clips_info entry") in reasons
    assert len(audits) == 2
    assert cov["warnings"] and "dev_clips_info_FSD50K.json missing" in cov["warnings"][0]
    dev = [r for r in rows if r["split"] != "eval"]
    assert dev and all(r["title"] == "" and r["license"] == "" for r in dev)
    assert all(r["mids"] for r in rows)  # the ground truth still gives labels and mids
    evals = {r["path"]: r for r in rows if r["split"] == "eval"}
    assert evals[f"FSD50K.eval_audio/{dropped}.wav"]["title"] == ""
    assert sum(1 for r in evals.values() if r["title"]) == len(evals) - 1
    assert any("dev_clips_info_FSD50K.json missing" in line for line in result.stderr.splitlines())


def test_coverage_sentence_states_present_of_listed():
    from rcmg.data.coverage import coverage_sentence

    cov = {
        "dataset": "fsd50k",
        "layout": "FSD50K",
        "present": 9,
        "listed": 16,
        "fraction_present": 9 / 16,
        "unreadable": 1,
        "warnings": ["clips_info missing"],
    }
    assert coverage_sentence(cov) == (
        "fsd50k (FSD50K): 9 of 16 listed files present (56.2%), 1 with unreadable headers; "
        "clips_info missing"
    )


def test_urmp_stem_parsing():
    from rcmg.data.sources import parse_urmp_stem

    assert parse_urmp_stem("AuSep_3_tpt_30_Fanfare.wav") == (3, "tpt")
    assert parse_urmp_stem("AuSep_2_vc_05_Caf\udce9.wav") == (2, "vc")
    assert parse_urmp_stem("AuSep_0_vn_01_Jupiter.wav") is None
    assert parse_urmp_stem("AuMix_01_Jupiter_vn_vc.wav") is None


def test_urmp_odd_stem_files_are_audited_not_guessed(demo_corpus, tmp_path):
    root = tmp_path / "urmp"
    shutil.copytree(demo_corpus / "urmp", root)
    piece = root / "01_Jupiter_vn_vc"
    (piece / "AuSep_2_vc_01_Jupiter.wav").rename(piece / "AuSep_2_kazoo_01_Jupiter.wav")
    shutil.copy(piece / "AuSep_1_vn_01_Jupiter.wav", piece / "AuSep_3_va_01_Jupiter.wav")
    result, rows, audits, cov = _index_cli("urmp", root, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    reasons = {a["path"]: a["reason"] for a in audits}
    assert reasons == {
        "01_Jupiter_vn_vc/AuSep_2_kazoo_01_Jupiter.wav": "unrecognised stem file",
        "01_Jupiter_vn_vc/AuSep_2_vc_01_Jupiter.wav": "missing file",
        "01_Jupiter_vn_vc/AuSep_3_va_01_Jupiter.wav": "stem disagrees with folder name",
    }
    extra = next(r for r in rows if r["path"].endswith("AuSep_3_va_01_Jupiter.wav"))
    assert extra["instruments"] == ["viola"] and extra["stem"] == "sep"
    mix = next(r for r in rows if r["path"] == "01_Jupiter_vn_vc/AuMix_01_Jupiter_vn_vc.wav")
    assert mix["instruments"] == ["violin", "cello", "viola"]
    assert (cov["listed"], cov["present"], cov["missing"]) == (11, 10, 1)


def test_dataset_with_only_unreadable_headers_fails(demo_corpus, tmp_path):
    root = tmp_path / "fsd50k"
    shutil.copytree(demo_corpus / "fsd50k", root)
    for path in root.rglob("*.wav"):
        path.write_bytes(b"")
    result, *_ = _index_cli("fsd50k", root, tmp_path / "out")
    assert result.returncode == 2
    [line] = _error_lines(result)
    assert "no usable fsd50k source" in line
    assert "16 listed files present but none has a readable header" in line


def test_segment_reads_the_urmp_download_folder_index(variants, tmp_path):
    """index_sources -> segment, both with --root at the download folder (as the rules run)."""
    root = variants / "urmp_download"
    result, rows, _, _ = _index_cli("urmp", root, tmp_path / "idx")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "shard0"
    cmd = [sys.executable, str(REPO / "workflow_scripts" / "segment.py")]
    cmd += ["--sources", str(tmp_path / "idx" / "sources.parquet"), "--root", str(root)]
    cmd += ["--shard", "0", "--num-shards", "1", "--stems", "all", "--out-dir", str(out)]
    seg = subprocess.run(cmd, capture_output=True, text=True)
    assert seg.returncode == 0, seg.stderr
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert {m["source_id"] for m in manifest} == {r["source_id"] for r in rows}
    with open(out / "skipped.csv", newline="", encoding="utf-8") as fh:
        assert list(csv.DictReader(fh)) == []
