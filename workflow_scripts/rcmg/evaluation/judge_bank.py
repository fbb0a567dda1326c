"""The style bank re-embedded by the judge: style similarity in the judge's own space.

The style vectors a run is conditioned on live in the bank CLAP's space
(``clap.model``). Scoring generated audio against them with the bank CLAP measures style
with the encoder that chose the style. Here every bank row's audio (the bank dataset's
``segments/SHARD/audio_48k.npy`` window the bank embedding was computed from, found
through the bank mapping's ``shard`` / ``shard_row``) is embedded once per workflow by
the judge (``evaluation.clap``), L2-normalised, and written to one npz (rule
``judge_bank_embed``) that every evaluate job reads.

The judge-space style vector of an item is built from the SAME bank rows and the SAME
weights as its generation-time style vector (:func:`rcmg.bank.blend.style_vector`):
softmax(score / style_temp) over the recorded hits' bank-CLAP scores, uniform weights
where the rows were chosen by id (score None), then L2-normalised. The CLI is
workflow_scripts/judge_bank_embed.py.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.data.audio_io import resample
from rcmg.workflow.atomic import atomic_path
from rcmg.workflow.cli import InputError

LOG = logging.getLogger("judge_bank")

AUDIO_48K = "audio_48k.npy"  # what clap_embed embedded for the bank (rcmg.data.segmenting)
AUDIO_16K = "audio_16k.npy"  # fallback, resampled to the judge's rate
WEIGHTING = (
    "softmax(score / style_temp) over the item's recorded bank hits (the generation-time "
    "style vector's weights); uniform where the rows were chosen by id"
)


@dataclass(frozen=True)
class JudgeBankOptions:
    """How the bank is re-embedded (the CLI's defaults come from here)."""

    batch: int = 16  # segments per judge batch
    device: str = "auto"  # auto | cpu | cuda[:N]


def read_mapping(path: Path) -> list[dict]:
    """Every bank mapping row, in bank-row order."""
    from rcmg.workflow.atomic import read_jsonl

    return read_jsonl(path)


class SegmentAudio:
    """Bank windows' audio by (shard, shard_row), memory-mapped shard by shard."""

    def __init__(self, segments_root: Path, sampling_rate: int) -> None:
        self.root = Path(segments_root)
        self.sampling_rate = int(sampling_rate)
        self._open: dict[str, tuple[np.ndarray, int]] = {}

    def _array(self, shard: str) -> tuple[np.ndarray, int]:
        if shard not in self._open:
            folder = self.root / shard
            for name, sr in ((AUDIO_48K, 48000), (AUDIO_16K, 16000)):
                if (folder / name).is_file():
                    self._open[shard] = (np.load(folder / name, mmap_mode="r"), sr)
                    break
            else:
                raise InputError(
                    f"no {AUDIO_48K} or {AUDIO_16K} in {folder}: the bank mapping names shard "
                    f"{shard!r}; pass the bank dataset's segments/ folder (--segments-root) "
                    "and run its segment step"
                )
        return self._open[shard]

    def wave(self, row: dict) -> np.ndarray:
        if "shard" not in row or "shard_row" not in row:
            raise InputError(
                f"bank mapping row {row.get('row')} has no shard/shard_row: rebuild the bank "
                "(gather_embeddings writes them)"
            )
        array, sr = self._array(str(row["shard"]))
        wave = np.asarray(array[int(row["shard_row"])], dtype=np.float32)
        return wave if sr == self.sampling_rate else resample(wave, sr, self.sampling_rate)


class ClassifierEmbedder:
    """The AudioSet classifier (:class:`rcmg.models.classifier.AudioClassifier`) as an
    embedder of the bank: its pooled embedding, the space ``ast_style_sim`` is measured in
    (the non-CLAP view of style similarity)."""

    def __init__(self, model: str, device: str = "auto") -> None:
        from rcmg.models.classifier import AudioClassifier

        self.classifier = AudioClassifier(model, device=device)
        self.sampling_rate = self.classifier.sampling_rate

    def embed_audio(self, batch: np.ndarray) -> np.ndarray:
        return self.classifier.embed(list(batch))[0]


def embed_bank(
    bank_mapping: Path,
    segments_root: Path,
    judge_model: str,
    out: Path,
    options: JudgeBankOptions = JudgeBankOptions(),
    embedder_factory: Callable[[], object] | None = None,
    classifier: bool = False,
) -> int:
    """Judge embeddings (L2-normalised float32 ``[n_bank, d]``) of every bank row's audio.

    ``embedder_factory()`` returns a ClapEmbedder-like object (default: the CLAP
    ``judge_model`` on ``options.device``, or with ``classifier`` the AudioSet classifier
    ``judge_model``). Returns the number of rows written.
    """
    from tqdm import tqdm

    rows = read_mapping(Path(bank_mapping))
    if not rows:
        raise InputError(f"{bank_mapping} is empty: build the bank first")
    if embedder_factory is not None:
        embedder = embedder_factory()
    elif classifier:
        embedder = ClassifierEmbedder(judge_model, device=options.device)
    else:
        from rcmg.models.clap import ClapEmbedder

        embedder = ClapEmbedder(judge_model, device=options.device)
    audio = SegmentAudio(segments_root, getattr(embedder, "sampling_rate", 48000))
    chunks = []
    for start in tqdm(range(0, len(rows), options.batch), desc="judge bank", file=sys.stderr):
        waves = [audio.wave(r) for r in rows[start : start + options.batch]]
        length = max(w.size for w in waves)
        batch = np.zeros((len(waves), length), dtype=np.float32)
        for i, wave in enumerate(waves):
            batch[i, : wave.size] = wave
        chunks.append(np.asarray(embedder.embed_audio(batch), dtype=np.float64))
    emb = np.concatenate(chunks)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    emb = np.where(norms > 0, emb / np.where(norms > 0, norms, 1.0), np.nan)
    with atomic_path(Path(out), suffix=".npz") as tmp:
        np.savez(
            tmp,
            embeddings=emb.astype(np.float32),
            model=np.str_(str(judge_model)),
            n=np.int64(len(rows)),
            mapping=np.str_(str(bank_mapping)),
            segment_id=np.array([str(r.get("segment_id", "")) for r in rows], dtype=np.str_),
        )
    LOG.info("judge %s embedded %d bank rows -> %s", judge_model, len(rows), out)
    return len(rows)


def read_judge_bank(
    path: Path, judge_model: str, dim: int | None = None, step: str = "judge_bank_embed"
) -> np.ndarray:
    """The judge embeddings of the bank; refuses a file made by another judge or (``dim``
    given) of another dimension than the clips' embeddings (``step`` wrote the file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing {path}: run the judge_bank_embed step first")
    with np.load(path, allow_pickle=False) as data:
        model = str(data["model"])
        emb = np.asarray(data["embeddings"], dtype=np.float64)
    if model != str(judge_model):
        raise InputError(
            f"{path} was embedded by judge {model!r} but the judge is {judge_model!r}; "
            "rerun judge_bank_embed with the same --clap-model"
        )
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(
            f"{path} is {emb.shape[1]}-d but the clips' embeddings by {judge_model} are "
            f"{dim}-d; rerun {step} with that model"
        )
    return emb


def hit_rows_weights(hits: list[dict], temperature: float) -> tuple[list[int], np.ndarray]:
    """Bank rows of ``hits`` and their style weights (see the module docstring)."""
    from rcmg.bank.blend import softmax_weights

    rows = [int(h["row"]) for h in hits if isinstance(h.get("row"), int)]
    if not rows:
        return [], np.zeros(0)
    scores = [h.get("score") for h in hits if isinstance(h.get("row"), int)]
    if any(s is None for s in scores):
        return rows, np.full(len(rows), 1.0 / len(rows))
    return rows, np.asarray(softmax_weights(np.asarray(scores, np.float64), temperature))


def judge_style(judge_bank: np.ndarray, hits: list[dict], temperature: float) -> np.ndarray:
    """The judge-space style vector of one item's hits (unit length), NaN when none."""
    rows, weights = hit_rows_weights(hits, temperature)
    dim = judge_bank.shape[1]
    if not rows:
        return np.full(dim, math.nan)
    if max(rows) >= len(judge_bank) or min(rows) < 0:
        raise InputError(
            f"retrieved bank row {max(rows)} but the judge bank has {len(judge_bank)} rows; "
            "rerun judge_bank_embed for this bank"
        )
    mean = weights @ judge_bank[rows]
    norm = float(np.linalg.norm(mean))
    return mean / norm if np.isfinite(norm) and norm > 0 else np.full(dim, math.nan)


def judge_style_sims(
    audio_emb: np.ndarray, hit_lists: list[list[dict] | None], judge_bank, temperature: float
) -> np.ndarray:
    """cos(judge audio embedding, judge-space style) per clip; NaN where no hits."""
    sims = np.full(len(audio_emb), math.nan)
    for i, hits in enumerate(hit_lists):
        if not hits:
            continue
        style = judge_style(judge_bank, hits, temperature)
        a = audio_emb[i]
        norm = float(np.linalg.norm(a))
        if np.isfinite(style).all() and norm > 0:
            sims[i] = float(a @ style) / norm
    return sims


def describe(path: Path | None, judge_model: str) -> dict:
    """The summary's record of how style similarity was measured."""
    return {
        "judge_bank": None if path is None else str(path),
        "space": str(judge_model),
        "weighting": WEIGHTING,
        "bankspace_column": "clap_style_sim_bankspace",
    }
