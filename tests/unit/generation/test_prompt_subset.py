"""sweeps.prompts: a sweep point (and its matched baseline) generates a seeded subset of
the prompts, keeping each item's index, so points and baselines pair item by item and
each subset item is the full run's item (same prompt, same per-item generator).

Tiny random-weight AudioLDM1 (2 steps, 0.5-s clips), 4 prompts, batch 1 (every item its
own batch, so the audio equals the full run's bit for bit).
"""

from __future__ import annotations

import json
from pathlib import Path

import generate as generate_cli
import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.batching import prompt_subset
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.workflow.atomic import read_jsonl

PROMPTS = [
    "a calm solo piano melody",
    "a lively string quartet",
    "a brass quintet fanfare",
    "a slow clarinet and bassoon duet",
]


def test_the_draw_is_seeded_keeps_indices_and_ignores_everything_else():
    items = list(range(10))
    draw = prompt_subset(items, 4, seed=7)
    assert draw == sorted(draw) and len(set(draw)) == 4 and set(draw) <= set(items)
    assert prompt_subset(items[::-1], 4, seed=7) == draw  # order of the file's items
    assert prompt_subset(items, 4, seed=8) != draw or prompt_subset(items, 4, seed=9) != draw
    assert prompt_subset(items, 20, seed=7) == items  # more than there are: every item
    assert prompt_subset([3, 5, 9], 2, seed=0) == sorted(
        [3, 5, 9][i] for i in np.random.default_rng(0).choice(3, size=2, replace=False)
    )


@pytest.fixture(scope="module")
def runs(tiny_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("subset")
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    model = tiny_model("audioldm")
    common = [
        "--model-key", "audioldm", "--model-id", str(model), "--pipeline", "audioldm1",
        "--condition-type", "prompt", "--prompts", str(work / "prompts.txt"), "--seed", "3",
        "--steps", "2", "--guidance", "2.5", "--seconds", "0.5", "--batch", "1",
    ]  # fmt: skip
    full, part = work / "full", work / "part"
    assert generate_cli.main([*common, "--condition", "prompt", "--out-dir", str(full)]) == 0
    subset = ["--prompt-subset", "2", "--prompt-subset-seed", "5"]
    argv = [*common, "--condition", "prompt@prompts=2", *subset, "--out-dir", str(part)]
    assert generate_cli.main(argv) == 0
    return full, part


def test_a_subset_run_is_two_of_the_full_runs_items_with_their_indices(runs):
    full, part = runs
    expected = prompt_subset(list(range(len(PROMPTS))), 2, seed=5)
    rows_full = {r["item"]: r for r in read_jsonl(full / "items.jsonl")}
    rows_part = read_jsonl(part / "items.jsonl")
    assert [r["item"] for r in rows_part] == expected
    for row in rows_part:
        assert row["prompt"] == PROMPTS[row["item"]] == rows_full[row["item"]]["prompt"]
        a, _ = sf.read(full / "wav" / f"{row['item']:04d}.wav")
        b, _ = sf.read(part / "wav" / f"{row['item']:04d}.wav")
        np.testing.assert_array_equal(a, b)
    assert sorted(p.name for p in (part / "wav").iterdir()) == [f"{i:04d}.wav" for i in expected]
    recorded = json.loads((part / "run_config.json").read_text())
    assert recorded["prompt_subset"] == {"n": 2, "seed": 5, "of": 4, "items": expected}
    assert recorded["config"]["prompt_subset"] == 2
    assert json.loads((full / "run_config.json").read_text())["prompt_subset"] is None


def test_a_bad_subset_count_is_refused_in_one_line(tmp_path, capsys):
    cfg = GenerateConfig(
        model_key="m", model_id="x", family="audioldm1", condition="prompt",
        condition_type="prompt", prompts=str(Path(tmp_path) / "p.txt"), out_dir=str(tmp_path),
        prompt_subset=0,
    )  # fmt: skip
    (tmp_path / "p.txt").write_text("a piano\n")
    with pytest.raises(Exception, match="--prompt-subset must be >= 1"):
        run_generation(cfg)


def test_subset_shards_gather_into_the_unsharded_subset_run(runs, tiny_model):
    """config.yaml shards generate (prompt_shards: 8): each shard keeps the drawn items of
    its range (possibly none) and gather_generate accepts exactly those."""
    from rcmg.generation.gather import gather_shards

    _, part = runs
    first = json.loads((part / "run_config.json").read_text())["config"]
    shard_dirs = []
    for i in range(2):
        out = part.parent / "shards" / f"shard{i}"
        cfg = {**first, "out_dir": str(out), "prompt_shards": 2, "prompt_shard": i}
        run_generation(GenerateConfig(**cfg))
        shard_dirs.append(out)
    gathered = gather_shards(shard_dirs, part.parent / "gathered")
    assert read_jsonl(gathered / "items.jsonl") == read_jsonl(part / "items.jsonl")
    for row in read_jsonl(part / "items.jsonl"):
        a, _ = sf.read(part / "wav" / f"{row['item']:04d}.wav")
        b, _ = sf.read(gathered / "wav" / f"{row['item']:04d}.wav")
        np.testing.assert_array_equal(a, b)
