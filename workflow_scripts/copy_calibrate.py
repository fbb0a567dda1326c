#!/usr/bin/env python
"""Calibrate the copy-audit threshold on planted copies of the style bank's own windows.

Each of --n-windows bank windows (seeded draw) is planted as a copy (pitch-shifted +/-2
semitones and shifted 1.5 s; cropped 2 s) and scored against itself; unrelated pairs are
neighbouring drawn windows. Writes --out (JSON): threshold halfway between the lowest
planted and the highest unrelated score, whether they separate, and every score.

    python workflow_scripts/copy_calibrate.py --bank-mapping style_bank.jsonl \
        --segments-root data/processed/fsd50k/segments --out copy_calibration.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.copy_audit import CopyOptions, calibrate_on_bank  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--bank-mapping", type=Path, required=True, help="style_bank.jsonl")
    parser.add_argument("--segments-root", type=Path, required=True, help="bank segments/")
    parser.add_argument("--n-windows", type=int, default=16, help="bank windows drawn")
    parser.add_argument(
        "--max-semitones", type=int, default=cli.default(CopyOptions, "max_semitones")
    )
    parser.add_argument("--seed", type=int, default=0, help="which windows, which shifts")
    parser.add_argument("--out", type=Path, required=True, help="copy_calibration.json")
    return parser


def run(args: argparse.Namespace) -> int:
    options = CopyOptions(max_semitones=args.max_semitones)
    result = calibrate_on_bank(
        args.bank_mapping, args.segments_root, args.n_windows, args.seed, options
    )
    write_json(args.out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
