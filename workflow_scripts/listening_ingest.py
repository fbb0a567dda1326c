#!/usr/bin/env python
"""Unblind the listening test's answers: every CSV in --answers-dir, screened on catch trials.

Writes --out (preferences.json) and preferences.csv + raters.csv beside it: per model x
condition pair x question the rate the condition is preferred over its pair (ties 1/2)
with a 95% two-way cluster bootstrap interval (raters x items); excluded raters named.

    python workflow_scripts/listening_ingest.py --answers-dir results/listening/answers \
        --key results/listening/key.json --out results/listening/preferences.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.listening import ScreenRule, ingest  # noqa: E402
from rcmg.workflow import cli  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--answers-dir", type=Path, required=True, help="folder of rater CSVs")
    parser.add_argument("--key", type=Path, required=True, help="key.json of the test")
    parser.add_argument("--out", type=Path, required=True, help="preferences.json")
    for name, kind, text in (
        ("max_identical_failures", int, "identical-pair failures a kept rater may have"),
        ("max_degraded_failures", int, "degraded-clip failures a kept rater may have"),
        ("min_answered_fraction", float, "share of trials a kept rater answered"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=cli.default(ScreenRule, name), help=text)
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    return parser


def run(args: argparse.Namespace) -> int:
    rule = ScreenRule(
        max_identical_failures=args.max_identical_failures,
        max_degraded_failures=args.max_degraded_failures,
        min_answered_fraction=args.min_answered_fraction,
    )
    ingest(args.answers_dir, args.key, args.out, rule, args.n_boot, args.seed)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
