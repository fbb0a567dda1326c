#!/usr/bin/env python
"""Write the synthetic demo corpus (MAESTRO v3, URMP, FSD50K layouts) into OUT atomically.

    python workflow_scripts/make_demo_corpus.py --out data/raw_demo [--seed 0] [--seconds-scale 1.0]
    python workflow_scripts/make_demo_corpus.py --only urmp --out resources/demo/raw/urmp

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
from rcmg.workflow.atomic import atomic_dir  # noqa: E402

log = logging.getLogger("make_demo_corpus")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to create (replaced atomically)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument(
        "--seconds-scale",
        type=float,
        default=1.0,
        help="multiply every file's length (e.g. 10 for benchmarks)",
    )
    parser.add_argument(
        "--only", choices=DATASETS, help="write only this dataset, with OUT as its root"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    if args.seconds_scale <= 0:
        log.error("--seconds-scale must be > 0 (got %s)", args.seconds_scale)
        return 2
    with atomic_dir(args.out) as tmp:
        if args.only:
            write_demo_dataset(args.only, tmp, seed=args.seed, seconds_scale=args.seconds_scale)
        else:
            write_demo_corpus(tmp, seed=args.seed, seconds_scale=args.seconds_scale)
    files = sum(1 for p in args.out.rglob("*") if p.is_file())
    log.info("wrote %s (%d files, seed %d)", args.out, files, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
