"""compare.py: table mode, paired statistics vs the baseline, side-by-side mode, errors."""

from __future__ import annotations

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rcmg.evaluation import comparison, hypotheses
from rcmg.workflow import power

from tests.unit import fake_runs

REPO = Path(__file__).resolve().parents[3]
COMPARE = REPO / "workflow_scripts" / "compare.py"


def run_compare(*args, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(COMPARE), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def per_item(run_dir: Path) -> dict[int, dict]:
    return {int(r["item"]): r for r in read_csv(run_dir / "metrics" / "per_item.csv")}


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Model A: prompt + retrieval for seeds 0 and 1; model B: prompt only (no pairs)."""
    root = tmp_path_factory.mktemp("compare")
    ref = fake_runs.write_fake_reference(root / "ref.npz", two_datasets=True)
    runs_root = root / "results" / "runs"
    runs = {}
    for seed in (0, 1):
        runs[("A", "prompt", seed)] = fake_runs.write_fake_run(
            runs_root, model="A", condition="prompt", seed=seed, kind="sine"
        )
        runs[("A", "retrieval", seed)] = fake_runs.write_fake_run(
            runs_root,
            model="A",
            condition="retrieval",
            seed=seed,
            kind="noise",
            with_style=True,
            style_dim=fake_runs.FakeEmbedder.dim,
            skipped_items=(1,) if seed == 0 else (),
        )
    runs[("B", "prompt", 0)] = fake_runs.write_fake_run(runs_root, model="B", kind="silent")
    for run_dir in runs.values():
        fake_runs.evaluate_with_fake_embedder(run_dir, ref, n_boot=30)
    bench = root / "benchmarks"
    fake_runs.write_fake_benchmark(bench, "A", "prompt", 0, 12.0)
    out = root / "results" / "report"
    run_compare(
        *("--runs", *runs.values(), "--out-dir", out, "--bench-root", bench, "--n-boot", "200"),
        *("--reference-stats", ref, "--min-n", "6", "--fad-inf-min-n", "2"),
        *("--primary", "retrieval:prompt:rms_dbfs", "retrieval:prompt:peak_dbfs"),
        *("retrieval:prompt:clap_style_sim:B", "retrieval:prompt:clap_text_sim:A:ni=0.02"),
    )
    return {"root": root, "runs": runs, "out": out, "ref": ref}


def test_summary_table_has_runs_and_seed_aggregates(evaluated):
    rows = read_csv(evaluated["out"] / "summary.csv")
    levels = [(r["level"], r["model"], r["condition"]) for r in rows]
    assert levels.count(("aggregate", "A", "prompt")) == 1
    assert sum(1 for level in levels if level[0] == "run") == 5
    aggregate = next(r for r in rows if r["level"] == "aggregate" and r["condition"] == "retrieval")
    assert aggregate["seed"] == "0+1" and aggregate["n_evaluated"] == "7"
    pooled = [
        float(r["rms_dbfs"])
        for seed in (0, 1)
        for r in per_item(evaluated["runs"][("A", "retrieval", seed)]).values()
        if r["status"] == "ok"
    ]
    assert float(aggregate["rms_dbfs_mean"]) == pytest.approx(np.mean(pooled))
    assert (
        float(aggregate["rms_dbfs_ci_low"])
        <= np.mean(pooled)
        <= float(aggregate["rms_dbfs_ci_high"])
    )
    for name in ("fad", "kad", "clap_text_sim", "loudness_lufs", "silent_fraction"):
        assert f"{name}_mean" in rows[0], name


def test_compute_seconds_per_audio_minute_from_benchmark_or_blank(evaluated):
    rows = read_csv(evaluated["out"] / "summary.csv")
    by_run = {(r["model"], r["condition"], r["seed"]): r for r in rows if r["level"] == "run"}
    assert float(by_run[("A", "prompt", "0")]["compute_s_per_audio_min"]) == pytest.approx(180.0)
    assert by_run[("A", "prompt", "1")]["compute_s_per_audio_min"] == ""
    html = (evaluated["out"] / "index.html").read_text()
    assert "n/a" in html and "180" in html


def test_paired_differences_match_per_item_values(evaluated):
    paired = {r["metric"]: r for r in read_csv(evaluated["out"] / "paired.csv")}
    assert {r["condition"] for r in read_csv(evaluated["out"] / "paired.csv")} == {"retrieval"}
    by_prompt: dict[int, list[float]] = {}
    for seed in (0, 1):
        base = per_item(evaluated["runs"][("A", "prompt", seed)])
        other = per_item(evaluated["runs"][("A", "retrieval", seed)])
        for i in base:
            if other[i]["status"] == "ok":
                diff = float(other[i]["rms_dbfs"]) - float(base[i]["rms_dbfs"])
                by_prompt.setdefault(i, []).append(diff)
    row = paired["rms_dbfs"]
    # seeds are clusters: the 7 pairs are averaged per prompt (item 1 has one seed only)
    assert int(row["n_pairs"]) == sum(map(len, by_prompt.values())) == 7
    assert int(row["n"]) == len(by_prompt) == 4 and row["unpaired"] == "1"
    per_prompt = [np.mean(values) for values in by_prompt.values()]
    assert float(row["mean_diff"]) == pytest.approx(np.mean(per_prompt))
    assert float(row["ci_low"]) <= np.mean(per_prompt) <= float(row["ci_high"])
    # noise at -23 dBFS vs sine at -13.5 dBFS: all 4 prompts lower, the best 4 prompts allow
    # (the exact sign-flip test of the mean; Wilcoxon, secondary, has the same floor)
    assert row["test"] == "two-sided" and "exact" in row["p_method"]
    assert float(row["p_value"]) == pytest.approx(0.125) == float(row["min_p"])
    assert float(row["wilcoxon_p"]) == pytest.approx(0.125) == float(row["wilcoxon_min_p"])
    # 4 prompts cannot reach p < 0.05: the interval that inverts the test is unbounded
    assert (row["ci_low"], row["ci_high"]) == ("-inf", "inf")
    assert float(paired["clip_fraction"]["p_value"]) == 1.0  # no difference at all
    assert paired["clip_fraction"]["wilcoxon_p"] == ""
    assert paired["clip_fraction"]["wilcoxon_reason"] == "all paired differences are zero"


def test_index_links_and_plots_are_relative_and_exist(evaluated):
    out = evaluated["out"]
    html = (out / "index.html").read_text()
    links = re.findall(r'href="([^"]+)"', html)
    sources = re.findall(r'src="([^"]+)"', html)
    assert len([link for link in links if link.endswith("report.html")]) == 5
    for target in links + sources:
        if target.startswith(("data:", "#")):  # footnote anchors
            continue
        assert not target.startswith(("/", "http")), target
        assert (out / target).resolve().is_file(), target
    assert any("bar_fad" in s for s in sources) and any(
        "violin_clap_text_sim" in s for s in sources
    )
    assert "pipeline check — random weights, not music" in html
    assert "<script>alert" not in html  # prompts are escaped (the grid's pager is the one script)
    assert html.count("<script>") == 1


def test_side_by_side_mode_pairs_items(evaluated, tmp_path):
    run_a = evaluated["runs"][("A", "prompt", 0)]
    run_b = evaluated["runs"][("A", "retrieval", 0)]
    out = tmp_path / "ab"
    result = run_compare("--roots", run_a, run_b, "--out-dir", out, "--n-boot", "50")
    assert "item 1 w0: skipped in one run" in result.stderr
    html = (out / "index.html").read_text()
    sources = re.findall(r'<audio controls preload="metadata" src="([^"]+)"', html)
    assert len(sources) == 6
    assert all((out / s).resolve().is_file() for s in sources)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    paired = {r["metric"]: r for r in read_csv(out / "paired.csv")}
    assert paired["rms_dbfs"]["n"] == "3"


def test_identical_runs_give_na_p_values_with_reason(evaluated, tmp_path):
    run_a = evaluated["runs"][("A", "prompt", 0)]
    copy_root = tmp_path / "runs"
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    run_b = fake_runs.write_fake_run(copy_root, model="A", condition="prompt", seed=0, kind="sine")
    fake_runs.evaluate_with_fake_embedder(run_b, ref, n_boot=10)
    comparison.compare_side_by_side(run_a, run_b, tmp_path / "o")
    html = (tmp_path / "o" / "index.html").read_text()
    assert html.count("n/a (all paired differences are zero)") == 5  # Wilcoxon, secondary
    paired = read_csv(tmp_path / "o" / "paired.csv")
    tested = [r for r in paired if r["p_value"] != ""]  # style sim: no style, no pairs
    assert len(tested) == 5 and {float(r["p_value"]) for r in tested} == {1.0}  # no difference


def test_missing_evaluation_names_the_file(evaluated, tmp_path):
    run_dir = fake_runs.write_fake_run(tmp_path / "runs")  # generated, never evaluated
    result = run_compare("--runs", run_dir, "--out-dir", tmp_path / "o", check=False)
    assert result.returncode != 0
    assert "metrics/summary.json" in result.stderr and "run evaluate.py" in result.stderr
    assert not (tmp_path / "o" / "index.html").exists()


def test_set_metrics_pool_all_clips_of_a_model_and_condition(evaluated):
    from rcmg.evaluation import set_metrics

    rows = read_csv(evaluated["out"] / "summary.csv")
    aggregate = next(r for r in rows if r["level"] == "aggregate" and r["condition"] == "retrieval")
    runs = [evaluated["runs"][("A", "retrieval", seed)] for seed in (0, 1)]
    saved = [np.load(run / "metrics" / "embeddings.npz") for run in runs]
    gen = np.concatenate([s["audio"] for s in saved]).astype(np.float64)
    labels = [int(i) for s in saved for i in s["item"]]
    with np.load(evaluated["ref"]) as data:
        ref = data["embeddings"].astype(np.float64)
    assert float(aggregate["kad_mean"]) == pytest.approx(
        set_metrics.kad_interval(gen, ref, labels)["mean"]
    )
    assert float(aggregate["fad_mean"]) == pytest.approx(
        set_metrics.fad_interval(gen, ref, labels)["mean"]
    )
    assert aggregate["fad_inf_mean"] != ""  # 7 clips, min n 2: a fit
    options = set_metrics.SetMetricOptions(fad_inf_min_n=2)
    fad_inf = set_metrics.fad_infinity(gen, ref, options, labels)
    assert float(aggregate["fad_inf_mean"]) == pytest.approx(fad_inf["mean"])
    assert float(aggregate["fad_inf_ci_low"]) == pytest.approx(fad_inf["ci_low"])
    fit = fad_inf["fit_range"]  # the fit range beside the value: 2..7 clips, 3 repeats
    assert (fit["min_n"], fit["max_n"], fit["repeats"]) == (2, 7, 3)
    assert [aggregate[f"fad_inf_fit_{k}"] for k in ("min_n", "max_n", "steps", "repeats")] == [
        str(fit[k]) for k in ("min_n", "max_n", "steps", "repeats")
    ]
    assert aggregate["fad_inf_reason"] == ""
    assert aggregate["n_evaluated"] == "7" and aggregate["n_prompts"] == "4"
    assert aggregate["below_min_n"] == "False"  # min-n 6
    prompt_b = next(r for r in rows if r["level"] == "aggregate" and r["model"] == "B")
    assert prompt_b["below_min_n"] == "True"  # 4 clips < 6


def test_primary_tests_are_holm_adjusted_and_the_rest_exploratory(evaluated):
    paired = read_csv(evaluated["out"] / "paired.csv")
    primary = [r for r in paired if r["family"] == "primary"]
    assert sorted(r["metric"] for r in primary) == ["clap_text_sim", "peak_dbfs", "rms_dbfs"]
    assert all(
        r["family"] == "exploratory" and r["holm_p"] == "" and r["test"] == "two-sided"
        for r in paired
        if r not in primary
    )
    # Holm adjusts each row's own test p (p_value), not the secondary Wilcoxon column
    holm = hypotheses.holm_adjust([float(r["p_value"]) for r in primary])
    assert [float(r["holm_p"]) for r in primary] == pytest.approx(holm)
    assert {r["holm_m"] for r in primary} == {"3"}
    text = next(r for r in primary if r["metric"] == "clap_text_sim")
    assert text["test"] == "noninferiority" and float(text["margin"]) == 0.02
    # one-sided: smallest attainable p 1 / 2^4; the 95% lower bound is unbounded at 4 prompts
    assert float(text["min_p"]) == pytest.approx(1 / 16) and text["ni_lower"] == "-inf"
    assert float(text["p_value"]) >= float(text["min_p"])
    html = (evaluated["out"] / "index.html").read_text()
    assert 'id="primary"' in html and "Holm p" in html and "smallest attainable p" in html
    table = html.split('<table id="primary">')[1].split("</table>")[0]
    assert 'data-test="noninferiority"' in table and "−0.02: −∞" in table
    assert "p (mean, sign-flip)" in table and "Wilcoxon p (secondary" in table
    # declared for model B, which has no retrieval run: listed as not testable
    assert "B: retrieval vs prompt on clap_style_sim" in html


def test_power_csv_states_no_power_at_four_prompts(evaluated):
    """4 prompts: no sign-flip p reaches 0.05 / 3 (two-sided 2/16, one-sided 1/16)."""
    rows = read_csv(evaluated["out"] / "power.csv")
    assert list(rows[0]) == power.FIELDS
    assert sorted(r["metric"] for r in rows) == ["clap_text_sim", "peak_dbfs", "rms_dbfs"]
    for row in rows:
        assert row["n_prompts"] == "4" and row["mde"] == "inf" and row["holm_m"] == "3"
        assert float(row["alpha_used"]) == pytest.approx(0.05 / 3)
        assert float(row["alpha_attainable"]) == 0.0 and "no power" in row["note"]
        assert row["is_pipeline_check"] == "True" and "stand-in" in row["variance_source"]


def test_power_csv_gives_the_mde_of_each_primary_from_its_prompt_differences(tmp_path):
    """The compare step as the rule runs it (compare.py, --power-target/--power-effects):
    with 20 prompts every primary gets a finite MDE and N needed, from the SD of its own
    per-prompt mean differences."""
    prompts = tuple(f"prompt number {i}" for i in range(20))
    ref = fake_runs.write_fake_reference(tmp_path / "ref.npz")
    runs = {}
    for condition, kind in (("prompt", "sine"), ("retrieval", "noise")):
        runs[condition] = fake_runs.write_fake_run(
            tmp_path / "results" / "runs",
            model="A",
            condition=condition,
            kind=kind,
            prompts=prompts,
            seconds=0.25,
        )
        fake_runs.evaluate_with_fake_embedder(runs[condition], ref, n_boot=10)
    out = tmp_path / "results" / "report"
    run_compare(
        *("--runs", *runs.values(), "--out-dir", out, "--n-boot", "20", "--n-flips", "2000"),
        *("--reference-stats", ref, "--min-n", "6", "--fad-inf-min-n", "2"),
        *("--primary", "retrieval:prompt:rms_dbfs", "retrieval:prompt:clap_text_sim:ni=0.02"),
        *("--power-target", "0.9", "--power-effects", "rms_dbfs=0.5", "clap_text_sim=0"),
    )
    rows = {r["metric"]: r for r in read_csv(out / "power.csv")}
    assert set(rows) == {"rms_dbfs", "clap_text_sim"}
    base, other = per_item(runs["prompt"]), per_item(runs["retrieval"])
    for metric, row in rows.items():
        diffs = [float(other[i][metric]) - float(base[i][metric]) for i in range(20)]
        sd = float(np.std(diffs, ddof=1))
        test = "noninferiority" if metric == "clap_text_sim" else "two-sided"
        margin = 0.02 if test == "noninferiority" else None
        assert row["contrast"] == "retrieval vs prompt" and row["model"] == "A"
        assert row["test"] == test and row["n_prompts"] == "20"
        assert float(row["sd_of_prompt_differences"]) == pytest.approx(sd, rel=1e-9)
        assert float(row["alpha_used"]) == pytest.approx(0.025) and float(row["power"]) == 0.9
        values = {k: float(row[k]) for k in ("mde", "n_needed", "power_at_target")}
        assert all(math.isfinite(v) for v in values.values()), row
        expected = power.mde(sd, 20, 0.025, 0.9, test, margin, 2000)
        assert values["mde"] == pytest.approx(expected, rel=1e-6)
        effect = float(row["effect_size_target"])
        need = int(values["n_needed"])
        assert power.power(effect, sd, need, 0.025, test, margin, 2000) >= 0.9
        assert power.power(effect, sd, need - 1, 0.025, test, margin, 2000) < 0.9 or need <= 16
        assert row["is_pipeline_check"] == "True" and row["note"] == ""
    html = (out / "index.html").read_text()
    table = html.split('<table id="power">')[1].split("</table>")[0]
    assert "retrieval vs prompt" in table and "stand-in" in table and 'id="power-note"' in html


def test_set_metric_differences_and_min_n_warnings_in_every_table(evaluated):
    diffs = {r["metric"]: r for r in read_csv(evaluated["out"] / "paired_set_metrics.csv")}
    assert set(diffs) == {"fad", "kad"}
    rows = read_csv(evaluated["out"] / "summary.csv")
    agg = {r["condition"]: r for r in rows if r["level"] == "aggregate" and r["model"] == "A"}
    kad = diffs["kad"]
    assert float(kad["mean"]) == pytest.approx(
        float(agg["retrieval"]["kad_mean"]) - float(agg["prompt"]["kad_mean"])
    )
    assert float(kad["ci_low"]) <= float(kad["mean"]) <= float(kad["ci_high"])
    assert "paired jackknife" in kad["method"]
    html = (evaluated["out"] / "index.html").read_text()
    assert 'id="min-n-warning"' in html
    for table in ("aggregates", "runs"):
        section = html.split(f'id="{table}"')[1].split("</table>")[0]
        assert "⚠ N &lt; 6" in section, table
    assert "FAD-inf [jackknife CI] (R², fit range)" in html and "KAD (kadtk, ×100)" in html
    assert "R²=" in html and "; fit n=2–7, " in html
    judge_table = html.split('id="judge"')[1].split("</table>")[0]
    assert "fake-clap" in judge_table and "<td>no</td>" in judge_table  # fake: no weights


def test_comparison_prints_the_reference_composition_and_subset_metrics(evaluated):
    from rcmg.evaluation import set_metrics

    html = (evaluated["out"] / "index.html").read_text()
    table = html.split('id="reference-composition"')[1].split("</table>")[0]
    assert "maestro" in table and "urmp" in table and "50%" in table
    subsets = html.split('id="reference-subsets"')[1].split("</table>")[0]
    assert "KAD vs urmp" in subsets and "6 reference clips &lt;= 32 dimensions" in subsets
    runs = [evaluated["runs"][("A", "prompt", seed)] for seed in (0, 1)]
    saved = [np.load(run / "metrics" / "embeddings.npz") for run in runs]
    gen = np.concatenate([s["audio"] for s in saved]).astype(np.float64)
    labels = [int(i) for s in saved for i in s["item"]]
    with np.load(evaluated["ref"]) as data:
        urmp = data["embeddings"][6:].astype(np.float64)
    expected = set_metrics.kad_interval(gen, urmp, labels)["mean"]
    assert f"{expected:.3g}" in subsets


def _fake_pairs_run(condition: str, shift: dict, rng, n_prompts: int = 30) -> dict:
    """An in-memory evaluated run: 30 prompts x 2 waveforms, metrics shifted by ``shift``."""
    rows = []
    for item in range(n_prompts):
        base = 0.01 * item
        for waveform in range(2):
            noise = rng.normal(0.0, 0.01, 3)
            rows.append(
                {
                    "item": item,
                    "waveform_index": waveform,
                    "prompt": f"prompt {item}",
                    "status": "ok",
                    "clap_style_sim": 0.3 + base + shift.get("style", 0.0) + noise[0],
                    "clap_text_sim": 0.25 - base + shift.get("text", 0.0) + noise[1],
                    "rms_dbfs": -20.0 + noise[2],
                }
            )
    return {"rows": rows}


def test_paired_tests_use_the_mean_test_noninferiority_and_holm_on_p_value():
    """The code path compare.py runs: a declared NI row, a two-sided primary, Holm on p_value."""
    rng = np.random.default_rng(0)
    runs = [
        _fake_pairs_run("prompt", {}, rng),
        _fake_pairs_run("retrieval", {"style": 0.05, "text": -0.004}, rng),
    ]
    records = [
        {"model": "A", "condition": "prompt", "seed": 0},
        {"model": "A", "condition": "retrieval", "seed": 0},
    ]
    options = comparison.CompareOptions(
        n_flips=2000,
        primary=(
            "retrieval:prompt:clap_style_sim",
            "retrieval:prompt:clap_text_sim:ni=0.02",
            "retrieval:prompt:rms_dbfs",
        ),
    )
    rows = comparison.paired_tests(runs, records, [("retrieval", "prompt")], options)
    by_metric = {r["metric"]: r for r in rows}
    style, text = by_metric["clap_style_sim"], by_metric["clap_text_sim"]
    assert style["n"] == 30 and style["n_pairs"] == 60  # waveforms averaged per prompt
    assert style["test"] == "two-sided" and "Monte Carlo" in style["p_method"]
    assert style["p_value"] == pytest.approx(2 / 2000) == style["min_p"]  # every flip smaller
    assert 0.04 < style["ci_low"] < style["mean_diff"] < style["ci_high"] < 0.06
    # text similarity preserved: -0.004 on average, margin 0.02
    assert text["test"] == "noninferiority" and text["margin"] == 0.02
    assert -0.02 < text["ni_lower"] < text["mean_diff"] < 0 and text["p_value"] < 0.05
    assert text["ci_low"] < text["ni_lower"]  # the one-sided bound: the 90% interval's end
    assert text["min_p"] == pytest.approx(1 / 2000)
    primary = [r for r in rows if r["family"] == "primary"]
    assert len(primary) == 3 and {r["holm_m"] for r in primary} == {3}
    expected = hypotheses.holm_adjust([r["p_value"] for r in primary])
    assert [r["holm_p"] for r in primary] == pytest.approx(expected)
    assert by_metric["rms_dbfs"]["holm_p"] >= by_metric["rms_dbfs"]["p_value"]
    assert all(r["family"] == "exploratory" for r in rows if r not in primary)
    # the same row declared two ways is refused before any test runs
    clash = comparison.CompareOptions(
        primary=("retrieval:prompt:clap_text_sim", "retrieval:prompt:clap_text_sim:ni=0.02")
    )
    with pytest.raises(ValueError, match="evaluation.primary_hypotheses"):
        comparison.paired_tests(runs, records, [("retrieval", "prompt")], clash)
