#!/usr/bin/env python
"""Build a tiny random-weight model (Hugging Face folder format) for offline pipeline checks.

Example:
    python workflow_scripts/demo_model.py --kind audioldm2 --out data/tiny_models/audioldm2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import logging  # noqa: E402

from rcmg.standins.tiny_models import KINDS, build_tiny_model  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument("--seed", type=int, default=cli.default(build_tiny_model, "seed"))
    return parser


def run(args: argparse.Namespace) -> None:
    path = build_tiny_model(args.kind, args.out, seed=args.seed)
    logging.getLogger("demo_model").info("tiny %s model ready in %s", args.kind, path)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
