"""Benchmark `snakemake -n` planning time of the experiment matrix at 1x, 10x and 100x.

    .venv/bin/python tests/benchmarks/bench_dryrun.py --json results/bench/dryrun.json

Works in a scratch copy of the workflow (code + config, no data, no outputs). Scale f
multiplies the prompt file's lines by f, the seeds by min(f, 10) and the conditions by the
rest (f / min(f, 10)) with `retrieval_a{k}` variants of different alpha, so 1x/10x/100x
plan about 1x/10x/100x the generate + evaluate jobs. Also times the demo config's dry-run
and the sweep overlay's (config/sweeps.yaml: every model x style condition x 5 alphas x 3
guidances, with its estimated hours as the dry-run prints them, config `cost`).
Prints seconds and jobs planned per scale and the growth in seconds per 1000 jobs. The
first dry-run in a fresh copy pays one-off costs (bytecode compilation, Snakemake's
caches): it is timed and reported separately, not fitted.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))
sys.path.insert(0, str(REPO))

from rcmg.workflow.atomic import write_json  # noqa: E402

from tests.workflow.helpers import copy_workflow, offline_env  # noqa: E402

LOG = logging.getLogger("bench_dryrun")
MAX_SEED_FACTOR = 10
TOTAL_JOBS = re.compile(r"^total\s+(\d+)\s*$", re.MULTILINE)
COST_ROW = re.compile(r"^\s+(generate|evaluate|total)\s.*?([\d.]+) h$", re.MULTILINE)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--scales", default="1,10,100", help="comma list of matrix multipliers")
    p.add_argument("--base-config", default="config/config.yaml", help="relative to the repo")
    p.add_argument("--demo-config", default="config/demo.yaml", help="'' to skip")
    p.add_argument("--sweep-config", default="config/sweeps.yaml", help="'' to skip")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per dry-run")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    return p.parse_args(argv)


def split_factor(scale: int) -> tuple[int, int]:
    """(seed factor, condition factor) whose product is ``scale`` (seeds grow first)."""
    seed_factor = math.gcd(scale, MAX_SEED_FACTOR) if scale > MAX_SEED_FACTOR else scale
    return seed_factor, scale // seed_factor


def scaled_config(cfg: dict, scale: int, prompts_path: str) -> dict:
    """A copy of ``cfg`` with seeds x seed factor and conditions x condition factor."""
    import copy

    out = copy.deepcopy(cfg)
    seed_factor, condition_factor = split_factor(scale)
    base_seeds = list(cfg["seeds"])
    start = max(base_seeds) + 1
    out["seeds"] = base_seeds + list(range(start, start + len(base_seeds) * (seed_factor - 1)))
    extra = len(cfg["conditions"]) * (condition_factor - 1)
    for k in range(1, extra + 1):
        alpha = round(k / (extra + 1), 4)
        out["conditions"][f"retrieval_a{k}"] = {
            "type": "retrieval",
            "adapter": "native",
            "alpha": alpha,
        }
    out["prompts"] = prompts_path
    return out


def scaled_prompts(source: Path, scale: int) -> str:
    """The prompt file's prompt lines repeated ``scale`` times (numbered so each is distinct)."""
    lines = [
        ln for ln in source.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]  # fmt: skip
    return "".join(f"{ln} (take {i})\n" for i in range(scale) for ln in lines)


def dry_run(workdir: Path, configfile: str, timeout: float) -> dict:
    """Time one `snakemake -n --configfile CONFIG`; return seconds and jobs planned."""
    cmd = [sys.executable, "-m", "snakemake", "-n", "--configfile", configfile]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=workdir, env=offline_env(), capture_output=True, text=True, timeout=timeout
    )
    seconds = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(
            f"snakemake -n --configfile {configfile} failed in {workdir} "
            f"(exit {proc.returncode}):\n{output[-3000:]}"
        )
    totals = TOTAL_JOBS.findall(output)
    if not totals:
        raise RuntimeError(f"no 'total N' job count in the dry-run output of {configfile}")
    hours = {rule: float(h) for rule, h in COST_ROW.findall(output)}
    return {"seconds": seconds, "jobs": int(totals[-1]), "estimated_hours": hours}


def write_scale(workdir: Path, base: dict, scale: int) -> tuple[str, dict]:
    import yaml

    source = workdir / base["prompts"]
    prompts = workdir / "config" / "prompts" / f"bench_x{scale}.txt"
    prompts.write_text(scaled_prompts(source, scale), encoding="utf-8")
    cfg = scaled_config(base, scale, str(prompts.relative_to(workdir)))
    name = f"config/bench_x{scale}.yaml"
    (workdir / name).write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    counts = {
        "prompts": len(prompts.read_text(encoding="utf-8").splitlines()),
        "seeds": len(cfg["seeds"]),
        "conditions": len(cfg["conditions"]),
        "models": len(cfg["models"]),
    }
    return name, counts


def growth_per_1000_jobs(rows: list[dict]) -> float | None:
    """Least-squares slope of seconds against jobs, in seconds per 1000 jobs (pure maths)."""
    if len(rows) < 2:
        return None
    jobs = [r["jobs"] for r in rows]
    secs = [r["seconds"] for r in rows]
    mean_j, mean_s = sum(jobs) / len(jobs), sum(secs) / len(secs)
    var = sum((j - mean_j) ** 2 for j in jobs)
    if var == 0:
        return None
    cov = sum((j - mean_j) * (s - mean_s) for j, s in zip(jobs, secs, strict=True))
    return 1000.0 * cov / var


def format_row(row: dict) -> str:
    counts = row.get("counts", {})
    shape = " ".join(f"{k}={v}" for k, v in counts.items())
    return f"{row['name']:<10}{row['seconds']:>9.1f}s {row['jobs']:>7} jobs   {shape}"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
    import yaml

    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    results: dict = {"benchmark": "dryrun", "scales": [], "demo": None, "sweep": None}
    print(f"{'config':<10}{'seconds':>10} {'planned':>12}   matrix", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_dryrun_") as tmp:
        workdir = copy_workflow(Path(tmp) / "wf")
        base = yaml.safe_load((workdir / args.base_config).read_text(encoding="utf-8"))
        cold = {"name": "cold x1", **dry_run(workdir, args.base_config, args.timeout)}
        results["cold_first_run"] = cold
        print(format_row(cold) + "   (first run in a fresh copy: bytecode, caches; not fitted)")
        for scale in scales:
            configfile, counts = write_scale(workdir, base, scale)
            row = {"name": f"x{scale}", "scale": scale, "counts": counts}
            row.update(dry_run(workdir, configfile, args.timeout))
            results["scales"].append(row)
            print(format_row(row), flush=True)
        if args.demo_config:
            row = {"name": "demo", **dry_run(workdir, args.demo_config, args.timeout)}
            results["demo"] = row
            print(format_row(row), flush=True)
        if args.sweep_config:
            row = {"name": "sweep", **dry_run(workdir, args.sweep_config, args.timeout)}
            results["sweep"] = row
            hours = row["estimated_hours"]
            print(
                format_row(row)
                + "   estimated hours: "
                + ", ".join(f"{k} {v:.1f}" for k, v in hours.items()),
                flush=True,
            )
    results["seconds_per_1000_jobs"] = growth_per_1000_jobs(results["scales"])
    if results["seconds_per_1000_jobs"] is not None:
        print(f"growth: {results['seconds_per_1000_jobs']:.1f} s per 1000 planned jobs", flush=True)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
