#!/usr/bin/env python
"""Benchmark the segmenter: seconds of audio processed per CPU-second (x real time per core).

    .venv/bin/python tests/benchmarks/bench_segment.py --json bench_segment.json [--seconds-scale 3]

Writes the demo corpus (MAESTRO/URMP/FSD50K layouts, mixed rates/channels/bit depths)
scaled in length, indexes it and segments each dataset as one shard in this process.
The rate is audio seconds / process CPU seconds, so it does not depend on how busy
the machine is; wall-clock numbers are reported beside it.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.data.segmenting import SegmentConfig, segment_shard, select_shard  # noqa: E402
from rcmg.data.sources import index_sources  # noqa: E402
from rcmg.standins.demo_corpus import write_demo_corpus  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402

TARGET_X_REALTIME = 200.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument(
        "--seconds-scale", type=float, default=3.0, help="demo corpus length multiplier"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    parser.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    return parser.parse_args()


def bench_dataset(kind: str, raw: Path, out: Path, cfg: SegmentConfig, profiler) -> dict:
    rows, _ = index_sources(kind, raw / kind)
    rows = select_shard(rows, 0, 1, cfg.stems)
    wall, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    summary = segment_shard(rows, raw / kind, out / kind, cfg)
    if profiler is not None:
        profiler.disable()
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return {
        "dataset": kind,
        "files": summary["files"],
        "segments": summary["segments"],
        "audio_seconds": summary["audio_seconds"],
        "cpu_seconds": cpu,
        "wall_seconds": wall,
        "x_realtime_per_core": summary["audio_seconds"] / cpu,
    }


def startup_cpu_seconds(out: Path, cfg: SegmentConfig) -> float:
    """CPU cost of one empty shard: the per-job start-up (lazy imports), kept out of the rate."""
    cpu = time.process_time()
    segment_shard([], out, out / "empty", cfg)
    return time.process_time() - cpu


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args()
    cfg = SegmentConfig(dtype=args.dtype)
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    with tempfile.TemporaryDirectory(prefix="bench_segment_") as tmp:
        raw, out = Path(tmp) / "raw", Path(tmp) / "out"
        write_demo_corpus(raw, seed=0, seconds_scale=args.seconds_scale)
        startup = startup_cpu_seconds(Path(tmp), cfg)
        results = [bench_dataset(k, raw, out, cfg, profiler) for k in ("maestro", "urmp", "fsd50k")]
    audio = sum(r["audio_seconds"] for r in results)
    cpu = sum(r["cpu_seconds"] for r in results)
    report = {
        "benchmark": "segment",
        "config": {
            "seconds_scale": args.seconds_scale,
            "dtype": args.dtype,
            "seconds": cfg.seconds,
        },
        "datasets": results,
        "audio_seconds": audio,
        "cpu_seconds": cpu,
        "wall_seconds": sum(r["wall_seconds"] for r in results),
        "x_realtime_per_core": audio / cpu,
        "startup_cpu_seconds": startup,
        "target_x_realtime_per_core": TARGET_X_REALTIME,
        "meets_target": audio / cpu >= TARGET_X_REALTIME,
    }
    write_json(args.json, report)
    for r in results:
        print(
            f"{r['dataset']:8s} {r['audio_seconds']:8.1f} s audio  {r['cpu_seconds']:6.2f} s CPU  {r['x_realtime_per_core']:7.0f}x"
        )
    print(f"per-job start-up (lazy imports; excluded from the rate): {startup:.2f} s CPU")
    print(
        f"total    {audio:8.1f} s audio  {cpu:6.2f} s CPU  {audio / cpu:7.0f}x real time per core (target {TARGET_X_REALTIME:.0f}x)"
    )
    if profiler is not None:
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(12)
        print(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
