"""Build the FAISS index over the style bank and audit it (recall@k vs exact, queries/s).

Example:
    python workflow_scripts/build_index.py --bank bank/style_bank.npy --kind flat \
        --out bank/bank.index --audit bank/index_audit.json
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rcmg.bank.retrieval import INDEX_KINDS  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402

log = logging.getLogger("build_index")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bank", required=True, help="style bank .npy from build_bank.py")
    parser.add_argument(
        "--kind", choices=INDEX_KINDS, default="flat", help="index kind (default flat)"
    )
    parser.add_argument(
        "--nlist", type=int, default=None, help="IVF lists; 0 or omitted: about 4*sqrt(N)"
    )
    parser.add_argument("--nprobe", type=int, default=16, help="IVF lists probed per query")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node")
    parser.add_argument("--ef-search", type=int, default=64, help="HNSW search breadth")
    parser.add_argument("--ef-construction", type=int, default=80, help="HNSW build breadth")
    parser.add_argument(
        "--recall-sample", type=int, default=1000, help="bank rows used as audit queries"
    )
    parser.add_argument("--k", type=int, default=10, help="k for the recall@k audit")
    parser.add_argument("--threads", type=int, default=None, help="faiss threads")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for IVF training and query sample"
    )
    parser.add_argument("--out", required=True, help="output index file")
    parser.add_argument("--audit", required=True, help="output audit JSON")
    return parser.parse_args(argv)


def audit_queries(bank, sample: int, seed: int):
    import numpy as np

    n = min(sample, len(bank))
    rows = np.sort(np.random.default_rng(seed).choice(len(bank), n, replace=False))
    return np.asarray(bank[rows], dtype=np.float32)


def main(argv=None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    import numpy as np
    from rcmg.bank.retrieval import (
        build_index,
        normalize_rows,
        recall_at_k,
        save_index,
        set_threads,
    )

    bank_path = Path(args.bank)
    if not bank_path.is_file():
        log.error("bank %s does not exist; run build_bank.py first", bank_path)
        return 1
    set_threads(args.threads)
    bank = np.load(bank_path, mmap_mode="r")
    if bank.ndim != 2 or len(bank) == 0:
        log.error("bank %s must be a non-empty [N, d] array, got shape %s", bank_path, bank.shape)
        return 1
    try:
        started = time.perf_counter()
        index = build_index(
            bank,
            kind=args.kind,
            nlist=args.nlist,
            nprobe=args.nprobe,
            hnsw_m=args.hnsw_m,
            ef_search=max(args.ef_search, args.k),
            ef_construction=args.ef_construction,
            seed=args.seed,
        )
        build_seconds = time.perf_counter() - started
    except ValueError as err:
        log.error("cannot index %s: %s", bank_path, err)
        return 1
    queries = normalize_rows(audit_queries(bank, args.recall_sample, args.seed), "audit queries")
    k = min(args.k, len(bank))
    started = time.perf_counter()
    index.search(queries, k)
    search_seconds = time.perf_counter() - started
    recall = recall_at_k(index, bank, queries, k)
    save_index(index, args.out)
    audit = {
        "bank": str(bank_path),
        "index": str(args.out),
        "kind": args.kind,
        "ntotal": int(index.ntotal),
        "dim": int(index.d),
        "parameters": {
            "nlist": args.nlist,
            "nprobe": args.nprobe,
            "hnsw_m": args.hnsw_m,
            "ef_search": args.ef_search,
            "ef_construction": args.ef_construction,
            "threads": args.threads,
            "seed": args.seed,
        },
        "build_seconds": round(build_seconds, 4),
        "recall_k": k,
        "recall_sample": len(queries),
        f"recall_at_{k}": recall,
        "recall_at_k": recall,
        "queries_per_second": round(len(queries) / max(search_seconds, 1e-9), 1),
    }
    write_json(args.audit, audit)
    log.info(
        "%s index: %d vectors, recall@%d=%.4f -> %s", args.kind, index.ntotal, k, recall, args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
