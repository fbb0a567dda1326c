"""Reference statistics for FAD/KAD: CLAP embeddings of a deterministic corpus subsample.

Reads each shard's audio_16k.npy ([N, T] float16/float32 at 16 kHz, memory-mapped),
takes a seeded subsample of at most ``max_items`` segments, resamples to 48 kHz, embeds
with CLAP and writes an npz with mu, sigma, embeddings, n, model and shards. The CLI is
workflow_scripts/reference_stats.py.
"""

from __future__ import annotations

import json
import logging
import math
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
    composition: tuple[str, ...] = ()  # NAME=weight:W | NAME=count:N; () = as available
    # evaluation.classifier (an AudioSet classifier, rcmg.models.classifier): its
    # embeddings of the same clips are stored too (None: no classifier view)
    classifier: str | None = None


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


POOLED = "pooled"  # the subset name of untagged shards


@dataclass(frozen=True)
class Part:
    """One dataset's share of the reference: ``kind`` 'weight' (of max_items) or 'count'."""

    dataset: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Part:
        """'NAME=weight:0.5' or 'NAME=count:1000' (config evaluation.reference_composition)."""
        name, _, spec = text.partition("=")
        kind, _, value = spec.partition(":")
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not name or kind not in ("weight", "count") or not number > 0:
            raise InputError(
                f"reference composition {text!r}: write NAME=weight:W or NAME=count:N with "
                "W, N > 0 (config evaluation.reference_composition)"
            )
        return cls(name, kind, number)


def parse_shards(items: list[str]) -> list[tuple[str, Path]]:
    """'NAME=DIR' (dataset-tagged shard) or 'DIR' (subset 'pooled') -> (dataset, dir)."""
    out = []
    for item in map(str, items):
        name, sep, path = item.partition("=")
        out.append((name, Path(path)) if sep and name and "/" not in name else (POOLED, Path(item)))
    return out


def planned_counts(available: dict[str, int], parts: list[Part], max_items: int) -> dict:
    """Clips to draw per dataset -> {name: {requested, available, drawn}}.

    Weights are normalised and multiplied by ``max_items``; counts are taken as given.
    A dataset with fewer segments than requested gives all it has (the shortfall is
    recorded and printed in every report, never silently re-weighted).
    """
    if not parts:
        total = sum(available.values())
        parts = [Part(name, "weight", n / total if total else 0) for name, n in available.items()]
        parts = [p for p in parts if p.value > 0]
    kinds = {p.kind for p in parts}
    if len(kinds) > 1:
        raise InputError("reference composition mixes weights and counts: use one kind")
    unknown = [p.dataset for p in parts if p.dataset not in available]
    if unknown:
        raise InputError(
            f"reference composition names {unknown} but the shards are tagged "
            f"{sorted(available)}: pass --shards NAME=DIR for every dataset"
        )
    total_weight = sum(p.value for p in parts)
    plan = {}
    for p in parts:
        requested = (
            int(round(p.value / total_weight * max_items)) if p.kind == "weight" else int(p.value)
        )
        plan[p.dataset] = {
            "requested": requested,
            "available": int(available[p.dataset]),
            "drawn": min(requested, int(available[p.dataset])),
            "kind": p.kind,
            "value": p.value,
        }
    return plan


def composed_picks(datasets: list[str], counts: list[int], plan: dict, seed: int):
    """Seeded (shard, row) picks per dataset following ``plan``; sorted within a dataset."""
    picks, labels = [], []
    for name in plan:
        pairs = [
            (s, r)
            for s, (dataset, count) in enumerate(zip(datasets, counts, strict=True))
            if dataset == name
            for r in range(count)
        ]
        chosen = subsample_index([len(pairs)], plan[name]["drawn"], seed)
        picks.extend(pairs[r] for _, r in chosen)
        labels.extend([name] * len(chosen))
    return picks, labels


def write_reference(
    out: Path,
    embeddings: np.ndarray,
    model: str,
    shards: list[Path],
    datasets: list[str] | None = None,
    composition: dict | None = None,
    classifier: tuple[str, np.ndarray] | None = None,
    calibration: dict | None = None,
) -> None:
    mu, sigma = metrics.gaussian_stats(embeddings)
    extra = {}
    if classifier is not None:
        extra = {
            "classifier_model": np.str_(classifier[0]),
            "classifier_embeddings": np.asarray(classifier[1], np.float32),
        }
    labels = [POOLED] * len(embeddings) if datasets is None else list(datasets)
    if composition is None:
        composition = {POOLED: {"requested": len(embeddings), "drawn": len(embeddings)}}
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez(
            tmp,
            mu=mu,
            sigma=sigma,
            embeddings=embeddings,
            n=np.int64(len(embeddings)),
            model=np.str_(model),
            shards=np.array([str(s) for s in shards], dtype=np.str_),
            dataset=np.array(labels, dtype=np.str_),
            composition=np.str_(json.dumps(composition, sort_keys=True)),
            calibration=np.str_(json.dumps(calibration or {}, sort_keys=True)),
            **extra,
        )


def read_composition(path: Path) -> dict:
    """{dataset: {requested, available, drawn, ...}} of a ref_stats.npz ({} when absent)."""
    with np.load(path, allow_pickle=False) as data:
        if "composition" not in data.files:
            return {}
        return json.loads(str(data["composition"]))


def build_reference(
    shards: list,
    clap_model: str,
    out: Path,
    options: ReferenceOptions = ReferenceOptions(),
    embedder_factory: Callable[[], object] | None = None,
    classifier_factory: Callable[[], object] | None = None,
) -> int:
    """Embed a seeded, composed subsample of ``shards`` with ``clap_model``; write ``out``.

    With ``options.classifier``, the same clips are also embedded by that AudioSet
    classifier (``classifier_factory()``: an AudioClassifier-like object; default: load it).

    ``shards``: 'NAME=DIR' or plain dirs; ``options.composition``: 'NAME=weight:W' /
    'NAME=count:N' (default: proportional to the segments available). Returns N.
    """
    tagged = parse_shards(shards)
    arrays = open_shards([path for _, path in tagged])
    names = [name for name, _ in tagged]
    counts = [len(a) for a in arrays]
    available: dict[str, int] = {}
    for name, count in zip(names, counts, strict=True):
        available[name] = available.get(name, 0) + count
    plan = planned_counts(
        available, [Part.parse(t) for t in options.composition], options.max_items
    )
    picks, labels = composed_picks(names, counts, plan, options.seed)
    if len(picks) < 2:
        raise InputError(
            f"reference needs >= 2 segments, shards {[str(p) for _, p in tagged]} give "
            f"{len(picks)}: add reference datasets or segments"
        )
    for name, entry in plan.items():
        if entry["drawn"] < entry["requested"]:
            LOG.warning(
                "reference: %s has %d segments, %d requested; all are used (shortfall in "
                "every report)",
                name,
                entry["available"],
                entry["requested"],
            )
    if embedder_factory is None:
        from rcmg.models.clap import ClapEmbedder

        embedder = ClapEmbedder(clap_model, device=options.device)
    else:
        embedder = embedder_factory()
    embeddings = embed_subsample(embedder, arrays, picks, options.batch)
    classifier = None
    if options.classifier:
        classifier = (
            str(options.classifier),
            classify_subsample(options, arrays, picks, classifier_factory),
        )
    captions = reference_captions([path for _, path in tagged], picks)
    calibration = text_calibration(embedder, embeddings, captions, options.seed)
    write_reference(
        out, embeddings, clap_model, [p for _, p in tagged], labels, plan, classifier, calibration
    )
    return len(embeddings)


# --------------------------------------------------------------- text calibration
CAPTION_RULE = (
    "from each segment's manifest row: MAESTRO 'solo piano: <canonical title>'; URMP "
    "'chamber music for <instruments>: <piece title>'; FSD50K 'the sound of <labels>'; "
    "any other dataset its tags (or title)"
)
MANIFEST = "manifest.parquet"


def _words(items) -> str:
    names = [str(t).replace("_", " ").strip() for t in items or [] if str(t).strip()]
    names = list(dict.fromkeys(names))
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def caption_of(row: dict) -> str:
    """The reference clip's caption under :data:`CAPTION_RULE` ('' when nothing is known)."""
    dataset = str(row.get("dataset") or "")
    title = str(row.get("title") or "").strip()
    tags = list(row.get("tags") or [])
    if dataset == "maestro":
        return f"solo piano: {title}" if title else "solo piano"
    if dataset == "urmp":
        head = f"chamber music for {_words(tags)}" if tags else "chamber music"
        return f"{head}: {title}" if title else head
    if dataset == "fsd50k":
        return f"the sound of {_words(tags)}" if tags else ""
    return _words(tags) or title


def reference_captions(shard_dirs: list[Path], picks) -> list[str] | None:
    """Captions of the picked reference segments (None when a shard has no manifest)."""
    manifests = {}
    for s in sorted({s for s, _ in picks}):
        path = Path(shard_dirs[s]) / MANIFEST
        if not path.is_file():
            return None
        import pyarrow.parquet as pq

        manifests[s] = pq.read_table(path).to_pylist()
    return [caption_of(manifests[s][r]) for s, r in picks]


def text_calibration(embedder, audio_emb, captions, seed: int, n_boot: int = 1000) -> dict:
    """The judge's text similarity of reference audio to its own caption (ceiling) and to
    the different caption of a random other clip (floor, seeded)."""
    from rcmg.evaluation import stats

    if not captions:
        return {"reason": "the reference shards have no manifest.parquet (no captions)"}
    usable = [i for i, c in enumerate(captions) if c]
    if len(usable) < 2:
        return {"reason": f"{len(usable)} reference clip(s) have a caption"}
    unique = list(dict.fromkeys(captions[i] for i in usable))
    table = dict(zip(unique, np.asarray(embedder.embed_text(unique), np.float64), strict=True))
    audio = np.asarray(audio_emb, np.float64)
    rng = np.random.default_rng([int(seed), 0xCA11B])
    own, shuffled = [], []
    for i in usable:
        own.append(metrics.cosine_similarity_rows(audio[i : i + 1], table[captions[i]][None])[0])
        others = [j for j in usable if captions[j] != captions[i]]
        if others:
            j = others[int(rng.integers(len(others)))]
            text = table[captions[j]][None]
            shuffled.append(metrics.cosine_similarity_rows(audio[i : i + 1], text)[0])
    return {
        "ceiling": stats.bootstrap_mean_ci(np.array(own), n_boot, seed),
        "floor": stats.bootstrap_mean_ci(np.array(shuffled), n_boot, seed),
        "caption_rule": CAPTION_RULE,
        "floor_rule": "each clip against the caption of a random other clip whose caption differs",
        "n_captions": len(usable),
        "n_distinct": len(unique),
        "examples": unique[:5],
    }


def classify_subsample(options: ReferenceOptions, arrays, picks, factory=None) -> np.ndarray:
    """The classifier's embeddings of the reference picks (16 kHz segments)."""
    if factory is None:
        from rcmg.models.classifier import AudioClassifier

        classifier = AudioClassifier(options.classifier, device=options.device)
    else:
        classifier = factory()
    rate = int(getattr(classifier, "sampling_rate", SOURCE_SR))
    chunks = []
    for start in range(0, len(picks), options.batch):
        waves = [
            resample(np.asarray(arrays[s][r], np.float32), SOURCE_SR, rate)
            for s, r in picks[start : start + options.batch]
        ]
        chunks.append(classifier.embed(waves)[0])
    return np.concatenate(chunks)
