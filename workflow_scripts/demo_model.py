#!/usr/bin/env python
"""Build a tiny random-weight model (Hugging Face folder format) for offline pipeline checks,
or the planted-effect stand-in's folder (``--kind planted``: config.json only, no weights).

Example:
    python workflow_scripts/demo_model.py --kind audioldm2 --out data/tiny_models/audioldm2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import logging  # noqa: E402

from rcmg.standins.tiny_models import build_tiny_model  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.kinds import DEMO_MODEL_KINDS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--kind", required=True, choices=DEMO_MODEL_KINDS)
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument("--seed", type=int, default=cli.default(build_tiny_model, "seed"))
    return parser


def run(args: argparse.Namespace) -> None:
    if args.kind == "planted":
        from rcmg.standins.planted_family import build_planted_model

        path = build_planted_model(args.out, seed=args.seed)
    else:
        path = build_tiny_model(args.kind, args.out, seed=args.seed)
    logging.getLogger("demo_model").info("demo %s model ready in %s", args.kind, path)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
