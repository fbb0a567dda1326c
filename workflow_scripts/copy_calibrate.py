#!/usr/bin/env python
"""Calibrate the copy-audit threshold on planted copies of the style bank's own windows.

Each of --n-windows bank windows (seeded draw) is planted as a copy (pitch-shifted +/-2
semitones and shifted 1.5 s; cropped 2 s) and scored against itself (the positives); the
negatives are neighbouring drawn windows (bank-internal) and every ok clip of the
--generated run folders (the model's prompt-only runs, which never saw the bank) scored
against every drawn window. Writes --out (JSON): the threshold (halfway between the highest
negative and the lowest planted score above it, never below --min-threshold),
whether they separate, N, TPR and FPR at the threshold, and every score.

    python workflow_scripts/copy_calibrate.py --bank-mapping style_bank.jsonl \
        --segments-root data/processed/fsd50k/segments \
        --generated results/runs/audioldm2/prompt/seed0 --out copy_calibration.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.copy_audit import (  # noqa: E402
    CopyOptions,
    calibrate_on_bank,
    generated_clips,
)
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
    parser.add_argument(
        "--max-flatness", type=float, default=cli.default(CopyOptions, "max_flatness")
    )
    parser.add_argument(
        "--min-threshold",
        type=float,
        default=cli.default(CopyOptions, "threshold"),
        help="the lowest threshold the calibration sets (evaluation.copy_audit.threshold)",
    )
    parser.add_argument(
        "--generated", type=Path, nargs="*", default=[], help="prompt-only run folders"
    )
    parser.add_argument("--seed", type=int, default=0, help="which windows, which shifts")
    parser.add_argument("--out", type=Path, required=True, help="copy_calibration.json")
    return parser


def run(args: argparse.Namespace) -> int:
    options = CopyOptions(max_semitones=args.max_semitones, max_flatness=args.max_flatness)
    clips, names = generated_clips(args.generated)
    result = calibrate_on_bank(
        args.bank_mapping,
        args.segments_root,
        args.n_windows,
        args.seed,
        options,
        clips,
        floor=args.min_threshold,
    )
    result["generated_runs"] = [str(p) for p in args.generated]
    result["generated_clips"] = names
    write_json(args.out, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
