#!/usr/bin/env python
"""Cut one shard of a source table into fixed-length windows at 48 kHz and 16 kHz.

    python workflow_scripts/segment.py --sources data/processed/maestro/sources.parquet \
        --root data/raw/maestro --shard 0 --num-shards 4 --out-dir data/processed/maestro/shards/0

Writes OUT_DIR/{audio_48k.npy, audio_16k.npy, manifest.parquet, skipped.csv, summary.json}
atomically. Files that cannot be decoded and silent windows are listed in skipped.csv.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.data.segmenting import (  # noqa: E402
    DTYPES,
    STEM_POLICIES,
    TAIL_POLICIES,
    SegmentConfig,
    segment_shard,
    select_shard,
)
from rcmg.data.sources import read_sources  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("segment")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--sources", required=True, type=Path, help="source table from index_sources.py"
    )
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="dataset folder the paths are relative to (read only)",
    )
    parser.add_argument("--shard", required=True, type=int, help="this shard's index, 0-based")
    parser.add_argument("--num-shards", required=True, type=int, help="total number of shards")
    parser.add_argument(
        "--seconds",
        type=float,
        default=cli.default(SegmentConfig, "seconds"),
        help="window length in seconds",
    )
    parser.add_argument(
        "--hop", type=float, default=cli.default(SegmentConfig, "hop"), help="window hop in seconds"
    )
    parser.add_argument(
        "--tail",
        choices=TAIL_POLICIES,
        default=cli.default(SegmentConfig, "tail"),
        help="short tail: repeat-pad or drop",
    )
    parser.add_argument(
        "--min-tail-seconds",
        type=float,
        default=cli.default(SegmentConfig, "min_tail_seconds"),
        help="shortest tail worth padding",
    )
    parser.add_argument(
        "--sr-clap",
        type=int,
        default=cli.default(SegmentConfig, "sr_clap"),
        help="sample rate of audio_48k.npy",
    )
    parser.add_argument(
        "--sr-gen",
        type=int,
        default=cli.default(SegmentConfig, "sr_gen"),
        help="sample rate of audio_16k.npy",
    )
    parser.add_argument(
        "--min-rms-dbfs",
        type=float,
        default=cli.default(SegmentConfig, "min_rms_dbfs"),
        help="drop windows quieter than this",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default=cli.default(SegmentConfig, "dtype"), help="array dtype"
    )
    parser.add_argument(
        "--stems",
        choices=STEM_POLICIES,
        default=cli.default(SegmentConfig, "stems"),
        help="URMP: mixes only, or stems too",
    )
    parser.add_argument(
        "--out-dir", required=True, type=Path, help="shard output folder (replaced atomically)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    cfg = cli.options(SegmentConfig, args)
    rows = select_shard(read_sources(args.sources), args.shard, args.num_shards, cfg.stems)
    if args.out_dir.resolve().is_relative_to(args.root.resolve()):
        raise cli.InputError(
            f"--out-dir {args.out_dir} is inside --root {args.root}; the raw dataset is "
            "read only: write the shard elsewhere"
        )
    log.info("shard %d/%d: %d files", args.shard, args.num_shards, len(rows))
    summary = segment_shard(rows, args.root, args.out_dir, cfg)
    log.info(
        "%.1f s of audio in %.2f s CPU (%.0fx real time per core)",
        summary["audio_seconds"],
        summary["cpu_seconds"],
        summary["audio_seconds"] / max(summary["cpu_seconds"], 1e-9),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
