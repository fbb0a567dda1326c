#!/usr/bin/env python
"""Embed every style-bank row's audio with the judge (evaluation.clap), once per workflow.

Reads the bank mapping (one row per bank vector, with shard / shard_row) and the bank
dataset's segments (SHARD/audio_48k.npy, else audio_16k.npy resampled); writes an npz
with the L2-normalised judge embeddings [n_bank, d] that every evaluate job uses for
style similarity in the judge's space (rcmg.evaluation.judge_bank).

    python workflow_scripts/judge_bank_embed.py --bank-mapping data/processed/bank/style_bank.jsonl \
        --segments-root data/processed/fsd50k/segments --clap-model laion/larger_clap_music \
        --out data/processed/bank/judge_bank.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.evaluation.judge_bank import JudgeBankOptions, embed_bank  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("judge_bank_embed")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--bank-mapping", type=Path, required=True, help="style_bank.jsonl")
    parser.add_argument(
        "--segments-root", type=Path, required=True, help="the bank dataset's segments/ folder"
    )
    parser.add_argument("--clap-model", required=True, help="the judge: hub id or local folder")
    parser.add_argument(
        "--classifier",
        action="store_true",
        help="--clap-model names the AudioSet classifier (evaluation.classifier): its "
        "embeddings of the bank, for ast_style_sim (the non-CLAP view)",
    )
    parser.add_argument(
        "--batch", type=int, default=cli.default(JudgeBankOptions, "batch"), help="per batch"
    )
    parser.add_argument(
        "--device", default=cli.default(JudgeBankOptions, "device"), help="auto | cpu | cuda[:N]"
    )
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    return parser


def run(args: argparse.Namespace) -> int:
    options = cli.options(JudgeBankOptions, args)
    n = embed_bank(
        args.bank_mapping,
        args.segments_root,
        args.clap_model,
        args.out,
        options,
        classifier=args.classifier,
    )
    log.info("judge embeddings of %d bank rows -> %s", n, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
