"""Do two text towers share a space? The alignment check of AudioLDM1 vs the bank's CLAP.

AudioLDM1 in diffusers ships only a CLAP text tower, so its style vectors must come from
a separate CLAP (the bank's). Over the same texts (the bank's label captions and the
prompts), with ``A`` the bank CLAP's text embeddings and ``B`` the model's own (rows
L2-normalised, both ``[n, d]``):

* ``per_text_cosine``: cos(A_i, B_i): are they the SAME space (values near 1)?
* ``procrustes_residual``: ``min_R ||A R - B||_F / ||B||_F`` over orthogonal ``R``
  (orthogonal Procrustes, ``R = U V^T`` from the SVD of ``A^T B``) on the CENTRED rows:
  0 when a rotation maps one onto the other ("a linear map would do"), about 1 or more for
  unrelated directions. Centring matters: embeddings that all share one dominant direction
  (as random-weight towers give, every text at cosine ~0.997 to every other) are trivially
  rotated onto each other otherwise. With fewer texts than dimensions any fit is
  optimistic: ``n_texts`` is recorded beside it;
* ``linear_cka``: linear centred kernel alignment, invariant to rotation and scale
  (1 = same geometry, ~0 = unrelated).

:func:`verdict` turns them into ``identical`` (median cosine >= ``identical_cosine`` and
the residual small),
``linear_map`` (Procrustes residual <= ``map_residual``) or ``unrelated``. Pure numpy.
"""

from __future__ import annotations

import numpy as np

IDENTICAL_COSINE = 0.9
MAP_RESIDUAL = 0.5


def _unit_rows(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"expected a non-empty [n, d] matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(x)):
        raise ValueError("embeddings contain zero or non-finite rows")
    return x / norms


def per_text_cosine(a, b) -> np.ndarray:
    a, b = _unit_rows(a), _unit_rows(b)
    if a.shape != b.shape:
        raise ValueError(
            f"the two spaces must embed the same texts in the same dim: {a.shape} vs {b.shape}"
        )
    return np.sum(a * b, axis=1)


def procrustes_residual(a, b) -> float:
    a, b = _unit_rows(a), _unit_rows(b)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    if not np.linalg.norm(b) > 0:
        return 0.0 if not np.linalg.norm(a) > 0 else float("inf")
    u, _s, vt = np.linalg.svd(a.T @ b)
    rotation = u @ vt
    return float(np.linalg.norm(a @ rotation - b) / np.linalg.norm(b))


def linear_cka(a, b) -> float:
    a, b = _unit_rows(a), _unit_rows(b)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    num = np.linalg.norm(a.T @ b) ** 2
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    return float(num / den) if den > 0 else 0.0


def verdict(
    median_cosine: float,
    residual: float,
    identical_cosine=IDENTICAL_COSINE,
    map_residual=MAP_RESIDUAL,
) -> str:
    """``identical`` needs both a high raw cosine AND a small centred residual (a shared
    dominant direction alone is not a shared space)."""
    if median_cosine >= identical_cosine and residual <= map_residual:
        return "identical"
    if residual <= map_residual:
        return "linear_map"
    return "unrelated"


def alignment_figures(a, b, texts: list[str]) -> dict:
    """Every figure of the check (recorded in the align_check output JSON)."""
    cos = per_text_cosine(a, b)
    residual = procrustes_residual(a, b)
    figures = {
        "n_texts": len(texts),
        "cosine_median": float(np.median(cos)),
        "cosine_min": float(cos.min()),
        "cosine_p10": float(np.quantile(cos, 0.1)),
        "procrustes_residual": residual,
        "linear_cka": linear_cka(a, b),
        "verdict": verdict(float(np.median(cos)), residual),
        "thresholds": {"identical_cosine": IDENTICAL_COSINE, "map_residual": MAP_RESIDUAL},
        "per_text": [{"text": t, "cosine": float(c)} for t, c in zip(texts, cos, strict=True)],
    }
    return figures
