"""Build the style bank: filter + dedupe + L2-normalise CLAP embeddings, with an audit.

Example:
    python workflow_scripts/build_bank.py --embeddings data/processed/fsd50k/embeddings.npy \
        --mapping data/processed/fsd50k/mapping.jsonl --filter config/fsd50k_filter.yaml \
        --dedupe-cosine 0.98 --out-bank bank/style_bank.npy --out-mapping bank/style_bank.jsonl \
        --audit-dir bank/audit
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.build import build_bank  # noqa: E402
from rcmg.workflow import cli  # noqa: E402

log = logging.getLogger("build_bank")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--embeddings", required=True, help="float [N, d] .npy of CLAP audio embeddings"
    )
    parser.add_argument(
        "--mapping", required=True, help="mapping .jsonl, one row per embedding row"
    )
    parser.add_argument(
        "--filter", required=True, help="filter YAML (see config/fsd50k_filter.yaml)"
    )
    parser.add_argument(
        "--dedupe-cosine",
        type=float,
        default=cli.default(build_bank, "dedupe_cosine"),
        help="drop a row within this cosine of an earlier kept row (0 < x <= 1)",
    )
    parser.add_argument("--no-dedupe", action="store_true", help="skip near-duplicate removal")
    parser.add_argument(
        "--dedupe-index",
        choices=("auto", "flat", "ivf"),
        default=cli.default(build_bank, "dedupe_index"),
        help="index for dedupe: exact flat, IVF float16 (large banks), or auto by size",
    )
    parser.add_argument(
        "--out-bank", required=True, help="output bank .npy (float32, L2-normalised)"
    )
    parser.add_argument("--out-mapping", required=True, help="output bank mapping .jsonl")
    parser.add_argument("--audit-dir", required=True, help="output audit directory")
    parser.add_argument(
        "--threads", type=int, default=cli.default(build_bank, "threads"), help="faiss threads"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=cli.default(build_bank, "seed"),
        help="seed for the dedupe IVF training sample",
    )
    return parser


def run(args: argparse.Namespace) -> None:
    audit = build_bank(
        embeddings=args.embeddings,
        mapping=args.mapping,
        filter_path=args.filter,
        out_bank=args.out_bank,
        out_mapping=args.out_mapping,
        audit_dir=args.audit_dir,
        dedupe_cosine=None if args.no_dedupe else args.dedupe_cosine,
        dedupe_index=args.dedupe_index,
        threads=args.threads,
        seed=args.seed,
    )
    totals = audit["totals"]
    log.info("kept %d / %d rows -> %s", totals["kept"], totals["input_rows"], args.out_bank)


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
