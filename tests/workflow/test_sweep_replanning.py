"""Sweeps replan exactly (issue 14 item 3) and name their points canonically (item 1).

A scratch copy of the workflow on a trimmed demo config (written over the copy's
config/config.yaml: a --configfile would be merged onto the full matrix) is marked done
without running anything: every planned output is created empty and `snakemake --touch --forceall`
records its metadata (params, code), as a finished run would. Dry-runs of edited
configs then show what Snakemake would rerun, in seconds.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from .helpers import copy_workflow, job, planned_jobs, run_points, snakemake

DEMO = "config/demo.yaml"
SWEEP = {
    "models": ["audioldm"],
    "conditions": ["retrieval_native"],
    "product": {"alpha": [0.01, 0.1]},
}
# two lrs, neither the demo's configured 1e-2: two adapter variants beside the configured one
ADAPTER_SWEEP = {
    "models": ["audioldm"],
    "conditions": ["retrieval_external"],
    "product": {"adapter_lr": ["1e-3", 0.003]},
}
_OUTPUT = re.compile(r"^\s+output: (.*)$")


def _trimmed(cfg: dict) -> dict:
    """Two models (one per pipeline family), the baseline, one retrieval condition and the
    external-adapter one (its train_adapter jobs)."""
    cfg = copy.deepcopy(cfg)
    cfg["models"] = {k: cfg["models"][k] for k in ("audioldm", "audioldm2")}
    kept = ("prompt", "retrieval_native", "retrieval_external")
    cfg["conditions"] = {k: cfg["conditions"][k] for k in kept}
    cfg["evaluation"]["primary_hypotheses"] = [
        h
        for h in cfg["evaluation"]["primary_hypotheses"]
        if h["condition"] == "retrieval_native" and h["baseline"] in kept
    ]
    cfg["listening_test"].update(enabled=False, conditions=["prompt", "retrieval_native"])
    cfg["sweeps"] = {"alpha": copy.deepcopy(SWEEP), "adapter": copy.deepcopy(ADAPTER_SWEEP)}
    return cfg


def _merged(base: dict, overlay: dict) -> dict:
    """``overlay`` deep-merged onto ``base``, as Snakemake merges a --configfile."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _write(workdir: Path, cfg: dict) -> None:
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _make_outputs(workdir: Path, dry_run: str) -> None:
    """Create every output a dry-run listed: folders for names without a suffix."""
    for line in dry_run.splitlines():
        match = _OUTPUT.match(line)
        if not match:
            continue
        for name in match.group(1).split(", "):
            path = workdir / name
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """(workdir, config): the trimmed demo, every job marked finished."""
    workdir = copy_workflow(tmp_path_factory.mktemp("sweep") / "wf")
    read = lambda name: yaml.safe_load((workdir / name).read_text())  # noqa: E731
    cfg = _trimmed(_merged(read("config/config.yaml"), read(DEMO)))
    _write(workdir, cfg)
    _make_outputs(workdir, snakemake(workdir, "-n").stdout)
    snakemake(workdir, "--touch", "--forceall", "--cores", "1")
    return workdir, cfg


def _plan(done, edit):
    workdir, cfg = done
    cfg = copy.deepcopy(cfg)
    edit(cfg)
    _write(workdir, cfg)
    try:
        proc = snakemake(workdir, "-n", "-p")
    finally:
        _write(workdir, done[1])
    return planned_jobs(proc.stdout), proc.stdout


def _point_jobs(model: str, condition: str, seeds) -> set:
    return {
        job(rule, model=model, condition=condition, seed=s)
        for rule in ("generate", "evaluate")
        for s in seeds
    }


def test_adding_one_value_plans_exactly_its_point_and_compare(done):
    jobs, _ = _plan(done, lambda c: c["sweeps"]["alpha"]["product"]["alpha"].append(0.2))
    seeds = done[1]["seeds"]
    assert jobs == _point_jobs("audioldm", "retrieval_native@alpha=0.2", seeds) | {
        job("compare"),
        job("all"),
    }


def test_removing_one_value_plans_only_compare_which_forgets_its_stale_folder(done):
    workdir, cfg = done
    stale = workdir / cfg["paths"]["results"] / "runs/audioldm/retrieval_native@alpha=0.1"
    assert stale.is_dir()  # the removed point's folder stays on disk
    jobs, out = _plan(done, lambda c: c["sweeps"]["alpha"]["product"]["alpha"].remove(0.1))
    assert jobs == {job("compare"), job("all")}
    command = next(line for line in out.splitlines() if "compare.py" in line)
    assert "retrieval_native@alpha=0.01/seed" in command
    assert "alpha=0.1" not in command  # the comparison's points come from the config


def test_an_unrelated_edit_replans_nothing_of_the_sweep(done):
    def edit(c):
        c["models"]["audioldm2"]["retrieval"].update(alpha=0.5)  # another model's knob
        c["sweeps"]["alpha"]["product"].update(alpha=["1e-2", "1.0e-1"])  # same values

    jobs, _ = _plan(done, edit)
    assert {dict(w).get("model") for _, w in jobs} == {"audioldm2", None}, jobs


def test_a_guidance_sweep_plans_canonical_points_and_matched_baselines(done):
    def edit(c):
        c["sweeps"]["guided"] = {
            "models": ["audioldm"],
            "conditions": ["retrieval_native"],
            "zip": {"guidance": ["2.50", 4], "alpha": [0.01, "5e-2"]},
        }

    jobs, out = _plan(done, edit)
    seeds = done[1]["seeds"]
    planned = {
        dict(w)["condition"] for r, w in jobs if r == "generate" and dict(w)["model"] == "audioldm"
    }
    assert planned == {
        "retrieval_native@guidance=2.5,alpha=0.01",
        "retrieval_native@guidance=4,alpha=0.05",
        "prompt@guidance=2.5",  # the matched baselines: prompt at the same guidance
        "prompt@guidance=4",
    }
    cfg = copy.deepcopy(done[1])
    edit(cfg)
    assert len(run_points(cfg)) == len(run_points(done[1])) + 4
    assert _point_jobs("audioldm", "prompt@guidance=4", seeds) <= jobs
    baseline_cmd = next(
        line for line in out.splitlines() if "generate.py" in line and "prompt@guidance=4 " in line
    )
    assert "--guidance 4.0" in baseline_cmd and "--condition-type prompt " in baseline_cmd


def test_an_adapter_sweep_trains_one_adapter_per_variant_and_the_unswept_once(done):
    workdir, cfg = done
    proc = snakemake(workdir, "-n", "-p", "--forceall")
    jobs = planned_jobs(proc.stdout)
    trains = [dict(w) for r, w in jobs if r == "train_adapter"]
    # one job per (model, variant): the unswept adapters once each, one per swept lr
    assert sorted((t["model"], t.get("variant", "")) for t in trains) == [
        ("audioldm", ""),
        ("audioldm", "@lr=0.001"),
        ("audioldm", "@lr=0.003"),
        ("audioldm2", ""),
    ]
    seeds = cfg["seeds"]
    for lr in ("0.001", "0.003"):
        point = f"retrieval_external@adapter_lr={lr}"
        assert _point_jobs("audioldm", point, seeds) <= jobs
        folder = f"adapters/audioldm@lr={lr}"
        train = next(
            line
            for line in proc.stdout.splitlines()
            if f"--out-dir {cfg['paths']['results']}/{folder} " in line
        )
        assert f"--lr {lr} " in train
        generate = [
            line
            for line in proc.stdout.splitlines()
            if "generate.py" in line and f"{point} " in line
        ]
        assert generate and all(f"{folder}/style_adapter.safetensors" in g for g in generate)
    configured = [
        line
        for line in proc.stdout.splitlines()
        if "generate.py" in line
        and "--condition retrieval_external " in line
        and "--model-key audioldm " in line
    ]
    assert configured and all("adapters/audioldm/style_adapter" in g for g in configured)


def test_adding_an_adapter_value_plans_exactly_its_adapter_point_and_compare(done):
    jobs, _ = _plan(done, lambda c: c["sweeps"]["adapter"]["product"]["adapter_lr"].append(0.03))
    point = "retrieval_external@adapter_lr=0.03"
    assert jobs == _point_jobs("audioldm", point, done[1]["seeds"]) | {
        job("train_adapter", model="audioldm", variant="@lr=0.03"),
        job("compare"),
        job("all"),
    }


def test_a_prompt_subset_reaches_only_the_sweep_points_and_their_baselines(done):
    def edit(c):
        c["sweeps"].update(prompts=2, prompts_seed=1)

    jobs, out = _plan(done, edit)
    generated = {dict(w)["condition"] for r, w in jobs if r == "generate"}
    # every sweep point becomes a subset run, with the subset baseline (prompt@prompts=2);
    # the configured runs (and the adapters) are not replanned
    assert generated == {
        "retrieval_native@alpha=0.01,prompts=2",
        "retrieval_native@alpha=0.1,prompts=2",
        "retrieval_external@adapter_lr=0.001,prompts=2",
        "retrieval_external@adapter_lr=0.003,prompts=2",
        "prompt@prompts=2",
    }
    assert {dict(w)["model"] for r, w in jobs if r in ("generate", "evaluate")} == {"audioldm"}
    assert "train_adapter" not in {r for r, _ in jobs}  # same adapters, same folders
    commands = [line for line in out.splitlines() if "generate.py" in line]
    assert len(commands) == len(generated)
    assert all("--prompt-subset 2 --prompt-subset-seed 1 " in line for line in commands)
    assert "adapters/audioldm@lr=0.003/style_adapter" in next(
        line for line in commands if "adapter_lr=0.003,prompts=2 " in line
    )
