"""Evaluation maths (rcmg.evaluation.metrics) and uncertainty (rcmg.evaluation.stats)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rcmg.evaluation import metrics, stats

SR = 16000


def reference_sqrtm_psd_product(s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Independent sqrtm(s1 @ s2) via eigendecomposition (s1 s2 is diagonalisable)."""
    eigenvalues, vectors = np.linalg.eig(s1 @ s2)
    root = vectors @ np.diag(np.sqrt(eigenvalues.astype(complex))) @ np.linalg.inv(vectors)
    return root.real


def reference_frechet(x: np.ndarray, y: np.ndarray) -> float:
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = reference_sqrtm_psd_product(s1, s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.fixture
def embeddings():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 16))
    y = rng.standard_normal((300, 16)) @ np.diag(np.linspace(0.5, 1.5, 16)) + 0.3
    return x, y


def test_fad_matches_independent_eig_reference(embeddings):
    x, y = embeddings
    expected = reference_frechet(x, y)
    assert metrics.frechet_distance_from_embeddings(x, y) == pytest.approx(expected, abs=1e-6)
    mu_y, sigma_y = metrics.gaussian_stats(y)
    fast = metrics.frechet_distance_to_reference(x, mu_y, sigma_y)
    assert fast == pytest.approx(expected, abs=1e-6)
    assert expected > 1.0
    few = x[:10]  # N - 1 < D: the N x N path
    assert metrics.frechet_distance_to_reference(few, mu_y, sigma_y) == pytest.approx(
        metrics.frechet_distance_from_embeddings(few, y), abs=1e-6
    )


def test_fad_of_identical_sets_is_zero(embeddings):
    x, _ = embeddings
    mu, sigma = metrics.gaussian_stats(x)
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_fad_handles_singular_covariances():
    rng = np.random.default_rng(1)
    few = rng.standard_normal((5, 64))  # rank 4 covariance in 64-d
    many = rng.standard_normal((8, 64))
    value = metrics.frechet_distance_from_embeddings(few, many)
    assert math.isfinite(value) and value > 0
    constant = np.ones((6, 64))  # zero covariance
    assert math.isfinite(metrics.frechet_distance_from_embeddings(constant, many))


def test_kad_unbiased_near_zero_for_same_distribution_and_positive_when_shifted():
    rng = np.random.default_rng(2)
    same = [
        metrics.kad(rng.standard_normal((60, 8)), rng.standard_normal((60, 8))) for _ in range(30)
    ]
    shifted = metrics.kad(rng.standard_normal((60, 8)), rng.standard_normal((60, 8)) + 1.0)
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-9
    assert min(same) < 0 < max(same)  # unbiased: single estimates fall on both sides of 0
    assert shifted > 10 * np.std(same)


def test_kad_scale_option():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((25, 4)) + 0.5
    assert metrics.kad(x, y, scale=1.0) * metrics.KAD_SCALE == pytest.approx(metrics.kad(x, y))
    assert metrics.KAD_SCALE == 100.0  # kadtk's SCALE_FACTOR


@pytest.mark.parametrize("amplitude", [0.0, 1e-9])
def test_near_silent_audio_gives_finite_levels(amplitude):
    x = amplitude * np.random.default_rng(4).standard_normal(SR * 2)
    result = metrics.level_metrics(x, SR)
    for name in ("rms_dbfs", "peak_dbfs", "loudness_lufs", "clip_fraction"):
        assert math.isfinite(result[name]), name
    assert result["rms_dbfs"] == metrics.DB_FLOOR
    assert result["loudness_lufs"] == metrics.LUFS_FLOOR
    assert result["silent"] and not result["clipped"]


def test_levels_of_known_signals():
    t = np.arange(SR * 2) / SR
    sine = 0.5 * np.sin(2 * np.pi * 440 * t)
    assert metrics.rms_dbfs(sine) == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=1e-3)
    assert metrics.peak_dbfs(sine) == pytest.approx(20 * np.log10(0.5), abs=1e-3)
    assert -15 < metrics.integrated_loudness(sine, SR) < -5
    assert metrics.integrated_loudness(sine[:1000], SR) == metrics.LUFS_FLOOR  # < one block
    clipped = np.clip(3 * sine, -1, 1)
    assert metrics.clipping_fraction(clipped) > 0.5 and metrics.is_clipped(clipped)
    assert metrics.rms_dbfs(np.array([])) == metrics.DB_FLOOR


def test_cosine_helpers():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    assert metrics.cosine_similarity_rows(a, b).tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert metrics.cosine_similarity_matrix(a, b).shape == (3, 3)


def test_bootstrap_mean_ci_is_seeded_and_covers_mean():
    values = np.random.default_rng(5).normal(2.0, 1.0, 50)
    first = stats.bootstrap_mean_ci(values, n_boot=500, seed=7)
    assert first == stats.bootstrap_mean_ci(values, n_boot=500, seed=7)
    assert first["ci_low"] < first["mean"] < first["ci_high"]
    assert first["mean"] == pytest.approx(values.mean())
    assert stats.bootstrap_mean_ci([], n_boot=10)["reason"] == "no finite values"
    single = stats.bootstrap_mean_ci([3.0, math.nan], n_boot=10)
    assert single["mean"] == single["ci_low"] == 3.0 and single["n"] == 1


def test_paired_difference_and_wilcoxon_edge_cases():
    rng = np.random.default_rng(8)
    a = rng.normal(0, 1, 40)
    result = stats.paired_difference(a, a + 0.5 + rng.normal(0, 0.1, 40), n_boot=300)
    assert result["mean_diff"] == pytest.approx(0.5, abs=0.1)
    assert result["ci_low"] > 0 and result["wilcoxon_p"] < 1e-6
    zeros = stats.paired_difference(a, a, n_boot=50)
    assert math.isnan(zeros["wilcoxon_p"]) and "zero" in zeros["p_reason"]
    assert stats.format_p(zeros["wilcoxon_p"], zeros["p_reason"]).startswith("n/a (")
    one = stats.paired_difference([1.0], [2.0], n_boot=50)
    assert math.isnan(one["wilcoxon_p"]) and "n=1" in one["p_reason"]
    empty = stats.paired_difference([], [], n_boot=50)
    assert empty["n"] == 0 and math.isnan(empty["mean_diff"])
    with pytest.raises(ValueError, match="differ in length"):
        stats.paired_difference([1.0], [1.0, 2.0])
