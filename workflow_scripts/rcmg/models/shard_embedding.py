"""CLAP audio embeddings of segment shards: one shard, resumable (the clap_embed step),
and all shards of a dataset gathered into one array + mapping (the gather step).

Reads ``SHARD/audio_48k.npy`` (N x T, float32/float16, memory-mapped) and
``SHARD/manifest.parquet``; writes the float32 N x dim rows (row i = manifest row i)
atomically and returns the timings. Finished batches are kept in ``OUT.partial/`` so a
restarted job continues where it stopped.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.workflow.atomic import atomic_path, write_jsonl
from rcmg.workflow.cli import InputError
from rcmg.workflow.tables import json_value

log = logging.getLogger(__name__)

AUDIO_NAME = "audio_48k.npy"
MANIFEST_NAME = "manifest.parquet"


@dataclass(frozen=True)
class EmbedOptions:
    """Every parameter of the clap_embed step (the CLI's flags)."""

    model: str
    batch: int = 32
    device: str = "auto"
    dtype: str = "auto"
    subfolder: str = ""  # a ClapModel inside a pipeline folder (AudioLDM2: text_encoder)
    revision: str | None = None


def add_embed_arguments(parser, recorded_in: str) -> None:
    """The forward options every embedding CLI takes (--batch, --device, --dtype), with
    defaults from :class:`EmbedOptions`; ``recorded_in`` names the flag of the output
    that records the dtype actually used."""
    from rcmg.models.device import DTYPE_ALIASES, DTYPES
    from rcmg.workflow import cli

    parser.add_argument(
        "--batch", type=int, default=cli.default(EmbedOptions, "batch"), help="clips per forward"
    )
    parser.add_argument(
        "--device", default=cli.default(EmbedOptions, "device"), help="auto, cpu, cuda, cuda:N"
    )
    parser.add_argument(
        "--dtype",
        default=cli.default(EmbedOptions, "dtype"),
        choices=(*DTYPES, *DTYPE_ALIASES),
        help=f"fp16 falls back to fp32 off CUDA; the dtype used is recorded in {recorded_in}",
    )


def open_shard(segments_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The memory-mapped audio and, per output row, the audio row it embeds."""
    import pandas as pd

    audio_path = segments_dir / AUDIO_NAME
    manifest_path = segments_dir / MANIFEST_NAME
    for path in (audio_path, manifest_path):
        if not path.is_file():
            raise InputError(f"{path} is missing; run the segment step for this shard first")
    audio = np.load(audio_path, mmap_mode="r", allow_pickle=False)
    if audio.ndim != 2:
        raise InputError(f"{audio_path} has shape {audio.shape}; expected N x samples")
    manifest = pd.read_parquet(manifest_path)
    order = audio_rows_for_manifest(manifest, len(audio), manifest_path, audio_path)
    return audio, order


def audio_rows_for_manifest(manifest, n_audio: int, manifest_path: Path, audio_path: Path):
    """Manifest column ``row`` (if present) else 0..N-1, checked against the audio array."""
    if "row" in manifest.columns:
        order = manifest["row"].to_numpy()
        if not np.issubdtype(order.dtype, np.integer):
            raise InputError(f"column 'row' of {manifest_path} is not integer")
        if len(order) and (order.min() < 0 or order.max() >= n_audio):
            raise InputError(
                f"{manifest_path} points at audio rows outside 0..{n_audio - 1} of "
                f"{audio_path}; rewrite the shard with the segment step"
            )
        return order.astype(np.int64)
    if len(manifest) != n_audio:
        raise InputError(
            f"{manifest_path} has {len(manifest)} rows but {audio_path} has {n_audio}; "
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


def model_label(opts: EmbedOptions) -> str:
    sub = f"/{opts.subfolder}" if opts.subfolder else ""
    return f"{opts.model}{sub}" + (f"@{opts.revision}" if opts.revision else "")


def partial_dir_for(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def embed_shard(segments_dir: Path, out: Path, opts: EmbedOptions) -> dict:
    """Embed every manifest row of ``segments_dir`` into ``out``; return the timings."""
    from rcmg.models.clap import ChunkStore, embed_rows_resumable

    started = time.perf_counter()
    audio, order = open_shard(segments_dir)
    embedder = embedder_for(opts)
    if audio.shape[0] and embedder.sampling_rate != 48_000:
        log.warning("model expects %d Hz; %s is 48 kHz audio", embedder.sampling_rate, AUDIO_NAME)
    meta = partial_meta(model_label(opts), embedder.dtype_name, audio.shape, order)
    load_seconds = time.perf_counter() - started
    store = ChunkStore(partial_dir_for(out), meta, embedder.dim)
    rows, counts = embed_rows_resumable(embedder, audio, order, store, opts.batch)
    with atomic_path(out, suffix=".npy") as tmp:
        np.save(tmp, rows)
    shutil.rmtree(store.directory, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("embedded %d clips in %.1f s -> %s", len(order), seconds, out)
    return {
        "n": len(order),
        "dim": embedder.dim,
        "seconds": seconds,
        "load_seconds": load_seconds,
        "model_forward_seconds": embedder.model_forward_seconds,
        "forward_fraction": embedder.model_forward_seconds / seconds if seconds > 0 else 0.0,
        "clips_per_s": len(order) / (seconds - load_seconds) if seconds > load_seconds else 0.0,
        "device": embedder.device,
        "dtype": embedder.dtype_name,
        "dtype_requested": opts.dtype,
        "batch": opts.batch,
        "degenerate_rows": embedder.degenerate_rows,
        "fingerprint": fingerprint_of(opts),
        **counts,
    }


def embedder_for(opts: EmbedOptions):
    from rcmg.models.clap import ClapEmbedder

    return ClapEmbedder(
        opts.model,
        device=opts.device,
        dtype=opts.dtype,
        subfolder=opts.subfolder,
        revision=opts.revision,
    )


def fingerprint_of(opts: EmbedOptions) -> dict:
    """The weights these rows were embedded with (style spaces check it at generate time)."""
    from rcmg.models.fingerprint import clap_space_fingerprint

    return clap_space_fingerprint(opts.model, opts.subfolder, opts.revision)


# ---------------------------------------------------------------- gather


def load_pairs(shards: list[Path], embeddings: list[Path]):
    """``[(shard, manifest DataFrame, memmapped embeddings)]`` with shapes checked."""
    import pandas as pd

    if len(shards) != len(embeddings):
        raise InputError(
            f"{len(shards)} --shards but {len(embeddings)} --embeddings; give one .npy per shard"
        )
    pairs, dims = [], set()
    for shard, emb_path in zip(shards, embeddings, strict=True):
        manifest_path = shard / MANIFEST_NAME
        if not manifest_path.is_file():
            raise InputError(f"{manifest_path} is missing; run the segment step first")
        if not emb_path.is_file():
            raise InputError(f"{emb_path} is missing; run clap_embed for {shard} first")
        manifest = pd.read_parquet(manifest_path)
        emb = np.load(emb_path, mmap_mode="r", allow_pickle=False)
        if emb.ndim != 2 or emb.shape[0] != len(manifest):
            raise InputError(
                f"{emb_path} has shape {emb.shape} but {manifest_path} has "
                f"{len(manifest)} rows; rerun clap_embed for {shard}"
            )
        dims.add(emb.shape[1])
        pairs.append((shard, manifest, emb))
    if len(dims) > 1:
        detail = ", ".join(f"{e}: {p[2].shape[1]}" for e, p in zip(embeddings, pairs, strict=True))
        raise InputError(f"embedding widths differ ({detail}); embed all shards with one model")
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


def gather_shards(
    shards: list[Path], embeddings: list[Path], out_npy: Path, out_mapping: Path
) -> int:
    """Concatenate per-shard embeddings (float32 memmap) and write one mapping row per row."""
    pairs = load_pairs(shards, embeddings)
    total = sum(len(m) for _, m, _ in pairs)
    dim = pairs[0][2].shape[1]
    with atomic_path(out_npy, suffix=".npy") as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(total, dim))
        start = 0
        for _, _, emb in pairs:
            out[start : start + len(emb)] = emb
            start += len(emb)
        out.flush()
        del out
    write_jsonl(out_mapping, mapping_rows(pairs))
    log.info("gathered %d rows x %d from %d shards -> %s", total, dim, len(pairs), out_npy)
    return total
