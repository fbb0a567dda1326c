"""A style space's bank: exactly the bank's items, embedded with that space's CLAP.

The bank is filtered and deduplicated once, in the bank CLAP's space (rcmg.bank.build);
:func:`embed_bank_items` reads its mapping (each row's ``shard`` and ``shard_row``, the
segment id checked against the shard's manifest) and embeds those 48-kHz segments with
another CLAP, so row i is the same segment in every space (the space_embed step).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np

from rcmg.bank.spaces import segment_ids_digest
from rcmg.models.shard_embedding import (
    MANIFEST_NAME,
    EmbedOptions,
    embedder_for,
    fingerprint_of,
    model_label,
    open_shard,
    partial_dir_for,
    partial_meta,
)
from rcmg.workflow.atomic import atomic_path
from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)


def _bank_rows_by_shard(mapping: list[dict], mapping_path: Path) -> dict[str, list[int]]:
    by_shard: dict[str, list[int]] = {}
    for i, row in enumerate(mapping):
        if "shard" not in row or "shard_row" not in row:
            raise InputError(
                f"{mapping_path}: row {i} has no shard/shard_row; rebuild the bank with "
                "build_bank from gather_embeddings output"
            )
        by_shard.setdefault(str(row["shard"]), []).append(i)
    return by_shard


def _shard_audio_rows(shard_dir: Path, mapping: list[dict], bank_rows: list[int]) -> tuple:
    """The memmapped shard audio and the audio row of each bank row, ids checked."""
    import pandas as pd

    audio, order = open_shard(shard_dir)
    manifest = pd.read_parquet(shard_dir / MANIFEST_NAME)
    ids = manifest["segment_id"].astype(str).to_numpy() if "segment_id" in manifest else None
    shard_rows = np.asarray([int(mapping[i]["shard_row"]) for i in bank_rows], np.int64)
    if len(shard_rows) and shard_rows.max() >= len(order):
        raise InputError(
            f"{shard_dir} has {len(order)} rows but the bank names row {shard_rows.max()}"
        )
    if ids is not None:
        wrong = [
            i
            for i, r in zip(bank_rows, shard_rows, strict=True)
            if ids[r] != str(mapping[i].get("segment_id"))
        ]
        if wrong:
            raise InputError(
                f"{shard_dir}: bank row {wrong[0]} is segment {mapping[wrong[0]].get('segment_id')} "
                f"but the shard's row {int(mapping[wrong[0]]['shard_row'])} is another segment; "
                "the shards changed after the bank was built: rebuild the bank"
            )
    return audio, order[shard_rows]


def embed_bank_items(
    bank_mapping: Path, segments_root: Path, out: Path, opts: EmbedOptions
) -> dict:
    """Embed exactly the bank's items (``bank_mapping`` rows, in order) in another space.

    The bank was filtered and deduplicated once, in the bank CLAP's space; every other
    space embeds the same segment ids, so row i of ``out`` is mapping row i in every
    space. Returns the space record (fingerprint of the weights, row digest, timings).
    """
    from rcmg.models.clap import ChunkStore, embed_rows_resumable
    from rcmg.workflow.atomic import read_jsonl

    started = time.perf_counter()
    mapping = read_jsonl(bank_mapping)
    by_shard = _bank_rows_by_shard(mapping, bank_mapping)
    embedder = embedder_for(opts)
    load_seconds = time.perf_counter() - started
    rows = np.zeros((len(mapping), embedder.dim), dtype=np.float32)
    counts = {"batches": 0, "batches_reused": 0, "batches_computed": 0}
    partial = partial_dir_for(out)
    for shard, bank_rows in sorted(by_shard.items()):
        audio, audio_rows = _shard_audio_rows(Path(segments_root) / shard, mapping, bank_rows)
        meta = partial_meta(model_label(opts), embedder.dtype_name, audio.shape, audio_rows)
        store = ChunkStore(partial / shard, meta, embedder.dim)
        emb, shard_counts = embed_rows_resumable(embedder, audio, audio_rows, store, opts.batch)
        rows[bank_rows] = emb
        counts = {k: counts[k] + shard_counts[k] for k in counts}
    with atomic_path(out, suffix=".npy") as tmp:
        np.save(tmp, rows)
    shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("embedded %d bank items in %.1f s -> %s", len(mapping), seconds, out)
    return {
        "n": len(mapping),
        "dim": embedder.dim,
        "segment_ids_sha256": segment_ids_digest(r.get("segment_id") for r in mapping),
        "bank_mapping": str(bank_mapping),
        "fingerprint": fingerprint_of(opts),
        "seconds": seconds,
        "load_seconds": load_seconds,
        "model_forward_seconds": embedder.model_forward_seconds,
        "device": embedder.device,
        "dtype": embedder.dtype_name,
        "dtype_requested": opts.dtype,
        "batch": opts.batch,
        "degenerate_rows": embedder.degenerate_rows,
        **counts,
    }
