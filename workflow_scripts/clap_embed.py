#!/usr/bin/env python
"""CLAP audio embeddings for one segment shard.

Reads ``SHARD/audio_48k.npy`` (N x T, float32/float16, memory-mapped) and
``SHARD/manifest.parquet``; writes ``--out`` (float32 N x dim, row i = manifest row i)
and ``--stats`` (JSON timings). Finished batches are kept in ``OUT.partial/`` so a
restarted job continues where it stopped; the final ``.npy`` is written atomically.

Example:
    python workflow_scripts/clap_embed.py --segments-dir data/processed/segments/maestro/shard000 \
        --model laion/clap-htsat-unfused --out emb.npy --stats emb.stats.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from rcmg.workflow.atomic import atomic_path, write_json  # noqa: E402

log = logging.getLogger("clap_embed")

AUDIO_NAME = "audio_48k.npy"
MANIFEST_NAME = "manifest.parquet"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments-dir", required=True, type=Path, help="shard directory")
    parser.add_argument("--model", required=True, help="CLAP hub id or local folder")
    parser.add_argument("--batch", type=int, default=32, help="clips per forward pass")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    parser.add_argument("--out", required=True, type=Path, help="embeddings .npy to write")
    parser.add_argument("--stats", required=True, type=Path, help="timings .json to write")
    return parser.parse_args(argv)


def open_shard(segments_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The memory-mapped audio and, per output row, the audio row it embeds."""
    import pandas as pd

    audio_path = segments_dir / AUDIO_NAME
    manifest_path = segments_dir / MANIFEST_NAME
    for path in (audio_path, manifest_path):
        if not path.is_file():
            raise SystemExit(f"error: {path} is missing; run the segment step for this shard first")
    audio = np.load(audio_path, mmap_mode="r", allow_pickle=False)
    if audio.ndim != 2:
        raise SystemExit(f"error: {audio_path} has shape {audio.shape}; expected N x samples")
    manifest = pd.read_parquet(manifest_path)
    order = audio_rows_for_manifest(manifest, len(audio), manifest_path, audio_path)
    return audio, order


def audio_rows_for_manifest(manifest, n_audio: int, manifest_path: Path, audio_path: Path):
    """Manifest column ``row`` (if present) else 0..N-1, checked against the audio array."""
    if "row" in manifest.columns:
        order = manifest["row"].to_numpy()
        if not np.issubdtype(order.dtype, np.integer):
            raise SystemExit(f"error: column 'row' of {manifest_path} is not integer")
        if len(order) and (order.min() < 0 or order.max() >= n_audio):
            raise SystemExit(
                f"error: {manifest_path} points at audio rows outside 0..{n_audio - 1} of "
                f"{audio_path}; rewrite the shard with the segment step"
            )
        return order.astype(np.int64)
    if len(manifest) != n_audio:
        raise SystemExit(
            f"error: {manifest_path} has {len(manifest)} rows but {audio_path} has {n_audio}; "
            "rewrite the shard with the segment step"
        )
    return np.arange(n_audio, dtype=np.int64)


def partial_meta(model: str, dtype_name: str, audio_shape, order: np.ndarray) -> dict:
    """What finished chunks depend on; chunks made from anything else are discarded."""
    return {
        "model": model,
        "dtype": dtype_name,
        "audio_shape": [int(n) for n in audio_shape],
        "rows": len(order),
        "row_checksum": int(order.sum()) if len(order) else 0,
    }


def partial_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from rcmg.models.clap import ChunkStore, ClapEmbedder, embed_rows_resumable
    from rcmg.models.hf_loading import ModelLoadError

    started = time.perf_counter()
    audio, order = open_shard(args.segments_dir)
    try:
        embedder = ClapEmbedder(args.model, device=args.device, dtype=args.dtype)
    except ModelLoadError as exc:
        raise SystemExit(f"error: {exc}") from exc
    if audio.shape[0] and embedder.sampling_rate != 48_000:
        log.warning("model expects %d Hz; %s is 48 kHz audio", embedder.sampling_rate, AUDIO_NAME)
    meta = partial_meta(args.model, embedder.dtype_name, audio.shape, order)
    load_seconds = time.perf_counter() - started
    store = ChunkStore(partial_dir_for(args.out), meta, embedder.dim)
    rows, counts = embed_rows_resumable(embedder, audio, order, store, args.batch)
    with atomic_path(args.out, suffix=".npy") as tmp:
        np.save(tmp, rows)
    shutil.rmtree(store.directory, ignore_errors=True)
    seconds = time.perf_counter() - started
    stats = {
        "n": len(order),
        "dim": embedder.dim,
        "seconds": seconds,
        "load_seconds": load_seconds,
        "model_forward_seconds": embedder.model_forward_seconds,
        "forward_fraction": embedder.model_forward_seconds / seconds if seconds > 0 else 0.0,
        "clips_per_s": len(order) / (seconds - load_seconds) if seconds > load_seconds else 0.0,
        "device": embedder.device,
        "dtype": embedder.dtype_name,
        "batch": args.batch,
        "degenerate_rows": embedder.degenerate_rows,
        **counts,
    }
    write_json(args.stats, stats)
    log.info("embedded %d clips in %.1f s -> %s", len(order), seconds, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
