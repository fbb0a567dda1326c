#!/usr/bin/env python
"""Compare evaluated runs: summary table, paired statistics vs a baseline, plots, index.html.

Table mode (all runs of the workflow):
    python workflow_scripts/compare.py --runs results/runs/*/*/seed* --out-dir results/report
Side-by-side mode (any two run folders, item by item):
    python workflow_scripts/compare.py --roots RUN_A RUN_B --out-dir results/compare_ab
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.comparison import (  # noqa: E402
    CompareOptions,
    compare_runs,
    compare_side_by_side,
)
from rcmg.evaluation.hypotheses import FORM  # noqa: E402
from rcmg.evaluation.sweep_curves import Selection  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("compare")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--runs", type=Path, nargs="+", help="evaluated run directories")
    mode.add_argument(
        "--roots", type=Path, nargs=2, metavar=("RUN_A", "RUN_B"), help="side by side"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="where index.html goes")
    parser.add_argument(
        "--baseline-condition",
        default=cli.default(CompareOptions, "baseline_condition"),
        help="condition paired against",
    )
    parser.add_argument(
        "--bench-root",
        type=Path,
        default=cli.default(CompareOptions, "bench_root"),
        help="benchmark root",
    )
    parser.add_argument(
        "--n-boot",
        type=int,
        default=cli.default(CompareOptions, "n_boot"),
        help="bootstrap resamples",
    )
    parser.add_argument(
        "--n-flips",
        type=int,
        default=cli.default(CompareOptions, "n_flips"),
        help="Monte Carlo sign vectors of the paired mean test (exact up to 16 prompts)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=cli.default(CompareOptions, "seed"),
        help="bootstrap and sign-flip seed",
    )
    parser.add_argument(
        "--reference-stats", type=Path, default=None, help="ref_stats.npz (pooled FAD/KAD)"
    )
    parser.add_argument(
        "--primary",
        nargs="*",
        default=list(cli.default(CompareOptions, "primary")),
        metavar=FORM,
        help="declared primary hypotheses (Holm-adjusted as one family); a last field "
        "ni=MARGIN makes one a non-inferiority test (H1: mean difference > -MARGIN)",
    )
    parser.add_argument(
        "--power-target",
        type=float,
        default=cli.default(CompareOptions, "power_target"),
        help="power each primary's minimum detectable effect is stated at (power.csv)",
    )
    parser.add_argument(
        "--power-effects",
        nargs="*",
        default=list(cli.default(CompareOptions, "power_effects")),
        metavar="METRIC=EFFECT",
        help="effect sizes whose prompts needed power.csv states (evaluation.power)",
    )
    for name, text in (
        ("min_n", "clips per model x condition below which tables warn"),
        ("fad_blocks", "jackknife blocks per side for the FAD and FAD-inf intervals"),
        ("fad_inf_min_n", "smallest FAD-infinity subsample"),
        ("fad_inf_steps", "FAD-infinity subsample sizes"),
        ("fad_inf_repeats", "subsamples averaged per size"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=cli.default(CompareOptions, name), help=text)
    parser.add_argument(
        "--coverage",
        type=Path,
        nargs="*",
        default=list(cli.default(CompareOptions, "coverage")),
        help="coverage.json of each dataset (index_sources), stated on the page",
    )
    parser.add_argument(
        "--listening",
        type=Path,
        default=None,
        help="preferences.json of the blind listening test (listening_ingest.py)",
    )
    parser.add_argument(
        "--adapters",
        type=Path,
        nargs="*",
        default=list(cli.default(CompareOptions, "adapters")),
        metavar="ADAPTER_CONFIG",
        help="adapter_config.json of each trained style adapter (train_adapter): held-out table",
    )
    parser.add_argument(
        "--sweep-points",
        nargs="*",
        default=[],
        metavar="SWEEP:MODEL:CONDITION:BASELINE:KNOB=V,...",
        help="the planned sweep points (rules/common.smk writes them from the config)",
    )
    select = parser.add_argument_group("the sweeps' best table (evaluation.sweep_selection)")
    select.add_argument(
        "--select-objective",
        default=cli.default(Selection, "objective"),
        help="metric maximised on the tuning prompts",
    )
    select.add_argument(
        "--select-constraint",
        default=cli.default(Selection, "constraint"),
        help="metric that must stay within --select-margin of the matched baseline",
    )
    select.add_argument(
        "--select-margin", type=float, default=cli.default(Selection, "margin"), help="margin"
    )
    select.add_argument(
        "--tuning-fraction",
        type=float,
        default=cli.default(Selection, "tuning_fraction"),
        help="share of the prompts the choice is made on (the rest: held-out test)",
    )
    select.add_argument(
        "--split-seed", type=int, default=cli.default(Selection, "seed"), help="prompt split seed"
    )
    return parser


def options_from_args(args: argparse.Namespace) -> CompareOptions:
    selection = cli.options(
        Selection,
        args,
        objective=args.select_objective,
        constraint=args.select_constraint,
        margin=args.select_margin,
        tuning_fraction=args.tuning_fraction,
        seed=args.split_seed,
    )
    return cli.options(CompareOptions, args, selection=selection)


def run(args: argparse.Namespace) -> int:
    options = options_from_args(args)
    if args.roots:
        result = compare_side_by_side(*args.roots, args.out_dir, options)
    else:
        result = compare_runs(args.runs, args.out_dir, options)
    log.info("comparison written to %s: %s", args.out_dir, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
