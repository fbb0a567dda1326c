"""FAISS index over the style bank, recall checks and the StyleRetriever.

All indexes use inner product on L2-normalised vectors (= cosine similarity).
faiss is imported inside functions only, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.workflow.atomic import atomic_path, read_jsonl

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "ivf", "hnsw")
ADD_BLOCK_ROWS = 65536
MAX_NLIST = 65536
MIN_TRAIN_POINTS_PER_LIST = 39  # faiss warns below this
TRAIN_POINTS_PER_LIST = 40  # enough for k-means centroids; keeps training fast
KMEANS_ITERATIONS = 10


def set_threads(threads: int | None) -> None:
    """Set faiss' OpenMP thread count (``None`` keeps the current setting).

    The OpenMP pool is process-wide and shared with torch's intra-op threads (measured:
    ``torch.get_num_threads()`` follows ``faiss.omp_set_num_threads``), so jobs that also
    run a model (generate, evaluate, train_adapter) never pass a thread count here.
    """
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    import faiss

    faiss.omp_set_num_threads(int(threads))


def normalize_rows(vectors: np.ndarray, name: str = "vectors") -> np.ndarray:
    """Float32 copy of ``vectors`` with unit-norm rows; NaN/inf or zero rows raise."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, d], got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or inf values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} contains a zero-norm row (row {int(np.argmin(norms[:, 0]))})")
    return np.ascontiguousarray(array / norms)


def default_nlist(n_vectors: int) -> int:
    """About ``4 * sqrt(N)`` lists, capped so every list gets enough training points."""
    by_size = int(round(4 * math.sqrt(max(n_vectors, 1))))
    by_training = max(1, n_vectors // MIN_TRAIN_POINTS_PER_LIST)
    return max(1, min(by_size, by_training, MAX_NLIST))


def _training_sample(vectors: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    n_train = min(len(vectors), nlist * TRAIN_POINTS_PER_LIST)
    if n_train == len(vectors):
        return normalize_rows(vectors, "training vectors")
    rows = np.sort(np.random.default_rng(seed).choice(len(vectors), n_train, replace=False))
    return normalize_rows(vectors[rows], "training vectors")


def configure_search(index, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Set search-time knobs (IVF ``nprobe``, HNSW ``efSearch``) where the index has them."""
    import faiss

    if nprobe is not None:
        try:
            ivf = faiss.extract_index_ivf(index)
        except RuntimeError:
            ivf = None
        if ivf is not None:
            ivf.nprobe = max(1, min(int(nprobe), ivf.nlist))
    if ef_search is not None and hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(ef_search)


def build_index(
    vectors: np.ndarray,
    kind: str = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_search: int = 64,
    ef_construction: int = 80,
    seed: int = 0,
):
    """Build an inner-product FAISS index over ``vectors`` ([N, d], may be a memmap).

    Vectors are L2-normalised block by block while adding, so a memmap bank is never
    copied whole. IVF is trained on a sample of at most ``256 * nlist`` vectors.
    """
    import faiss

    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown index kind {kind!r}; valid kinds: {', '.join(INDEX_KINDS)}")
    if vectors.ndim != 2 or len(vectors) == 0:
        raise ValueError(f"cannot index an empty or non-2-D bank (shape {vectors.shape})")
    n_vectors, dim = vectors.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(ef_construction)
    else:
        nlist = int(nlist) if nlist else default_nlist(n_vectors)
        if nlist > n_vectors:
            raise ValueError(f"nlist={nlist} exceeds the number of vectors ({n_vectors})")
        index = faiss.index_factory(dim, f"IVF{nlist},Flat", faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = KMEANS_ITERATIONS
        index.cp.seed = seed
        log.info(
            "training IVF%d on %d vectors", nlist, min(n_vectors, nlist * TRAIN_POINTS_PER_LIST)
        )
        index.train(_training_sample(vectors, nlist, seed))
    for start in range(0, n_vectors, ADD_BLOCK_ROWS):
        block = vectors[start : start + ADD_BLOCK_ROWS]
        index.add(normalize_rows(block, f"bank rows {start}..{start + len(block) - 1}"))
    configure_search(index, nprobe=nprobe, ef_search=ef_search)
    return index


def index_kind(index) -> str:
    """Name the kind of a (loaded) index: flat, ivf or hnsw."""
    import faiss

    if hasattr(index, "hnsw"):
        return "hnsw"
    try:
        faiss.extract_index_ivf(index)
        return "ivf"
    except RuntimeError:
        return "flat"


def save_index(index, path: str | os.PathLike) -> None:
    """Write ``index`` atomically (temporary sibling, then rename)."""
    import faiss

    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: str | os.PathLike):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"FAISS index {path} does not exist; build it with workflow_scripts/build_index.py"
        )
    import faiss

    return faiss.read_index(str(path))


def exact_top_k(
    vectors: np.ndarray, queries: np.ndarray, k: int, block_rows: int = ADD_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of normalised ``queries`` over normalised bank blocks.

    Returns ``(scores [B, k], rows [B, k])`` sorted by descending score. Works on a
    memmap bank block by block (memory ~ ``B * block_rows``).
    """
    queries = normalize_rows(queries, "queries")
    k = min(k, len(vectors))
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(vectors), block_rows):
        block = normalize_rows(vectors[start : start + block_rows], "bank block")
        scores = np.concatenate([best_scores, queries @ block.T], axis=1)
        block_rows_ids = np.broadcast_to(
            np.arange(start, start + len(block)), (len(queries), len(block))
        )
        rows = np.concatenate([best_rows, block_rows_ids], axis=1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else None
        if keep is not None:
            scores = np.take_along_axis(scores, keep, axis=1)
            rows = np.take_along_axis(rows, keep, axis=1)
        best_scores, best_rows = scores, rows
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best_scores, order, axis=1), np.take_along_axis(
        best_rows, order, axis=1
    )


def recall_at_k(index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean fraction of the exact top-k rows that ``index`` also returns in its top-k."""
    k = min(k, len(vectors))
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    _, exact_rows = exact_top_k(vectors, queries, k)
    _, found_rows = index.search(normalize_rows(queries, "queries"), k)
    hits = [
        len(set(e.tolist()) & set(f.tolist())) for e, f in zip(exact_rows, found_rows, strict=True)
    ]
    return float(np.sum(hits) / (k * len(queries)))


@dataclass(frozen=True)
class Hit:
    """One retrieved bank row."""

    row: int
    score: float
    segment_id: str
    tags: tuple[str, ...]
    source_id: str

    def as_dict(self) -> dict:
        return {
            "row": self.row,
            "score": self.score,
            "segment_id": self.segment_id,
            "tags": list(self.tags),
            "source_id": self.source_id,
        }


class StyleRetriever:
    """Search the style bank: bank ``.npy`` (memmap) + mapping ``.jsonl`` + FAISS index.

    A bare ``.npy`` bank works too (as the original scripts' ``--style_bank X.npy``):
    without ``mapping_path`` every row gets a synthetic mapping row (``segment_id``
    ``row{N}``, no tags); without ``index_path`` an exact inner-product index (faiss
    ``IndexFlatIP`` over the L2-normalised rows) is built in memory on the fly.
    """

    def __init__(
        self,
        bank_path: str | os.PathLike,
        mapping_path: str | os.PathLike | None,
        index_path: str | os.PathLike | None,
        threads: int | None = None,
        nprobe: int | None = None,
        ef_search: int | None = None,
    ):
        self.bank_path = Path(bank_path)
        self.mapping_path = Path(mapping_path) if mapping_path else None
        self.index_path = Path(index_path) if index_path else None
        set_threads(threads)
        self.bank = self._load_bank()
        if self.mapping_path is None:
            self.mapping = [
                {"segment_id": f"row{r}", "tags": [], "source_id": ""}
                for r in range(len(self.bank))
            ]
        else:
            self.mapping = read_jsonl(self.mapping_path)
        if self.index_path is None:
            log.info("no index for %s: exact search built on the fly", self.bank_path)
            self.index = build_index(self.bank, kind="flat")
        else:
            self.index = load_index(self.index_path)
        configure_search(self.index, nprobe=nprobe, ef_search=ef_search)
        self._check_consistent()

    @property
    def index_description(self) -> str:
        """The index file, or ``exact (built on the fly)`` for a bare ``.npy`` bank."""
        return str(self.index_path) if self.index_path else "exact (IndexFlatIP built on the fly)"

    def _load_bank(self) -> np.ndarray:
        if not self.bank_path.is_file():
            raise FileNotFoundError(
                f"style bank {self.bank_path} does not exist; build it with workflow_scripts/build_bank.py"
            )
        bank = np.load(self.bank_path, mmap_mode="r")
        if bank.ndim != 2:
            raise ValueError(f"style bank {self.bank_path} must be 2-D [N, d], got {bank.shape}")
        return bank

    def _check_consistent(self) -> None:
        n_bank, dim = self.bank.shape
        if len(self.mapping) != n_bank:
            raise ValueError(
                f"{self.mapping_path} has {len(self.mapping)} rows but {self.bank_path} has "
                f"{n_bank}; rebuild both with build_bank.py"
            )
        if self.index.d != dim or self.index.ntotal != n_bank:
            raise ValueError(
                f"index {self.index_path} (dim {self.index.d}, {self.index.ntotal} vectors) does "
                f"not match bank {self.bank_path} (dim {dim}, {n_bank} vectors); rebuild the "
                "index with build_index.py"
            )

    @property
    def dim(self) -> int:
        return int(self.bank.shape[1])

    def __len__(self) -> int:
        return int(self.bank.shape[0])

    def _check_queries(self, queries) -> np.ndarray:
        array = np.asarray(queries, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self.dim:
            raise ValueError(
                f"query shape {tuple(np.shape(queries))} does not match the bank dimension "
                f"{self.dim} of {self.bank_path} / index {self.index_path}"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError("queries contain NaN or inf values (check the text embeddings)")
        return normalize_rows(array, "queries")

    def hit(self, row: int, score: float) -> Hit:
        """The :class:`Hit` for bank ``row`` (e.g. a style chosen by segment id) with ``score``."""
        if not 0 <= row < len(self):
            raise IndexError(f"row {row} is outside bank {self.bank_path} ({len(self)} rows)")
        meta = self.mapping[row]
        return Hit(
            row=row,
            score=float(score),
            segment_id=str(meta.get("segment_id", "")),
            tags=tuple(meta.get("tags") or ()),
            source_id=str(meta.get("source_id", "")),
        )

    _hit = hit  # kept for callers written against the earlier private name

    def search(self, queries, k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query (fewer when the bank is smaller than ``k``)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        normalized = self._check_queries(queries)
        k_eff = min(int(k), len(self))
        if k_eff < k:
            log.warning("k=%d exceeds the bank size %d; returning %d hits", k, len(self), k_eff)
        if hasattr(self.index, "hnsw") and self.index.hnsw.efSearch < k_eff:
            self.index.hnsw.efSearch = k_eff
        scores, rows = self.index.search(normalized, k_eff)
        return [
            [self.hit(int(r), s) for r, s in zip(row_ids, row_scores, strict=True) if r >= 0]
            for row_ids, row_scores in zip(rows, scores, strict=True)
        ]

    def vectors(self, hits: list[Hit]) -> np.ndarray:
        """Bank vectors ``[k, d]`` of ``hits`` (in hit order)."""
        return np.asarray(self.bank[[h.row for h in hits]], dtype=np.float32)


@dataclass
class RetrievedStyle:
    """A text's style: the bank hits and the style vector built from them (or why not)."""

    hits: list[Hit]
    vector: np.ndarray | None  # [d] float32, L2-normalised
    error: str | None = None


def retrieved_style(retriever, query, topk: int, temperature: float) -> RetrievedStyle:
    """THE style vector of one text query: used by generation AND by adapter training.

    The query (a CLAP text embedding ``[d]``) searches the bank on its own (so a text's
    style never depends on which other texts are searched with it); the top ``topk``
    hits' bank vectors are softmax-weighted by ``score / temperature`` and the weighted
    mean is L2-normalised (:func:`rcmg.bank.blend.style_vector`). A style that cannot be
    formed comes back with ``vector=None`` and the reason in ``error``.
    """
    from rcmg.bank.blend import style_vector

    hits = retriever.search(np.asarray(query)[None, :], topk)[0]
    if not hits:
        return RetrievedStyle([], None, "bank search returned no hits; is the bank empty?")
    scores = np.asarray([h.score for h in hits], dtype=np.float64)
    try:
        vector = style_vector(retriever.vectors(hits), scores, temperature)
    except ValueError as err:
        return RetrievedStyle(hits, None, f"style vector could not be formed: {err}")
    return RetrievedStyle(hits, np.asarray(vector, np.float32))


def _normalize_tag(tag: str) -> str:
    return " ".join(str(tag).replace("_", " ").split()).casefold()


def tags_for_augmentation(hits, max_tags: int) -> list[str]:
    """Deduplicated tags of ``hits`` by descending score, first spelling kept, at most ``max_tags``.

    ``hits`` are :class:`Hit` objects or dicts with ``score`` and ``tags``. Tags that
    differ only in case, underscores or spacing count as the same tag.
    """
    if max_tags < 0:
        raise ValueError(f"max_tags must be >= 0, got {max_tags}")

    def field(hit, name):
        return hit[name] if isinstance(hit, dict) else getattr(hit, name)

    ordered = sorted(hits, key=lambda h: -float(field(h, "score")))
    seen: set[str] = set()
    tags: list[str] = []
    for hit in ordered:
        for tag in field(hit, "tags") or ():
            key = _normalize_tag(tag)
            if not key or key in seen:
                continue
            if len(tags) >= max_tags:
                return tags
            seen.add(key)
            tags.append(str(tag))
    return tags
