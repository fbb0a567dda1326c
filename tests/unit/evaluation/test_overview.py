"""The comparison page's reading layer: key tables (best marks, significance marks with
Holm p footnotes), the trade-off scatter and the listening grid."""

from __future__ import annotations

import math

from rcmg.evaluation import comparison, overview

from tests.unit import fake_runs


def _ci(mean):
    return {"mean": mean, "ci_low": mean - 0.01, "ci_high": mean + 0.01, "n": 10}


def _aggregate(model, condition, text, style, kad, lufs):
    return {
        "model": model,
        "condition": condition,
        "seed": "0+1",
        "n_evaluated": 20,
        "below_min_n": False,
        "metrics": {
            "clap_text_sim": _ci(text),
            "clap_style_sim": _ci(style),
            "kad": _ci(kad),
            "loudness_lufs": _ci(lufs),
        },
    }


def test_key_table_marks_best_per_column_and_primary_significance():
    aggregates = [
        _aggregate("m", "retrieval", 0.30, 0.60, 2.0, -20.0),
        _aggregate("m", "prompt", 0.35, 0.40, 3.0, -18.0),
        _aggregate("m", "prompt_aug", 0.35, 0.50, math.nan, -19.0),
    ]
    paired = [
        {
            "family": "primary",
            "model": "m",
            "condition": "retrieval",
            "baseline": "prompt",
            "metric": "clap_style_sim",
            "mean_diff": 0.2,
            "holm_p": 0.004,
            "holm_m": 2,
            "p_reason": "",
        },
        {
            "family": "primary",
            "model": "m",
            "condition": "retrieval",
            "baseline": "prompt",
            "metric": "clap_text_sim",
            "mean_diff": -0.05,
            "test": "noninferiority",
            "margin": 0.02,
            "ni_lower": -0.08,
            "holm_p": 0.31,
            "holm_m": 2,
            "p_reason": "",
        },
        {
            "family": "exploratory",
            "model": "m",
            "condition": "prompt_aug",
            "baseline": "prompt",
            "metric": "clap_text_sim",
            "mean_diff": 0.0,
            "holm_p": math.nan,
        },
    ]
    tables, notes = overview.key_tables(aggregates, paired, "prompt", {("m", "retrieval")})
    (table,) = tables
    assert [r["condition"] for r in table["rows"]] == ["prompt", "retrieval", "prompt_aug"]
    cells = {r["condition"]: {c["metric"]: c for c in r["cells"]} for r in table["rows"]}
    # text sim: a tie between prompt and prompt_aug is marked on both
    assert {c for c in cells if cells[c]["clap_text_sim"]["best"]} == {"prompt", "prompt_aug"}
    assert {c for c in cells if cells[c]["clap_style_sim"]["best"]} == {"retrieval"}
    assert {c for c in cells if cells[c]["kad"]["best"]} == {"retrieval"}  # lower, NaN ignored
    assert not any(cells[c]["loudness_lufs"]["best"] for c in cells)  # no "better" loudness
    style_mark = cells["retrieval"]["clap_style_sim"]["mark"]
    text_mark = cells["retrieval"]["clap_text_sim"]["mark"]
    assert style_mark["symbol"] == "*" and text_mark["symbol"] == "n.s."
    assert cells["prompt_aug"]["clap_text_sim"]["mark"] is None  # exploratory: no mark
    assert len(notes) == 2 and "Holm-adjusted p = 0.004" in notes[style_mark["n"] - 1]["text"]
    text_note = notes[text_mark["n"] - 1]["text"]
    assert "non-inferiority (margin 0.02: one-sided 95% lower bound -0.08)" in text_note
    assert "non-inferiority" not in notes[style_mark["n"] - 1]["text"]  # two-sided
    rows = {r["condition"]: r for r in table["rows"]}
    assert rows["retrieval"]["non_commercial"] and not rows["prompt"]["non_commercial"]


def test_tradeoff_scatter_one_point_per_run_and_sweeps_connected():
    records = []
    for seed in (0, 1):
        for condition, x, y in (
            ("prompt", 0.3, 0.2),
            ("retrieval_deg10", 0.28, 0.3),
            ("retrieval_deg20", 0.25, 0.4),
            ("retrieval_deg30", 0.2, 0.5),
        ):
            records.append(
                {
                    "model": "m",
                    "condition": condition,
                    "seed": seed,
                    "metrics": {"clap_text_sim": _ci(x + seed / 100), "clap_style_sim": _ci(y)},
                }
            )
    records.append({"model": "m", "condition": "broken", "seed": 0, "metrics": {}})
    svg = overview.tradeoff_svg(records)
    assert svg.count('class="pt"') == 8  # the run without similarities is left out
    assert svg.count('class="sweep"') == 2  # one line per model x seed sweep
    assert "not shown (a similarity is n/a): m/broken/seed0" in svg
    assert overview.sweep_key("retrieval_deg20") == ("retrieval_deg", 20.0)
    assert overview.sweep_key("prompt") is None


def test_listening_grid_has_prompts_as_rows_and_conditions_as_columns(tmp_path):
    from rcmg.evaluation import report

    runs_root = tmp_path / "runs"
    dirs = [
        fake_runs.write_fake_run(
            runs_root,
            condition="retrieval",
            with_style=True,
            style_dim=fake_runs.FakeEmbedder.dim,
            skipped_items=(1,),
        ),
        fake_runs.write_fake_run(runs_root, condition="prompt"),
        fake_runs.write_fake_run(runs_root, condition="prompt", seed=1),
    ]
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    for d in dirs:
        fake_runs.evaluate_with_fake_embedder(d, ref, n_boot=10)
    runs = [report.read_evaluated_run(d) for d in dirs]
    out = tmp_path / "report"
    out.mkdir()
    grid = overview.listening_grid(runs, out, "prompt", comparison.item_key)
    assert grid["conditions"] == ["prompt", "retrieval"]
    assert [v["label"] for v in grid["views"]] == [
        "tiny-audioldm / seed 0",
        "tiny-audioldm / seed 1",
    ]
    seed0 = grid["views"][0]["rows"]
    assert [r["item"] for r in seed0] == [0, 1, 2, 3]
    prompt_cell, retrieval_cell = seed0[0]["cells"]
    assert (out / prompt_cell["wav"]).resolve().is_file()
    assert (out / retrieval_cell["mel"]).resolve().is_file()
    assert "prompt used" not in prompt_cell["hover"]
    # hover: the bank items the retrieval output used (no mapping given: licence unknown)
    assert "1003 @10 s (score 0.71)" in retrieval_cell["hover"]
    assert "unknown" in retrieval_cell["hover"]
    assert seed0[1]["cells"][1]["status"] == "skipped"
    assert grid["views"][1]["rows"][0]["cells"][1] is None  # no retrieval run for seed 1
