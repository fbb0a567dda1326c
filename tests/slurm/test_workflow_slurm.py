"""`snakemake --profile slurm` runs the demo's stages on the local SLURM cluster.

The run itself is the session fixture ``slurm_subset_run`` (tests/slurm/subset_run.py): the
profile's conda-free default mode, `cluster.gpu_request: gres`, evaluate jobs grouped three
to an allocation, every run of one AudioLDM2 model plus one AudioLDM1 retrieval run (every
submitted rule of the demo), and a generate job scancelled mid-run.
Here: every job went through sbatch (a logging wrapper records each command line); GPU
rules got a GPU allocation and CPU rules did not; the groups made fewer submissions, each
asking for one GPU; the cancelled job was retried and the workflow completed; the results
equal a local run's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.slurm.helpers import flag_values, job_name_of, rule_of_comment, sacct_rows
from tests.slurm.subset_run import GROUP_SIZE, GROUPED_MODEL, local_rules
from tests.workflow.helpers import GPU_RULES

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def assert_same_runs(a: Path, b: Path, run_dirs: list[str]) -> None:
    """Same clips, prompts and retrievals in each run of ``run_dirs`` (relative to ``a`` and
    ``b``). Audio equal up to float round-off: a SLURM job runs torch with its allocation's
    thread count, which changes summation order."""
    import numpy as np
    import soundfile as sf

    for run in run_dirs:
        assert (a / run / "metrics/summary.json").is_file() and (a / run / "report.html").is_file()
    wavs_a = sorted(p.relative_to(a) for run in run_dirs for p in (a / run).glob("wav/*.wav"))
    wavs_b = sorted(p.relative_to(b) for run in run_dirs for p in (b / run).glob("wav/*.wav"))
    assert wavs_a and wavs_a == wavs_b
    for rel in wavs_a:
        x, sr_x = sf.read(a / rel, dtype="float32")
        y, sr_y = sf.read(b / rel, dtype="float32")
        assert sr_x == sr_y and x.shape == y.shape, rel
        peak = max(float(np.abs(y).max()), 1e-12)
        assert float(np.abs(x - y).max()) <= 1e-3 * peak, rel
    keys = ("item", "prompt", "prompt_used", "augment_tags", "status", "style_source")
    for items in sorted(a / run / "items.jsonl" for run in run_dirs):
        rows_a = [json.loads(line) for line in items.read_text().splitlines()]
        rows_b = [json.loads(line) for line in (b / items.relative_to(a)).read_text().splitlines()]
        assert [{k: r.get(k) for k in keys} for r in rows_a] == [
            {k: r.get(k) for k in keys} for r in rows_b
        ], items
        assert [[h["segment_id"] for h in r["retrieved"]] for r in rows_a] == [
            [h["segment_id"] for h in r["retrieved"]] for r in rows_b
        ], items


def test_subset_plans_every_rule_the_demo_submits(slurm_subset_run):
    run = slurm_subset_run
    # each model's copy calibration takes its prompt-only clips as generated negatives, so
    # the subset also generates the prompt runs of its models that it does not submit
    submitted = set(run.runs)
    negatives = {(m, "prompt", s) for m, _, s in run.runs} - submitted
    assert run.planned["evaluate"] == len(run.runs), run.planned
    assert run.planned["generate"] == len(run.runs) + len(negatives), run.planned
    assert set(run.planned) == set(run.planned_full_demo), run.planned


def test_profile_submits_every_job_through_sbatch_grouped_with_gres(slurm_subset_run):
    run = slurm_subset_run
    cfg, planned, calls, log = run.cfg, run.planned, run.calls, run.log
    assert run.returncode == 0, log[-5000:]
    assert run.cancelled, "no generate job was seen running"
    assert "CANCELLED" in log and "Trying to restart job" in log

    # what the executor asked sbatch for: gres only, one GPU per group, fewer submissions
    by_name: dict[str, list[list[str]]] = {}
    for call in calls:
        by_name.setdefault(job_name_of(call), []).append(call)
    groups = {name: c for name, c in by_name.items() if name.startswith("group_evaluate_")}
    runs_per_model = {m: sum(r[0] == m for r in run.runs) for m in {r[0] for r in run.runs}}
    assert runs_per_model[GROUPED_MODEL] % GROUP_SIZE, "the grouped model needs a partial group"
    # Snakemake cuts each model's evaluations into groups of GROUP_SIZE (the last smaller)
    group_sizes = {
        m: [GROUP_SIZE] * (n // GROUP_SIZE) + ([n % GROUP_SIZE] if n % GROUP_SIZE else [])
        for m, n in runs_per_model.items()
    }
    n_groups = sum(map(len, group_sizes.values()))
    evaluate_runtime = cfg["resources"]["evaluate"]["runtime"]
    for m in runs_per_model:
        of_model = [c for name, c in groups.items() if name.startswith(f"group_evaluate_{m}_")]
        assert len(of_model) == 1 and len(of_model[0]) == len(group_sizes[m]), m
        # runtimes add up over a group's sequential members
        assert sorted(int(flag_values(call, "-t")[0]) for call in of_model[0]) == sorted(
            size * evaluate_runtime for size in group_sizes[m]
        ), m
    assert sum(map(len, groups.values())) == n_groups
    assert "evaluate" not in by_name
    expected = sum(planned.values()) - planned["evaluate"] + n_groups + len(run.cancelled)
    assert len(calls) == expected, (len(calls), planned, sorted(by_name))
    for group_calls in groups.values():
        for call in group_calls:
            assert flag_values(call, "--gres") == ["gpu:1"], call
            # one member's memory and cpus (Snakemake sums parallel members' otherwise)
            assert flag_values(call, "--mem") == [str(cfg["resources"]["evaluate"]["mem_mb"])]
            assert f"--cpus-per-task={cfg['resources']['evaluate']['cpus']}" in call, call
    for name, name_calls in by_name.items():
        gpu_rule = name in GPU_RULES or name in groups
        for call in name_calls:
            assert not flag_values(call, "--gpus"), call
            assert flag_values(call, "--gres") == (["gpu:1"] if gpu_rule else []), call
            assert flag_values(call, "-p") == (["gpu"] if gpu_rule else ["cpu"]), call

    submitted = re.findall(r"submitted with SLURM jobid (\d+)", log)
    job_ids = sorted(set(submitted))
    assert len(job_ids) == len(calls)
    rows = sacct_rows(job_ids)
    rules_seen = set()
    for row in rows.values():
        rule = rule_of_comment(row["Comment"])
        rules_seen.add(rule)
        if row["JobID"] in run.cancelled:
            assert row["State"].startswith("CANCELLED")
            continue
        assert row["State"] == "COMPLETED", row
        assert ("gres/gpu=1" in row["AllocTRES"]) == (rule in GPU_RULES), row
        assert row["Partition"] == ("gpu" if rule in GPU_RULES else "cpu"), row
    assert GPU_RULES | {"segment", "build_bank", "build_index", "demo_model"} <= rules_seen
    assert not rules_seen & local_rules(run.workdir)
    print(
        f"\nsbatch submissions: {len(calls)} with evaluate grouped by {GROUP_SIZE} "
        f"({n_groups} groups); {expected - n_groups + planned['evaluate']} without grouping"
    )


def test_slurm_results_equal_the_local_demo(slurm_subset_run, request):
    run = slurm_subset_run
    assert run.returncode == 0, run.log[-5000:]
    # asked for only now: the demo builds on the other test worker while the SLURM run goes
    local = request.getfixturevalue("demo_workdir")
    results = run.workdir / run.cfg["paths"]["results"]
    assert_same_runs(results, local / run.cfg["paths"]["results"], run.run_dirs)
    processed = run.cfg["paths"]["processed"]
    import numpy as np

    bank = np.load(run.workdir / processed / "bank/style_bank.npy")
    np.testing.assert_allclose(bank, np.load(local / processed / "bank/style_bank.npy"), atol=1e-5)
    run_config = json.loads(next(results.glob("runs/*/*/seed*/run_config.json")).read_text())
    assert run_config["timings_s"]["total"] > 0
