"""The planned-cost estimate (rcmg.workflow.plan_cost): a known answer by hand."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from rcmg.generation import prompt_count
from rcmg.workflow import plan_cost, sweeps

REPO = Path(__file__).resolve().parents[3]
BASE = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))


def _config() -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["models"] = {"audioldm": cfg["models"]["audioldm"]}
    cfg["models"]["audioldm"]["sampling"].update(steps=10, num_waveforms_per_prompt=2)
    cfg["conditions"] = {
        "prompt": {"type": "prompt"},
        "guided": {"type": "retrieval", "adapter": "native", "style_guidance": 1.0},
    }
    cfg["seeds"] = [0, 1]
    cfg["cost"] = {
        "measured_on": "test",
        "generate_fixed_s": {"default": 4.0},
        "generate_s_per_step": {"default": 9.0, "audioldm": 1.0},
        "evaluate_s_per_clip": 0.5,
    }
    cfg["sweeps"] = {"s": {"conditions": ["prompt"], "product": {"steps": [10, 20]}}}
    return cfg


def test_hours_are_clips_times_fixed_plus_steps_times_rate():
    cfg = _config()
    points = sweeps.plan(cfg)
    assert [p.condition for p in points] == ["prompt", "guided", "prompt@steps=20"]
    gen, ev = plan_cost.estimate(cfg, points, n_prompts=3)
    clips = 3 * 2 * 2  # prompts x waveforms x seeds, per point
    seconds = clips * (4 + 10 * 1.0) + clips * (4 + 10 * 1.0 * 1.5) + clips * (4 + 20 * 1.0)
    assert gen == {
        "rule": "generate",
        "runs": 6,
        "clips": 3 * clips,
        "hours": pytest.approx(seconds / 3600),
    }
    assert ev["clips"] == 3 * clips and ev["hours"] == pytest.approx(3 * clips * 0.5 / 3600)
    text = plan_cost.table(cfg, points, 3)
    assert "3 points x 2 seed(s), 3 prompts" in text and "measured on: test" in text


# ---------------------------------------------------------------- the prompt count

MUSICCAPS = ("ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list")
MUSICCAPS += ("caption", "author_id", "is_balanced_subset", "is_audioset_eval")


def _musiccaps_csv(path: Path, n_eval: int, n_other: int) -> Path:
    """A musiccaps-public.csv: ``n_eval`` audioset_eval rows (one with an empty caption
    the importer drops) and ``n_other`` rows outside that subset."""
    rows = [",".join(MUSICCAPS)]
    for i in range(n_eval + n_other):
        caption = "" if i == 0 else f"take {i}: a piano plays"
        rows.append(f"y{i},0,10,/m/05r5c,['piano'],{caption},1,True,{i < n_eval}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _bench_config(tmp_path: Path, **settings) -> dict:
    cfg = _config()
    cfg["prompts"] = str(tmp_path / "absent_prompts.txt")  # never the benchmark run's set
    cfg["benchmark_prompts"] = {
        "benchmark": "musiccaps",
        "csv": str(tmp_path / "musiccaps-public.csv"),
        "subset": "audioset_eval",
        **settings,
    }
    return cfg


def _import(cfg: dict, tsv: Path) -> int:
    """Run import_prompts as the rule does; the count of prompts generate then reads."""
    import import_prompts
    from rcmg.generation.prompts import read_prompt_file

    b = cfg["benchmark_prompts"]
    argv = ["--benchmark", b["benchmark"], "--csv", b["csv"], "--out", str(tsv)]
    for key in ("subset", "max_count", "seed"):
        if b.get(key) is not None:
            argv += [f"--{key.replace('_', '-')}", str(b[key])]
    assert import_prompts.main(argv) == 0
    return len(read_prompt_file(tsv).items)


def _clips_line(text: str, rule: str) -> str:
    return next(ln for ln in text.splitlines() if ln.strip().startswith(rule))


def test_benchmark_count_is_what_generate_reads_before_and_after_the_import(tmp_path):
    """The benchmark set is counted from its CSV with the importer's reader and limits:
    before the import (no TSV), the count equals the TSV import_prompts then writes, and
    a TSV left from other settings (here max_count) is not what the runs will read."""
    _musiccaps_csv(tmp_path / "musiccaps-public.csv", n_eval=8, n_other=3)
    cfg = _bench_config(tmp_path, max_count=5, seed=3)
    tsv = tmp_path / "prompts" / "musiccaps.tsv"
    points = sweeps.plan(cfg)
    before = prompt_count.prompt_count(cfg, tsv)
    assert not tsv.exists() and before.n == 5
    assert f"{tsv}, imported from {cfg['benchmark_prompts']['csv']}" in before.source
    assert _import(cfg, tsv) == before.n  # what every generate job reads
    assert prompt_count.prompt_count(cfg, tsv) == before
    text = plan_cost.table(cfg, points, before.n, before.source)
    waves = cfg["models"]["audioldm"]["sampling"]["num_waveforms_per_prompt"]
    clips = len(points) * 5 * waves * len(cfg["seeds"])
    assert ", 5 prompts;" in text and f" {clips} clips " in _clips_line(text, "generate")
    assert text.splitlines()[-1] == f"  prompts: {before.source}"
    # settings changed since the import: the count is that of the import Snakemake reruns
    cfg["benchmark_prompts"].update(max_count=None)
    stale = prompt_count.prompt_count(cfg, tsv)
    assert stale.n == 7 == _import(cfg, tmp_path / "again.tsv")  # 8 eval rows, 1 uncaptioned


def test_benchmark_count_without_its_csv_reads_the_tsv_and_else_is_unknown(tmp_path):
    csv_path = _musiccaps_csv(tmp_path / "musiccaps-public.csv", n_eval=4, n_other=2)
    cfg = _bench_config(tmp_path)
    tsv = tmp_path / "musiccaps.tsv"
    n = _import(cfg, tsv)
    csv_path.unlink()  # only the imported TSV is left
    assert prompt_count.prompt_count(cfg, tsv) == prompt_count.PromptCount(n, str(tsv)) and n == 3
    tsv.unlink()  # neither: unknown, and the table says so instead of a number
    count = prompt_count.prompt_count(cfg, tsv)
    assert count.n is None and "neither" in count.source and str(tsv) in count.source
    points = sweeps.plan(cfg)
    text = plan_cost.table(cfg, points, count.n, count.source)
    assert "an unknown number of prompts" in text
    for rule in ("generate", "evaluate"):
        cells = _clips_line(text, rule).split()
        assert cells == [rule, str(len(points) * len(cfg["seeds"])), "runs", "?", "clips", "?", "h"]
    assert _clips_line(text, "total").split() == ["total", "?", "h"]


def test_benchmark_csv_the_importer_refuses_is_an_unknown_count(tmp_path):
    _musiccaps_csv(tmp_path / "musiccaps-public.csv", n_eval=1, n_other=2)  # 1: uncaptioned
    count = prompt_count.prompt_count(_bench_config(tmp_path), tmp_path / "x.tsv")
    assert count.n is None and "no captions" in count.source
    (tmp_path / "musiccaps-public.csv").write_text("ytid,caption\ny0,a piano\n")
    count = prompt_count.prompt_count(_bench_config(tmp_path), tmp_path / "x.tsv")
    assert count.n is None and "missing column" in count.source


def test_prompt_file_count_without_a_benchmark(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a piano\n\n# a comment\nstrings\n", encoding="utf-8")
    cfg = _config()
    assert prompt_count.prompt_count(cfg, prompts) == prompt_count.PromptCount(2, str(prompts))


def test_sweep_subset_points_count_the_prompts_their_draw_generates():
    """sweeps.prompts: subset points (and their matched baselines) generate the seeded
    draw generate makes (rcmg.generation.batching.prompt_subset), the configured runs all."""
    from rcmg.generation.batching import prompt_subset

    cfg = _config()
    cfg["sweeps"].update(prompts=4, prompts_seed=2)
    points = sweeps.plan(cfg)
    n = 10
    waves = cfg["models"]["audioldm"]["sampling"]["num_waveforms_per_prompt"]
    expected = 0
    for p in points:
        subset = sweeps.effective(cfg, p.model, p.condition)["prompt_subset"]
        drawn = prompt_subset(list(range(n)), subset["n"], subset["seed"]) if subset else range(n)
        expected += len(drawn) * waves * len(cfg["seeds"])
    assert any(sweeps.SUBSET in p.condition for p in points)
    gen, _ = plan_cost.estimate(cfg, points, n)
    assert gen["clips"] == expected == (2 * n + 2 * 4) * waves * len(cfg["seeds"])
    small, _ = plan_cost.estimate(cfg, points, 3)  # a draw of 4 from 3 prompts is all 3
    assert small["clips"] == 4 * 3 * waves * len(cfg["seeds"])


@pytest.mark.parametrize(
    ("main", "argv", "prints"),
    [
        (True, ["snakemake", "-n", "--configfile", "config/demo.yaml"], True),
        (True, ["snakemake", "--cores", "2"], True),
        (True, ["snakemake", "--lint", "--configfile", "config/demo.yaml"], False),
        (True, ["snakemake", "--lint=json"], False),
        (True, ["snakemake", "--list-rules"], False),
        (True, ["snakemake", "--unlock"], False),
        (False, ["snakemake", "-n"], False),  # a job's own parse (group, remote)
    ],
)
def test_only_planning_invocations_of_the_main_process_print(main, argv, prints):
    assert plan_cost.announces(main, argv) is prints


def test_benchmark_settings_are_the_importers_selection_with_its_defaults():
    """The count uses read_benchmark's selection parameters, each a benchmark_prompts key
    of the schema, with import_prompts' defaults where the config leaves one out."""
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text(encoding="utf-8"))
    keys = schema["properties"]["benchmark_prompts"]["properties"]
    bench = {"benchmark": "musiccaps", "csv": "x.csv"}
    assert prompt_count.benchmark_settings(bench) == {"subset": "all", "max_count": None, "seed": 0}
    assert set(prompt_count.benchmark_settings(bench)) <= set(keys)
    given = {**bench, "subset": "balanced", "max_count": 9, "seed": 4}
    assert prompt_count.benchmark_settings(given) == {
        "subset": "balanced",
        "max_count": 9,
        "seed": 4,
    }


# ---------------------------------------------------------------- power of the primaries


def _power_csv(path: Path, rows: list[dict]) -> Path:
    """A finished comparison's power.csv, written by the compare step's own writer."""
    from rcmg.evaluation import comparison
    from rcmg.workflow import power

    path.parent.mkdir(parents=True, exist_ok=True)
    full = [
        power.power_row(
            **r, m=2, alpha=0.05, target=0.8, effect=None, n_flips=2000, variance_source="x"
        )
        for r in rows
    ]
    path.write_text(comparison.power_csv(full), encoding="utf-8")
    return path


def test_planner_states_each_primarys_mde_from_a_finished_runs_power_csv(tmp_path):
    """The real config's planned primaries (m = Holm family), the SD a pilot's power.csv
    has for a row, the MDE at the planned prompts; rows it lacks say so."""
    from rcmg.workflow import power

    cfg = copy.deepcopy(BASE)
    points = sweeps.plan(cfg)
    primaries = plan_cost.planned_primaries(cfg, points)
    m = len(primaries)
    assert m == 36  # 12 declared x 3 models, every condition planned on all of them
    ni = next(p for p in primaries if p["test"] == "noninferiority")
    assert ni["margin"] == 0.02 and ni["metric"] == "clap_text_sim"
    # before the pilot has run: none available, and the file it would read
    cfg["evaluation"]["power"]["variance_from"] = str(tmp_path / "pilot" / "power.csv")
    text = plan_cost.power_table(cfg, points, 1000)
    assert f"power of the {m} planned primaries" in text
    assert f"no finished run's variance available yet: would read {tmp_path}" in text
    row = dict(
        condition="retrieval_native",
        baseline="prompt",
        model="audioldm",
        metric="clap_style_sim",
        test="two-sided",
        margin=None,
        n=100,
        sd=0.04,
    )
    _power_csv(tmp_path / "pilot" / "power.csv", [row])
    text = plan_cost.power_table(cfg, points, 1000)
    mde = power.mde(0.04, 1000, 0.05 / m, 0.8, "two-sided", None, 10000)
    need = power.n_needed(0.01, 0.04, 0.05 / m, 0.8, "two-sided", None, 10000)
    line = next(
        ln
        for ln in text.splitlines()
        if "audioldm: retrieval_native vs prompt" in ln and "clap_style_sim" in ln
    )
    assert f"sd 0.04, MDE {mde:.3g}; N for 0.01: {need:.3g}" in line
    assert "stand-in" not in line and math.isfinite(mde)
    assert "audioldm2: retrieval_native vs prompt clap_style_sim (two-sided): no SD" in text
    # the demo: its own stand-in comparison, 5 prompts cannot reach the level
    demo = copy.deepcopy(cfg)
    demo["evaluation"]["power"]["variance_from"] = None
    demo["paths"]["results"] = str(tmp_path / "demo")
    _power_csv(
        tmp_path / "demo" / "report" / "power.csv", [{**row, "n": 5, "is_pipeline_check": True}]
    )
    rows = {
        (r["model"], r["condition"], r["baseline"], r["metric"]): r
        for r in plan_cost.power_estimates(demo, points, 5)["rows"]
    }
    estimate = rows[("audioldm", "retrieval_native", "prompt", "clap_style_sim")]["estimate"]
    assert estimate["mde"] == math.inf and "no power" in estimate["note"]
    text = plan_cost.power_table(demo, points, 5)
    assert "MDE inf" in text and "(stand-in: pipeline-check runs)" in text
