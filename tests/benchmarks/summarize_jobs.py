"""Where the time of the workflow's own generate jobs went: one row per run directory.

    .venv/bin/python tests/benchmarks/summarize_jobs.py --results results/bench_workflow \
        --benchmarks benchmarks/bench_workflow --json docs/measurements/FILE.json

Reads what the jobs recorded, measures nothing itself: wall and CPU seconds and peak RSS
from Snakemake's benchmark TSV, phase seconds and the UNet-forward share from
run_config.json, torch threads from hardware.json. With config/bench.yaml (published
architectures, random weights) these are the real jobs' costs; on the demo config they
describe tiny models. Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.workflow.atomic import write_json  # noqa: E402
from rcmg.workflow.runinfo import PHASES, cpu_name, generate_benchmark_tsv, read_benchmark_tsv  # noqa: E402

STEP_PHASES = PHASES[:-1]  # the phases the generate job times ("total" is their sum)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, required=True, help="paths.results of the config")
    p.add_argument("--benchmarks", type=Path, required=True, help="paths.benchmarks")
    p.add_argument("--json", type=Path, default=None, help="write the rows here (atomically)")
    return p.parse_args(argv)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def job_row(run_dir: Path, bench_root: Path) -> dict:
    """One generate job: its recorded timings, share of the UNet, threads and job totals."""
    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    hardware_path = run_dir / "hardware.json"
    hardware = (
        json.loads(hardware_path.read_text(encoding="utf-8")) if hardware_path.is_file() else {}
    )
    tsv = generate_benchmark_tsv(bench_root, config["model"], config["condition"], config["seed"])
    if config.get("shards"):  # a gathered run: its generate_shard jobs' TSVs, summed
        rows = [
            (read_benchmark_tsv(tsv.with_name(f"{tsv.stem}.shard{s['index']}.tsv")) or [{}])[-1]
            for s in config["shards"]
        ]
        bench = {
            "s": sum(_number(r.get("s")) for r in rows),
            "cpu_time": sum(_number(r.get("cpu_time")) for r in rows),
            "max_rss": max(_number(r.get("max_rss")) for r in rows),
        }
    else:
        bench = (read_benchmark_tsv(tsv) or [{}])[-1]  # the last attempt's row
    params = config.get("params", {})
    clips = config.get("n_clips_ok", 0) * params.get("num_waveforms_per_prompt", 1)
    wall = _number(bench.get("s"))
    steps = params.get("steps")
    denoise = config["timings_s"].get("denoise", math.nan)
    batches = math.ceil(config.get("n_prompts", 0) / params["batch"]) if params.get("batch") else 0
    return {
        "run": f"{config['model']}/{config['condition']}/seed{config['seed']}",
        "family": config.get("family"),
        "model_id": config.get("model_id"),
        "scheduler": params.get("scheduler"),
        "steps": steps,
        "batch": params.get("batch"),
        "dtype": params.get("dtype"),
        "seconds": params.get("seconds"),
        "clips": clips,
        "torch_threads": hardware.get("torch_threads"),
        "device": hardware.get("device"),
        "job_wall_s": wall,
        "job_cpu_s": _number(bench.get("cpu_time")),
        "job_max_rss_mb": _number(bench.get("max_rss")),
        "phases_s": {k: config["timings_s"].get(k, 0.0) for k in STEP_PHASES},
        "total_s": config["timings_s"].get("total", math.nan),
        "unet_forward_fraction": config.get("unet_forward_fraction"),
        "s_per_step": denoise / (steps * batches) if steps and batches else math.nan,
        "job_s_per_clip": wall / clips if clips else math.nan,
        "job_s_per_audio_min": wall / (clips * params["seconds"] / 60) if clips else math.nan,
    }


def find_runs(results: Path) -> list[Path]:
    return sorted(p.parent for p in (results / "runs").glob("*/*/seed*/run_config.json"))


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'run':<34}{'scheduler':>22}{'steps':>6}{'b':>3}{'dtype':>6}{'thr':>4}{'clips':>6}"
        f"{'job s':>8}{'cpu s':>8}{'RSS MB':>8}{'s/step':>8}{'s/clip':>8}{'UNet%':>6}"
        f"  phases (load/encode/denoise/decode/vocode s)"
    )
    lines = [head]
    for r in rows:
        ph = r["phases_s"]
        phases = "/".join(f"{ph[k]:.1f}" for k in ("load", "encode", "denoise", "decode", "vocode"))
        share = r["unet_forward_fraction"]
        lines.append(
            f"{r['run']:<34}{r['scheduler'] or '':>22}{r['steps'] or 0:>6}{r['batch'] or 0:>3}"
            f"{r['dtype'] or '':>6}{r['torch_threads'] or '-':>4}{r['clips']:>6}"
            f"{r['job_wall_s']:>8.1f}{r['job_cpu_s']:>8.1f}{r['job_max_rss_mb']:>8.0f}"
            f"{r['s_per_step']:>8.2f}{r['job_s_per_clip']:>8.1f}"
            f"{100 * share if share is not None else math.nan:>6.0f}  {phases}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = find_runs(args.results)
    if not runs:
        raise SystemExit(
            f"no run_config.json under {args.results / 'runs'}: run the workflow first"
        )
    rows = [job_row(run, args.benchmarks) for run in runs]
    print(f"machine: {cpu_name()}; results {args.results}; benchmarks {args.benchmarks}")
    print(format_table(rows))
    if args.json:
        write_json(args.json, {"benchmark": "generate_jobs", "cpu": cpu_name(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
