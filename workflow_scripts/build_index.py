"""Build the FAISS index over the style bank and audit it (recall@k vs exact, queries/s).

Example:
    python workflow_scripts/build_index.py --bank bank/style_bank.npy --kind flat \
        --out bank/bank.index --audit bank/index_audit.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.indexing import IndexOptions, build_audited_index  # noqa: E402
from rcmg.bank.retrieval import INDEX_KINDS  # noqa: E402
from rcmg.workflow import cli  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(__doc__)

    def default(name):
        return cli.default(IndexOptions, name)

    parser.add_argument("--bank", required=True, help="style bank .npy from build_bank.py")
    parser.add_argument("--kind", choices=INDEX_KINDS, default=default("kind"), help="index kind")
    parser.add_argument(
        "--nlist", type=int, default=default("nlist"), help="IVF lists; 0 or omitted: ~4*sqrt(N)"
    )
    parser.add_argument(
        "--nprobe", type=int, default=default("nprobe"), help="IVF lists probed per query"
    )
    parser.add_argument(
        "--hnsw-m", type=int, default=default("hnsw_m"), help="HNSW neighbours per node"
    )
    parser.add_argument(
        "--ef-search", type=int, default=default("ef_search"), help="HNSW search breadth"
    )
    parser.add_argument(
        "--ef-construction",
        type=int,
        default=default("ef_construction"),
        help="HNSW build breadth",
    )
    parser.add_argument(
        "--recall-sample",
        type=int,
        default=default("recall_sample"),
        help="bank rows used as audit queries",
    )
    parser.add_argument("--k", type=int, default=default("k"), help="k for the recall@k audit")
    parser.add_argument("--threads", type=int, default=default("threads"), help="faiss threads")
    parser.add_argument(
        "--seed", type=int, default=default("seed"), help="seed for IVF training and query sample"
    )
    parser.add_argument("--out", required=True, help="output index file")
    parser.add_argument("--audit", required=True, help="output audit JSON")
    return parser


def run(args: argparse.Namespace) -> None:
    opts = cli.options(IndexOptions, args)
    write_json(args.audit, build_audited_index(args.bank, args.out, opts))


def main(argv: list[str] | None = None) -> int:
    return cli.main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
