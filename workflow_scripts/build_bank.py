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

from rcmg.bank.build import EmptyBankError, build_bank  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
        default=0.98,
        help="drop a row within this cosine of an earlier kept row (0 < x <= 1); default 0.98",
    )
    parser.add_argument("--no-dedupe", action="store_true", help="skip near-duplicate removal")
    parser.add_argument(
        "--dedupe-index",
        choices=("auto", "flat", "ivf"),
        default="auto",
        help="index for dedupe: exact flat, IVF float16 (large banks), or auto by size",
    )
    parser.add_argument(
        "--out-bank", required=True, help="output bank .npy (float32, L2-normalised)"
    )
    parser.add_argument("--out-mapping", required=True, help="output bank mapping .jsonl")
    parser.add_argument("--audit-dir", required=True, help="output audit directory")
    parser.add_argument("--threads", type=int, default=None, help="faiss threads")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for the dedupe IVF training sample"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    try:
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
    except (EmptyBankError, ValueError, FileNotFoundError) as err:
        logging.getLogger("build_bank").error("%s", err)
        return 1
    totals = audit["totals"]
    logging.getLogger("build_bank").info(
        "kept %d / %d rows -> %s", totals["kept"], totals["input_rows"], args.out_bank
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
