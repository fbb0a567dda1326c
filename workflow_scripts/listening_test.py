#!/usr/bin/env python
"""Build the blind A/B listening test (static page + opaque, loudness-normalised stimuli).

Writes OUT/index.html and OUT/stimuli/*.wav (no condition in any name, path or page
text) and the unblinding key at --key, which must lie outside OUT.

    python workflow_scripts/listening_test.py --runs results/runs/M/*/seed0 \
        --out-dir results/listening/test --key results/listening/key.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.listening import ListeningOptions, build_test  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run directories")
    parser.add_argument("--out-dir", type=Path, required=True, help="page folder")
    parser.add_argument("--key", type=Path, required=True, help="key.json (outside --out-dir)")
    parser.add_argument(
        "--conditions",
        nargs="*",
        default=list(cli.default(ListeningOptions, "conditions")),
        help="conditions to test (default: all)",
    )
    parser.add_argument("--baseline", default=cli.default(ListeningOptions, "baseline"))
    parser.add_argument("--all-pairs", action="store_true", help="every pair, not vs baseline")
    for name, kind, text in (
        ("max_items", int, "prompts per model x pair"),
        ("identical_catch", int, "catch trials: the same clip twice"),
        ("degraded_catch", int, "catch trials: a clip vs a degraded copy"),
        ("target_lufs", float, "loudness of every stimulus (BS.1770)"),
        ("max_peak_dbfs", float, "peak ceiling after normalisation"),
        ("seed", int, "randomisation seed (sides, names, sampling)"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=cli.default(ListeningOptions, name), help=text)
    parser.add_argument("--no-ratings", action="store_true", help="no optional 1-5 ratings")
    parser.add_argument("--bank-mapping", type=Path, default=None, help="style_bank.jsonl")
    parser.add_argument(
        "--segments-root",
        type=Path,
        default=None,
        help="the bank dataset's segments/ folder: retrieved windows become style references",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    options = cli.options(ListeningOptions, args, ratings=not args.no_ratings)
    build_test(args.runs, args.out_dir, args.key, options, args.bank_mapping, args.segments_root)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
