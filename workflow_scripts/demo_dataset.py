#!/usr/bin/env python
"""Write the synthetic demo corpus (MAESTRO v3, URMP, FSD50K layouts) into OUT atomically.

    python workflow_scripts/demo_dataset.py --out data/raw_demo [--seed 0] [--seconds-scale 1.0]
    python workflow_scripts/demo_dataset.py --only urmp --out resources/demo/raw/urmp

OUT/{maestro,urmp,fsd50k} appear together once complete (with --only, OUT is that one
dataset's root); the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.standins.demo_corpus import DATASETS, write_demo_corpus, write_demo_dataset  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import atomic_dir  # noqa: E402

log = logging.getLogger("demo_dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to create (replaced atomically)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=cli.default(write_demo_corpus, "seed"),
        help="random seed (same seed, same bytes)",
    )
    parser.add_argument(
        "--seconds-scale",
        type=float,
        default=cli.default(write_demo_corpus, "seconds_scale"),
        help="multiply every file's length (e.g. 10 for benchmarks)",
    )
    parser.add_argument(
        "--only", choices=DATASETS, help="write only this dataset, with OUT as its root"
    )
    return parser


def run(args: argparse.Namespace) -> None:
    if args.seconds_scale <= 0:
        raise cli.InputError(f"--seconds-scale must be > 0 (got {args.seconds_scale})")
    with atomic_dir(args.out) as tmp:
        if args.only:
            write_demo_dataset(args.only, tmp, seed=args.seed, seconds_scale=args.seconds_scale)
        else:
            write_demo_corpus(tmp, seed=args.seed, seconds_scale=args.seconds_scale)
    files = sum(1 for p in args.out.rglob("*") if p.is_file())
    log.info("wrote %s (%d files, seed %d)", args.out, files, args.seed)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
