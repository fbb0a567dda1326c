"""The config is validated before any job runs; dry-runs plan the full matrix without data."""

from __future__ import annotations

import shutil

import pytest
import yaml

from .helpers import copy_workflow, job, planned_jobs, rule_counts, snakemake


@pytest.fixture()
def workdir(tmp_path):
    return copy_workflow(tmp_path / "wf")


def _edit(workdir, edit, name="edited.yaml", base="config/config.yaml"):
    cfg = yaml.safe_load((workdir / base).read_text())
    edit(cfg)
    path = workdir / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return f"config/{name}"


def test_real_config_plans_full_matrix_without_data(workdir):
    out = snakemake(workdir, "-n").stdout
    counts = rule_counts(planned_jobs(out))
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())
    runs_per_seed = sum(len(c.get("models") or cfg["models"]) for c in cfg["conditions"].values())
    n_runs = runs_per_seed * len(cfg["seeds"])
    assert (
        runs_per_seed == 3 * 4 + 3 + 3 + 1 + 3
    )  # 4 conditions + 2 controls on 3 models, style_only, guided on 3 models
    n_shards = sum(d["shards"] for d in cfg["datasets"].values())
    assert counts["generate"] == n_runs
    assert counts["evaluate"] == n_runs
    assert counts["segment"] == n_shards
    assert counts["clap_embed"] == n_shards
    assert counts["index_sources"] == len(cfg["datasets"])
    assert counts["train_adapter"] == len(cfg["models"])
    for single in ("build_bank", "build_index", "reference_stats", "compare"):
        assert counts[single] == 1
    # the real config never writes demo assets
    assert "demo_model" not in counts and "demo_dataset" not in counts


def test_every_job_gets_its_configured_cpus_as_threads(workdir):
    """Snakemake sets OMP_NUM_THREADS = threads in each job: without ``threads:`` torch, faiss
    and BLAS would run single-threaded whatever resources.<rule>.cpus says."""
    out = snakemake(workdir, "-n", "--cores", "64").stdout
    cfg = yaml.safe_load((workdir / "config/config.yaml").read_text())["resources"]
    threads: dict[str, set[int]] = {}
    rule = None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            threads.setdefault(rule, set()).add(1)  # Snakemake prints threads only when > 1
        elif line.strip().startswith("threads:") and rule:
            threads[rule] = {int(line.split(":")[1])}
    assert threads, out[-2000:]
    for rule, seen in threads.items():
        expected = cfg.get(rule, {}).get("cpus", cfg["default"]["cpus"]) if rule in cfg else 1
        assert seen == {expected}, (rule, seen, expected)
    assert threads["generate"] == {cfg["generate"]["cpus"]} == {4}
    assert threads["segment"] == {cfg["segment"]["cpus"]} == {2}


def test_demo_config_plans_demo_assets(workdir):
    out = snakemake(workdir, "-n", "--configfile", "config/demo.yaml").stdout
    jobs = planned_jobs(out)
    for kind in ("clap", "audioldm", "audioldm2", "audioldm2-music"):
        assert job("demo_model", tiny_kind=kind) in jobs
    for kind in ("maestro", "urmp", "fsd50k"):
        assert job("demo_dataset", demo_kind=kind) in jobs


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda c: c["models"]["audioldm2"]["sampling"].update(stpes=5), "stpes"),
        (lambda c: c["models"]["audioldm2"]["sampling"].update(steps=-5), "steps"),
        (lambda c: c["models"]["audioldm2"].update(pipeline="audioldm3"), "audioldm3"),
        (lambda c: c["models"]["audioldm"]["retrieval"].update(alpha=1.5), "alpha"),
        (lambda c: c.update(prompts="config/prompts/nope.txt"), "nope.txt"),
        (lambda c: c["conditions"].update(bad={"type": "retrieval"}), "adapter"),
        (lambda c: c["bank"].update(dataset="maestro"), "role"),
        (lambda c: c["conditions"]["retrieval_random"].update(control_of="prompt"), "control_of"),
        (lambda c: c["conditions"]["style_only"].update(models=["audioldm2"]), "style_only"),
        (lambda c: c["evaluation"].update(baseline_condition="nothing"), "nothing"),
        (lambda c: c["resources"]["generate"].update(gpus=1), "gpus"),
    ],
    ids=[
        "typo-key",
        "negative-steps",
        "unknown-pipeline",
        "alpha-out-of-range",
        "missing-prompt-file",
        "retrieval-without-adapter",
        "bank-from-reference-dataset",
        "control-of-a-non-retrieval-condition",
        "style-only-on-audioldm2",
        "unknown-baseline",
        "unknown-resource-key",
    ],
)
def test_bad_config_fails_before_any_job_naming_the_problem(workdir, edit, expected):
    config = _edit(workdir, edit)
    proc = snakemake(workdir, "-n", "--configfile", config, check=False)
    assert proc.returncode != 0
    assert expected in proc.stdout
    assert not (workdir / "results").exists()
    assert not (workdir / "logs").exists()


def test_missing_raw_dataset_is_reported_by_index_sources(workdir, tmp_path):
    """Raw roots are not DAG inputs (dry-runs plan without data); the job names the folder."""
    shutil.rmtree(workdir / "data", ignore_errors=True)
    proc = snakemake(
        workdir,
        "--cores",
        "1",
        "data/processed/urmp/sources.parquet",
        check=False,
    )
    assert proc.returncode != 0
    log = (workdir / "logs/index_sources/urmp.log").read_text()
    assert "data/raw/urmp" in log


def test_original_projector_is_converted_before_generation(workdir):
    """models.<key>.projector: the .pt is converted (weights only) and used as the adapter."""
    (workdir / "projectors").mkdir()
    (workdir / "projectors" / "aldm2.pt").write_bytes(b"placeholder: dry-run only")
    config = _edit(
        workdir, lambda c: c["models"]["audioldm2"].update(projector="projectors/aldm2.pt")
    )
    out = snakemake(workdir, "-n", "-p", "--configfile", config).stdout
    counts = rule_counts(planned_jobs(out))
    assert counts["convert_projector"] == 1
    assert "--adapter-checkpoint projectors/aldm2.projector.safetensors" in out


def test_pilot_config_plans_all_models_with_controls_and_angle_sweep(workdir):
    """config/pilot.yaml (issue 13 item 8) plans without data or weights."""
    out = snakemake(workdir, "-n", "--configfile", "config/pilot.yaml").stdout
    jobs = planned_jobs(out)
    counts = rule_counts(jobs)
    pilot = yaml.safe_load((workdir / "config/pilot.yaml").read_text())
    base = yaml.safe_load((workdir / "config/config.yaml").read_text())
    conditions = {**base["conditions"], **pilot["conditions"]}
    n = sum(len(c.get("models") or base["models"]) for c in conditions.values())
    assert counts["generate"] == n == 34 and counts["train_adapter"] == 3  # guided on 3 models
    planned = {dict(w).get("condition") for r, w in jobs if r == "generate"}
    assert {"retrieval_deg15", "retrieval_deg15_random", "retrieval_mismatched"} <= planned
    assert "results/pilot/runs/audioldm2-music/retrieval_deg15_random/seed42" in out
    prompts = [
        ln
        for ln in (workdir / pilot["prompts"]).read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert len(prompts) == 100
