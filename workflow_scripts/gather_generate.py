#!/usr/bin/env python
"""Merge the shards of one sharded generate run into its run directory.

The shards (generate.py --prompt-shards K --prompt-shard I, one folder each) become the
run directory evaluate reads (wav/, items.jsonl, style.npy, hardware.json,
run_config.json), exactly as an unsharded generate job writes it; see
rcmg.generation.gather.

Example:
    python workflow_scripts/gather_generate.py \\
        --shards results/shards/audioldm2/prompt/seed42/shard0 results/shards/audioldm2/prompt/seed42/shard1 \\
        --out-dir results/runs/audioldm2/prompt/seed42
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.generation.gather import gather_shards  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--shards", nargs="+", required=True, type=Path, help="shard folders, shard 0 first"
    )
    parser.add_argument("--out-dir", required=True, type=Path, help="the run directory")
    return parser


def run(args: argparse.Namespace) -> None:
    gather_shards(args.shards, args.out_dir)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
