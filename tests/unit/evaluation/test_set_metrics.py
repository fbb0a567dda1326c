"""Set metrics against known answers: kadtk's KAD formula, the analytic Frechet distance of
two Gaussians (FAD-infinity), and the coverage of the jackknife intervals by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rcmg.evaluation import metrics, set_metrics
from scipy import stats as scipy_stats
from scipy.spatial.distance import pdist

# ----------------------------------------------------------------- KAD vs kadtk


def kadtk_calc_kernel_audio_distance(x, y, bandwidth, eps=1e-8, scale=100.0):
    """kadtk's ``calc_kernel_audio_distance`` (kadtk/kad.py, Gaussian kernel), re-written
    independently in float64: gamma = 1 / (2 bw^2 + eps), d2 = |a|^2 + |b|^2 - 2 a.b,
    diagonals removed from the within-set means, result x 100."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, n = len(x), len(y)
    gamma = 1.0 / (2.0 * bandwidth**2 + eps)
    xx, yy, xy = x @ x.T, y @ y.T, x @ y.T
    x_sq, y_sq = np.diag(xx), np.diag(yy)
    k_xx = np.exp(-gamma * (x_sq[:, None] + x_sq[None, :] - 2 * xx))
    k_yy = np.exp(-gamma * (y_sq[:, None] + y_sq[None, :] - 2 * yy))
    k_xy = np.exp(-gamma * (x_sq[:, None] + y_sq[None, :] - 2 * xy))
    k_xx_mean = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    k_yy_mean = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return scale * (k_xx_mean + k_yy_mean - 2 * k_xy.mean())


def torch_style_median(values) -> float:
    """torch.median: the lower of the two middle values for an even count."""
    ordered = np.sort(np.asarray(values))
    return float(ordered[(ordered.size - 1) // 2])


@pytest.mark.parametrize("n_gen, n_ref, dim", [(40, 60, 16), (33, 50, 512), (7, 12, 8)])
def test_kad_agrees_with_kadtk_formula_to_1e9(n_gen, n_ref, dim):
    rng = np.random.default_rng(n_gen)
    ref = rng.standard_normal((n_ref, dim))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)  # CLAP-like unit vectors
    gen = rng.standard_normal((n_gen, dim)) + 0.3
    gen /= np.linalg.norm(gen, axis=1, keepdims=True)
    bandwidth = torch_style_median(pdist(ref))  # the REFERENCE set's median distance
    assert metrics.median_pairwise_distance(ref) == pytest.approx(bandwidth, abs=1e-12)
    expected = kadtk_calc_kernel_audio_distance(ref, gen, bandwidth)
    assert abs(metrics.kad(gen, ref) - expected) < 1e-9
    # MMD^2 is symmetric for a fixed bandwidth: kadtk's argument order does not matter
    assert abs(kadtk_calc_kernel_audio_distance(gen, ref, bandwidth) - expected) < 1e-9
    # the interval function reports the same point value
    assert abs(set_metrics.kad_interval(gen, ref)["mean"] - expected) < 1e-9


def test_kad_bandwidth_comes_from_the_reference_only():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((30, 4))
    near, far = rng.standard_normal((30, 4)), 5 * rng.standard_normal((30, 4))
    width = metrics.median_pairwise_distance(ref)
    assert metrics.kad(near, ref) == pytest.approx(metrics.kad(near, ref, bandwidth=width))
    assert metrics.kad(far, ref) == pytest.approx(metrics.kad(far, ref, bandwidth=width))


# ----------------------------------------------------------------- FAD-infinity


def analytic_frechet(mu1, var1, mu2, var2) -> float:
    """Frechet distance of N(mu1, diag var1) and N(mu2, diag var2)."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2)))


def test_fad_interval_point_equals_sqrtm_frechet_distance():
    rng = np.random.default_rng(2)
    for n_gen in (5, 50):  # below and above the dimension: both eigen routes
        a, b = rng.standard_normal((n_gen, 6)), rng.standard_normal((70, 6)) * 1.5 + 0.2
        expected = metrics.frechet_distance(*metrics.gaussian_stats(a), *metrics.gaussian_stats(b))
        assert set_metrics.fad_interval(a, b)["mean"] == pytest.approx(expected, rel=1e-7)


def test_fad_infinity_intercept_recovers_population_fad_on_gaussians():
    dim, n_gen, n_ref, replicates = 24, 600, 20000, 12
    mu_p, var_p = np.zeros(dim), np.ones(dim)
    mu_q = np.linspace(0.0, 0.3, dim)
    var_q = np.linspace(0.5, 2.0, dim)
    truth = analytic_frechet(mu_q, var_q, mu_p, var_p)
    rng = np.random.default_rng(3)
    ref = mu_p + np.sqrt(var_p) * rng.standard_normal((n_ref, dim))
    options = set_metrics.SetMetricOptions(fad_inf_min_n=100, fad_inf_steps=8, fad_inf_repeats=4)
    plain, inf = [], []
    for r in range(replicates):
        gen = mu_q + np.sqrt(var_q) * rng.standard_normal((n_gen, dim))
        result = set_metrics.fad_infinity(
            gen, ref, set_metrics.SetMetricOptions(**{**options.__dict__, "seed": r})
        )
        assert result["n"] == n_gen and result["r2"] > 0.8 and len(result["points"]) == 8
        assert result["points"][-1][0] == n_gen
        plain.append(result["points"][-1][1])
        inf.append(result["mean"])
    plain, inf = np.array(plain), np.array(inf)
    se_inf = inf.std(ddof=1) / math.sqrt(replicates)
    # plain FAD at N=600 is biased upward (by many standard errors) ...
    assert plain.mean() - truth > 5 * plain.std(ddof=1) / math.sqrt(replicates)
    # ... the intercept is not: within 3 SE of the analytic value, and far closer
    assert abs(inf.mean() - truth) < 3 * se_inf + 0.01 * truth
    assert abs(inf.mean() - truth) < 0.25 * (plain.mean() - truth)


def test_fad_infinity_below_min_n_says_why():
    rng = np.random.default_rng(4)
    result = set_metrics.fad_infinity(rng.standard_normal((20, 4)), rng.standard_normal((50, 4)))
    assert math.isnan(result["mean"]) and "fad_inf_min_n" in result["reason"]
    assert math.isnan(result["ci_low"]) and result["fit_range"]["steps"] == 0


def fadtk_style_fit(ns, fads):
    """fadtk's ``score_inf`` fit (fadtk/fad.py) re-derived independently: least squares of
    FAD on x = 1/n by the normal equations, intercept = FAD-inf, R² = 1 - SS_res/SS_tot."""
    x = 1.0 / np.asarray(ns, dtype=np.float64)
    y = np.asarray(fads, dtype=np.float64)
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    intercept = y.mean() - slope * x.mean()
    r2 = 1 - np.sum((y - intercept - slope * x) ** 2) / np.sum((y - y.mean()) ** 2)
    return intercept, slope, r2


def test_fad_infinity_fit_is_fadtks_formula_on_fadtks_sizes():
    rng = np.random.default_rng(8)
    ns = [int(n) for n in np.linspace(500, 2000, 25)]  # fadtk's defaults: min_n 500, 25 steps
    assert set_metrics.fad_inf_sizes(2000, 500, 25).tolist() == sorted(set(ns))
    fads = [3.0 + 400.0 / n + rng.normal(0, 0.01) for n in ns]
    fit = set_metrics.fad_inf_fit(ns, fads)
    intercept, slope, r2 = fadtk_style_fit(ns, fads)
    assert fit["intercept"] == pytest.approx(intercept, rel=1e-10)
    assert fit["slope"] == pytest.approx(slope, rel=1e-10)
    assert fit["r2"] == pytest.approx(r2, rel=1e-10)
    # the metric's intercept is that fit of its own recorded points, over its fit range
    gen, ref = rng.standard_normal((120, 4)) + 0.3, rng.standard_normal((400, 4))
    options = set_metrics.SetMetricOptions(fad_inf_min_n=30, fad_inf_steps=6, fad_inf_repeats=2)
    record = set_metrics.fad_infinity(gen, ref, options)
    ns, fads = zip(*record["points"], strict=True)
    assert list(ns) == [int(n) for n in np.linspace(30, 120, 6)]
    assert record["mean"] == pytest.approx(fadtk_style_fit(ns, fads)[0], rel=1e-10)
    assert record["r2"] == pytest.approx(fadtk_style_fit(ns, fads)[2], rel=1e-10)
    assert record["fit_range"] == {
        "min_n": 30, "max_n": 120, "steps": 6, "repeats": 2, "requested_steps": 6,
    }  # fmt: skip
    assert record["points"][-1][1] == pytest.approx(set_metrics.fad_interval(gen, ref)["mean"])


def _ols_intercept_interval(points):
    """The regression's own t interval for the intercept (what the metric does NOT use)."""
    n, y = np.array(points, dtype=np.float64).T
    design = np.stack([np.ones_like(n), 1.0 / n], 1)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ beta
    cov = residual @ residual / (len(y) - 2) * np.linalg.inv(design.T @ design)
    half = scipy_stats.t.ppf(0.975, len(y) - 2) * math.sqrt(cov[0, 0])
    return beta[0] - half, beta[0] + half


def test_fad_infinity_interval_covers_the_analytic_frechet_distance():
    """Known answer: N(mu_q, diag var_q) vs N(0, I), d=8, 200 generated vs 2000 reference
    clips, fit 50..200 in 5 sizes x 2 repeats, 10 jackknife blocks, 60 experiments (both
    sets redrawn). The jackknife-of-the-fit interval covers the analytic distance at about
    the nominal rate (this test: 58/60; 400 experiments: 0.943, and 0.968 with 20 blocks,
    0.973 at d=16, N=400; 0.998 when the true distance is 0, where FAD >= 0 makes it
    conservative); the regression's own intercept interval does not (this test: 35/60,
    400 experiments: 0.57), because its points are subsamples of one sample."""
    dim, n_gen, n_ref, experiments = 8, 200, 2000, 60
    mu_q, var_q = np.full(dim, 0.3), np.linspace(0.6, 1.6, dim)
    truth = analytic_frechet(mu_q, var_q, np.zeros(dim), np.ones(dim))
    rng = np.random.default_rng(9)
    covered = ols_covered = 0
    for r in range(experiments):
        ref = rng.standard_normal((n_ref, dim))
        gen = mu_q + np.sqrt(var_q) * rng.standard_normal((n_gen, dim))
        options = set_metrics.SetMetricOptions(
            fad_blocks=10, fad_inf_min_n=50, fad_inf_steps=5, fad_inf_repeats=2, seed=r
        )
        record = set_metrics.fad_infinity(gen, ref, options)
        assert record["reason"] == "" and record["ci_low"] < record["mean"] < record["ci_high"]
        assert "jackknife of the whole fit (10 + 10 blocks)" in record["method"]
        covered += record["ci_low"] <= truth <= record["ci_high"]
        low, high = _ols_intercept_interval(record["points"])
        ols_covered += low <= truth <= high
    assert 0.88 <= covered / experiments <= 1.0, covered
    assert ols_covered / experiments < 0.8, ols_covered


def test_fad_infinity_jackknife_reuses_the_subsamples():
    """Deleting no clip reproduces the full fit exactly (common keys), so the leave-out
    fits differ from it only by the deleted clips: the interval is not subsampling noise."""
    rng = np.random.default_rng(10)
    gen, ref = rng.standard_normal((80, 4)) + 0.2, rng.standard_normal((300, 4))
    options = set_metrics.SetMetricOptions(fad_inf_min_n=20, fad_inf_steps=5, fad_inf_repeats=3)
    record = set_metrics.fad_infinity(gen, ref, options)
    design = set_metrics._FadInfDesign(gen, options)
    mu, sigma = metrics.gaussian_stats(ref)
    root = metrics.psd_sqrt(sigma)
    got = design.points(mu, sigma, root)
    assert [n for n, _ in got] == [n for n, _ in record["points"]]
    assert [v for _, v in got] == pytest.approx([v for _, v in record["points"]], rel=1e-10)
    assert design.intercept(mu, sigma, root, deleted=np.array([], dtype=int)) == pytest.approx(
        record["mean"], rel=1e-10
    )
    again = set_metrics.fad_infinity(gen, ref, options)
    assert again == record  # seeded


def test_fad_infinity_without_an_interval_keeps_the_point_and_says_why():
    rng = np.random.default_rng(11)
    gen, ref = rng.standard_normal((12, 3)), rng.standard_normal((60, 3))
    options = set_metrics.SetMetricOptions(fad_inf_min_n=8, fad_inf_steps=5, fad_blocks=3)
    two_prompts = set_metrics.fad_infinity(gen, ref, options, labels=[k % 2 for k in range(12)])
    assert math.isfinite(two_prompts["mean"]) and math.isnan(two_prompts["ci_low"])
    assert two_prompts["reason"] == "2 prompts: no interval (the jackknife needs >= 3)"
    assert two_prompts["fit_range"]["min_n"] == 8 and two_prompts["fit_range"]["max_n"] == 12
    from rcmg.evaluation.report import format_ci

    shown = format_ci(two_prompts)  # the page and the run report: the value, range and why
    assert "; fit n=8–12, 5 sizes × 3)" in shown and "(no interval: 2 prompts" in shown
    # 3 blocks of 4 clips: a fit without one has 8 clips, one size >= min_n 8
    narrow = set_metrics.fad_infinity(gen, ref, options)
    assert math.isfinite(narrow["mean"]) and math.isnan(narrow["ci_high"])
    assert "deleting a jackknife block (4 of 12 clips)" in narrow["reason"]
    assert "fad_inf_min_n" in narrow["reason"]


# ----------------------------------------------------------------- intervals by simulation


def gaussian_mean_kernel(mean_diff, cov_sum, width) -> float:
    """E exp(-|X-Y|^2 / (2 w^2)) for X - Y ~ N(mean_diff, cov_sum) (cov_sum diagonal)."""
    scaled = 1.0 + cov_sum / width**2
    quad = np.sum(mean_diff**2 / (width**2 + cov_sum))
    return float(np.prod(scaled) ** -0.5 * math.exp(-0.5 * quad))


def population_mmd2(mu_q, var_q, mu_p, var_p, width) -> float:
    zero = np.zeros_like(mu_q)
    return 100.0 * (
        gaussian_mean_kernel(zero, 2 * var_q, width)
        + gaussian_mean_kernel(zero, 2 * var_p, width)
        - 2 * gaussian_mean_kernel(mu_q - mu_p, var_q + var_p, width)
    )


@pytest.mark.parametrize("shift", [0.25, 0.5])
def test_kad_interval_covers_population_mmd2_at_nominal_95(shift):
    """d=16, 100 generated and 500 reference clips, 200 experiments, both sets redrawn."""
    dim, n_gen, n_ref, experiments = 16, 100, 500, 200
    mu_p, var_p = np.zeros(dim), np.ones(dim)
    mu_q, var_q = np.full(dim, shift / 2), np.full(dim, 1.1)
    # population bandwidth: median |Y - Y'| with Y - Y' ~ N(0, 2 I)
    width = math.sqrt(2 * scipy_stats.chi2.ppf(0.5, dim))
    target = population_mmd2(mu_q, var_q, mu_p, var_p, width)
    rng = np.random.default_rng(5)
    covered, estimates = 0, []
    for _ in range(experiments):
        ref = rng.standard_normal((n_ref, dim))
        gen = mu_q + np.sqrt(var_q) * rng.standard_normal((n_gen, dim))
        record = set_metrics.kad_interval(gen, ref)
        assert record["ci_low"] <= record["mean"] <= record["ci_high"]
        covered += record["ci_low"] <= target <= record["ci_high"]
        estimates.append(record["mean"])
    assert covered / experiments >= 0.90, (covered, target, np.mean(estimates))
    assert np.mean(estimates) == pytest.approx(target, rel=0.1)  # unbiased


def test_fad_interval_contains_its_point_and_covers_fad_at_this_n():
    dim, n_gen, n_ref, experiments = 16, 100, 500, 200
    rng = np.random.default_rng(6)
    mu_q, sd_q = np.full(dim, 0.2), np.sqrt(np.linspace(0.7, 1.5, dim))
    records = []
    for _ in range(experiments):
        ref = rng.standard_normal((n_ref, dim))
        gen = mu_q + sd_q * rng.standard_normal((n_gen, dim))
        records.append(set_metrics.fad_interval(gen, ref))
    values = np.array([r["mean"] for r in records])
    for record in records:
        assert record["ci_low"] <= record["mean"] <= record["ci_high"]
        assert "FAD at N=100" in record["method"]
    fad_at_n = values.mean()  # Monte-Carlo expectation of the estimator at N = 100
    covered = np.mean([r["ci_low"] <= fad_at_n <= r["ci_high"] for r in records])
    assert covered >= 0.90, covered
    truth = analytic_frechet(mu_q, sd_q**2, np.zeros(dim), np.ones(dim))
    assert fad_at_n > truth  # the target at N is above the population FAD (bias), as stated


def test_interval_never_uses_a_clip_twice_even_for_duplicated_input():
    """A duplicated clip is one cluster when labelled so: deleting it removes both copies."""
    rng = np.random.default_rng(7)
    ref = rng.standard_normal((60, 8))
    gen = rng.standard_normal((20, 8))
    labels = list(range(20))
    doubled = np.concatenate([gen, gen[:5]])
    result = set_metrics.kad_interval(doubled, ref, labels=labels + labels[:5])
    assert result["n_prompts"] == 20 and result["n"] == 25


# ----------------------------------------------------------------- paired differences


@pytest.mark.parametrize("metric", ["kad", "fad"])
def test_paired_difference_is_the_difference_and_pairing_narrows_it(metric):
    dim, n_prompts = 8, 80
    rng = np.random.default_rng(8)
    ref = rng.standard_normal((300, dim))
    prompt_effect = 0.8 * rng.standard_normal((n_prompts, dim))  # shared by both conditions
    gen_a = prompt_effect + 0.6 * rng.standard_normal((n_prompts, dim))
    gen_b = prompt_effect + 0.6 * rng.standard_normal((n_prompts, dim)) + 0.3
    labels = [f"p{i}" for i in range(n_prompts)]
    interval = getattr(set_metrics, f"{metric}_interval")
    a, b = interval(gen_a, ref, labels), interval(gen_b, ref, labels)
    diff = set_metrics.paired_set_difference(metric, gen_a, labels, gen_b, labels, ref)
    assert diff["mean"] == pytest.approx(b["mean"] - a["mean"], rel=1e-9, abs=1e-12)
    assert diff["ci_low"] <= diff["mean"] <= diff["ci_high"]
    assert diff["ci_low"] > 0  # B is shifted away from the reference
    assert diff["se"] < math.hypot(a["se"], b["se"])  # joint deletion cancels prompt effects
    with pytest.raises(ValueError, match="unknown set metric"):
        set_metrics.paired_set_difference("clap", gen_a, labels, gen_b, labels, ref)


@pytest.mark.parametrize("n_gen", [4, 40])
def test_fad_leave_out_values_equal_recomputation_without_those_rows(n_gen):
    """The downdated / shared-root shortcuts give the FAD of the set without the rows."""
    rng = np.random.default_rng(9)
    gen, ref = rng.standard_normal((n_gen, 6)) + 0.3, rng.standard_normal((30, 6))
    state = set_metrics._FadState(gen, ref)

    def direct(g, r):
        return metrics.frechet_distance(*metrics.gaussian_stats(g), *metrics.gaussian_stats(r))

    drop_gen, drop_ref = np.array([0, 2]), np.array([1, 5, 7])
    assert state.value(gen_rows=drop_gen) == pytest.approx(
        direct(np.delete(gen, drop_gen, 0), ref), rel=1e-6
    )
    assert state.value(ref_rows=drop_ref) == pytest.approx(
        direct(gen, np.delete(ref, drop_ref, 0)), rel=1e-6
    )


def test_two_prompts_give_the_point_value_without_an_interval():
    rng = np.random.default_rng(10)
    gen, ref = rng.standard_normal((6, 4)), rng.standard_normal((20, 4))
    labels = [0, 0, 0, 1, 1, 1]
    for interval, point in (
        (set_metrics.kad_interval, metrics.kad(gen, ref)),
        (set_metrics.fad_interval, metrics.frechet_distance_from_embeddings(gen, ref)),
    ):
        record = interval(gen, ref, labels)
        assert record["mean"] == pytest.approx(point, rel=1e-6)
        assert math.isnan(record["ci_low"]) and "no interval" in record["reason"]
