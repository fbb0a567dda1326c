"""Uncertainty of per-clip metrics: percentile bootstrap CIs, paired differences, Wilcoxon.

Set metrics (FAD, KAD) have their own intervals in :mod:`rcmg.evaluation.set_metrics`
(a with-replacement bootstrap pairs clips with themselves there).

Every function is seeded and returns plain dicts of floats so results go straight into
JSON/CSV. Undefined quantities are NaN with a ``reason`` string, never an exception.
"""

from __future__ import annotations

import math

import numpy as np


def _finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    return array[np.isfinite(array)]


def percentile_interval(samples, confidence: float = 0.95) -> tuple[float, float]:
    """Lower/upper percentile bounds of bootstrap ``samples`` (NaN when empty)."""
    finite = _finite(samples)
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_mean_ci(values, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Mean of ``values`` with a percentile-bootstrap CI.

    Returns {mean, ci_low, ci_high, n, reason}. n == 0 gives NaNs; n == 1 gives a
    degenerate CI equal to the value (reason says so).
    """
    finite = _finite(values)
    n = int(finite.size)
    if n == 0:
        return _ci_record(math.nan, math.nan, math.nan, 0, "no finite values")
    mean = float(finite.mean())
    if n == 1:
        return _ci_record(mean, mean, mean, 1, "n=1: no spread to resample")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    low, high = percentile_interval(finite[idx].mean(axis=1), confidence)
    return _ci_record(mean, low, high, n, "")


def _ci_record(value: float, low: float, high: float, n: int, reason: str) -> dict:
    return {"mean": value, "ci_low": low, "ci_high": high, "n": n, "reason": reason}


def wilcoxon_p(differences) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value, or (NaN, reason) when undefined."""
    from scipy import stats as scipy_stats

    finite = _finite(differences)
    if finite.size < 2:
        return math.nan, f"n={finite.size} paired items (need >= 2)"
    if np.all(finite == 0):
        return math.nan, "all paired differences are zero"
    try:
        result = scipy_stats.wilcoxon(finite, zero_method="wilcox", alternative="two-sided")
    except ValueError as err:
        return math.nan, f"wilcoxon undefined: {err}"
    p_value = float(result.pvalue)
    if not math.isfinite(p_value):
        return math.nan, "wilcoxon returned a non-finite p-value"
    return p_value, ""


def paired_difference(a, b, n_boot: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Per-item differences ``b - a``: mean, bootstrap CI, Wilcoxon p (NaN + reason)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in length: {a.size} vs {b.size}")
    differences = _finite(b - a)
    summary = bootstrap_mean_ci(differences, n_boot, seed, confidence)
    p_value, p_reason = wilcoxon_p(differences)
    return {
        "mean_diff": summary["mean"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "n": summary["n"],
        "wilcoxon_p": p_value,
        "p_reason": p_reason,
    }


def format_p(p_value: float, reason: str = "") -> str:
    """Human text for a p-value: 'n/a (reason)' when NaN."""
    if p_value is None or not math.isfinite(p_value):
        return f"n/a ({reason})" if reason else "n/a"
    return f"{p_value:.3g}"
