"""Benchmark: batched search throughput + recall@k (flat / IVF / HNSW) and build_bank peak RSS.

    .venv/bin/python tests/benchmarks/bench_retrieval.py --json results/bench_retrieval.json

Synthetic clustered unit vectors stand in for CLAP embeddings. The build_bank part
writes a memmap-able .npy + mapping.jsonl and runs workflow_scripts/build_bank.py in a
subprocess, reporting that process' own peak RSS (VmHWM from /proc/self/status).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "workflow_scripts"))

from rcmg.bank.retrieval import build_index, exact_top_k, set_threads  # noqa: E402
from rcmg.workflow.atomic import write_json  # noqa: E402

log = logging.getLogger("bench_retrieval")

LATENT_RANK = 32
NOISE_SCALE = 0.02
# Runs build_bank.py as __main__ and reports the process' own peak RSS (VmHWM resets at
# exec, unlike ru_maxrss, which inherits the forking parent's high-water mark).
PEAK_RSS_WRAPPER = """
import runpy, sys
script, report = sys.argv[1], sys.argv[2]
sys.argv = [script] + sys.argv[3:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    status = open("/proc/self/status").read().split("\\n")
    peak = [line for line in status if line.startswith("VmHWM")][0].split()[1]
    open(report, "w").write(peak)
"""


def clustered_unit_vectors(
    n: int, dim: int, clusters: int, seed: int, block: int = 50000
) -> np.ndarray:
    """Embedding-like unit vectors: cluster centres + a shared low-rank variation + small noise.

    Isotropic Gaussian clusters in 512-d have no real neighbour structure (every point is
    about equally far from its cluster mates) and make every ANN index look broken.
    """
    structure = np.random.default_rng(12345)
    centres = 4.0 * structure.normal(size=(clusters, dim)).astype(np.float32) / np.sqrt(dim)
    basis = structure.normal(size=(LATENT_RANK, dim)).astype(np.float32) / np.sqrt(dim)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, block):
        count = min(block, n - start)
        latent = rng.normal(size=(count, LATENT_RANK)).astype(np.float32)
        noise = rng.normal(scale=NOISE_SCALE, size=(count, dim)).astype(np.float32)
        points = centres[rng.integers(0, clusters, count)] + latent @ basis + noise
        out[start : start + count] = points / np.linalg.norm(points, axis=1, keepdims=True)
    return out


def bench_search(args) -> dict:
    bank = clustered_unit_vectors(args.n_bank, args.dim, args.clusters, seed=0)
    queries = clustered_unit_vectors(args.n_queries, args.dim, args.clusters, seed=1)
    _, exact_rows = exact_top_k(bank, queries, args.k)
    results = {}
    for kind in ("flat", "ivf", "hnsw"):
        started = time.perf_counter()
        index = build_index(
            bank, kind, nprobe=args.nprobe, ef_search=args.ef_search, hnsw_m=args.hnsw_m
        )
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        _, rows = index.search(queries, args.k)
        search_s = time.perf_counter() - started
        recall = np.mean(
            [len(set(a) & set(b)) / args.k for a, b in zip(exact_rows, rows, strict=True)]
        )
        results[kind] = {
            "build_s": round(build_s, 3),
            "queries_per_s": round(len(queries) / search_s, 1),
            f"recall_at_{args.k}": round(float(recall), 4),
        }
        log.info("%s: %s", kind, results[kind])
    return results


def write_bank_inputs(folder: Path, n: int, dim: int, clusters: int) -> tuple[Path, Path]:
    emb_path, mapping_path = folder / "embeddings.npy", folder / "mapping.jsonl"
    embeddings = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, dim))
    block = 50000
    for start in range(0, n, block):
        count = min(block, n - start)
        embeddings[start : start + count] = clustered_unit_vectors(count, dim, clusters, seed=start)
    embeddings.flush()
    del embeddings
    tags = [["Piano", "Music"], ["Speech"], ["Acoustic_guitar"], ["Drum"], ["Music"]]
    with open(mapping_path, "w", encoding="utf-8") as fh:
        for i in range(n):
            row = {
                "row": i, "segment_id": f"seg{i}", "source_id": f"src{i // 3}", "dataset": "fsd50k",
                "path": f"a/{i // 3}.wav", "offset_s": 10.0 * (i % 3), "duration_s": 10.0,
                "split": "dev", "tags": tags[i % 5], "rms_dbfs": -20.0 - (i % 40),
                "source_duration_s": 30.0,
            }  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    return emb_path, mapping_path


def bench_build_bank(args) -> dict:
    with tempfile.TemporaryDirectory(dir=args.tmp_dir) as tmp:
        folder = Path(tmp)
        emb, mapping = write_bank_inputs(folder, args.bank_rows, args.dim, args.clusters)
        report = folder / "peak_kib.txt"
        cmd = [
            sys.executable, "-c", PEAK_RSS_WRAPPER,
            str(REPO / "workflow_scripts" / "build_bank.py"), str(report),
            "--embeddings", str(emb), "--mapping", str(mapping),
            "--filter", str(REPO / "config" / "fsd50k_filter.yaml"),
            "--dedupe-cosine", "0.98", "--threads", str(args.threads),
            "--out-bank", str(folder / "bank.npy"), "--out-mapping", str(folder / "bank.jsonl"),
            "--audit-dir", str(folder / "audit"),
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        peak_kib = int(report.read_text())
        audit = json.loads((folder / "audit" / "audit.json").read_text())
        result = {
            "rows": args.bank_rows,
            "input_mib": round(emb.stat().st_size / 2**20, 1),
            "peak_rss_mib": round(peak_kib / 1024, 1),
            "seconds": round(seconds, 2),
            "kept": audit["totals"]["kept"],
            "dedupe_method": audit["parameters"]["dedupe_method"],
        }
    log.info("build_bank: %s", result)
    return result


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-bank", type=int, default=100_000)
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument(
        "--ef-construction", type=int, default=40, help="HNSW build breadth (workflow default 80)"
    )
    parser.add_argument(
        "--bank-rows", type=int, default=200_000, help="rows for the build_bank RSS run"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tmp-dir", default=None, help="where the build_bank inputs are written")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-bank", action="store_true")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    results = {"parameters": vars(args)}
    if not args.skip_bank:
        results["build_bank"] = bench_build_bank(args)
    if not args.skip_search:
        results["search"] = bench_search(args)
    print(json.dumps(results, indent=2))
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
