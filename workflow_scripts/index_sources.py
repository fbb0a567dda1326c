#!/usr/bin/env python
"""Index one dataset in its published layout into a source table (parquet).

    python workflow_scripts/index_sources.py --kind maestro --root data/raw/maestro \
        --out data/processed/maestro/sources.parquet --audit-out data/processed/maestro/missing.csv
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.data.sources import AUDIT_COLUMNS, KINDS, MetadataError, index_sources, sources_table  # noqa: E402
from rcmg.workflow.atomic import atomic_path  # noqa: E402

log = logging.getLogger("index_sources")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", required=True, choices=KINDS, help="dataset layout")
    parser.add_argument("--root", required=True, type=Path, help="dataset folder (read only)")
    parser.add_argument("--out", required=True, type=Path, help="output source table (.parquet)")
    parser.add_argument(
        "--audit-out",
        type=Path,
        default=None,
        help="CSV of rows not indexed or flagged (missing files, unreadable headers)",
    )
    return parser.parse_args(argv)


def write_audit(path: Path, audits: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=AUDIT_COLUMNS)
        writer.writeheader()
        writer.writerows(audits)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        rows, audits = index_sources(args.kind, args.root)
    except MetadataError as exc:
        log.error("%s", exc)
        return 2
    import pyarrow.parquet as pq

    with atomic_path(args.out, suffix=".parquet") as tmp:
        pq.write_table(sources_table(rows), tmp)
    for audit in audits:
        log.warning(
            "%s: %s (%s) -> %s", audit["path"], audit["reason"], audit["detail"], audit["action"]
        )
    if args.audit_out is not None:
        write_audit(args.audit_out, audits)
    log.info("wrote %s (%d sources, %d audit rows)", args.out, len(rows), len(audits))
    return 0


if __name__ == "__main__":
    sys.exit(main())
