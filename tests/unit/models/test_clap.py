"""CLAP embedder, the resumable clap_embed CLI and the gather CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rcmg.models.clap import ChunkStore, ClapEmbedder, batch_bounds, l2_normalise_rows
from rcmg.workflow.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[3]

SR = 48_000
N_CLIPS = 5
BATCH = 2


@pytest.fixture(scope="module")
def embedder(tiny_model) -> ClapEmbedder:
    return ClapEmbedder(str(tiny_model("clap")), device="cpu")


def write_fake_shard(directory, n: int = N_CLIPS, seconds: float = 1.0, seed: int = 0, **columns):
    """A shard in the segment step's layout: audio_48k.npy (float16) + manifest.parquet."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    audio = (0.1 * rng.standard_normal((n, int(SR * seconds)))).astype(np.float16)
    audio[0] = 0.0  # one silent clip
    np.save(directory / "audio_48k.npy", audio)
    manifest = pd.DataFrame(
        {"segment_id": [f"{directory.name}-{i:03d}" for i in range(n)], "row": np.arange(n)}
        | columns
    )
    manifest.to_parquet(directory / "manifest.parquet")
    return audio


def run_cli(script: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, f"workflow_scripts/{script}", *map(str, args)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stderr
    return result


# ------------------------------------------------------------------- maths


def test_l2_normalise_rows_keeps_degenerate_rows_finite():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, 1.0]])
    unit, degenerate = l2_normalise_rows(rows)
    assert unit.dtype == np.float32
    np.testing.assert_allclose(unit[0], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(unit[1], [0.0, 0.0])
    np.testing.assert_allclose(unit[2], [0.0, 1.0])
    assert degenerate == 2
    assert np.isfinite(unit).all()


def test_batch_bounds_cover_every_row_once():
    assert batch_bounds(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert batch_bounds(0, 4) == []
    with pytest.raises(ValueError):
        batch_bounds(3, 0)


# ----------------------------------------------------------------- embedder


def test_embedder_reports_dim_rate_and_device(embedder):
    assert embedder.dim == 512
    assert embedder.sampling_rate == SR
    assert embedder.device == "cpu"
    assert embedder.dtype_name == "fp32"


def test_audio_embeddings_are_unit_rows_and_deterministic(embedder):
    rng = np.random.default_rng(1)
    waves = (0.1 * rng.standard_normal((3, SR))).astype(np.float32)
    before = embedder.model_forward_seconds
    first = embedder.embed_audio(waves)
    assert first.shape == (3, 512) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_audio(waves), first, atol=1e-6)
    assert not np.allclose(first[0], first[1])
    assert embedder.model_forward_seconds > before


def test_silence_gives_finite_unit_vectors(embedder):
    silent = np.zeros((2, SR), dtype=np.float32)
    rows = embedder.embed_audio(silent)
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_text_embeddings_are_unit_rows(embedder):
    rows = embedder.embed_text(["a calm solo piano piece", "loud drums and distorted guitar"])
    assert rows.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(rows[0], rows[1])
    assert embedder.embed_text([]).shape == (0, 512)
    with pytest.raises(TypeError):
        embedder.embed_text("a single string")


def test_audio_must_be_a_batch(embedder):
    with pytest.raises(ValueError, match="batch"):
        embedder.embed_audio(np.zeros(SR, dtype=np.float32))


# ---------------------------------------------------------------- clap_embed


def test_clap_embed_cli_end_to_end(tmp_path, tiny_model, embedder):
    shard = tmp_path / "shard000"
    audio = write_fake_shard(shard)
    out, stats_path = tmp_path / "emb.npy", tmp_path / "emb.json"
    args = ["--segments-dir", shard, "--model", tiny_model("clap"), "--batch", BATCH]
    run_cli("clap_embed.py", *args, "--out", out, "--stats", stats_path, "--device", "cpu")
    rows = np.load(out)
    assert rows.shape == (N_CLIPS, 512) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, embedder.embed_audio(audio.astype(np.float32)), atol=1e-5)
    stats = json.loads(stats_path.read_text())
    assert stats["n"] == N_CLIPS and stats["device"] == "cpu"
    assert stats["batches"] == 3 and stats["batches_computed"] == 3
    assert 0.0 < stats["forward_fraction"] <= 1.0
    assert stats["model_forward_seconds"] > 0 and stats["clips_per_s"] > 0
    assert not (tmp_path / "emb.npy.partial").exists()


def _schema_dtypes(key: str) -> list[str]:
    import yaml

    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text(encoding="utf-8"))
    return schema["properties"][key]["properties"]["dtype"]["enum"]


@pytest.mark.parametrize("dtype", _schema_dtypes("clap"))
def test_every_schema_clap_dtype_runs_clap_embed(tmp_path, tiny_model, dtype):
    """config clap.dtype reaches clap_embed unchanged (rules/data.smk): every schema value runs."""
    shard = tmp_path / "shard000"
    write_fake_shard(shard, n=2)
    out, stats_path = tmp_path / "emb.npy", tmp_path / "emb.json"
    args = ["--segments-dir", shard, "--model", tiny_model("clap"), "--dtype", dtype]
    run_cli("clap_embed.py", *args, "--out", out, "--stats", stats_path, "--device", "cpu")
    rows = np.load(out)
    assert rows.shape == (2, 512) and np.isfinite(rows).all()
    stats = json.loads(stats_path.read_text())
    # Off CUDA: bf16 is kept, everything else (auto, fp16) runs in fp32; both are recorded.
    assert stats["dtype"] == ("bf16" if dtype == "bf16" else "fp32")
    assert stats["dtype_requested"] == dtype


def test_clap_embed_resumes_after_a_crash(tmp_path, tiny_model, embedder, monkeypatch):
    import clap_embed

    shard = tmp_path / "shard000"
    audio = write_fake_shard(shard, seed=3)
    out, stats_path = tmp_path / "emb.npy", tmp_path / "emb.json"
    argv = ["--segments-dir", str(shard), "--model", str(tiny_model("clap")), "--device", "cpu"]
    argv += ["--batch", str(BATCH), "--out", str(out), "--stats", str(stats_path)]

    real_embed = ClapEmbedder.embed_prepared
    calls = {"n": 0}

    def crash_on_second_batch(self, features):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return real_embed(self, features)

    monkeypatch.setattr(ClapEmbedder, "embed_prepared", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        clap_embed.main(argv)
    assert not out.exists() and not stats_path.exists()
    chunks = sorted((tmp_path / "emb.npy.partial").glob("chunk_*.npy"))
    assert [c.name for c in chunks] == ["chunk_000000000_000000002.npy"]

    # Mark the finished chunk so reuse is visible, and leave a half-written chunk.
    marked = np.tile(np.eye(1, 512, 7, dtype=np.float32), (2, 1))
    np.save(chunks[0], marked)
    half = tmp_path / "emb.npy.partial" / "chunk_000000002_000000004.npy"
    half.write_bytes(b"\x93NUMPY half a file")

    monkeypatch.setattr(ClapEmbedder, "embed_prepared", real_embed)
    assert clap_embed.main(argv) == 0
    rows = np.load(out)
    expected = embedder.embed_audio(audio.astype(np.float32))
    np.testing.assert_array_equal(rows[:2], marked)  # reused, not recomputed
    np.testing.assert_allclose(rows[2:], expected[2:], atol=1e-5)  # half chunk recomputed
    stats = json.loads(stats_path.read_text())
    assert stats["batches_reused"] == 1 and stats["batches_computed"] == 2
    assert not (tmp_path / "emb.npy.partial").exists()


def test_chunks_from_other_inputs_are_discarded(tmp_path):
    store = ChunkStore(tmp_path / "p", {"model": "a"}, dim=4)
    store.save(0, 2, np.ones((2, 4)))
    assert store.load(0, 2) is not None
    assert store.load(0, 3) is None  # never written
    reopened = ChunkStore(tmp_path / "p", {"model": "b"}, dim=4)
    assert reopened.load(0, 2) is None


def test_clap_embed_names_a_missing_shard_file(tmp_path, tiny_model):
    shard = tmp_path / "shard_empty"
    shard.mkdir()
    result = run_cli(
        "clap_embed.py",
        "--segments-dir", shard, "--model", tiny_model("clap"),
        "--out", tmp_path / "e.npy", "--stats", tmp_path / "e.json",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "audio_48k.npy is missing" in result.stderr
    assert not (tmp_path / "e.npy").exists()


# -------------------------------------------------------------------- gather


def test_gather_concatenates_shards_and_maps_rows(tmp_path):
    shards, embs = [], []
    for index, n in enumerate((3, 2)):
        shard = tmp_path / f"shard{index:03d}"
        write_fake_shard(
            shard,
            n=n,
            seconds=0.01,
            tags=[["piano", "solo"]] * n,
            rms_dbfs=np.linspace(-30, -20, n),
            offset_s=[0.0] * (n - 1) + [float("nan")],
        )
        emb = np.full((n, 512), index + 1, dtype=np.float32)
        np.save(tmp_path / f"emb{index}.npy", emb)
        shards.append(shard)
        embs.append(tmp_path / f"emb{index}.npy")
    out_npy, out_map = tmp_path / "all.npy", tmp_path / "mapping.jsonl"
    run_cli(
        "gather_embeddings.py", "--shards", *shards, "--embeddings", *embs,
        "--out-npy", out_npy, "--out-mapping", out_map,
    )  # fmt: skip
    gathered = np.load(out_npy, mmap_mode="r")
    assert gathered.shape == (5, 512) and gathered.dtype == np.float32
    np.testing.assert_array_equal(gathered[:, 0], [1, 1, 1, 2, 2])
    mapping = read_jsonl(out_map)
    assert [m["row"] for m in mapping] == [0, 1, 2, 3, 4]
    assert mapping[3]["segment_id"] == "shard001-000"
    assert mapping[3]["shard"] == "shard001" and mapping[3]["shard_row"] == 0
    assert mapping[0]["tags"] == ["piano", "solo"]
    assert mapping[2]["offset_s"] is None  # NaN becomes JSON null
    assert isinstance(mapping[1]["rms_dbfs"], float)


def test_gather_names_files_whose_shapes_disagree(tmp_path):
    shard = tmp_path / "shard000"
    write_fake_shard(shard, n=3, seconds=0.01)
    np.save(tmp_path / "bad.npy", np.zeros((2, 512), dtype=np.float32))
    result = run_cli(
        "gather_embeddings.py", "--shards", shard, "--embeddings", tmp_path / "bad.npy",
        "--out-npy", tmp_path / "all.npy", "--out-mapping", tmp_path / "m.jsonl",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "bad.npy" in result.stderr and "manifest.parquet" in result.stderr
    assert not (tmp_path / "all.npy").exists()
