"""The embedded demo end to end, then what a researcher does next with a finished workflow:
run it again (nothing to do), edit one config value (exactly the affected jobs rerun),
edit one step's code (that step reruns), lose a job to SIGKILL (only it reruns).

One demo run (the session fixture ``demo_workdir``) serves every test here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml
from rcmg.bank import spaces
from rcmg.workflow.kinds import STYLE_TYPES
from rcmg.workflow.sweeps import parse_point

from .helpers import (
    REPO,
    SNAKEMAKE,
    job,
    kill_at_pause_point,
    planned_jobs,
    rule_counts,
    run_points,
    snakemake,
)

pytestmark = pytest.mark.slow

DEMO = "config/demo.yaml"


@pytest.fixture()
def demo(demo_workdir):
    return demo_workdir


def _config(workdir):
    return yaml.safe_load((workdir / DEMO).read_text())


def _runs(workdir):
    cfg = _config(workdir)
    results = workdir / cfg["paths"]["results"]
    return [
        results / "runs" / p.model / p.condition / f"seed{s}"
        for p in run_points(cfg)  # configured runs and sweep points
        for s in cfg["seeds"]
    ]


def _models_of(cfg, condition):
    """The models a condition runs on (``conditions.<name>.models``, default all)."""
    return cfg["conditions"][condition].get("models") or list(cfg["models"])


def _plan_with(workdir, edit, name):
    cfg = _config(workdir)
    edit(cfg)
    (workdir / "config" / name).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return planned_jobs(snakemake(workdir, "-n", "--configfile", f"config/{name}").stdout)


def test_demo_produces_every_run_and_the_comparison(demo):
    cfg = _config(demo)
    results = demo / cfg["paths"]["results"]
    assert (results / "report/index.html").is_file()
    assert (results / "report/summary.csv").is_file()
    for run in _runs(demo):
        run_config = json.loads((run / "run_config.json").read_text())
        assert run_config["is_pipeline_check"] is True
        assert run_config["timings_s"]["total"] > 0
        if "bank" in run_config["condition_params"]:  # the declared style space, verified
            space = run_config["style_space"]
            assert space["verified"], (run, space)
            assert space["name"] == spaces.model_space_name(cfg, run_config["model"])
        hardware = json.loads((run / "hardware.json").read_text())
        # the rule's threads (= resources.generate.cpus) reach torch via OMP_NUM_THREADS
        assert hardware["torch_threads"] == cfg["resources"]["generate"]["cpus"]
        items = [json.loads(line) for line in (run / "items.jsonl").read_text().splitlines()]
        assert items and all((run / it["wav"]).is_file() for it in items if it["status"] == "ok")
        assert (run / "metrics/summary.json").is_file()
        html = (run / "report.html").read_text()
        assert "&lt;script&gt;" in html and "<script>alert" not in html
        # every report states the coverage of each dataset (the demo has every file)
        assert (
            all(f"{name} (" in html for name in cfg["datasets"]) and "partial download" not in html
        )
    for model in cfg["models"]:
        assert (results / "adapters" / model / "style_adapter.safetensors").is_file()
    processed = demo / cfg["paths"]["processed"]
    audit = json.loads((processed / "bank/index_audit.json").read_text())
    assert audit["ntotal"] > 0
    page = (results / "report/index.html").read_text()
    assert 'id="dataset-coverage"' in page and "(100.0%)" in page


def test_demo_runs_attribute_their_bank_items_and_are_copy_audited(demo):
    """Every prompt_aug / retrieval run lists the bank clips it used with their licences
    (the demo corpus mixes CC0, CC-BY, CC-BY-NC and Sampling+); every clip has the copy
    audit columns; the comparison page has the key tables and marks NC runs."""
    import csv

    cfg = _config(demo)
    used_bank = {
        c
        for c, v in cfg["conditions"].items()
        # every condition that conditions on bank items, the controls included
        if v["type"] in ("prompt_aug", *STYLE_TYPES)
    }
    classes = set()
    for run in _runs(demo):
        text = (run / "ATTRIBUTION.md").read_text()
        summary = json.loads((run / "metrics/summary.json").read_text())
        if parse_point(run.parent.name)[0] in used_bank:  # a sweep point: its base
            assert "| clip | title | author | source | licence |" in text, run
            assert "https://freesound.org/s/" in text and "transformed" in text, run
            classes |= set(summary["provenance"]["license_classes"])
            assert summary["provenance"]["warnings"] == [], (run, summary["provenance"])
        else:
            assert "nothing to attribute" in text, run
        assert summary["copy_audit"]["enabled"], (run, summary["copy_audit"])
        with open(run / "metrics/per_item.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                if row["status"] == "ok":
                    assert row["nearest_bank_cosine"] != "" and row["copy_flag"] != "", row
                    # no score only where the noise gate excluded every patch (the demo's
                    # random-weight AudioLDM1 makes noise-like clips)
                    gated = row["copy_gated_patches"] == row["copy_patches"] != "0"
                    assert row["copy_score"] != "" or gated, row
    assert "unknown" not in classes and len(classes) >= 2, classes
    index = (demo / cfg["paths"]["results"] / "report/index.html").read_text()
    assert 'class="key"' in index and 'id="tradeoff"' in index and 'id="grid-box"' in index
    # the demo's sweep (config sweeps): its points from the config, curves on the page
    swept = [p for p in run_points(cfg) if p.sweeps]
    assert len(swept) == sum(
        len(next(iter(sw.get("product", sw.get("zip", {})).values())))
        for sw in cfg["sweeps"].values()
    )
    with open(demo / cfg["paths"]["results"] / "report/sweeps.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["condition"] for r in rows) == sorted(p.condition for p in swept)
    assert 'id="sweeps"' in index and index.count('class="sweep-tradeoff"') == len(cfg["sweeps"])
    assert 'id="best"' in index and index.count('class="sweep-curve"') >= 2 * len(cfg["sweeps"])
    assert 'id="listening"' in index  # no answers yet: the page says where to drop them
    page = demo / cfg["paths"]["results"] / "listening/test/index.html"
    source = page.read_text().lower()
    assert not any(c.lower() in source for c in cfg["conditions"])


def _per_item(run):
    import csv

    with open(run / "metrics/per_item.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["status"] == "ok"]


def test_aa_null_is_zero_and_every_condition_of_a_model_shares_one_style_target(demo):
    """retrieval_null (retrieval at strength 0) has the prompt run's audio bit for bit, and
    every paired difference against prompt is zero within its interval and not significant,
    on every model it runs on (the A/A null: mixed style targets would show here). Every
    condition of a model is scored against the same bank rows per prompt; the model's
    retrieval run carries them, its controls do not."""
    import csv
    import math

    import numpy as np
    import soundfile as sf

    cfg = _config(demo)
    results = demo / cfg["paths"]["results"]
    null_models = _models_of(cfg, "retrieval_null")
    assert len({cfg["models"][m]["family"] for m in null_models}) == len(
        {m["family"] for m in cfg["models"].values()}
    )  # one model of every family
    for model in null_models:
        for seed in cfg["seeds"]:
            prompt = results / "runs" / model / "prompt" / f"seed{seed}"
            null = results / "runs" / model / "retrieval_null" / f"seed{seed}"
            wavs = sorted(p.name for p in (prompt / "wav").glob("*.wav"))
            assert wavs == sorted(p.name for p in (null / "wav").glob("*.wav")) and wavs
            for name in wavs:
                a, _ = sf.read(prompt / "wav" / name, dtype="float32")
                b, _ = sf.read(null / "wav" / name, dtype="float32")
                assert np.array_equal(a, b), (model, name)
    with open(results / "report/paired.csv", newline="") as fh:
        paired = list(csv.DictReader(fh))
    null_rows = [
        r for r in paired if r["condition"] == "retrieval_null" and r["baseline"] == "prompt"
    ]
    assert {r["model"] for r in null_rows} == set(null_models)
    assert {"clap_style_sim", "clap_text_sim"} <= {r["metric"] for r in null_rows}
    for row in null_rows:
        assert float(row["mean_diff"]) == 0.0, row
        assert float(row["ci_low"]) <= 0.0 <= float(row["ci_high"]), row
        p = float(row.get("p_value") or row["wilcoxon_p"] or "nan")
        assert math.isnan(p) or p >= 0.05, row
    for model in cfg["models"]:
        targets = {}
        for run in _runs(demo):
            if run.parent.parent.name != model:
                continue
            rows = {r["item"]: r["style_target_rows"] for r in _per_item(run)}
            assert all(rows.values()), run  # every clip has a target
            for item, target in rows.items():
                assert targets.setdefault(item, target) == target, (run, item)
        prompt_rows = _per_item(results / "runs" / model / "prompt" / f"seed{cfg['seeds'][0]}")
        assert all(r["ast_style_sim"] != "" for r in prompt_rows), model
        carried = [
            r["carries_target"]
            for r in _per_item(
                results / "runs" / model / "retrieval_native" / f"seed{cfg['seeds'][0]}"
            )
        ]
        assert carried and set(carried) == {"1"}, (model, carried)
    verdicts = {r["verdict"] for r in paired if r["metric"] == "clap_style_sim"}
    assert verdicts and all(v for v in verdicts), verdicts  # every style row has its verdict
    control = results / "runs" / "audioldm2" / "retrieval_random" / f"seed{cfg['seeds'][0]}"
    assert "0" in {r["carries_target"] for r in _per_item(control)}


def test_summarize_jobs_reads_what_every_generate_job_recorded(demo, tmp_path):
    cfg = _config(demo)
    out_json = tmp_path / "jobs.json"
    script = REPO / "tests/benchmarks/summarize_jobs.py"
    proc = subprocess.run(
        [
            SNAKEMAKE[0], str(script),
            "--results", cfg["paths"]["results"],
            "--benchmarks", cfg["paths"]["benchmarks"],
            "--json", str(out_json),
        ],
        cwd=demo, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["run"]: r for r in json.loads(out_json.read_text())["rows"]}
    runs = _runs(demo)
    assert len(rows) == len(runs)
    sampling = cfg["models"]["audioldm"]["sampling"]
    for run in runs:
        label = "/".join(run.parts[-3:])
        row = rows[label]
        assert label in proc.stdout
        assert row["job_wall_s"] > 0 and row["job_cpu_s"] > 0 and row["job_max_rss_mb"] > 0
        assert row["torch_threads"] == cfg["resources"]["generate"]["cpus"]
        assert 0 < row["unet_forward_fraction"] <= 1 and row["phases_s"]["denoise"] > 0
        assert row["steps"] == sampling["steps"] and row["s_per_step"] > 0
        assert row["clips"] > 0 and row["job_s_per_clip"] == row["job_wall_s"] / row["clips"]


def test_second_run_does_nothing(demo):
    out = snakemake(demo, "--configfile", DEMO, "-n").stdout
    assert planned_jobs(out) == set(), out[-3000:]


def test_editing_one_models_alpha_reruns_only_its_retrieval_runs(demo):
    jobs = _plan_with(
        demo, lambda c: c["models"]["audioldm2"]["retrieval"].update(alpha=0.5), "alpha.yaml"
    )
    cfg = _config(demo)
    retrieval = [  # the retrieval runs and the controls matched to them (not a
        # condition with its own alpha, e.g. the A/A null at alpha 0)
        c
        for c, v in cfg["conditions"].items()
        if v["type"] in STYLE_TYPES and "audioldm2" in _models_of(cfg, c) and "alpha" not in v
    ]
    expected = {job("compare")} | {job("all")}
    for cond in retrieval:
        for seed in cfg["seeds"]:
            expected |= {
                job("generate", model="audioldm2", condition=cond, seed=seed),
                job("evaluate", model="audioldm2", condition=cond, seed=seed),
            }
    assert jobs == expected


def test_editing_bank_filter_reruns_bank_and_everything_downstream_only(demo):
    jobs = _plan_with(demo, lambda c: c["bank"].update(dedupe_cosine=0.5), "dedupe.yaml")
    counts = rule_counts(jobs)
    cfg = _config(demo)
    uses_bank = [p for p in run_points(cfg) if cfg["conditions"][p.base]["type"] != "prompt"]
    n = len(uses_bank) * len(cfg["seeds"])
    assert counts.get("build_bank") == 1 and counts.get("build_index") == 1
    assert counts.get("train_adapter") == len(cfg["models"])
    assert counts.get("generate") == n
    # every run's evaluation reads the bank: prompt runs are scored against the style
    # retrieval would use for their prompts (the style baseline)
    assert counts.get("evaluate") == len(_runs(demo))
    for untouched in (
        "segment",
        "clap_embed",
        "gather_embeddings",
        "index_sources",
        "reference_stats",
        "demo_model",
    ):
        assert untouched not in counts
    assert not any(r == "generate" and ("condition", "prompt") in w for r, w in jobs)


def test_adding_a_seed_plans_only_the_new_runs(demo):
    cfg = _config(demo)
    new_seed = max(cfg["seeds"]) + 1
    jobs = _plan_with(demo, lambda c: c.update(seeds=[*c["seeds"], new_seed]), "seed.yaml")
    for rule, wildcards in jobs:
        if rule in ("generate", "evaluate"):
            assert ("seed", str(new_seed)) in wildcards
    counts = rule_counts(jobs)
    n = len(run_points(cfg))
    assert counts == {"generate": n, "evaluate": n, "compare": 1, "all": 1}


def test_editing_evaluation_code_reruns_evaluation_not_generation(demo):
    stats = demo / "workflow_scripts/rcmg/evaluation/stats.py"
    original = stats.read_text()
    try:
        stats.write_text(original + "\n# an edit\n")
        jobs = planned_jobs(snakemake(demo, "-n", "--configfile", DEMO).stdout)
    finally:
        stats.write_text(original)
    counts = rule_counts(jobs)
    assert counts.get("evaluate") == len(_runs(demo))
    assert "generate" not in counts and "segment" not in counts


@pytest.mark.parametrize(
    "edited",
    [
        "workflow_scripts/rcmg/evaluation/__init__.py",
        "workflow_scripts/rcmg/evaluation/templates/run_report.html.j2",
    ],
)
def test_editing_a_parent_init_or_a_template_reruns_exactly_the_steps_using_it(demo, edited):
    path = demo / edited
    original = path.read_text()
    try:
        path.write_text(original + "\n")
        jobs = planned_jobs(snakemake(demo, "-n", "--configfile", DEMO).stdout)
    finally:
        path.write_text(original)
    counts = rule_counts(jobs)
    assert counts.get("evaluate") == len(_runs(demo)) and counts.get("compare") == 1
    # the package __init__ also belongs to reference_stats (it imports evaluation.metrics);
    # the template only to the steps that render reports
    # the listening test's build and ingest import rcmg.evaluation.listening, which renders
    # a template of that folder
    expected = {"evaluate", "compare", "all", "listening_test", "listening_ingest"}
    if edited.endswith("__init__.py"):
        # all import rcmg.evaluation
        expected |= {
            "reference_stats",
            "copy_calibrate",
            "judge_bank_embed",
            "classifier_bank_embed",
        }
    assert set(counts) == expected


def test_killed_generate_job_leaves_nothing_that_looks_done_and_only_it_reruns(demo):
    """A generate job SIGKILLed mid-run (with Snakemake itself) during a run that needs it."""
    cfg = _config(demo)
    model, cond, seed = "audioldm2", "retrieval_native", cfg["seeds"][0]
    results = demo / cfg["paths"]["results"]
    run = results / "runs" / model / cond / f"seed{seed}"
    log = demo / cfg["paths"]["logs"] / "generate" / model / cond / f"seed{seed}.log"
    # as on a first run: this run and the comparison do not exist yet
    shutil.rmtree(run)
    shutil.rmtree(results / "report")
    log.unlink()
    # the job pauses after its first batch and is killed there: mid-job for certain
    paused = kill_at_pause_point(
        demo, "--configfile", DEMO, "--cores", "1", job=f"runs/{model}/{cond}/"
    )
    assert paused is not None, "the job did not reach its first batch"
    # nothing that looks finished
    assert not (run / "run_config.json").exists()
    assert not (run / "items.jsonl").exists()
    out = snakemake(demo, "-n", "--configfile", DEMO, "--rerun-incomplete").stdout
    # the controls of this run read its items.jsonl (conditions.<name>.control_of): they
    # are replanned with it
    controls = [
        c
        for c, v in cfg["conditions"].items()
        if v.get("control_of") == cond and model in (v.get("models") or cfg["models"])
    ]
    assert planned_jobs(out) == {
        *(
            job(rule, model=model, condition=c, seed=seed)
            for c in [cond, *controls]
            for rule in ("generate", "evaluate")
        ),
        job("compare"),
        job("all"),
    }, out[-3000:]
    snakemake(demo, "--configfile", DEMO, "--unlock")  # a killed Snakemake leaves its lock
    snakemake(demo, "--configfile", DEMO, "--cores", "2", "--rerun-incomplete")
    assert (run / "run_config.json").is_file()
    assert not list(run.parent.glob(".*part*")), "temporary folders left behind"
    assert planned_jobs(snakemake(demo, "--configfile", DEMO, "-n").stdout) == set()


def test_native_snakemake_report_has_runs_by_model_and_condition(demo, tmp_path):
    report = tmp_path / "report.zip"
    snakemake(demo, "--configfile", DEMO, "--report", str(report))
    import zipfile

    names = zipfile.ZipFile(report).namelist()
    # Snakemake's own page, then every flagged file (stored under hashed folders)
    assert "report/report.html" in names
    flagged = [n for n in names if n != "report/report.html"]
    assert sum(n.endswith("/report.html") for n in flagged) == len(_runs(demo))
    assert sum(n.endswith("/loss.png") for n in flagged) == len(_config(demo)["models"])
    assert any(n.endswith("/index.html") for n in flagged)
    # the workflow description (report/workflow.rst, rendered with the config) and a
    # caption for every flagged output, with the random-weights warning of the demo
    page = zipfile.ZipFile(report).read("report/report.html").decode("utf-8")
    assert "Retrieval-conditioned music generation" in page and "snakemake.config" not in page
    assert "Pipeline check, not music" in page
    for caption in ("evaluation report of one run", "comparison of every run", "summary.csv"):
        assert caption in page
    assert "Denoising loss of the style adapter for this model" in page


def test_corrupt_input_stops_only_the_jobs_that_need_it(demo):
    """A corrupt bank index fails the retrieval job with a message naming the file; the
    prompt job (which does not read the index) still completes."""
    cfg = _config(demo)
    processed = demo / cfg["paths"]["processed"]
    space = spaces.model_space_name(cfg, "audioldm2")  # the index of its own style space
    index = processed / "bank" / ("bank.index" if space == "bank" else f"spaces/{space}/bank.index")
    original, stat = index.read_bytes(), index.stat()
    runs = demo / cfg["paths"]["results"] / "runs" / "audioldm2"
    seed = cfg["seeds"][0]
    targets = [
        str((runs / cond / f"seed{seed}" / "run_config.json").relative_to(demo))
        for cond in ("prompt", "retrieval_native")
    ]
    try:
        index.write_bytes(original[: len(original) // 3])
        os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        proc = snakemake(
            demo,
            "--configfile",
            DEMO,
            "--cores",
            "1",
            "--keep-going",
            "--forcerun",
            *targets,
            *targets,
            check=False,
        )
    finally:
        index.write_bytes(original)
        os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert proc.returncode != 0
    assert (runs / "prompt" / f"seed{seed}" / "run_config.json").is_file()
    assert not (runs / "retrieval_native" / f"seed{seed}" / "run_config.json").exists()
    log = (
        demo
        / cfg["paths"]["logs"]
        / "generate"
        / "audioldm2"
        / "retrieval_native"
        / f"seed{seed}.log"
    )
    assert "bank.index" in log.read_text()
    # input restored: rerun the failed target, then the rest (its evaluation, the comparison)
    snakemake(demo, "--configfile", DEMO, "--cores", "2", targets[1])
    snakemake(demo, "--configfile", DEMO, "--cores", "2")
    assert planned_jobs(snakemake(demo, "--configfile", DEMO, "-n").stdout) == set()
