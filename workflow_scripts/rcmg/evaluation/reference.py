"""Reference statistics for FAD/KAD: CLAP embeddings of a deterministic corpus subsample.

Reads each shard's audio_16k.npy ([N, T] float16/float32 at 16 kHz, memory-mapped),
takes a seeded subsample of at most ``max_items`` segments, resamples to 48 kHz, embeds
with CLAP and writes an npz with mu, sigma, embeddings, n, model and shards. The CLI is
workflow_scripts/reference_stats.py.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.data.audio_io import resample
from rcmg.evaluation import metrics
from rcmg.workflow.atomic import atomic_path
from rcmg.workflow.cli import InputError

LOG = logging.getLogger("reference_stats")


@dataclass(frozen=True)
class ReferenceOptions:
    """How the reference subsample is drawn and embedded (CLI defaults come from here)."""

    max_items: int = 2000  # segments in the subsample
    seed: int = 0  # subsample seed
    batch: int = 16  # segments per CLAP batch
    device: str = "auto"  # auto | cpu | cuda[:N]


SHARD_AUDIO = "audio_16k.npy"
SOURCE_SR = 16000
CLAP_SR = 48000


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


def build_reference(
    shards: list[Path],
    clap_model: str,
    out: Path,
    options: ReferenceOptions = ReferenceOptions(),
    embedder_factory: Callable[[], object] | None = None,
) -> int:
    """Embed a seeded subsample of ``shards`` with ``clap_model``; write ``out``; return N."""
    arrays = open_shards(shards)
    picks = subsample_index([len(a) for a in arrays], options.max_items, options.seed)
    if len(picks) < 2:
        raise InputError(
            f"reference needs >= 2 segments, shards {[str(s) for s in shards]} hold "
            f"{len(picks)}: add reference datasets or segments"
        )
    if embedder_factory is None:
        from rcmg.models.clap import ClapEmbedder

        embedder = ClapEmbedder(clap_model, device=options.device)
    else:
        embedder = embedder_factory()
    embeddings = embed_subsample(embedder, arrays, picks, options.batch)
    write_reference(out, embeddings, clap_model, shards)
    return len(embeddings)
