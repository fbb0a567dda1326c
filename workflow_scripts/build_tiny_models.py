#!/usr/bin/env python
"""Build a tiny random-weight model (Hugging Face folder format) for offline pipeline checks.

Example:
    python workflow_scripts/build_tiny_models.py --kind audioldm2 --out data/tiny_models/audioldm2
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import logging  # noqa: E402

from rcmg.standins.tiny_models import KINDS, build_tiny_model  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    path = build_tiny_model(args.kind, args.out, seed=args.seed)
    logging.getLogger("build_tiny_models").info("tiny %s model ready in %s", args.kind, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
