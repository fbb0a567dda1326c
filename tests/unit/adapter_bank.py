"""A small style bank that train_adapter can train on: bank rows, a mapping in the
build_bank layout (split, uploader, tags, shard/shard_row, dataset) and the bank
dataset's segment shards (audio_16k.npy, audio_48k.npy) at the workflow's default location
``<root>/<dataset>/segments/shardN`` for a bank at ``<root>/bank/style_bank.npy``.

Items (FSD50K's split values: dev = train/val, eval = eval):

* dev, uploaders ``u1``..``u4``: trainable (two items each);
* ``both``: one dev and one eval item -> the dev item is excluded (uploader on both sides);
* dev ``u5``, caption ``solo piano`` = the prompt "Solo piano!" folded -> dropped;
* split ``""`` -> excluded (neither dev nor eval);
* eval ``e1`` (two items), ``e2`` (one), ``""`` (no uploader: its own group) -> held out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SR = 16000
SECONDS = 0.64
DATASET = "fsd50k"

ITEMS = [
    # (split, uploader, tags)
    ("train", "u1", ["rain", "water"]),
    ("train", "u1", ["rain"]),
    ("train", "u2", ["drums", "percussion"]),
    ("val", "u2", ["drums"]),
    ("train", "u3", ["bells"]),
    ("train", "u3", ["bells", "water"]),
    ("val", "u4", ["wind"]),
    ("train", "u4", ["wind", "rain"]),
    ("train", "both", ["guitar"]),
    ("train", "u5", ["solo_piano"]),
    ("", "u6", ["dog"]),
    ("eval", "both", ["guitar", "strum"]),
    ("eval", "e1", ["water"]),
    ("eval", "e1", ["bird", "animal"]),
    ("eval", "e2", ["drums", "bells"]),
    ("eval", "", ["rain", "wind"]),
]
PROMPTS = [
    "# training prompts",
    "a calm solo piano piece with soft chords",
    "",
    "loud drums and bass guitar",
    "Solo piano!",  # = the bank caption "solo piano" once folded: must be held out
]
TRAINABLE_UPLOADERS = {"u1", "u2", "u3", "u4"}
HELDOUT_UPLOADERS = {"both", "e1", "e2", ""}


def _clip(i: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(SECONDS * SR)) / SR
    tone = np.sin(2 * np.pi * (150.0 * (1 + i % 7)) * t) * (0.2 + 0.05 * (i % 3))
    noise = rng.normal(scale=0.02 * (1 + i % 4), size=t.shape)
    return (tone + noise).astype(np.float32)


def write_trainable_bank(root: Path, n_shards: int = 2) -> dict:
    """Write the bank, mapping, flat index, shards and prompt file under ``root``."""
    from rcmg.bank.retrieval import build_index, save_index
    from rcmg.data.audio_io import resample
    from rcmg.workflow.atomic import write_jsonl

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(len(ITEMS), 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    segments = root / DATASET / "segments"
    shard_rows: dict[int, list[np.ndarray]] = {s: [] for s in range(n_shards)}
    rows = []
    for i, (split, uploader, tags) in enumerate(ITEMS):
        shard = i % n_shards
        rows.append(
            {
                "row": i,
                "shard": f"shard{shard}",
                "shard_row": len(shard_rows[shard]),
                "segment_id": f"{DATASET}/clip{i:03d}@0.000",
                "source_id": f"{DATASET}/clip{i:03d}",
                "dataset": DATASET,
                "split": split,
                "uploader": uploader,
                "tags": tags,
                "orig_row": i,
            }
        )
        shard_rows[shard].append(_clip(i, rng))
    for shard, clips in shard_rows.items():
        (segments / f"shard{shard}").mkdir(parents=True, exist_ok=True)
        np.save(segments / f"shard{shard}" / "audio_16k.npy", np.stack(clips).astype(np.float16))
        # the 48 kHz CLAP-side array segment writes beside it (Stable Audio trains from it)
        wide = np.stack([resample(c, SR, 48_000) for c in clips]).astype(np.float16)
        np.save(segments / f"shard{shard}" / "audio_48k.npy", wide)
    bank_dir = root / "bank"
    bank_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "bank": bank_dir / "style_bank.npy",
        "mapping": bank_dir / "style_bank.jsonl",
        "index": bank_dir / "bank.index",
        "prompts": root / "prompts.txt",
        "segments": segments,
    }
    np.save(paths["bank"], vectors)
    write_jsonl(paths["mapping"], rows)
    save_index(build_index(vectors, kind="flat"), paths["index"])
    paths["prompts"].write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    return paths
