"""rcmg.workflow.power: the formulas against scipy, the round trips, and by simulation
of the compare step's own primary test (the sign-flip test, Holm) at the pilot's N."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from rcmg.evaluation import hypotheses, signflip
from rcmg.generation.prompts import read_prompt_file
from rcmg.workflow import plan_cost, power, sweeps
from scipy import stats

REPO = Path(__file__).resolve().parents[3]
TARGET = 0.8


def _pilot() -> tuple[dict, int, int]:
    """The pilot config merged as Snakemake merges it, its prompt count and Holm m."""
    from snakemake.utils import update_config

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))
    update_config(cfg, yaml.safe_load((REPO / "config/pilot.yaml").read_text(encoding="utf-8")))
    n = len(read_prompt_file(REPO / cfg["prompts"]).items)
    m = len(plan_cost.planned_primaries(cfg, sweeps.plan(cfg)))
    return copy.deepcopy(cfg), n, m


# ---------------------------------------------------------------- the formulas
@pytest.mark.parametrize("df", [1, 2, 4, 11, 99, 999])
def test_t_and_noncentral_t_match_scipy(df):
    for x in (-3.0, -0.5, 0.0, 1.0, 2.5, 6.0, 40.0):
        assert power.t_sf(x, df) == pytest.approx(stats.t.sf(x, df), abs=1e-12)
        for nc in (0.5, 2.0, 4.0, 9.0):
            assert power.nct_sf(x, df, nc) == pytest.approx(stats.nct.sf(x, df, nc), abs=1e-6)
            # scipy's nct.cdf is nan at x = -3, nc = 9 (a tail of 1e-40): 0 there
            reference = stats.nct.cdf(x, df, nc) if (x, nc) != (-3.0, 9.0) else 0.0
            assert power.nct_cdf(x, df, nc) == pytest.approx(reference, abs=1e-6)
    for p in (0.4, 0.025, 1e-3, 1e-5):
        assert power.t_isf(p, df) == pytest.approx(stats.t.isf(p, df), rel=1e-9)


@pytest.mark.parametrize("one_sided", [False, True])
def test_t_power_is_the_noncentral_t_formula(one_sided):
    sd, n, level, distance = 0.05, 40, 0.01, 0.02
    df, nc = n - 1, distance * math.sqrt(n) / sd
    if one_sided:
        expected = stats.nct.sf(stats.t.isf(level, df), df, nc)
    else:
        crit = stats.t.isf(level / 2, df)
        expected = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
    assert power.t_power(distance, sd, n, level, one_sided) == pytest.approx(expected, abs=1e-7)
    # and it is above the normal approximation's optimism only in the right direction
    z = stats.norm.isf(level / (1 if one_sided else 2))
    assert expected < stats.norm.sf(z - nc) + (0 if one_sided else stats.norm.cdf(-z - nc))


def test_alpha_and_flip_count_are_the_compare_steps():
    assert power.ALPHA == hypotheses.ALPHA
    assert power.TWO_SIDED == hypotheses.TWO_SIDED
    assert power.NONINFERIORITY == hypotheses.NONINFERIORITY
    assert power.EXACT_MAX_N == signflip.EXACT_MAX_N
    rng = np.random.default_rng(0)
    for n, n_flips in ((5, 2000), (16, 2000), (17, 2000), (40, 10001)):
        flips = signflip.sign_flips(rng.normal(size=n), n_flips)
        assert power.flip_count(n, n_flips) == flips.n_flips
        # the smallest attainable p is the sign-flip test's own
        k = power.flip_count(n, n_flips)
        assert flips.min_p(two_sided=True) == pytest.approx(2 / k)
        assert flips.min_p(two_sided=False) == pytest.approx(1 / k)


def test_attainable_level_is_the_largest_p_below_alpha():
    # 8 prompts, two-sided: p in multiples of 2/256; below 0.05 the largest is 6 x 2/256
    assert power.attainable_alpha(8, 0.05, False, 2000) == pytest.approx(12 / 256)
    assert power.attainable_alpha(8, 0.05, True, 2000) == pytest.approx(12 / 256)
    assert power.attainable_alpha(5, 0.05, False, 2000) == 0.0  # smallest p 2/32 = 0.0625
    assert power.attainable_alpha(5, 0.05, True, 2000) == pytest.approx(1 / 32)
    # Monte Carlo: multiples of 2 / n_flips, strictly below alpha
    assert power.attainable_alpha(100, 0.05 / 36, False, 10000) == pytest.approx(12 / 10000)
    assert power.attainable_alpha(100, 0.0001, False, 2000) == 0.0  # 2/2000 > alpha


def test_mde_and_n_needed_round_trip():
    for test, margin in ((power.TWO_SIDED, None), (power.NONINFERIORITY, 0.02)):
        sd, alpha_used = 0.05, 0.05 / 12
        for n in (12, 40, 300):
            mde = power.mde(sd, n, alpha_used, TARGET, test, margin)
            assert power.power(mde, sd, n, alpha_used, test, margin) == pytest.approx(TARGET)
            assert (
                power.power(
                    0.98 * mde if test == power.TWO_SIDED else mde - 0.001,
                    sd,
                    n,
                    alpha_used,
                    test,
                    margin,
                )
                < TARGET
            )
        for effect in (0.01, 0.02, 0.05) if test == power.TWO_SIDED else (-0.01, 0.0, 0.01):
            need = power.n_needed(effect, sd, alpha_used, TARGET, test, margin)
            assert math.isfinite(need)
            need = int(need)
            assert power.power(effect, sd, need, alpha_used, test, margin) >= TARGET
            # the smallest such n: none below it reaches the target (exact region scanned)
            assert (
                all(
                    power.power(effect, sd, k, alpha_used, test, margin) < TARGET
                    for k in range(2, need)
                )
                if need < 60
                else power.power(effect, sd, need - 1, alpha_used, test, margin) < TARGET
            )
    # an effect of 0 (two-sided) or a true loss beyond the margin is never detected
    assert power.n_needed(0.0, 0.05, 0.05, TARGET, power.TWO_SIDED) == math.inf
    assert power.n_needed(-0.03, 0.05, 0.05, TARGET, power.NONINFERIORITY, 0.02) == math.inf
    # too few Monte Carlo sign vectors for the level: beyond 16 prompts (n_flips 2000:
    # smallest p 0.001) nothing reaches 1e-4, so N needed is in the exact region (2/2^15)
    assert power.n_needed(0.5, 0.05, 1e-4, TARGET, power.TWO_SIDED, None, 2000) == 15
    assert power.power(0.5, 0.05, 17, 1e-4, power.TWO_SIDED, None, 2000) == 0.0
    assert power.mde(0.05, 500, 1e-4, TARGET, power.TWO_SIDED, None, 2000) == math.inf


def test_too_few_prompts_give_no_power_and_an_infinite_mde():
    """5 prompts (the demo): the smallest two-sided sign-flip p is 2/32 = 0.0625 > 0.05;
    the compare step's test then never rejects, whatever the effect."""
    row = power.power_row(
        condition="retrieval_native",
        baseline="prompt",
        model="audioldm",
        metric="clap_style_sim",
        test=power.TWO_SIDED,
        margin=None,
        n=5,
        sd=0.05,
        m=1,
        alpha=0.05,
        target=TARGET,
        effect=0.01,
        n_flips=2000,
        variance_source="test",
    )
    assert row["mde"] == math.inf and row["power_at_target"] == 0.0
    assert row["alpha_attainable"] == 0.0 and "smallest p 0.0625" in row["note"]
    assert row["n_needed"] > 5
    rng = np.random.default_rng(3)
    rejected = 0
    for rep in range(200):  # a huge effect: 10 SDs
        d = rng.normal(0.5, 0.05, 5)
        rejected += hypotheses.mean_test(d, 2000, rep)["p_value"] < row["alpha_used"]
    assert rejected == 0
    # one-sided non-inferiority at 5 prompts: 1/32 < 0.05, so it has power
    ni = power.power_row(
        condition="retrieval_native",
        baseline="prompt",
        model="audioldm",
        metric="clap_text_sim",
        test=power.NONINFERIORITY,
        margin=0.02,
        n=5,
        sd=0.01,
        m=1,
        alpha=0.05,
        target=TARGET,
        effect=0.0,
        n_flips=2000,
        variance_source="test",
    )
    assert math.isfinite(ni["mde"]) and ni["alpha_attainable"] == pytest.approx(1 / 32)


# ---------------------------------------------------------------- by simulation
def _clustered(rng, n: int, mean: float, sd: float, seeds: int = 2):
    """Clip-level paired differences, ``seeds`` per prompt: prompt effect plus seed noise,
    so that the per-prompt mean differences have SD ``sd``."""
    prompt_sd = 0.6 * sd
    seed_sd = math.sqrt((sd**2 - prompt_sd**2) * seeds)
    effects = mean + rng.normal(0.0, prompt_sd, n)
    clips = effects[:, None] + rng.normal(0.0, seed_sd, (n, seeds))
    return np.repeat(np.arange(n), seeds), clips.ravel()


def _detection_rate(n, sd, effect, alpha_used, margin, n_flips, reps, seed, holm_m=1):
    """Share of simulated data sets the compare step's test detects: its p_value below
    alpha_used, and (holm_m > 1) Holm p < 0.05 in a family of m - 1 true nulls."""
    rng = np.random.default_rng(seed)
    bonferroni = holm = 0
    for rep in range(reps):
        keys, diffs = _clustered(rng, n, effect, sd)
        p = hypotheses.clustered_paired_test(keys, diffs, n_flips, rep, margin)["p_value"]
        bonferroni += p < alpha_used
        if holm_m > 1:
            family = [p, *rng.uniform(size=holm_m - 1)]  # null rows: uniform p
            holm += hypotheses.holm_adjust(family)[0] < hypotheses.ALPHA
    return bonferroni / reps, holm / reps


@pytest.mark.parametrize("test", [power.TWO_SIDED, power.NONINFERIORITY])
def test_simulated_detection_at_the_mde_is_the_stated_power_at_the_pilots_n(test):
    """At the pilot's configured N (100 prompts, 36 primaries, n_flips 10000), data whose
    prompt differences have SD 0.05 and a true difference equal to the stated MDE are
    detected at the stated power (3 binomial SEs), by the compare step's own test; under
    Holm the rate lies between that bound and the power at alpha."""
    cfg, n, m = _pilot()
    assert (n, m) == (100, 36)
    n_flips = cfg["evaluation"]["n_flips"]
    margin = 0.02 if test == power.NONINFERIORITY else None
    sd, reps = 0.05, 400
    alpha_used = power.ALPHA / m
    mde = power.mde(sd, n, alpha_used, TARGET, test, margin, n_flips)
    rate, holm = _detection_rate(n, sd, mde, alpha_used, margin, n_flips, reps, 11, m)
    se = math.sqrt(TARGET * (1 - TARGET) / reps)
    print(
        f"{test}: N={n} m={m} MDE={mde:.5f} detected {rate:.4f} (Holm {holm:.4f}) "
        f"stated {TARGET} +- {3 * se:.3f}"
    )
    assert abs(rate - TARGET) < 3 * se
    upper = power.power(mde, sd, n, power.ALPHA, test, margin, n_flips)
    assert TARGET - 3 * se < holm < upper + 3 * se


def test_simulated_detection_in_the_exact_region_is_the_stated_power():
    """12 prompts, one primary: exact enumeration (4,096 sign vectors), attainable level
    just below 0.05."""
    n, sd, reps = 12, 0.05, 400
    mde = power.mde(sd, n, 0.05, TARGET, power.TWO_SIDED)
    rate, _ = _detection_rate(n, sd, mde, 0.05, None, 2000, reps, 5)
    se = math.sqrt(TARGET * (1 - TARGET) / reps)
    print(f"exact region: N={n} MDE={mde:.5f} detected {rate:.4f} stated {TARGET}")
    assert abs(rate - TARGET) < 3 * se
    # at half the MDE the power is well below the target, as simulated
    low = power.power(mde / 2, sd, n, 0.05, power.TWO_SIDED)
    rate_low, _ = _detection_rate(n, sd, mde / 2, 0.05, None, 2000, reps, 6)
    assert abs(rate_low - low) < 3 * math.sqrt(low * (1 - low) / reps)


def test_effects_words_parse_and_refuse_malformed():
    assert power.parse_effects(["clap_style_sim=0.01", "clap_text_sim=0"]) == {
        "clap_style_sim": 0.01,
        "clap_text_sim": 0.0,
    }
    with pytest.raises(ValueError, match="METRIC=VALUE"):
        power.parse_effects(["clap_style_sim"])
