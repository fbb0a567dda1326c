#!/usr/bin/env python
"""Concatenate per-shard CLAP embeddings into one .npy and a mapping .jsonl.

Row i of ``--out-npy`` is described by line i of ``--out-mapping``:
``{"row": i, "shard": SHARD_DIR_NAME, "shard_row": ROW_IN_SHARD, **manifest columns}``.

Example:
    python workflow_scripts/gather_embeddings.py --shards s0 s1 --embeddings s0.npy s1.npy \
        --out-npy embeddings.npy --out-mapping mapping.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402

import numpy as np  # noqa: E402
from rcmg.workflow.atomic import atomic_path, write_jsonl  # noqa: E402

log = logging.getLogger("gather_embeddings")

MANIFEST_NAME = "manifest.parquet"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", nargs="+", required=True, type=Path, help="shard dirs")
    parser.add_argument(
        "--embeddings", nargs="+", required=True, type=Path, help="per-shard .npy, same order"
    )
    parser.add_argument("--out-npy", required=True, type=Path)
    parser.add_argument("--out-mapping", required=True, type=Path)
    return parser.parse_args(argv)


def json_value(value):
    """A manifest cell as plain JSON: numpy scalars/arrays unwrapped, NaN -> None."""
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def load_pairs(shards: list[Path], embeddings: list[Path]):
    """``[(shard, manifest DataFrame, memmapped embeddings)]`` with shapes checked."""
    import pandas as pd

    if len(shards) != len(embeddings):
        raise SystemExit(
            f"error: {len(shards)} --shards but {len(embeddings)} --embeddings; give one .npy per shard"
        )
    pairs, dims = [], set()
    for shard, emb_path in zip(shards, embeddings, strict=True):
        manifest_path = shard / MANIFEST_NAME
        if not manifest_path.is_file():
            raise SystemExit(f"error: {manifest_path} is missing; run the segment step first")
        if not emb_path.is_file():
            raise SystemExit(f"error: {emb_path} is missing; run clap_embed for {shard} first")
        manifest = pd.read_parquet(manifest_path)
        emb = np.load(emb_path, mmap_mode="r", allow_pickle=False)
        if emb.ndim != 2 or emb.shape[0] != len(manifest):
            raise SystemExit(
                f"error: {emb_path} has shape {emb.shape} but {manifest_path} has "
                f"{len(manifest)} rows; rerun clap_embed for {shard}"
            )
        dims.add(emb.shape[1])
        pairs.append((shard, manifest, emb))
    if len(dims) > 1:
        detail = ", ".join(f"{e}: {p[2].shape[1]}" for e, p in zip(embeddings, pairs, strict=True))
        raise SystemExit(
            f"error: embedding widths differ ({detail}); embed all shards with one model"
        )
    return pairs


def mapping_rows(pairs):
    """One JSON-ready dict per embedding row, in output order."""
    row = 0
    for shard, manifest, _ in pairs:
        records = manifest.to_dict(orient="records")
        for shard_row, record in enumerate(records):
            cells = {k: json_value(v) for k, v in record.items() if k != "row"}
            yield {"row": row, "shard": shard.name, "shard_row": shard_row, **cells}
            row += 1


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    pairs = load_pairs(args.shards, args.embeddings)
    total = sum(len(m) for _, m, _ in pairs)
    dim = pairs[0][2].shape[1]
    with atomic_path(args.out_npy, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, dim))
        start = 0
        for _, _, emb in pairs:
            out[start : start + len(emb)] = emb
            start += len(emb)
        out.flush()
        del out
    write_jsonl(args.out_mapping, mapping_rows(pairs))
    log.info("gathered %d rows x %d from %d shards -> %s", total, dim, len(pairs), args.out_npy)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
