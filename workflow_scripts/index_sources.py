#!/usr/bin/env python
"""Index one dataset in its published layout into a source table (parquet).

    python workflow_scripts/index_sources.py --kind maestro --root data/raw/maestro-v3.0.0 \
        --out data/processed/maestro/sources.parquet \
        --audit-out data/processed/maestro/sources_audit.csv \
        --coverage-out data/processed/maestro/coverage.json

Accepted layouts: MAESTRO v1/v2/v3 (CSV or JSON metadata), URMP (the piece folders or
the download folder holding Dataset/), FSD50K (ground truth + audio, clips_info when
present). Files the metadata lists but the disk lacks, unreadable headers, contradicted
durations and stems that disagree with their folder are rows of the audit CSV, summarised
in one log line per reason; the coverage JSON says how many listed files are present.
A root that yields no usable source fails (exit 2) with one line naming what was
expected there and what was found.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.data.coverage import coverage_sentence  # noqa: E402
from rcmg.data.sources import (  # noqa: E402
    AUDIT_COLUMNS,
    KINDS,
    IndexOptions,
    audit_summary,
    index_dataset,
    sources_table,
)
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import atomic_path, write_json  # noqa: E402

log = logging.getLogger("index_sources")


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)
    parser.add_argument("--kind", required=True, choices=KINDS, help="dataset layout")
    parser.add_argument("--root", required=True, type=Path, help="dataset folder (read only)")
    parser.add_argument("--out", required=True, type=Path, help="output source table (.parquet)")
    parser.add_argument(
        "--audit-out",
        type=Path,
        default=None,
        help="CSV of rows not indexed or flagged (missing files, unreadable headers, ...)",
    )
    parser.add_argument(
        "--coverage-out",
        type=Path,
        default=None,
        help="JSON: files listed / present / missing / unreadable, layout and version read",
    )
    parser.add_argument(
        "--max-duration-mismatch",
        type=float,
        default=cli.default(IndexOptions, "max_duration_mismatch_s"),
        help="seconds the metadata duration may differ from the file header before an audit row",
    )
    return parser


def write_audit(path: Path, audits: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=AUDIT_COLUMNS)
        writer.writeheader()
        writer.writerows(audits)


def run(args: argparse.Namespace) -> int:
    options = cli.options(IndexOptions, args, max_duration_mismatch_s=args.max_duration_mismatch)
    result = index_dataset(args.kind, args.root, options)
    import pyarrow.parquet as pq

    with atomic_path(args.out, suffix=".parquet") as tmp:
        pq.write_table(sources_table(result.rows), tmp)
    for line in audit_summary(result):
        log.warning("%s", line)
    if args.audit_out is not None:
        write_audit(args.audit_out, result.audits)
    if args.coverage_out is not None:
        write_json(args.coverage_out, result.coverage)
    log.info("coverage: %s", coverage_sentence(result.coverage))
    log.info("wrote %s (%d sources, %d audit rows)", args.out, len(result.rows), len(result.audits))
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
