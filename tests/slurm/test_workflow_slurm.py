"""`snakemake --profile slurm` runs the demo end to end on the local SLURM cluster.

Every job goes through sbatch; GPU rules get a GPU allocation and CPU rules do not; a
generate job cancelled with scancel mid-run is retried and the workflow completes; the
results equal a local run's.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.workflow.helpers import copy_workflow, offline_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GPU_RULES = {
    "clap_embed",
    "reference_stats",
    "align_check",
    "train_adapter",
    "generate",
    "evaluate",
}
LOCAL_RULES = {"compare", "all"}


def _test_profile(workdir: Path, account: str) -> Path:
    """The repository's slurm profile, minus conda (not reachable here), with fast polling."""
    profile = yaml.safe_load((workdir / "slurm/config.yaml").read_text())
    profile.pop("software-deployment-method")
    profile.pop("conda-prefix", None)
    profile["default-resources"]["slurm_account"] = account
    profile["jobs"] = 4
    profile["latency-wait"] = 10
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["slurm-logdir"] = str(workdir / "slurm_logs")
    profile["slurm-keep-successful-logs"] = True
    target = workdir / "test_profile"
    target.mkdir()
    (target / "config.yaml").write_text(yaml.safe_dump(profile))
    return target


def _sacct(job_ids: list[str]) -> dict[str, dict[str, str]]:
    fields = "JobID,JobName,Partition,State,AllocTRES,Comment"
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(job_ids), "-o", fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        values = dict(zip(fields.split(","), line.split("|"), strict=True))
        rows[values["JobID"]] = values
    return rows


def _cancel_first_generate_job(stop: threading.Event, cancelled: list[str]) -> None:
    """Wait for a running generate job, scancel it once."""
    while not stop.is_set():
        listing = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True
        ).stdout
        for line in listing.splitlines():
            job_id, comment = line.split("|", 1)
            if comment.startswith("rule_generate"):
                time.sleep(2)  # let it load the model, then kill it mid-run
                subprocess.run(["scancel", job_id], check=False)
                cancelled.append(job_id)
                return
        time.sleep(0.5)


def assert_same_runs(a: Path, b: Path) -> None:
    """Same clips, prompts and retrievals. Audio equal up to float round-off: a SLURM job
    runs torch with its allocation's thread count, which changes summation order."""
    import numpy as np
    import soundfile as sf

    wavs_a = sorted(p.relative_to(a) for p in a.glob("runs/*/*/seed*/wav/*.wav"))
    assert wavs_a and wavs_a == sorted(p.relative_to(b) for p in b.glob("runs/*/*/seed*/wav/*.wav"))
    for rel in wavs_a:
        x, sr_x = sf.read(a / rel, dtype="float32")
        y, sr_y = sf.read(b / rel, dtype="float32")
        assert sr_x == sr_y and x.shape == y.shape, rel
        peak = max(float(np.abs(y).max()), 1e-12)
        assert float(np.abs(x - y).max()) <= 1e-3 * peak, rel
    keys = ("item", "prompt", "prompt_used", "augment_tags", "status", "style_source")
    for items in sorted(a.glob("runs/*/*/seed*/items.jsonl")):
        rows_a = [json.loads(line) for line in items.read_text().splitlines()]
        rows_b = [json.loads(line) for line in (b / items.relative_to(a)).read_text().splitlines()]
        assert [{k: r.get(k) for k in keys} for r in rows_a] == [
            {k: r.get(k) for k in keys} for r in rows_b
        ], items
        assert [[h["segment_id"] for h in r["retrieved"]] for r in rows_a] == [
            [h["segment_id"] for h in r["retrieved"]] for r in rows_b
        ], items


def test_demo_on_slurm_matches_local_run(slurm_cluster, demo_workdir, tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    profile = _test_profile(workdir, slurm_cluster.account)
    env = offline_env(HF_HOME=str(tmp_path / "hf_home"))
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_cancel_first_generate_job, args=(stop, cancelled))
    watcher.start()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--profile",
                str(profile),
                "--configfile",
                "config/demo.yaml",
            ],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=2400,
        )
    finally:
        stop.set()
        watcher.join()
    log = proc.stdout
    assert proc.returncode == 0, log[-5000:]
    assert cancelled, "no generate job was seen running"
    assert "CANCELLED" in log and "Trying to restart job" in log

    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: [^)]*\)", log)
    submitted += re.findall(r"submitted with SLURM jobid (\d+)", log)
    job_ids = sorted(set(submitted))
    rows = _sacct(job_ids)
    rules_seen = set()
    for row in rows.values():
        rule = row["Comment"].removeprefix("rule_").split("_wildcards")[0]
        rules_seen.add(rule)
        if row["JobID"] in cancelled:
            assert row["State"].startswith("CANCELLED")
            continue
        assert row["State"] == "COMPLETED", row
        has_gpu = "gres/gpu" in row["AllocTRES"]
        assert has_gpu == (rule in GPU_RULES), row
        assert row["Partition"] == ("gpu" if rule in GPU_RULES else "cpu"), row
    assert GPU_RULES | {"segment", "build_bank", "build_index", "demo_model"} <= rules_seen
    assert not rules_seen & LOCAL_RULES

    cfg = yaml.safe_load((workdir / "config/demo.yaml").read_text())
    results = workdir / cfg["paths"]["results"]
    assert (results / "report/index.html").is_file()
    # the same results as a local run of the same workflow
    local = demo_workdir
    local_results = local / cfg["paths"]["results"]
    assert_same_runs(results, local_results)
    processed = cfg["paths"]["processed"]
    import numpy as np

    bank = np.load(workdir / processed / "bank/style_bank.npy")
    np.testing.assert_allclose(bank, np.load(local / processed / "bank/style_bank.npy"), atol=1e-5)
    run_config = json.loads(next(results.glob("runs/*/*/seed*/run_config.json")).read_text())
    assert run_config["timings_s"]["total"] > 0
