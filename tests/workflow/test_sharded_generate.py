"""Sharded generate through Snakemake (models.<m>.sampling.prompt_shards = 2 by a config
overlay on the demo): one run only, not the demo. Its two generate_shard jobs are gathered
into the run directory evaluate reads; evaluate and the controls (control_of) depend on
the gathered run; a shard killed mid-run leaves nothing that looks done, and only it (and
the gather) rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from rcmg.workflow.atomic import read_jsonl

from .helpers import (
    copy_workflow,
    job,
    kill_at_pause_point,
    planned_jobs,
    rule_counts,
    snakemake,
)

pytestmark = pytest.mark.slow

DEMO = "config/demo.yaml"
OVERLAY = "config/two_shards.yaml"
MODEL, COND, SEED = "audioldm2", "prompt", 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = copy_workflow(tmp_path_factory.mktemp("sharded"))
    overlay = {"models": {MODEL: {"sampling": {"prompt_shards": 2}}}}
    (work / OVERLAY).write_text(yaml.safe_dump(overlay))
    return work


def _cfg(work):
    return yaml.safe_load((work / DEMO).read_text())


def _target(work):
    return f"{_cfg(work)['paths']['results']}/runs/{MODEL}/{COND}/seed{SEED}/items.jsonl"


def _shard(work, i):
    return (
        work
        / _cfg(work)["paths"]["results"]
        / "shards"
        / MODEL
        / COND
        / f"seed{SEED}"
        / f"shard{i}"
    )


def _shard_log(work, i):
    return (
        work / _cfg(work)["paths"]["logs"] / "generate" / MODEL / COND / f"seed{SEED}.shard{i}.log"
    )


def test_whole_plan_gathers_every_sharded_run_before_evaluate(workdir):
    cfg = _cfg(workdir)
    whole = planned_jobs(snakemake(workdir, "-n", "--configfile", DEMO).stdout)
    sharded = planned_jobs(snakemake(workdir, "-n", "--configfile", DEMO, OVERLAY).stdout)
    n_model_runs = sum(rule == "generate" and ("model", MODEL) in wc for rule, wc in whole)
    counts, before = rule_counts(sharded), rule_counts(whole)
    # the demo itself pins 1 shard (config.yaml's 8 would merge in): no shard or gather jobs
    assert "generate_shard" not in before and "gather_generate" not in before
    assert counts["generate_shard"] == 2 * n_model_runs
    assert counts["gather_generate"] == n_model_runs
    assert counts["generate"] == before["generate"] - n_model_runs
    assert counts["evaluate"] == before["evaluate"]  # downstream unchanged: one run each
    # the controls of a sharded retrieval run plan from its gathered items.jsonl
    controls = [c for c, v in cfg["conditions"].items() if v.get("control_of")]
    assert any(
        job("generate_shard", model=MODEL, condition=c, seed=SEED, shard=0) in sharded
        for c in controls
    )


def test_shards_run_gather_and_a_killed_shard_reruns_alone(workdir):
    args = ["--configfile", DEMO, OVERLAY]
    plan = planned_jobs(snakemake(workdir, "-n", *args, "--", _target(workdir)).stdout)
    shards = {
        job("generate_shard", model=MODEL, condition=COND, seed=SEED, shard=i) for i in (0, 1)
    }
    gather = job("gather_generate", model=MODEL, condition=COND, seed=SEED)
    assert plan == {*shards, gather, job("demo_model", tiny_kind=MODEL)}, plan
    # one core: the shards run one after the other; the second one to start pauses after its
    # first batch and is killed there: mid-run for certain
    paused = kill_at_pause_point(
        workdir,
        *args,
        "--cores",
        "1",
        "--",
        _target(workdir),
        job=f"shards/{MODEL}/{COND}/seed{SEED}/",
        skip=1,
    )
    assert paused is not None, "the second shard did not reach its first batch"
    second = int(Path(paused["job"]).name.removeprefix("shard"))
    assert (_shard(workdir, 1 - second) / "run_config.json").is_file()
    killed = _shard(workdir, second)
    assert not (killed / "run_config.json").exists() and not (killed / "items.jsonl").exists()
    run = workdir / _target(workdir).rsplit("/", 1)[0]
    assert not (run / "run_config.json").exists() and not (run / "items.jsonl").exists()
    snakemake(workdir, *args, "--unlock")
    out = snakemake(workdir, "-n", *args, "--rerun-incomplete", "--", _target(workdir)).stdout
    assert planned_jobs(out) == {
        job("generate_shard", model=MODEL, condition=COND, seed=SEED, shard=second),
        gather,
    }, out[-3000:]
    snakemake(workdir, *args, "--cores", "1", "--rerun-incomplete", "--", _target(workdir))
    rows = read_jsonl(run / "items.jsonl")
    assert [r["item"] for r in rows] == list(range(len(rows))) and rows
    assert all((run / r["wav"]).is_file() for r in rows if r["status"] == "ok")
    config = json.loads((run / "run_config.json").read_text())
    assert [s["index"] for s in config["shards"]] == [0, 1]
    assert config["n_clips_ok"] == sum(r["status"] == "ok" for r in rows)
    assert not list(killed.parent.glob(".*part*")), "temporary folders left behind"
    assert planned_jobs(snakemake(workdir, "-n", *args, "--", _target(workdir)).stdout) == set()
