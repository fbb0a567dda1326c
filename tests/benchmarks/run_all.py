"""Run every benchmark in tests/benchmarks and print one combined table.

    .venv/bin/python tests/benchmarks/run_all.py [--quick] [--json-dir DIR] [--time-budget S]

Each benchmark runs as a subprocess (the same command a user would type); its stdout is
streamed to this script's stderr, its stderr goes to DIR/logs/NAME.log, and its JSON to
DIR/NAME.json. The combined table (stdout) starts with the machine: CPU model, cores,
GPU if any, torch version. --quick is sized for a 2-core CPU (well under 20 minutes);
without it the suite is sized for a GPU machine (1M-row retrieval, all model variants).
Once the time budget is spent no new benchmark starts; what was skipped is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.workflow.atomic import write_json  # noqa: E402
from rcmg.workflow.runinfo import cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
QUICK_BUDGET_S = 1020.0
MODELS_RESERVE_S = 30.0
GRACE_S = 240.0


@dataclass
class Step:
    """One benchmark subprocess: its name, script, arguments and JSON output."""

    name: str
    script: str
    args: list[str] = field(default_factory=list)
    gets_budget: bool = False

    def command(self, json_dir: Path, budget_s: float | None) -> list[str]:
        cmd = [
            sys.executable,
            str(HERE / self.script),
            *self.args,
            "--json",
            str(self.json_path(json_dir)),
        ]
        if self.gets_budget and budget_s is not None:
            cmd += ["--time-budget", f"{max(budget_s, 1.0):.0f}"]
        return cmd

    def json_path(self, json_dir: Path) -> Path:
        return json_dir / f"{self.name}.json"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="sized for a 2-core CPU")
    p.add_argument("--json-dir", type=Path, default=REPO / "results" / "bench")
    p.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help=f"seconds for the whole suite (default {QUICK_BUDGET_S:.0f} with --quick, none without)",
    )
    p.add_argument("--only", default="", help="comma list of step names to run (default: all)")
    return p.parse_args(argv)


def plan_steps(quick: bool) -> list[Step]:
    """The benchmark commands, cheapest first; the model benchmark gets what budget is left."""
    retrieval_sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    steps = [Step("segment", "bench_segment.py", ["--seconds-scale", "1" if quick else "3"])]
    for n in retrieval_sizes:
        queries = "200" if quick else "1000"
        sized = ["--n-bank", str(n), "--bank-rows", str(n), "--n-queries", queries]
        steps.append(Step(f"retrieval_{n // 1000}k", "bench_retrieval.py", sized))
    generate = ["--models", "audioldm,audioldm2", "--prompts", "4", "--batch", "2"]
    generate += ["--steps", "5", "--seconds", "2"] if quick else ["--steps", "20", "--seconds", "5"]
    steps.append(Step("generate_tiny", "bench_generate.py", generate))
    evaluate = ["--clips", "100" if quick else "1000", "--seconds", "10"]
    steps.append(Step("evaluate_tiny", "bench_evaluate.py", evaluate))
    steps.append(Step("dryrun", "bench_dryrun.py", ["--scales", "1,10,100"]))
    steps.append(Step("models", "bench_models.py", ["--quick"] if quick else [], gets_budget=True))
    return steps


def run_step(step: Step, json_dir: Path, remaining_s: float | None) -> dict:
    """Run one benchmark; return its status (ok / failed / timed out) and wall seconds."""
    budget = None if remaining_s is None else remaining_s - MODELS_RESERVE_S
    cmd = step.command(json_dir, budget)
    log_path = json_dir / "logs" / f"{step.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"\n### {step.name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    timeout = None if remaining_s is None else max(remaining_s, 1.0) + GRACE_S
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        status = stream_subprocess(cmd, log, timeout)
    seconds = time.perf_counter() - start
    if status != "ok":
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        print(f"### {step.name} {status}; log {log_path}:\n" + "\n".join(tail), file=sys.stderr)
    return {"status": status, "seconds": seconds, "log": str(log_path)}


def stream_subprocess(cmd: list[str], log, timeout: float | None) -> str:
    """Run ``cmd``: its stdout echoed to our stderr line by line, its stderr into ``log``.

    The benchmark runs in its own process group, killed as a whole (by that group's id)
    when ``timeout`` seconds pass.
    """
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
    )
    timed_out = threading.Event()

    def kill_group() -> None:
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    killer = threading.Timer(timeout, kill_group) if timeout is not None else None
    if killer is not None:
        killer.start()
    try:
        for line in proc.stdout:
            sys.stderr.write(line)
            sys.stderr.flush()
        returncode = proc.wait()
    finally:
        if killer is not None:
            killer.cancel()
    if timed_out.is_set():
        return f"timed out after {timeout:.0f}s (killed; rows measured so far are kept)"
    return "ok" if returncode == 0 else f"failed (exit {returncode})"


def load_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- table rows per benchmark


def rows_segment(data: dict) -> list[tuple]:
    rows = [
        ("segment", d["dataset"], "x real time per core", f"{d['x_realtime_per_core']:.0f}",
         f"{d['audio_seconds']:.0f}s audio in {d['cpu_seconds']:.1f}s CPU")
        for d in data["datasets"]
    ]  # fmt: skip
    rows.append(("segment", "all", "x real time per core", f"{data['x_realtime_per_core']:.0f}",
                 f"target {data['target_x_realtime_per_core']:.0f}x; start-up "
                 f"{data['startup_cpu_seconds']:.2f}s CPU"))  # fmt: skip
    return rows


def rows_retrieval(name: str, data: dict) -> list[tuple]:
    rows = []
    bank = data.get("build_bank")
    if bank:
        rows.append(("retrieval", f"build_bank {bank['rows']} rows", "seconds / peak RSS",
                     f"{bank['seconds']:.1f}s / {bank['peak_rss_mib']:.0f} MiB",
                     f"input {bank['input_mib']} MiB, kept {bank['kept']}, {bank['dedupe_method']}"))  # fmt: skip
    n = data["parameters"]["n_bank"]
    k = data["parameters"]["k"]
    for kind, r in data.get("search", {}).items():
        rows.append(("retrieval", f"{kind} {n} rows", "queries/s", f"{r['queries_per_s']:.0f}",
                     f"recall@{k} {r[f'recall_at_{k}']:.3f}, build {r['build_s']:.1f}s"))  # fmt: skip
    return rows


def rows_generate(data: dict) -> list[tuple]:
    s = data["settings"]
    rows = []
    for r in data["results"]:
        case = f"tiny {r['model']}"
        b, one = r["batched"], r["one_at_a_time"]
        rows.append(("generate", case, f"clips/s batch {b['batch']} vs 1",
                     f"{b['clips_per_s_excluding_load']:.2f} vs {one['clips_per_s_excluding_load']:.2f}",
                     f"{r['throughput_ratio']:.2f}x; {s['steps']} steps, {s['seconds']}s clips"))  # fmt: skip
        rows.append(("generate", case, "UNet share of job", f"{100 * b['unet_fraction_of_job']:.0f}%",
                     f"{100 * b['unet_fraction_excluding_load']:.0f}% excluding load; tiny models"))  # fmt: skip
    return rows


def rows_models(data: dict) -> list[tuple]:
    rows, skipped = [], {}
    for r in data["rows"]:
        if "skipped" in r:
            skipped.setdefault((r["model"], r["skipped"]), []).append(variant_label(r))
            continue
        if r["model"] == "clap":
            rows.append(("models", f"clap b{r['batch']}", "audio clips/s", f"{r['clips_per_s']:.2f}",
                         f"model forward {100 * r['forward_fraction']:.0f}% (features "
                         f"{r['feature_s']:.2f}s, model {r['embed_s']:.2f}s)"))  # fmt: skip
            continue
        rows.extend(rows_generation_model(r))
    for (model, reason), variants in skipped.items():
        what = ", ".join(v for v in variants if v) or "all"
        rows.append(("models", f"{model} {what}", "skipped", "-", reason))
    return rows


def variant_label(r: dict) -> str:
    """'fp16 classic compiled b2' from whichever of those fields the row has."""
    parts = [str(r["dtype"])] if "dtype" in r else []
    if r.get("attention", "sdpa") != "sdpa":
        parts.append(r["attention"])
    if r.get("compiled_unet"):
        parts.append("compiled")
    if "batch" in r:
        parts.append(f"b{r['batch']}")
    return " ".join(parts)


def rows_generation_model(r: dict) -> list[tuple]:
    case = f"{r['model']} {r['scheduler']} {variant_label(r)}"
    clip = f"{r['clip_seconds']:g}-s clip"
    ph = r["phases_s"]
    fixed = ", ".join(f"{k} {v:.1f}s" for k, v in ph.items() if k != "denoise")
    note = r.get("note", f"{r['measured_steps']} measured step(s)")
    if "load_avg_1m" in r:
        note += f"; load {r['load_avg_1m']}"
    return [
        ("models", case, "s per denoising step", f"{r['sec_per_step']:.2f}", note),
        ("models", case, f"s per {clip} DDIM-200*", f"{r['ddim200_s_per_clip']:.0f}",
         f"denoiser {100 * r['ddim200_denoise_fraction']:.0f}%; fixed {r['fixed_s']:.1f}s: {fixed}"),
        ("models", case, f"s per {clip} DPM++-25*", f"{r['dpmpp25_s_per_clip']:.0f}",
         f"denoiser {100 * r['dpmpp25_denoise_fraction']:.0f}%"),
    ]  # fmt: skip


def rows_evaluate(data: dict) -> list[tuple]:
    s = data["settings"]
    rows = []
    for r in data["results"]:
        case = f"{r['clips']} x {s['seconds']:g}-s clips, drawing {r['drawing']}"
        rows.append(("evaluate", case, "model-forward share", f"{100 * r['forward_share']:.1f}%",
                     f"job {r['total_s']:.1f}s, forwards {r['forward_s']:.1f}s, model calls with "
                     f"features {r['model_calls_s']:.1f}s, drawing {r['drawing_s']:.1f}s"))  # fmt: skip
    return rows


def rows_dryrun(data: dict) -> list[tuple]:
    rows = [
        ("dryrun", f"config.yaml {r['name']}", "snakemake -n seconds", f"{r['seconds']:.1f}",
         f"{r['jobs']} jobs; " + " ".join(f"{k}={v}" for k, v in r["counts"].items()))
        for r in data["scales"]
    ]  # fmt: skip
    if data.get("cold_first_run"):
        c = data["cold_first_run"]
        rows.insert(0, ("dryrun", "config.yaml cold", "snakemake -n seconds", f"{c['seconds']:.1f}",
                        f"{c['jobs']} jobs; first run in a fresh copy (not fitted)"))  # fmt: skip
    if data.get("seconds_per_1000_jobs") is not None:
        rows.append(
            (
                "dryrun",
                "growth",
                "s per 1000 jobs",
                f"{data['seconds_per_1000_jobs']:.1f}",
                "least squares",
            )
        )
    if data.get("demo"):
        d = data["demo"]
        rows.append(
            (
                "dryrun",
                "demo.yaml",
                "snakemake -n seconds",
                f"{d['seconds']:.1f}",
                f"{d['jobs']} jobs",
            )
        )
    if data.get("sweep"):
        w = data["sweep"]
        hours = ", ".join(f"{k} {v:.1f} h" for k, v in w.get("estimated_hours", {}).items())
        rows.append(
            (
                "dryrun",
                "sweeps.yaml",
                "snakemake -n seconds",
                f"{w['seconds']:.1f}",
                f"{w['jobs']} jobs; estimated {hours} (config cost rates)",
            )
        )
    return rows


def rows_for(name: str, data: dict) -> list[tuple]:
    if name == "segment":
        return rows_segment(data)
    if name.startswith("retrieval"):
        return rows_retrieval(name, data)
    if name == "generate_tiny":
        return rows_generate(data)
    if name == "models":
        return rows_models(data)
    if name == "dryrun":
        return rows_dryrun(data)
    if name == "evaluate_tiny":
        return rows_evaluate(data)
    raise ValueError(f"no table rows defined for benchmark {name!r}")


# ---------------------------------------------------------------- machine and table


def machine_info() -> dict:
    import torch

    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
    return info


def format_table(rows: list[tuple]) -> str:
    head = ("benchmark", "case", "metric", "value", "notes")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    lines = []
    for r in [head, *rows]:
        cells = [
            str(c).ljust(w) if i != 3 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r[:4], widths, strict=True))
        ]
        lines.append("  ".join(cells) + "  " + str(r[4]))
    lines.insert(1, "-" * min(len(lines[0]) + 40, 160))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    budget_s = (
        args.time_budget
        if args.time_budget is not None
        else (QUICK_BUDGET_S if args.quick else None)
    )
    json_dir = args.json_dir.resolve()
    json_dir.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    start = time.perf_counter()
    statuses: dict[str, dict] = {}
    for step in plan_steps(args.quick):
        if only and step.name not in only:
            continue
        remaining = None if budget_s is None else budget_s - (time.perf_counter() - start)
        if remaining is not None and remaining <= 0:
            statuses[step.name] = {"status": "skipped: time budget spent", "seconds": 0.0}
            print(f"### {step.name} skipped: time budget of {budget_s:.0f}s spent", file=sys.stderr)
            continue
        step.json_path(json_dir).unlink(missing_ok=True)
        statuses[step.name] = run_step(step, json_dir, remaining)
    rows: list[tuple] = []
    for name, status in statuses.items():
        data = load_json(json_dir / f"{name}.json")
        rows.append(("run", name, "status / wall s", f"{status['seconds']:.0f}", status["status"]))
        if data is not None:
            rows.extend(rows_for(name, data))
    total = time.perf_counter() - start
    mode = "--quick" if args.quick else "full"
    header = (
        f"machine: {machine['cpu']}, {machine['cores']} cores, GPU {machine['gpu']}, torch "
        f"{machine['torch']}, python {machine['python']}, load avg {machine['load_avg_1m_at_start']} "
        f"at start, {os.getloadavg()[0]:.2f} at end (other processes make timings noisy)\n"
        f"suite: run_all.py {mode}, {total:.0f}s wall; * = extrapolated from measured steps; "
        "random-weight models: timing only"
    )
    print(header)
    print(format_table(rows), flush=True)
    write_json(json_dir / "all.json", {"machine": machine, "mode": mode, "wall_s": total,
                                       "steps": statuses, "rows": [list(r) for r in rows]})  # fmt: skip
    failed = [
        n
        for n, s in statuses.items()
        if s["status"] != "ok" and not s["status"].startswith("skipped")
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
