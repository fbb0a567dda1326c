#!/usr/bin/env python
"""Evaluate one generated run: CLAP similarities, levels, FAD/KAD, plots, report.html.

Writes DIR/metrics/per_item.csv, DIR/metrics/summary.json, DIR/visualizations/ and,
last, DIR/report.html (all atomically: a killed job leaves no finished-looking report).

    python workflow_scripts/evaluate.py --run-dir results/runs/M/C/seed0 \
        --clap-model laion/clap-htsat-unfused --reference-stats ref_stats.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.run_eval import EvalOptions, evaluate_run  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--run-dir", type=Path, required=True, help="generated run directory")
    parser.add_argument(
        "--clap-model", required=True, help="the judge (evaluation.clap): hub id or folder"
    )
    parser.add_argument("--reference-stats", type=Path, required=True, help="ref_stats.npz")
    parser.add_argument(
        "--classifier",
        default=cli.default(EvalOptions, "classifier"),
        help="AudioSet classifier (evaluation.classifier): FD/KAD in its space, KL to pairs",
    )
    for name, kind, text in (
        ("batch", int, "clips per CLAP batch"),
        ("device", str, "auto | cpu | cuda[:N]"),
        ("n_boot", int, "bootstrap resamples"),
        ("seed", int, "bootstrap seed"),
        ("mel_max_items", int, "clips in mel_grid.png"),
        ("silence_dbfs", float, "clips below this RMS level count as silent"),
        ("fad_blocks", int, "jackknife blocks per side for the FAD and FAD-inf intervals"),
        ("fad_inf_min_n", int, "smallest subsample size of the FAD-infinity fit"),
        ("fad_inf_steps", int, "subsample sizes of the FAD-infinity fit"),
        ("fad_inf_repeats", int, "subsamples averaged per size (without replacement)"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=kind, default=cli.default(EvalOptions, name), help=text)
    style = parser.add_argument_group(
        "style baseline", "runs without style.npy get the style retrieval would use"
    )
    style.add_argument(
        "--style-clap-model",
        default=None,
        help="the bank's CLAP when it is not --clap-model (the judge): "
        "clap_style_sim_bankspace and the retrieval-equivalent queries use it",
    )
    style.add_argument(
        "--judge-bank",
        type=Path,
        default=None,
        help="judge_bank_embed.py's npz (bank audio embedded by the judge): clap_style_sim "
        "is measured there",
    )
    style.add_argument(
        "--style-targets",
        type=Path,
        default=None,
        help="the model's style_targets.jsonl (style_targets.py): every condition is scored "
        "against the same bank items per prompt; the style the run carried is "
        "clap_style_sim_carried",
    )
    style.add_argument(
        "--classifier-bank",
        type=Path,
        default=None,
        help="judge_bank_embed.py --classifier's npz (bank audio embedded by --classifier): "
        "ast_style_sim, the non-CLAP view of style similarity, is measured there",
    )
    style.add_argument("--bank", type=Path, default=None, help="style_bank.npy")
    style.add_argument("--bank-mapping", type=Path, default=None, help="style_bank.jsonl")
    style.add_argument("--index", type=Path, default=None, help="FAISS index over the bank")
    style.add_argument("--style-topk", type=int, default=cli.default(EvalOptions, "style_topk"))
    style.add_argument("--style-temp", type=float, default=cli.default(EvalOptions, "style_temp"))
    audit = parser.add_argument_group(
        "copy audit", "content-level copy score against retrieved and nearest bank windows"
    )
    audit.add_argument(
        "--segments-root",
        type=Path,
        default=None,
        help="the bank dataset's segments/ folder (shard*/audio_16k.npy); none: no audit",
    )
    audit.add_argument(
        "--copy-threshold", type=float, default=cli.default(EvalOptions, "copy_threshold")
    )
    audit.add_argument(
        "--copy-calibration",
        type=Path,
        default=None,
        help="copy_calibrate.py JSON: its threshold (planted copies vs bank and generated negatives)",
    )
    audit.add_argument("--copy-nearest", type=int, default=cli.default(EvalOptions, "copy_nearest"))
    audit.add_argument(
        "--copy-max-semitones", type=int, default=cli.default(EvalOptions, "copy_max_semitones")
    )
    audit.add_argument(
        "--copy-max-flatness",
        type=float,
        default=cli.default(EvalOptions, "copy_max_flatness"),
        help="noise gate: 2-s patches whose octave-band flatness is above it do not vote",
    )
    parser.add_argument(
        "--coverage",
        type=Path,
        nargs="*",
        default=list(cli.default(EvalOptions, "coverage")),
        help="coverage.json of each dataset (index_sources), stated in the report",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    given = [name for name in ("bank", "bank_mapping", "index") if getattr(args, name)]
    if given and len(given) != 3:
        raise cli.InputError(
            "--bank, --bank-mapping and --index go together (the style baseline needs all "
            f"three); got only {', '.join('--' + g.replace('_', '-') for g in given)}"
        )
    summary = evaluate_run(
        args.run_dir, args.clap_model, args.reference_stats, cli.options(EvalOptions, args)
    )
    log.info(
        "evaluated %d clips (%d skipped) in %s",
        summary["n_evaluated"],
        summary["n_skipped"],
        args.run_dir,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
