"""CLAP embeddings in the joint 512-d audio-text space (transformers ``ClapModel``).

:class:`ClapEmbedder` loads the model and processor once; audio and text go through
the model's own projection and come back as float32, L2-normalised numpy rows.
Feature extraction (:meth:`ClapEmbedder.prepare_audio`, CPU) is separate from the
forward pass (:meth:`ClapEmbedder.embed_prepared`) so a job can overlap the two.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from rcmg.models.device import resolve_device, resolve_dtype, torch_dtype
from rcmg.models.hf_loading import load_pretrained

log = logging.getLogger(__name__)

NORM_EPS = 1e-12


def l2_normalise_rows(rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Finite float32 unit rows, and how many rows were degenerate.

    Non-finite values become 0; a row whose norm is ~0 (e.g. silent input through a
    low-precision forward) stays all-zero instead of turning into NaN.
    """
    clean = np.nan_to_num(np.asarray(rows, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    norms = np.linalg.norm(clean, axis=1, keepdims=True)
    degenerate = (norms[:, 0] <= NORM_EPS) | ~np.isfinite(np.asarray(rows)).all(axis=1)
    unit = np.divide(clean, norms, out=np.zeros_like(clean), where=norms > NORM_EPS)
    return unit.astype(np.float32), int(degenerate.sum())


def _clap_preprocessors(model: str, subfolder: str, extra: dict):
    """(tokenizer, feature extractor): the folder's ClapProcessor, or for a ClapModel in a
    pipeline's ``subfolder`` the pipeline's ``tokenizer/`` and ``feature_extractor/``."""
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapProcessor

    if not subfolder:
        processor = load_pretrained(ClapProcessor.from_pretrained, model, **extra)
        return processor.tokenizer, processor.feature_extractor
    tokenizer = load_pretrained(
        AutoTokenizer.from_pretrained, model, subfolder="tokenizer", **extra
    )
    features = load_pretrained(
        ClapFeatureExtractor.from_pretrained, model, subfolder="feature_extractor", **extra
    )
    return tokenizer, features


def _pooled_features(output):
    """``get_*_features`` returns a tensor (transformers 4) or an output object (5)."""
    if hasattr(output, "pooler_output"):
        return output.pooler_output
    return output


class ClapEmbedder:
    """A CLAP model loaded once: audio/text -> float32 L2-normalised ``[B, dim]`` rows.

    ``subfolder`` names a ClapModel inside a pipeline folder (AudioLDM2's
    ``text_encoder``); its tokenizer and feature extractor are then the pipeline's own
    ``tokenizer/`` and ``feature_extractor/`` beside it (the diffusers layout).
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        dtype: str = "auto",
        subfolder: str = "",
        revision: str | None = None,
    ) -> None:
        from transformers import ClapModel

        self.device = resolve_device(device)
        self.dtype_requested = dtype
        self.dtype_name = resolve_dtype(dtype, self.device)
        self._torch_dtype = torch_dtype(self.dtype_name)
        self.model_name = model
        self.subfolder = subfolder
        self.revision = revision
        extra = {"revision": revision} if revision else {}
        tokenizer, feature_extractor = _clap_preprocessors(model, subfolder, extra)
        if subfolder:
            extra["subfolder"] = subfolder
        loaded = load_pretrained(ClapModel.from_pretrained, model, **extra)
        self._setup(
            loaded.to(device=self.device, dtype=self._torch_dtype).eval(),
            tokenizer,
            feature_extractor,
        )

    @classmethod
    def from_pipeline(cls, pipe, device: str) -> ClapEmbedder:
        """The pipeline's own CLAP (AudioLDM2: ``text_encoder``, ``tokenizer``,
        ``feature_extractor``), shared with it rather than loaded twice."""
        self = cls.__new__(cls)
        self.device = device
        param = next(pipe.text_encoder.parameters())
        self._torch_dtype = param.dtype
        self.dtype_name = self.dtype_requested = str(param.dtype).removeprefix("torch.")
        self.model_name = getattr(pipe, "name_or_path", "") or "pipeline"
        self.subfolder = "text_encoder"
        self.revision = None
        self._setup(pipe.text_encoder, pipe.tokenizer, pipe.feature_extractor)
        return self

    def _setup(self, model, tokenizer, feature_extractor) -> None:
        self.model = model
        self.feature_extractor = feature_extractor
        self.tokenizer = tokenizer
        self.dim = int(self.model.config.projection_dim)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.model_forward_seconds = 0.0
        self.degenerate_rows = 0
        log.info(
            "CLAP %s%s on %s (%s): dim %d, %d Hz",
            self.model_name,
            f"/{self.subfolder}" if self.subfolder else "",
            self.device,
            self.dtype_name,
            self.dim,
            self.sampling_rate,
        )

    # ------------------------------------------------------------------ audio
    def prepare_audio(self, waves: np.ndarray) -> dict:
        """CPU feature extraction for a ``[B, T]`` batch at :attr:`sampling_rate`."""
        batch = np.asarray(waves)
        if batch.ndim != 2:
            raise ValueError(f"expected audio as a [batch, samples] array, got shape {batch.shape}")
        batch = np.nan_to_num(batch.astype(np.float32, copy=False))
        return dict(
            self.feature_extractor(
                list(batch), sampling_rate=self.sampling_rate, return_tensors="pt"
            )
        )

    def embed_prepared(self, features: dict) -> np.ndarray:
        """Model forward on features from :meth:`prepare_audio`; ``[B, dim]`` float32."""
        inputs = {name: self._to_device(name, value) for name, value in features.items()}
        raw = self._timed_forward(lambda: self.model.get_audio_features(**inputs))
        return self._finish(raw)

    def embed_audio(self, waves_48k: np.ndarray) -> np.ndarray:
        """``[B, T]`` float32 audio at :attr:`sampling_rate` -> ``[B, dim]`` unit rows."""
        return self.embed_prepared(self.prepare_audio(waves_48k))

    # ------------------------------------------------------------------- text
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Texts -> ``[B, dim]`` float32 unit rows."""
        if isinstance(texts, str):
            raise TypeError("embed_text takes a list of strings, not one string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
        inputs = {name: value.to(self.device) for name, value in tokens.items()}
        raw = self._timed_forward(lambda: self.model.get_text_features(**inputs))
        return self._finish(raw)

    # ---------------------------------------------------------------- helpers
    def _to_device(self, name: str, value):
        import torch

        if torch.is_floating_point(value) and name != "is_longer":
            return value.to(device=self.device, dtype=self._torch_dtype)
        return value.to(self.device)

    def _timed_forward(self, forward):
        import torch

        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            output = _pooled_features(forward()).float().cpu()
        if cuda:
            torch.cuda.synchronize()
        self.model_forward_seconds += time.perf_counter() - start
        return output.numpy()

    def _finish(self, raw: np.ndarray) -> np.ndarray:
        rows, degenerate = l2_normalise_rows(raw)
        if degenerate:
            self.degenerate_rows += degenerate
            log.warning(
                "%d CLAP embedding row(s) were non-finite or zero and are returned as zeros",
                degenerate,
            )
        return rows


# ------------------------------------------------------------ resumable shard embedding


def batch_bounds(n_rows: int, batch: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_rows)`` in batches of ``batch``."""
    if batch < 1:
        raise ValueError(f"batch size must be >= 1, got {batch}")
    return [(start, min(start + batch, n_rows)) for start in range(0, n_rows, batch)]


class ChunkStore:
    """Completed batches of a job as ``chunk_START_STOP.npy`` files in a ``.partial`` dir.

    Each chunk is written atomically; a chunk that does not load with the expected
    shape and finite values is treated as missing. ``meta.json`` records what the
    chunks were computed from; a mismatch (other model, other input) discards them.
    """

    def __init__(self, directory, meta: dict, dim: int) -> None:
        from pathlib import Path

        self.directory = Path(directory)
        self.dim = dim
        self._open(meta)

    def _open(self, meta: dict) -> None:
        import json
        import shutil

        from rcmg.workflow.atomic import write_json

        meta_path = self.directory / "meta.json"
        if meta_path.is_file():
            try:
                found = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                found = None
            if found != meta:
                log.warning(
                    "discarding partial chunks in %s: made from other inputs", self.directory
                )
                shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        if not meta_path.is_file():
            write_json(meta_path, meta)

    def path(self, start: int, stop: int):
        return self.directory / f"chunk_{start:09d}_{stop:09d}.npy"

    def load(self, start: int, stop: int) -> np.ndarray | None:
        """The chunk's rows, or None when it is missing or unusable (then it is removed)."""
        path = self.path(start, stop)
        if not path.is_file():
            return None
        try:
            rows = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("recomputing unreadable chunk %s (%s)", path, exc)
            path.unlink(missing_ok=True)
            return None
        if rows.shape != (stop - start, self.dim) or not np.isfinite(rows).all():
            log.warning("recomputing chunk %s with shape %s", path, rows.shape)
            path.unlink(missing_ok=True)
            return None
        return rows.astype(np.float32, copy=False)

    def save(self, start: int, stop: int, rows: np.ndarray) -> None:
        from rcmg.workflow.atomic import atomic_path

        with atomic_path(self.path(start, stop), suffix=".npy") as tmp:
            np.save(tmp, np.asarray(rows, dtype=np.float32))


def _prefetch_batches(prepare, audio: np.ndarray, order: np.ndarray, todo, depth: int = 2):
    """Yield ``(start, stop, features)`` with feature extraction running in a thread."""
    import queue
    import threading

    results: queue.Queue = queue.Queue(maxsize=depth)
    stop_flag = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for start, stop in todo:
                if stop_flag.is_set():
                    return
                rows = order[start:stop]
                waves = np.asarray(audio[rows], dtype=np.float32)
                results.put((start, stop, prepare(waves)))
            results.put(done)
        except BaseException as exc:  # handed to the consumer, re-raised there
            results.put(exc)

    worker = threading.Thread(target=produce, name="clap-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = results.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop_flag.set()
        while worker.is_alive():
            try:
                results.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


def embed_rows_resumable(
    embedder: ClapEmbedder,
    audio: np.ndarray,
    order: np.ndarray,
    store: ChunkStore,
    batch: int,
) -> tuple[np.ndarray, dict]:
    """Embed ``audio[order[i]]`` for every i, reusing finished chunks in ``store``.

    Returns the ``[len(order), dim]`` float32 rows and counts of reused/computed batches.
    """
    from tqdm import tqdm

    bounds = batch_bounds(len(order), batch)
    out = np.zeros((len(order), embedder.dim), dtype=np.float32)
    todo = []
    for start, stop in bounds:
        rows = store.load(start, stop)
        if rows is None:
            todo.append((start, stop))
        else:
            out[start:stop] = rows
    reused = len(bounds) - len(todo)
    if reused:
        log.info("reusing %d of %d finished batches from %s", reused, len(bounds), store.directory)
    progress = tqdm(total=len(todo), desc="clap_embed", unit="batch", leave=False)
    for start, stop, features in _prefetch_batches(embedder.prepare_audio, audio, order, todo):
        rows = embedder.embed_prepared(features)
        store.save(start, stop, rows)
        out[start:stop] = rows
        progress.update(1)
    progress.close()
    return out, {"batches": len(bounds), "batches_reused": reused, "batches_computed": len(todo)}
