"""The effect of candidate ranking, by the judge: rank-0 vs all candidates, paired by prompt."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rcmg.evaluation.ranking import ranking_effect
from rcmg.workflow.atomic import read_jsonl

from tests.unit import fake_runs


def _rows(sims):
    return [
        {
            "item": i,
            "waveform_index": k,
            "status": "ok",
            "clap_text_sim": v,
            "clap_style_sim": math.nan,
        }
        for i, group in enumerate(sims)
        for k, v in enumerate(group)
    ]


def test_rank0_minus_all_is_the_paired_prompt_mean():
    rows = _rows([[0.2, 0.6], [0.5, 0.1]])
    items = [{"item": r["item"], "waveform_index": r["waveform_index"], "rank": k}
             for r, k in zip(rows, [1, 0, 0, 1], strict=True)]  # fmt: skip
    effect = ranking_effect(rows, items, n_boot=200, seed=0)
    text = effect["metrics"]["clap_text_sim"]
    assert effect["n_prompts"] == 2 and "clap_style_sim" not in effect["metrics"]  # no style
    assert text["rank0"]["mean"] == pytest.approx(0.55)
    assert text["all"]["mean"] == pytest.approx(0.35)
    assert text["rank0_minus_all"]["mean"] == pytest.approx(0.2)
    assert text["rank0_minus_all"]["n"] == 2  # the prompt is the unit, not the clip


def test_unranked_runs_have_no_ranking_effect():
    rows = _rows([[0.2], [0.5]])
    items = [{"item": 0, "waveform_index": 0, "rank": None}, {"item": 1, "waveform_index": 0}]
    assert ranking_effect(rows, items, n_boot=10, seed=0) is None


def test_evaluation_reports_the_ranking_effect(tmp_path):
    run = fake_runs.write_fake_run(tmp_path / "runs", n_waveforms=2)
    items = read_jsonl(run / "items.jsonl")
    for entry in items:
        entry["rank"] = 1 - entry["waveform_index"]  # candidate 1 ranked best
    (run / "items.jsonl").write_text("".join(json.dumps(e) + "\n" for e in items))
    config = json.loads((run / "run_config.json").read_text())
    config["ranking"] = {"clap": "bank-clap", "by": "the bank CLAP", "fingerprint": None,
                         "scope": "within prompt", "score": "cosine", "warning": None}  # fmt: skip
    (run / "run_config.json").write_text(json.dumps(config))
    summary = fake_runs.evaluate_with_fake_embedder(
        run, fake_runs.write_fake_reference(tmp_path / "r.npz")
    )
    per_item = [r for r in read_per_item(run) if r["status"] == "ok"]
    assert all(r["rank"] == 1 - r["waveform_index"] for r in per_item)  # in per_item.csv
    best = [r["clap_text_sim"] for r in per_item if r["rank"] == 0]
    text = summary["ranking_effect"]["metrics"]["clap_text_sim"]
    assert text["rank0"]["mean"] == pytest.approx(np.mean(best), abs=1e-6)
    assert text["all"]["mean"] == pytest.approx(
        np.mean([r["clap_text_sim"] for r in per_item]), abs=1e-6
    )
    html = (run / "report.html").read_text()
    assert 'id="ranking-effect"' in html and 'id="ranking-is-judge"' not in html


def read_per_item(run):
    from rcmg.evaluation.report import read_per_item_csv

    return read_per_item_csv(run / "metrics" / "per_item.csv")
