#!/usr/bin/env python
"""CLAP audio embeddings for one segment shard (resumable; see rcmg.models.shard_embedding).

Reads ``SHARD/audio_48k.npy`` and ``SHARD/manifest.parquet``; writes ``--out`` (float32
N x dim, row i = manifest row i) and ``--stats`` (JSON timings). Finished batches are kept
in ``OUT.partial/`` so a restarted job continues where it stopped.

Example:
    python workflow_scripts/clap_embed.py --segments-dir data/processed/segments/maestro/shard000 \
        --model laion/clap-htsat-unfused --out emb.npy --stats emb.stats.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.models.shard_embedding import EmbedOptions, add_embed_arguments, embed_shard  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--segments-dir", required=True, type=Path, help="shard directory")
    parser.add_argument("--model", required=True, help="CLAP hub id or local folder")
    add_embed_arguments(parser, recorded_in="--stats")
    parser.add_argument("--out", required=True, type=Path, help="embeddings .npy to write")
    parser.add_argument("--stats", required=True, type=Path, help="timings .json to write")
    return parser


def run(args: argparse.Namespace) -> None:
    # no --subfolder/--revision here: the bank CLAP is a whole model, named by --model
    opts = cli.options(EmbedOptions, args, subfolder="", revision=None)
    write_json(args.stats, embed_shard(args.segments_dir, args.out, opts))


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
