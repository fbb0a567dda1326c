"""Sharded generate (models.<m>.sampling.prompt_shards): shards of whole batch blocks, each
planning every prompt, gathered into the run directory of the unsharded run, bit for bit.

Tiny random-weight models (2 steps, 0.5-s clips); 5 prompts with batch 2, so shard
boundaries fall inside what would be a "next two non-skipped items" batch if batching
were not by fixed blocks, and the last shard is a partial block.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.batching import shard_ranges
from rcmg.generation.gather import ShardError, gather_shards
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.workflow.atomic import read_jsonl

REPO = Path(__file__).resolve().parents[3]
PROMPTS = [
    "a calm solo piano melody",
    "a lively string quartet",
    "\u200b",  # no visible characters: a skipped item inside shard 0's second block
    "a brass quintet fanfare",
    "a slow clarinet and bassoon duet",
]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    work = tmp_path_factory.mktemp("shards")
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((12, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    np.save(work / "bank.npy", vectors)
    rows = [
        {"segment_id": f"seg{i:03d}", "tags": ["piano"], "source_id": f"s{i}"} for i in range(12)
    ]
    (work / "bank.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return work


def _config(work, model_dir, pipeline, condition_type, out, **extra) -> GenerateConfig:
    return GenerateConfig(
        model_key=pipeline,
        model_id=str(model_dir),
        family=pipeline,
        condition=condition_type,
        condition_type=condition_type,
        prompts=str(work / "prompts.txt"),
        out_dir=str(out),
        seed=3,
        steps=2,
        guidance=2.5,
        seconds=0.5,
        batch=2,
        **extra,
    )


def _sharded(work, make_cfg, name, shards):
    dirs = []
    for i in range(shards):
        out = work / name / f"shard{i}"
        run_generation(make_cfg(out, prompt_shards=shards, prompt_shard=i))
        dirs.append(out)
    return gather_shards(dirs, work / name / "run"), dirs


def _same_run(whole: Path, gathered: Path) -> None:
    rows_whole, rows_gathered = (
        read_jsonl(whole / "items.jsonl"),
        read_jsonl(gathered / "items.jsonl"),
    )
    assert rows_gathered == rows_whole
    names = sorted(p.name for p in (whole / "wav").iterdir())
    assert names == sorted(p.name for p in (gathered / "wav").iterdir()) and names
    for name in names:  # the same float32 samples (the WAV's PEAK chunk holds a timestamp)
        x, sr_x = sf.read(whole / "wav" / name, dtype="float32")
        y, sr_y = sf.read(gathered / "wav" / name, dtype="float32")
        assert sr_x == sr_y and np.array_equal(x, y), name
    if (whole / "style.npy").exists():
        assert np.array_equal(np.load(whole / "style.npy"), np.load(gathered / "style.npy"))
    else:
        assert not (gathered / "style.npy").exists()
    a = json.loads((whole / "run_config.json").read_text())
    b = json.loads((gathered / "run_config.json").read_text())
    for key in ("n_prompts", "n_clips_ok", "n_clips_skipped", "prompt_limits"):
        assert a[key] == b[key], key
    assert a["conditioning_summary"] == b["conditioning_summary"]


@pytest.mark.parametrize(
    ("n", "batch", "shards", "expected"),
    [
        (5, 2, 2, [(0, 4), (4, 5)]),
        (10, 2, 3, [(0, 4), (4, 8), (8, 10)]),
        (
            1000,
            2,
            8,
            [
                (0, 126),
                (126, 252),
                (252, 378),
                (378, 504),
                (504, 628),
                (628, 752),
                (752, 876),
                (876, 1000),
            ],
        ),
        (3, 4, 2, [(0, 3), (3, 3)]),
        (7, 1, 1, [(0, 7)]),
    ],
)
def test_shard_ranges_tile_the_items_in_whole_batches(n, batch, shards, expected):
    ranges = shard_ranges(n, batch, shards)
    assert ranges == expected
    assert len(ranges) == shards and ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(start % batch == 0 for start, _ in ranges if start < n)
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) < 2 * batch  # block counts differ by at most one


@pytest.fixture(scope="module")
def aldm2_runs(tiny_model, work):
    """The AudioLDM2 prompt run whole, and as 2 gathered shards (+ the shard folders)."""

    def make(out, **shard):
        return _config(work, tiny_model("audioldm2"), "audioldm2", "prompt", out, **shard)

    whole = run_generation(make(work / "aldm2_whole"))
    gathered, dirs = _sharded(work, make, "aldm2_sharded", 2)
    return whole, gathered, dirs


def test_aldm2_prompt_shards_equal_the_unsharded_run(aldm2_runs):
    whole, gathered, dirs = aldm2_runs
    _same_run(whole, gathered)
    rows = read_jsonl(gathered / "items.jsonl")
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped", "ok", "ok"]
    config = json.loads((gathered / "run_config.json").read_text())
    assert [s["items"] for s in config["shards"]] == [[0, 4], [4, 5]]
    assert config["shard"] is None and config["config"]["prompt_shards"] == 2
    assert config["unet_forward_calls"] == sum(
        json.loads((d / "run_config.json").read_text())["unet_forward_calls"] for d in dirs
    )
    assert json.loads((gathered / "hardware.json").read_text())["shard_jobs"] == 2


def test_aldm1_mismatched_retrieval_shards_plan_every_prompt(tiny_model, work):
    """retrieval_mismatched gives item i the style of item (i + n//2) mod n: a shard that
    planned only its own prompts would pick other donors; the gathered run equals the
    unsharded one (style.npy rows renumbered too)."""
    bank = {
        "bank": str(work / "bank.npy"),
        "bank_mapping": str(work / "bank.jsonl"),
        "clap_model": str(tiny_model("clap")),
        "style_topk": 3,
        "style_temp": 0.1,
    }

    def make(out, **shard):
        return _config(
            work, tiny_model("audioldm"), "audioldm1", "retrieval_mismatched", out, **bank, **shard
        )

    whole = run_generation(make(work / "mis_whole"))
    gathered, _ = _sharded(work, make, "mis_sharded", 2)
    _same_run(whole, gathered)
    sources = [
        r["style_source"] for r in read_jsonl(gathered / "items.jsonl") if r["status"] == "ok"
    ]
    assert any(s.startswith("bank_of_item_") for s in sources)


def test_gather_refuses_incomplete_or_mixed_shards(aldm2_runs, tiny_model, work):
    dirs = aldm2_runs[2]
    out = work / "bad_gather"
    with pytest.raises(ShardError, match="expected shard 0 of 2"):
        gather_shards(dirs[::-1], out)
    with pytest.raises(ShardError, match="expected shard 0 of 1"):
        gather_shards(dirs[:1], out)  # shard 0 of 2 alone
    with pytest.raises(ShardError, match="did not finish"):
        gather_shards([dirs[0], work / "nowhere"], out)
    other = work / "aldm2_other_seed"
    cfg = _config(work, tiny_model("audioldm2"), "audioldm2", "prompt", other, prompt_shards=2)
    cfg.prompt_shard, cfg.seed = 1, 4
    run_generation(cfg)
    with pytest.raises(ShardError, match="other settings"):
        gather_shards([dirs[0], other], out)
    assert not out.exists()  # nothing published by a failed gather


def test_gather_cli_reports_a_missing_shard_in_one_line(work):
    proc = subprocess.run(
        [
            sys.executable,
            "workflow_scripts/gather_generate.py",
            "--shards",
            str(work / "nowhere0"),
            "--out-dir",
            str(work / "cli_out"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert "did not finish" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_evaluate_reads_the_gathered_run_and_the_report_names_its_shards(aldm2_runs, tmp_path):
    from tests.unit import fake_runs

    _, gathered, _ = aldm2_runs
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    summary = fake_runs.evaluate_with_fake_embedder(gathered, ref)
    assert summary["n_evaluated"] == 4 and summary["n_skipped"] == 1  # the whole run's clips
    html = (gathered / "report.html").read_text()
    assert "generated as 2 shard jobs (items 0&ndash;4, 4&ndash;5), gathered" in html


def test_job_summary_of_a_gathered_run_sums_its_shard_jobs(aldm2_runs, tmp_path):
    from tests.benchmarks.summarize_jobs import job_row

    _, gathered, _ = aldm2_runs
    folder = tmp_path / "generate" / "audioldm2" / "prompt"
    folder.mkdir(parents=True)
    for i, (wall, cpu, rss) in enumerate([(10.0, 8.0, 500.0), (4.0, 3.0, 700.0)]):
        (folder / f"seed3.shard{i}.tsv").write_text(
            f"s\th:m:s\tmax_rss\tcpu_time\n{wall}\t0:00:10\t{rss}\t{cpu}\n"
        )
    row = job_row(gathered, tmp_path)
    assert (row["job_wall_s"], row["job_cpu_s"], row["job_max_rss_mb"]) == (14.0, 11.0, 700.0)
    assert row["clips"] == 4
