"""Published-architecture models are workflow outputs: `bench_models` builds them, and a
config whose model ids name them (config/bench.yaml) gets them as inputs of its jobs."""

from __future__ import annotations

import json

import pytest
import yaml
from rcmg.workflow.kinds import MODEL_KINDS

from .helpers import copy_workflow, job, planned_jobs, rule_counts, run_points, snakemake

# the published architectures config/bench.yaml points the demo's models and CLAP at
DEMO_KINDS = ("clap", "audioldm", "audioldm2", "audioldm2-music")
BENCH_LAYERED = ("--configfile", "config/demo.yaml", "config/bench.yaml")


@pytest.fixture()
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def test_bench_models_target_plans_one_build_per_published_architecture(workdir):
    jobs = planned_jobs(snakemake(workdir, "-n", "bench_models").stdout)
    # every published architecture the product can build (rcmg.workflow.kinds.MODEL_KINDS)
    assert jobs == {job("real_arch_model", arch_kind=k) for k in MODEL_KINDS} | {
        job("bench_models")
    }
    # never part of the experiment or the demo
    for config in ((), ("--configfile", "config/demo.yaml")):
        counts = rule_counts(planned_jobs(snakemake(workdir, "-n", *config).stdout))
        assert "real_arch_model" not in counts


def test_bench_config_builds_the_real_architectures_before_the_jobs_using_them(workdir):
    out = snakemake(workdir, "-n", *BENCH_LAYERED).stdout
    counts = rule_counts(planned_jobs(out))
    assert counts["real_arch_model"] == len(DEMO_KINDS)
    assert "demo_model" not in counts  # tiny models are not used
    assert counts["demo_dataset"] == 3  # the demo corpus is
    demo = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    # every run point of the demo matrix (conditions on their models, plus sweep points)
    assert counts["generate"] == len(demo["seeds"]) * len(run_points(demo))
    for kind in ("audioldm", "audioldm2", "audioldm2-music"):
        assert f"input: config/prompts/demo_prompts.txt, resources/bench/models/{kind}\n" in out
    assert "results/bench_workflow/runs/audioldm/prompt/seed0/run_config.json" in out


def test_real_arch_rule_builds_clap_and_rebuilds_only_after_its_config_changes(workdir):
    target = "resources/bench/models/clap"
    snakemake(workdir, target, "--cores", "2")
    marker = json.loads((workdir / target / "random_weights.json").read_text())
    assert marker["kind"] == "clap" and marker["seed"] == 0
    assert abs(marker["parameters"]["total"] / 1e6 - 153.49) < 0.01
    assert (workdir / target / "model.safetensors").stat().st_size > 500e6
    log = (workdir / "logs/bench/real_arch_clap.log").read_text()
    assert "153.49" in log

    assert "Nothing to be done" in snakemake(workdir, "-n", target).stdout

    extractor = workdir / "config/bench/clap-htsat-unfused/feature_extractor.json"
    settings = json.loads(extractor.read_text())
    settings["max_length_s"] = 5
    extractor.write_text(json.dumps(settings, indent=2))
    jobs = planned_jobs(snakemake(workdir, "-n", "bench_models").stdout)
    # the edited architecture is rebuilt; the others were never built, so they are planned too
    assert job("real_arch_model", arch_kind="clap") in jobs
    out = snakemake(workdir, "-n", target).stdout
    assert planned_jobs(out) == {job("real_arch_model", arch_kind="clap")}
    assert "feature_extractor.json" in out  # the reason names the edited input
