"""FAISS index kinds, recall, StyleRetriever errors and tag augmentation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from rcmg.bank.retrieval import (
    Hit,
    StyleRetriever,
    build_index,
    default_nlist,
    exact_top_k,
    index_kind,
    load_index,
    recall_at_k,
    save_index,
    tags_for_augmentation,
)
from rcmg.workflow.atomic import write_jsonl

DIM = 32


def clustered_unit_vectors(n: int, dim: int = DIM, clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    points = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def bank_vectors():
    return clustered_unit_vectors(3000)


@pytest.fixture(scope="module")
def queries():
    return clustered_unit_vectors(100, seed=1)


def write_bank(tmp_path, vectors, kind="flat"):
    bank_path = tmp_path / "bank.npy"
    np.save(bank_path, vectors)
    rows = [
        {
            "row": i,
            "segment_id": f"seg{i}",
            "source_id": f"src{i // 3}",
            "tags": [f"tag{i % 7}", "Music"],
        }
        for i in range(len(vectors))
    ]
    mapping_path = tmp_path / "bank.jsonl"
    write_jsonl(mapping_path, rows)
    index_path = tmp_path / "bank.index"
    save_index(build_index(vectors, kind=kind), index_path)
    return bank_path, mapping_path, index_path


def test_flat_matches_exact_numpy(bank_vectors, queries):
    index = build_index(bank_vectors, "flat")
    scores, rows = index.search(queries, 10)
    brute = queries @ bank_vectors.T
    expected_rows = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected_rows, 1), rtol=1e-5)
    exact_scores, exact_rows = exact_top_k(bank_vectors, queries, 10, block_rows=700)
    np.testing.assert_allclose(exact_scores, scores, rtol=1e-5, atol=1e-6)
    assert recall_at_k(index, bank_vectors, queries, 10) == pytest.approx(1.0)
    assert np.mean(exact_rows == rows) > 0.99  # identical up to float ties


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_have_reasonable_recall(bank_vectors, queries, kind):
    index = build_index(bank_vectors, kind, nprobe=8, ef_search=64)
    assert index.ntotal == len(bank_vectors) and index_kind(index) == kind
    assert recall_at_k(index, bank_vectors, queries, 10) >= 0.8


def test_default_nlist_is_capped_by_training_points():
    assert default_nlist(100) == 2
    assert default_nlist(1_000_000) == 4000
    assert default_nlist(1) == 1


def test_build_index_normalises_input_and_rejects_bad_kind(bank_vectors):
    index = build_index(bank_vectors * 5.0, "flat")
    scores, rows = index.search(bank_vectors[:3], 1)
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    assert rows[:, 0].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="flat, ivf, hnsw"):
        build_index(bank_vectors, "lsh")
    bad = bank_vectors.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        build_index(bad, "flat")


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip_and_retriever(tmp_path, bank_vectors, kind):
    bank_path, mapping_path, index_path = write_bank(tmp_path, bank_vectors, kind)
    assert index_kind(load_index(index_path)) == kind
    retriever = StyleRetriever(
        bank_path, mapping_path, index_path, threads=1, nprobe=16, ef_search=64
    )
    hits = retriever.search(bank_vectors[[10, 20]] * 3.0, k=5)
    assert [h[0].row for h in hits] == [10, 20]
    top = hits[0][0]
    assert top == Hit(
        row=10, score=top.score, segment_id="seg10", tags=("tag3", "Music"), source_id="src3"
    )
    assert top.score == pytest.approx(1.0, rel=1e-5)
    assert all(a.score >= b.score for a, b in zip(hits[0], hits[0][1:], strict=False))
    np.testing.assert_allclose(
        retriever.vectors(hits[0][:2]), bank_vectors[[hits[0][0].row, hits[0][1].row]]
    )
    assert retriever.hit(10, 0.5) == Hit(10, 0.5, "seg10", ("tag3", "Music"), "src3")
    with pytest.raises(IndexError, match="outside bank"):
        retriever.hit(len(bank_vectors), 0.0)
    single = retriever.search(bank_vectors[10], k=1)
    assert len(single) == 1 and single[0][0].row == 10


def test_k_larger_than_bank_returns_all_rows(tmp_path):
    vectors = clustered_unit_vectors(4)
    retriever = StyleRetriever(*write_bank(tmp_path, vectors))
    hits = retriever.search(vectors[:2], k=50)
    assert [len(h) for h in hits] == [4, 4]
    assert sorted(h.row for h in hits[0]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="k must be"):
        retriever.search(vectors[:1], k=0)


def test_retriever_errors_name_the_files(tmp_path, bank_vectors):
    bank_path, mapping_path, index_path = write_bank(tmp_path, bank_vectors)
    retriever = StyleRetriever(bank_path, mapping_path, index_path)
    with pytest.raises(ValueError, match=f"bank dimension {DIM}.*bank.npy"):
        retriever.search(np.ones((2, DIM + 1), np.float32), k=3)
    nan_query = np.ones((1, DIM), np.float32)
    nan_query[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retriever.search(nan_query, k=3)

    other = tmp_path / "other"
    other.mkdir()
    _, _, wrong_dim_index = write_bank(other, clustered_unit_vectors(50, dim=DIM * 2))
    with pytest.raises(
        ValueError, match=r"index .*other/bank.index.*does not match bank .*bank.npy"
    ):
        StyleRetriever(bank_path, mapping_path, wrong_dim_index)

    short_mapping = tmp_path / "short.jsonl"
    write_jsonl(short_mapping, [{"row": 0, "segment_id": "a"}])
    with pytest.raises(ValueError, match="short.jsonl has 1 rows"):
        StyleRetriever(bank_path, short_mapping, index_path)
    with pytest.raises(FileNotFoundError, match="build_index.py"):
        StyleRetriever(bank_path, mapping_path, tmp_path / "missing.index")


def test_tags_for_augmentation_dedupes_by_score_order():
    hits = [
        Hit(row=1, score=0.5, segment_id="a", tags=("Piano", "Music"), source_id="x"),
        Hit(
            row=2,
            score=0.9,
            segment_id="b",
            tags=("Acoustic_guitar", "music", "Strum"),
            source_id="y",
        ),
        {"score": 0.7, "tags": ["acoustic guitar", "Piano", "Bass"]},
    ]
    assert tags_for_augmentation(hits, 10) == ["Acoustic_guitar", "music", "Strum", "Piano", "Bass"]
    assert tags_for_augmentation(hits, 2) == ["Acoustic_guitar", "music"]
    assert tags_for_augmentation(hits, 0) == []
    assert tags_for_augmentation([], 3) == []
    with pytest.raises(ValueError, match="max_tags"):
        tags_for_augmentation(hits, -1)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_build_index_cli(tmp_path, repo_root, bank_vectors, kind):
    bank_path = tmp_path / "bank.npy"
    np.save(bank_path, bank_vectors)
    out, audit_path = tmp_path / "bank.index", tmp_path / "audit.json"
    cmd = [
        sys.executable,
        str(repo_root / "workflow_scripts" / "build_index.py"),
        "--bank", str(bank_path),
        "--kind", kind,
        "--nprobe", "8",
        "--recall-sample", "200",
        "--k", "10",
        "--threads", "1",
        "--out", str(out),
        "--audit", str(audit_path),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    audit = json.loads(audit_path.read_text())
    assert audit["kind"] == kind and audit["ntotal"] == 3000 and audit["dim"] == DIM
    assert audit["recall_at_10"] >= (0.999 if kind == "flat" else 0.8)
    assert audit["queries_per_second"] > 0 and audit["build_seconds"] >= 0
    assert load_index(out).ntotal == 3000
    assert not [p.name for p in tmp_path.iterdir() if ".part" in p.name]


def test_build_index_cli_missing_bank(tmp_path, repo_root):
    cmd = [
        sys.executable,
        str(repo_root / "workflow_scripts" / "build_index.py"),
        "--bank", str(tmp_path / "nope.npy"),
        "--out", str(tmp_path / "x.index"),
        "--audit", str(tmp_path / "a.json"),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "nope.npy does not exist" in result.stderr
    assert not (tmp_path / "x.index").exists()
