#!/usr/bin/env python
"""Reference statistics for FAD/KAD: CLAP embeddings of a deterministic corpus subsample.

Reads each shard's audio_16k.npy ([N, T] float16/float32 at 16 kHz, memory-mapped),
takes a seeded subsample of at most --max-items segments, resamples to 48 kHz, embeds
with CLAP and writes an npz with mu, sigma, embeddings, n, model and shards.

    python workflow_scripts/reference_stats.py --shards data/processed/segments/maestro/shard0 \
        --clap-model laion/clap-htsat-unfused --out results/reference/ref_stats.npz
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from rcmg.data.audio_io import resample  # noqa: E402
from rcmg.evaluation import metrics  # noqa: E402
from rcmg.workflow.atomic import atomic_path  # noqa: E402

LOG = logging.getLogger("reference_stats")
SHARD_AUDIO = "audio_16k.npy"
SOURCE_SR = 16000
CLAP_SR = 48000


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--shards", type=Path, nargs="+", required=True, help="segment shard dirs")
    parser.add_argument("--clap-model", required=True, help="CLAP hub id or local folder")
    parser.add_argument("--max-items", type=int, default=2000, help="segments in the subsample")
    parser.add_argument("--seed", type=int, default=0, help="subsample seed")
    parser.add_argument("--batch", type=int, default=16, help="segments per CLAP batch")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    return parser.parse_args(argv)


def open_shards(shard_dirs: list[Path]) -> list[np.ndarray]:
    """Memory-mapped [N, T] audio of every shard; clear errors for missing/odd files."""
    arrays = []
    for shard in shard_dirs:
        path = Path(shard) / SHARD_AUDIO
        if not path.is_file():
            raise FileNotFoundError(f"missing {path}: run the segment step for this shard first")
        audio = np.load(path, mmap_mode="r", allow_pickle=False)
        if audio.ndim != 2:
            raise ValueError(f"{path} has shape {audio.shape}; expected [N, T] 16 kHz segments")
        arrays.append(audio)
    return arrays


def subsample_index(counts: list[int], max_items: int, seed: int) -> list[tuple[int, int]]:
    """Deterministic (shard, row) picks: all rows when they fit, else a seeded sample, sorted."""
    pairs = [(s, r) for s, count in enumerate(counts) for r in range(count)]
    if len(pairs) <= max_items:
        return pairs
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(pairs), size=max_items, replace=False))
    return [pairs[i] for i in chosen]


def embed_subsample(embedder, arrays, picks, batch: int) -> np.ndarray:
    from tqdm import tqdm

    chunks = []
    for start in tqdm(range(0, len(picks), batch), desc="reference clap", file=sys.stderr):
        rows = [np.asarray(arrays[s][r], dtype=np.float32) for s, r in picks[start : start + batch]]
        waves = np.stack([resample(row, SOURCE_SR, CLAP_SR) for row in rows])
        chunks.append(np.asarray(embedder.embed_audio(waves), dtype=np.float32))
    return np.concatenate(chunks)


def write_reference(out: Path, embeddings: np.ndarray, model: str, shards: list[Path]) -> None:
    mu, sigma = metrics.gaussian_stats(embeddings)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(
            tmp,
            mu=mu,
            sigma=sigma,
            embeddings=embeddings,
            n=np.int64(len(embeddings)),
            model=np.str_(model),
            shards=np.array([str(s) for s in shards], dtype=np.str_),
        )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    arrays = open_shards(args.shards)
    picks = subsample_index([len(a) for a in arrays], args.max_items, args.seed)
    if len(picks) < 2:
        raise SystemExit(f"reference needs >= 2 segments, shards {args.shards} hold {len(picks)}")
    from rcmg.models.clap import ClapEmbedder

    embedder = ClapEmbedder(args.clap_model, device=args.device)
    embeddings = embed_subsample(embedder, arrays, picks, args.batch)
    write_reference(args.out, embeddings, args.clap_model, args.shards)
    LOG.info("reference stats from %d segments -> %s", len(embeddings), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
