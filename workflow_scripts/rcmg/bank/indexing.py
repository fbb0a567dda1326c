"""Build the FAISS index over the style bank and audit it (the build_index step).

The audit measures what the index costs and misses: build time, queries per second and
recall@k of the index against exact search, on a seeded sample of bank rows as queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexOptions:
    """Every parameter of the build_index step (the CLI's flags)."""

    kind: str = "flat"
    nlist: int | None = None  # IVF lists; 0 or None: about 4*sqrt(N)
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 64
    ef_construction: int = 80
    recall_sample: int = 1000
    k: int = 10
    threads: int | None = None
    seed: int = 0


def audit_queries(bank, sample: int, seed: int):
    """A seeded sample of bank rows (sorted), as float32 queries."""
    import numpy as np

    n = min(sample, len(bank))
    rows = np.sort(np.random.default_rng(seed).choice(len(bank), n, replace=False))
    return np.asarray(bank[rows], dtype=np.float32)


def build_audited_index(bank_path: str | Path, out: str | Path, opts: IndexOptions) -> dict:
    """Build the index of ``bank_path`` into ``out``; return the audit."""
    import numpy as np

    from rcmg.bank.retrieval import (
        build_index,
        normalize_rows,
        recall_at_k,
        save_index,
        set_threads,
    )

    bank_path = Path(bank_path)
    if not bank_path.is_file():
        raise InputError(f"bank {bank_path} does not exist; run build_bank.py first")
    set_threads(opts.threads)
    bank = np.load(bank_path, mmap_mode="r")
    if bank.ndim != 2 or len(bank) == 0:
        raise InputError(
            f"bank {bank_path} must be a non-empty [N, d] array, got shape {bank.shape}; "
            "rebuild it with build_bank.py"
        )
    started = time.perf_counter()
    try:
        index = build_index(
            bank,
            kind=opts.kind,
            nlist=opts.nlist,
            nprobe=opts.nprobe,
            hnsw_m=opts.hnsw_m,
            ef_search=max(opts.ef_search, opts.k),
            ef_construction=opts.ef_construction,
            seed=opts.seed,
        )
    except ValueError as err:
        raise InputError(f"cannot index {bank_path}: {err}") from err
    build_seconds = time.perf_counter() - started
    queries = normalize_rows(audit_queries(bank, opts.recall_sample, opts.seed), "audit queries")
    k = min(opts.k, len(bank))
    started = time.perf_counter()
    index.search(queries, k)
    search_seconds = time.perf_counter() - started
    recall = recall_at_k(index, bank, queries, k)
    save_index(index, out)
    parameters = {
        key: value
        for key, value in asdict(opts).items()
        if key not in ("kind", "k", "recall_sample")
    }
    audit = {
        "bank": str(bank_path),
        "index": str(out),
        "kind": opts.kind,
        "ntotal": int(index.ntotal),
        "dim": int(index.d),
        "parameters": parameters,
        "build_seconds": round(build_seconds, 4),
        "recall_k": k,
        "recall_sample": len(queries),
        f"recall_at_{k}": recall,
        "recall_at_k": recall,
        "queries_per_second": round(len(queries) / max(search_seconds, 1e-9), 1),
    }
    log.info("%s index: %d vectors, recall@%d=%.4f -> %s", opts.kind, index.ntotal, k, recall, out)
    return audit
