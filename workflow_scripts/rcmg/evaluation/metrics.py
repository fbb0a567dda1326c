"""Evaluation maths: level, loudness, clipping, embedding distances (FAD, KAD), cosine.

Pure numpy/scipy. Every level/loudness function returns a finite number, even for
digital silence or the ~1e-9 amplitude audio that random-weight models produce.
"""

from __future__ import annotations

import warnings

import numpy as np

DB_FLOOR = -120.0
LUFS_FLOOR = -120.0
SILENCE_DBFS = -60.0
CLIP_LEVEL = 0.999


def _as_float64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).reshape(-1)


def amplitude_to_db(amplitude: float, floor_db: float = DB_FLOOR) -> float:
    """20*log10(amplitude), clamped below at ``floor_db`` (never -inf or NaN)."""
    amplitude = float(amplitude)
    if not np.isfinite(amplitude) or amplitude <= 10 ** (floor_db / 20):
        return float(floor_db)
    return float(max(20.0 * np.log10(amplitude), floor_db))


def rms_dbfs(x, floor_db: float = DB_FLOOR) -> float:
    """RMS level in dBFS (full scale = 1.0); ``floor_db`` for silence or empty input."""
    samples = _as_float64(x)
    if samples.size == 0:
        return float(floor_db)
    return amplitude_to_db(np.sqrt(np.mean(samples**2)), floor_db)


def peak_dbfs(x, floor_db: float = DB_FLOOR) -> float:
    """Sample-peak level in dBFS; ``floor_db`` for silence or empty input."""
    samples = _as_float64(x)
    if samples.size == 0:
        return float(floor_db)
    return amplitude_to_db(np.max(np.abs(samples)), floor_db)


def clipping_fraction(x, level: float = CLIP_LEVEL) -> float:
    """Fraction of samples whose magnitude reaches ``level`` (0.0 for empty input)."""
    samples = _as_float64(x)
    if samples.size == 0:
        return 0.0
    return float(np.mean(np.abs(samples) >= level))


def is_clipped(x, level: float = CLIP_LEVEL, max_fraction: float = 1e-3) -> bool:
    """True when more than ``max_fraction`` of samples sit at or above ``level``."""
    return clipping_fraction(x, level) > max_fraction


def is_silent(x, threshold_dbfs: float = SILENCE_DBFS) -> bool:
    """True when the RMS level is below ``threshold_dbfs``."""
    return rms_dbfs(x) < threshold_dbfs


def integrated_loudness(x, sr: int, floor_lufs: float = LUFS_FLOOR) -> float:
    """ITU-R BS.1770 integrated loudness (LUFS) via pyloudnorm.

    ``x`` is mono ``[T]`` or multichannel ``[T, C]``: BS.1770 sums the channels'
    K-weighted mean squares (weight 1 for the front channels, so stereo L and R count
    alike), never a downmix. Audio shorter than one 400 ms gating block, or so quiet that
    every block is gated out, returns ``floor_lufs`` instead of -inf/NaN.
    """
    import pyloudnorm

    samples = np.asarray(x, dtype=np.float64)
    samples = samples if samples.ndim == 2 and samples.shape[1] > 1 else samples.reshape(-1)
    block_s = 0.4
    if samples.shape[0] < int(np.ceil(block_s * sr)) + 1:
        return float(floor_lufs)
    meter = pyloudnorm.Meter(sr, block_size=block_s)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(meter.integrated_loudness(samples))
    if not np.isfinite(value):
        return float(floor_lufs)
    return float(max(value, floor_lufs))


def level_metrics(x, sr: int, silence_dbfs: float = SILENCE_DBFS) -> dict:
    """All per-clip level metrics in one dict (every value finite)."""
    return {
        "rms_dbfs": rms_dbfs(x),
        "peak_dbfs": peak_dbfs(x),
        "loudness_lufs": integrated_loudness(x, sr),
        "clip_fraction": clipping_fraction(x),
        "clipped": is_clipped(x),
        "silent": is_silent(x, silence_dbfs),
    }


def gaussian_stats(emb) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, rowvar=False) covariance of an [N, D] embedding matrix."""
    matrix = np.asarray(emb, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(f"gaussian_stats needs an [N>=2, D] matrix, got shape {matrix.shape}")
    return matrix.mean(axis=0), np.cov(matrix, rowvar=False)


def _real_sqrtm(matrix: np.ndarray, imag_atol: float = 1e-3) -> np.ndarray | None:
    """Real part of scipy's sqrtm, or None when it is not finite or clearly complex."""
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = linalg.sqrtm(matrix)
    if not np.isfinite(root).all():
        return None
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=imag_atol):
            return None
        root = root.real
    return root


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d^2 = |mu1-mu2|^2 + Tr(s1) + Tr(s2) - 2 Tr(sqrtm(s1 s2)), as in pytorch-fid and
    frechet_audio_distance: when the product is singular, ``eps`` is added to both
    diagonals (also when sqrtm is clearly complex); tiny imaginary parts are discarded.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape}")
    diff = mu1 - mu2
    covmean = _real_sqrtm(sigma1 @ sigma2)
    if covmean is None:
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _real_sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if covmean is None:
        raise ValueError("sqrtm(sigma1 @ sigma2) is not finite/real even with the eps offset")
    value = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(value)


def frechet_distance_from_embeddings(x, y, eps: float = 1e-6) -> float:
    """FAD between two [N, D] embedding sets."""
    mu_x, sigma_x = gaussian_stats(x)
    mu_y, sigma_y = gaussian_stats(y)
    return frechet_distance(mu_x, sigma_x, mu_y, sigma_y, eps=eps)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(sq, 0.0)


# KAD in the convention of kadtk (Chung et al. 2025, github.com/YoonjinXD/kadtk):
# Gaussian kernel exp(-gamma d^2) with gamma = 1 / (2 bandwidth^2 + 1e-8), bandwidth =
# median pairwise distance of the REFERENCE set, unbiased MMD^2, x 100.
KAD_SCALE = 100.0
KAD_GAMMA_EPS = 1e-8


def median_pairwise_distance(emb) -> float:
    """Median of the n(n-1)/2 pairwise Euclidean distances of an [N, D] set.

    The lower median for an even number of pairs, as ``torch.median(torch.pdist(x))``
    (kadtk's bandwidth); 1.0 when every distance is 0 or the set has < 2 rows.
    """
    matrix = np.asarray(emb, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) < 2:
        return 1.0
    return median_from_squared_distances(_squared_distances(matrix, matrix))


def median_from_squared_distances(d2: np.ndarray) -> float:
    """:func:`median_pairwise_distance` from the [N, N] squared-distance matrix."""
    upper = d2[np.triu_indices(len(d2), k=1)]
    k = (upper.size - 1) // 2
    value = float(np.sqrt(np.partition(upper, k)[k]))
    return value if np.isfinite(value) and value > 0 else 1.0


def kad_gamma(bandwidth: float) -> float:
    """kadtk's Gaussian-kernel coefficient for ``bandwidth``."""
    return 1.0 / (2.0 * float(bandwidth) ** 2 + KAD_GAMMA_EPS)


def kad_kernels(x, y, bandwidth: float, d2_yy: np.ndarray | None = None):
    """(K_xx, K_yy, K_xy) Gaussian kernel matrices, the within-set diagonals set to 0.

    ``d2_yy``: the reference's squared distances when already computed (bandwidth).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"kad needs [N, D] and [M, D] matrices, got {x.shape} and {y.shape}")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("kad needs at least two embeddings in each set")
    gamma = kad_gamma(bandwidth)
    k_xx = np.exp(-gamma * _squared_distances(x, x))
    k_yy = np.exp(-gamma * (_squared_distances(y, y) if d2_yy is None else d2_yy))
    np.fill_diagonal(k_xx, 0.0)
    np.fill_diagonal(k_yy, 0.0)
    return k_xx, k_yy, np.exp(-gamma * _squared_distances(x, y))


def kad(gen, ref, bandwidth: float | None = None, scale: float = KAD_SCALE) -> float:
    """Kernel Audio Distance of ``gen`` [N, D] to ``ref`` [M, D] (kadtk's convention).

    Unbiased MMD^2 (diagonals excluded from the within-set means, so the expectation
    is 0 when both sets come from one distribution and single estimates may be
    negative) with a Gaussian kernel whose bandwidth is, by default, the median
    pairwise distance of the reference set; times ``scale`` (100, kadtk's factor).
    """
    ref = np.asarray(ref, dtype=np.float64)
    width = median_pairwise_distance(ref) if bandwidth is None else float(bandwidth)
    k_xx, k_yy, k_xy = kad_kernels(gen, ref, width)
    n, m = len(k_xx), len(k_yy)
    value = k_xx.sum() / (n * (n - 1)) + k_yy.sum() / (m * (m - 1)) - 2.0 * k_xy.mean()
    return float(scale * value)


def l2_normalise(x, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    matrix = np.atleast_2d(np.asarray(x, dtype=np.float64))
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, eps)


def cosine_similarity_rows(a, b) -> np.ndarray:
    """Cosine similarity of row i of ``a`` with row i of ``b`` -> [N]."""
    a_n, b_n = l2_normalise(a), l2_normalise(b)
    if a_n.shape != b_n.shape:
        raise ValueError(f"row-wise cosine needs equal shapes, got {a_n.shape} and {b_n.shape}")
    return np.sum(a_n * b_n, axis=1)


def cosine_similarity_matrix(a, b) -> np.ndarray:
    """All-pairs cosine similarity -> [N, M]."""
    return l2_normalise(a) @ l2_normalise(b).T


def psd_sqrt(matrix) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigh; negative noise clipped)."""
    eigenvalues, vectors = np.linalg.eigh((np.asarray(matrix) + np.asarray(matrix).T) / 2.0)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def frechet_distance_to_reference(x, mu_ref, sigma_ref, sigma_ref_root=None) -> float:
    """FAD of an [N, D] set against fixed reference stats, via a symmetric eigenproblem.

    The eigenvalues of s_x @ s_ref are real and >= 0, so Tr(sqrtm(s_x s_ref)) is the
    sum of their square roots. With s_x = Xc^T Xc / (N-1) they are those of the N x N
    matrix Xc s_ref Xc^T / (N-1) (used when N <= D), or of the D x D matrix
    R s_x R with R = sqrt(s_ref) (pass ``sigma_ref_root`` to reuse R). Same value as
    :func:`frechet_distance` without the eps offset; fast enough to bootstrap.
    """
    matrix = np.asarray(x, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(f"need an [N>=2, D] matrix, got shape {matrix.shape}")
    mu_ref = np.asarray(mu_ref, dtype=np.float64)
    sigma_ref = np.asarray(sigma_ref, dtype=np.float64)
    n, dim = matrix.shape
    centred = matrix - matrix.mean(axis=0)
    if n - 1 < dim:
        product = centred @ sigma_ref @ centred.T / (n - 1)
    else:
        root = psd_sqrt(sigma_ref) if sigma_ref_root is None else sigma_ref_root
        product = root @ (centred.T @ centred / (n - 1)) @ root
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = matrix.mean(axis=0) - mu_ref
    trace_x = float(np.sum(centred**2) / (n - 1))
    return float(diff.dot(diff) + trace_x + np.trace(sigma_ref) - 2.0 * trace_sqrt)
