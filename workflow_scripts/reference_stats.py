#!/usr/bin/env python
"""Reference statistics for FAD/KAD: CLAP embeddings of a deterministic corpus subsample.

Reads each shard's audio_16k.npy ([N, T] float16/float32 at 16 kHz, memory-mapped),
takes a seeded subsample of --max-items segments composed per dataset (--composition),
resamples to 48 kHz, embeds with CLAP and writes an npz with mu, sigma, embeddings, n,
model, shards, each row's dataset and the composition (requested / available / drawn).

    python workflow_scripts/reference_stats.py --shards maestro=data/processed/maestro/shards/0 \
        urmp=data/processed/urmp/shards/0 --composition maestro=weight:0.5 urmp=weight:0.5 \
        --clap-model laion/clap-htsat-unfused --out results/reference/ref_stats.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.reference import ReferenceOptions, build_reference  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("reference_stats")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--shards", nargs="+", required=True, help="segment shard dirs, NAME=DIR tags a dataset"
    )
    parser.add_argument(
        "--composition",
        nargs="*",
        default=list(cli.default(ReferenceOptions, "composition")),
        metavar="NAME=weight:W|NAME=count:N",
        help="clips per dataset (default: in proportion to the segments available)",
    )
    parser.add_argument("--clap-model", required=True, help="CLAP hub id or local folder")
    parser.add_argument(
        "--classifier",
        default=cli.default(ReferenceOptions, "classifier"),
        help="AudioSet classifier (evaluation.classifier): its embeddings of the same clips",
    )
    for name, kind, text in (
        ("max_items", int, "segments in the subsample"),
        ("seed", int, "subsample seed"),
        ("batch", int, "segments per CLAP batch"),
        ("device", str, "auto | cpu | cuda[:N]"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=cli.default(ReferenceOptions, name), help=text)
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    return parser


def run(args: argparse.Namespace) -> int:
    options = cli.options(ReferenceOptions, args)
    n = build_reference(args.shards, args.clap_model, args.out, options)
    log.info("reference stats from %d segments -> %s", n, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
