#!/usr/bin/env python
"""Benchmark the generate step on the tiny demo models.

Runs the real job (``rcmg.generation.job.run_generation``) twice per model: batched
(``--batch``) and one prompt at a time, then prints the per-phase breakdown, the
fraction of job wall time spent inside UNet forward passes, and the batched vs
one-at-a-time throughput ratio. Random-weight models: a pipeline check, not music.

    .venv/bin/python tests/benchmarks/bench_generate.py --models audioldm,audioldm2 \\
        --prompts 8 --batch 4 --steps 10 --seconds 2 --json /tmp/bench_generate.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "workflow_scripts"))

from rcmg.workflow.atomic import write_json  # noqa: E402

PIPELINES = {"audioldm": "audioldm1", "audioldm2": "audioldm2", "audioldm2-music": "audioldm2"}
PROMPT_POOL = [
    "a calm piano melody",
    "fast jazz drums with brushes",
    "a string quartet playing a slow waltz",
    "ambient synth pad with reverb",
    "solo violin, expressive vibrato",
    "upbeat acoustic guitar strumming",
    "deep cello drone",
    "bright marimba arpeggios",
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--models", default="audioldm,audioldm2", help="tiny model kinds, comma-separated"
    )
    p.add_argument("--prompts", type=int, default=8, help="number of prompts per run")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument(
        "--work-dir", default=None, help="where tiny models and runs go (default: a temp dir)"
    )
    p.add_argument("--json", default=None, help="write the results here as JSON")
    return p.parse_args(argv)


def _run(kind: str, model_dir: Path, prompts: Path, out: Path, args, batch: int) -> dict:
    from rcmg.generation.job import GenerateConfig, run_generation

    cfg = GenerateConfig(
        model_key=f"tiny-{kind}",
        model_id=str(model_dir),
        family=PIPELINES[kind],
        condition="prompt",
        condition_type="prompt",
        prompts=str(prompts),
        out_dir=str(out),
        seed=0,
        steps=args.steps,
        guidance=3.0,
        seconds=args.seconds,
        batch=batch,
        command="bench_generate.py",
    )
    config = json.loads((run_generation(cfg) / "run_config.json").read_text())
    timings = config["timings_s"]
    gen_s = timings["total"] - timings["load"]
    return {
        "batch": batch,
        "timings_s": timings,
        "unet_forward_s": config["unet_forward_s"],
        "unet_forward_calls": config["unet_forward_calls"],
        "unet_slots_per_step": config["unet_slots_per_step"],
        "unet_fraction_of_job": config["unet_forward_s"] / timings["total"],
        "unet_fraction_excluding_load": config["unet_forward_s"] / gen_s,
        "clips": config["n_clips_ok"],
        "clips_per_s_excluding_load": config["n_clips_ok"] / gen_s,
    }


def bench_model(kind: str, work: Path, args) -> dict:
    from rcmg.standins.tiny_models import build_tiny_model

    model_dir = build_tiny_model(kind, work / "models" / kind, seed=0)
    prompts = work / "prompts.txt"
    pool = (PROMPT_POOL * (args.prompts // len(PROMPT_POOL) + 1))[: args.prompts]
    prompts.write_text("\n".join(pool) + "\n", encoding="utf-8")
    batched = _run(kind, model_dir, prompts, work / "runs" / kind / "batched", args, args.batch)
    single = _run(kind, model_dir, prompts, work / "runs" / kind / "single", args, 1)
    ratio = batched["clips_per_s_excluding_load"] / single["clips_per_s_excluding_load"]
    return {"model": kind, "batched": batched, "one_at_a_time": single, "throughput_ratio": ratio}


def _print(result: dict) -> None:
    print(f"\n== tiny {result['model']} (pipeline check, random weights) ==")
    for name in ("batched", "one_at_a_time"):
        r = result[name]
        phases = ", ".join(f"{k} {v:.2f}" for k, v in r["timings_s"].items())
        print(f"  {name:13s} batch={r['batch']}: {phases}")
        print(
            f"  {'':13s} UNet forward {r['unet_forward_s']:.2f} s in {r['unet_forward_calls']} calls = "
            f"{100 * r['unet_fraction_of_job']:.1f}% of job wall time "
            f"({100 * r['unet_fraction_excluding_load']:.1f}% excluding load); "
            f"{r['clips_per_s_excluding_load']:.3f} clips/s"
        )
    print(f"  batched / one-at-a-time throughput: {result['throughput_ratio']:.2f}x")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench_generate_") as tmp:
        work = Path(args.work_dir) if args.work_dir else Path(tmp)
        results = [
            bench_model(kind.strip(), work, args) for kind in args.models.split(",") if kind.strip()
        ]
    for result in results:
        _print(result)
    if args.json:
        settings = {k: getattr(args, k) for k in ("prompts", "batch", "steps", "seconds")}
        write_json(args.json, {"settings": settings, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
