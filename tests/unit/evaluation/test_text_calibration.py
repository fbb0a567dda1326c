"""Calibration lines: the judge's text similarity of reference audio to its own caption
(ceiling) and to a shuffled, different caption (floor), computed once by reference_stats."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rcmg.evaluation import reference, report

from tests.unit import fake_runs

TITLES = ["Sonata in C major", "Nocturne Op. 9", "Prelude in E minor", "Etude Op. 10"]


def manifest_shard(root, dataset, rows):
    shard = fake_runs.write_fake_shard(root, n_segments=len(rows), seed=len(rows))
    table = [{"row": i, "dataset": dataset, **row} for i, row in enumerate(rows)]
    pq.write_table(pa.Table.from_pylist(table), shard / "manifest.parquet")
    return shard


def test_captions_follow_the_documented_rule():
    assert reference.caption_of({"dataset": "maestro", "title": "Nocturne"}) == (
        "solo piano: Nocturne"
    )
    assert reference.caption_of({"dataset": "maestro"}) == "solo piano"
    urmp = {"dataset": "urmp", "title": "Jupiter", "tags": ["violin", "cello"]}
    assert reference.caption_of(urmp) == "chamber music for violin and cello: Jupiter"
    fsd = {"dataset": "fsd50k", "tags": ["Acoustic_guitar", "Strum", "Music"]}
    assert reference.caption_of(fsd) == "the sound of Acoustic guitar, Strum and Music"


def test_ceiling_and_floor_are_computed_once_and_shown_beside_each_run(tmp_path):
    maestro = manifest_shard(
        tmp_path / "m", "maestro", [{"title": TITLES[i % 4], "tags": ["piano"]} for i in range(8)]
    )
    urmp = manifest_shard(
        tmp_path / "u", "urmp", [{"title": "Jupiter", "tags": ["violin", "cello"]}] * 4
    )
    out = tmp_path / "ref.npz"
    shards = [f"maestro={maestro}", f"urmp={urmp}"]
    reference.build_reference(
        shards, "fake-clap", out, reference.ReferenceOptions(max_items=12), fake_runs.FakeEmbedder
    )
    read = report.read_reference(out)
    cal = read["calibration"]
    assert cal["n_captions"] == 12 and cal["n_distinct"] == 5
    # the ceiling by hand: cos(audio_i, text(caption_i)), mean over the reference clips
    embedder = fake_runs.FakeEmbedder()
    captions = [f"solo piano: {TITLES[i % 4]}" for i in range(8)]
    captions += ["chamber music for violin and cello: Jupiter"] * 4
    text = embedder.embed_text(captions)
    audio = read["embeddings"].astype(np.float64)
    own = np.sum(audio * text, axis=1) / np.linalg.norm(audio, axis=1)
    assert cal["ceiling"]["mean"] == pytest.approx(own.mean(), abs=1e-5)
    assert cal["ceiling"]["n"] == 12 and cal["floor"]["n"] == 12
    assert cal["ceiling"]["ci_low"] <= cal["ceiling"]["mean"] <= cal["ceiling"]["ci_high"]
    # shown in every run report beside clap_text_sim
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")
    summary = fake_runs.evaluate_with_fake_embedder(run_dir, out)
    assert summary["text_calibration"]["ceiling"]["mean"] == cal["ceiling"]["mean"]
    html = (run_dir / "report.html").read_text()
    assert 'id="text-calibration"' in html and "ceiling" in html and "floor" in html
    # and on the comparison page, beside each model x condition's text similarity
    from rcmg.evaluation import comparison

    comparison.compare_runs(
        [run_dir], tmp_path / "cmp", comparison.CompareOptions(reference_stats=out, n_boot=20)
    )
    page = (tmp_path / "cmp" / "index.html").read_text()
    assert 'id="text-calibration"' in page and "tiny-audioldm/prompt" in page
    # shards without a manifest: the report says why there is no calibration
    bare = fake_runs.write_fake_reference(tmp_path / "bare.npz")
    summary = fake_runs.evaluate_with_fake_embedder(run_dir, bare)
    assert summary["text_calibration"] == {}
    plain = tmp_path / "plain.npz"
    reference.build_reference(
        [str(fake_runs.write_fake_shard(tmp_path / "p", 4))], "fake-clap", plain,
        reference.ReferenceOptions(), fake_runs.FakeEmbedder,
    )  # fmt: skip
    assert "no manifest" in report.read_reference(plain)["calibration"]["reason"]
