"""Sweep curves, sweeps.csv and the `best` table (rcmg.evaluation.sweep_curves), pure and
through compare.py on fake evaluated runs."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
from rcmg.evaluation import sweep_curves
from rcmg.evaluation.sweep_curves import Selection
from rcmg.workflow import sweeps

from tests.unit import fake_runs

REPO = Path(__file__).resolve().parents[3]


def _agg(model, condition, style, text, half=0.01):
    ci = lambda v: {"mean": v, "ci_low": v - half, "ci_high": v + half}  # noqa: E731
    return {
        "model": model,
        "condition": condition,
        "metrics": {"clap_style_sim": ci(style), "clap_text_sim": ci(text)},
    }


def _word(sweep, model, condition, baseline, **settings):
    body = ",".join(f"{k}={v}" for k, v in settings.items())
    return f"{sweep}:{model}:{condition}:{baseline}:{body}"


def test_groups_order_points_by_value_and_attach_matched_baselines():
    words = [
        _word("ag", "A", "r@alpha=0.1", "prompt", guidance="3", alpha="0.1"),
        _word("ag", "A", "r@guidance=2,alpha=0.1", "prompt@guidance=2", guidance="2", alpha="0.1"),
        _word(
            "ag", "A", "r@guidance=2,alpha=0.02", "prompt@guidance=2", guidance="2", alpha="0.02"
        ),
        _word("ag", "A", "r@alpha=0.02", "prompt", guidance="3", alpha="0.02"),
    ]
    aggs = [
        _agg("A", "r@alpha=0.1", 0.5, 0.2),
        _agg("A", "r@guidance=2,alpha=0.1", 0.4, 0.25),
        _agg("A", "r@guidance=2,alpha=0.02", 0.3, 0.3),
        _agg("A", "r@alpha=0.02", 0.35, 0.28),
        _agg("A", "prompt", 0.1, 0.33),
        _agg("A", "prompt@guidance=2", 0.12, 0.31),
    ]
    (group,) = sweep_curves.sweep_groups(words, aggs)
    assert group["x_knob"] == "guidance" and group["series_knobs"] == ["alpha"]
    assert [(p["series"], p["x"]) for p in group["points"]] == [
        ("alpha=0.02", 2.0),
        ("alpha=0.02", 3.0),
        ("alpha=0.1", 2.0),
        ("alpha=0.1", 3.0),
    ]
    assert group["points"][0]["baseline_aggregate"]["condition"] == "prompt@guidance=2"
    assert group["points"][1]["baseline_aggregate"]["condition"] == "prompt"
    svg = sweep_curves.curve_svg(group, "clap_style_sim", "style")
    assert svg.count('class="band"') == 2 and svg.count('class="curve"') == 2
    assert svg.count('class="baseline"') == 2 and svg.count('class="pt"') == 4
    rows = sweep_curves.sweep_rows([group], ["clap_style_sim"])
    assert [r["clap_style_sim_baseline_mean"] for r in rows] == [0.12, 0.1, 0.12, 0.1]
    assert {r["family"] for r in rows} == {"exploratory"}


def test_tradeoff_connects_one_point_per_value_in_value_order():
    words = [_word("a", "A", f"r@alpha={a}", "prompt", alpha=a) for a in ("0.5", "0.01", "0.1")]
    text = {"0.01": 0.3, "0.1": 0.2, "0.5": 0.1}
    style = {"0.01": 0.1, "0.1": 0.2, "0.5": 0.3}
    aggs = [_agg("A", f"r@alpha={a}", style[a], text[a]) for a in text] + [
        _agg("A", "prompt", 0.05, 0.35)
    ]
    (group,) = sweep_curves.sweep_groups(words, aggs)
    svg = sweep_curves.tradeoff_curve_svg(group)
    (line,) = re.findall(r'class="curve" points="([^"]+)"', svg)
    xs = [float(p.split(",")[0]) for p in line.split()]
    assert len(xs) == 3 and xs == sorted(xs, reverse=True)  # alpha up = text sim down
    assert svg.count('class="pt"') == 3 and svg.count('class="baseline-pt"') == 1


def test_prompt_split_is_seeded_disjoint_and_covers_the_prompts():
    tune, test = sweep_curves.prompt_split(range(10), 0.5, seed=3)
    assert len(tune) == len(test) == 5 and tune | test == set(range(10)) and not tune & test
    assert sweep_curves.prompt_split(range(10), 0.5, seed=3) == (tune, test)
    assert sweep_curves.prompt_split(range(10), 0.5, seed=4) != (tune, test)
    tune, test = sweep_curves.prompt_split([0, 1], 0.99, seed=0)
    assert len(tune) == 1 and len(test) == 1  # both splits keep a prompt


def _rows(style, text):
    return [
        {"item": i, "status": "ok", "clap_style_sim": s, "clap_text_sim": t}
        for i, (s, t) in enumerate(zip(style, text, strict=True))
    ]


def test_best_picks_on_tuning_within_the_margin_and_reports_on_test():
    n = 8
    tune, test = sweep_curves.prompt_split(range(n), 0.5, seed=0)
    # high style but text far below the baseline: infeasible; mid: feasible and best
    rows = {
        "prompt": _rows([0.1] * n, [0.30] * n),
        "r@alpha=0.5": _rows([0.9] * n, [0.10] * n),
        "r@alpha=0.1": _rows([0.5 if i in tune else 0.4 for i in range(n)], [0.29] * n),
        "r@alpha=0.01": _rows([0.2] * n, [0.30] * n),
    }
    words = [_word("a", "A", c, "prompt", alpha=c.split("=")[1]) for c in rows if "@" in c]
    aggs = [_agg("A", c, 0, 0) for c in rows]
    groups = sweep_curves.sweep_groups(words, aggs)
    (best,) = sweep_curves.best_table(
        groups, lambda m, c: rows[c], Selection(margin=0.02), n_boot=100, seed=0
    )
    assert best["condition"] == "r@alpha=0.1" and best["n_feasible"] == 2
    assert best["tuning_objective"] == pytest.approx(0.5)
    assert best["test_objective"]["mean"] == pytest.approx(0.4)  # held-out, not tuning
    assert best["test_objective"]["n"] == len(test)
    assert best["test_constraint_baseline"]["mean"] == pytest.approx(0.30)
    (none,) = sweep_curves.best_table(
        groups, lambda m, c: rows[c], Selection(margin=0.0, constraint="clap_text_sim",
                                                objective="clap_style_sim"), 100, 0
    )  # fmt: skip
    assert none["condition"] == "r@alpha=0.01"  # only the point at the baseline's text sim
    rows["r@alpha=0.01"] = _rows([0.2] * n, [0.2] * n)
    (empty,) = sweep_curves.best_table(groups, lambda m, c: rows[c], Selection(margin=0.0), 100, 0)
    assert empty["condition"] == "" and "within 0.0" in empty["reason"]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    return fake_runs.build_swept_compare(tmp_path_factory.mktemp("sweep_compare"))


def _csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_compare_pairs_each_point_with_its_matched_baseline(swept):
    pairs = {(r["condition"], r["baseline"]) for r in _csv(swept["out"] / "paired.csv")}
    assert ("retrieval@guidance=2,alpha=0.1", "prompt@guidance=2") in pairs
    assert ("retrieval@alpha=0.1", "prompt") in pairs
    assert ("prompt@guidance=2", "prompt") in pairs  # the guidance effect itself
    assert not any(c == b for c, b in pairs)


def test_compare_writes_one_row_per_point_curves_and_best(swept):
    out = swept["out"]
    summary = _csv(out / "summary.csv")
    aggregates = {r["condition"] for r in summary if r["level"] == "aggregate"}
    assert "retrieval@guidance=2,alpha=0.1" in aggregates and len(aggregates) == 4
    rows = _csv(out / "sweeps.csv")
    assert [(r["condition"], r["x"], r["baseline"]) for r in rows] == [
        ("retrieval@guidance=2,alpha=0.1", "2.0", "prompt@guidance=2"),
        ("retrieval@alpha=0.1", "3.0", "prompt"),
    ]
    (best,) = _csv(out / "best.csv")
    assert best["sweep"] == "ag" and best["condition"] in {r["condition"] for r in rows}
    assert int(best["n_tuning_prompts"]) + int(best["n_test_prompts"]) == len(
        fake_runs.DEFAULT_PROMPTS
    )
    page = (out / "index.html").read_text()
    assert 'id="sweeps"' in page and "exploratory" in page and 'id="best"' in page
    assert page.count('class="sweep-curve"') == len(sweep_curves.CURVE_METRICS)
    assert page.count('class="sweep-tradeoff"') == 1
    assert "alpha=0.5" not in page  # a folder on disk that the plan does not name
    # the listening grid compares configured conditions only (sweep points: their section)
    grid = page.split('id="grid-box"', 1)[1].split("</table>", 1)[0]
    header = grid.split('<th class="prompt-col">prompt</th>', 1)[1].split("</tr>", 1)[0]
    assert "<th>prompt</th>" in header and "@" not in header


def test_sweep_words_round_trip_through_the_plan_format():
    point = sweeps.RunPoint(
        model="A",
        condition="r@alpha=0.1",
        base="r",
        sweeps=(("s", (("guidance", "3"), ("alpha", "0.1"))),),
        baseline="prompt",
        roles=("sweep",),
    )
    (word,) = sweeps.sweep_words([point])
    assert word == "s:A:r@alpha=0.1:prompt:guidance=3,alpha=0.1"
    (group,) = sweep_curves.sweep_groups([word], [_agg("A", "r@alpha=0.1", 0.2, 0.3)])
    assert group["points"][0]["settings"] == {"guidance": "3", "alpha": "0.1"}
    assert np.isfinite(group["points"][0]["x"])
