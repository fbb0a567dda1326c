#!/usr/bin/env python
"""Concatenate per-shard CLAP embeddings into one .npy and a mapping .jsonl.

Row i of ``--out-npy`` is described by line i of ``--out-mapping``:
``{"row": i, "shard": SHARD_DIR_NAME, "shard_row": ROW_IN_SHARD, **manifest columns}``.

Example:
    python workflow_scripts/gather_embeddings.py --shards s0 s1 --embeddings s0.npy s1.npy \
        --out-npy embeddings.npy --out-mapping mapping.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.models.shard_embedding import gather_shards  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--shards", nargs="+", required=True, type=Path, help="shard dirs")
    parser.add_argument(
        "--embeddings", nargs="+", required=True, type=Path, help="per-shard .npy, same order"
    )
    parser.add_argument("--out-npy", required=True, type=Path)
    parser.add_argument("--out-mapping", required=True, type=Path)
    return parser


def run(args: argparse.Namespace) -> None:
    gather_shards(args.shards, args.embeddings, args.out_npy, args.out_mapping)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
