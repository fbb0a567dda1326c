"""Holm adjustment (hand-computed), prompt-clustered paired tests of the mean (seeded
simulations with known answers: false-positive rate, coverage, non-inferiority), the
interval/test agreement, attainable p, labels and the hypothesis form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rcmg.evaluation import hypotheses
from rcmg.evaluation.hypotheses import Hypothesis
from scipy import stats as scipy_stats


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06)
    adjusted = hypotheses.holm_adjust([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # NaN is not a member of the family: m = 3
    with_nan = hypotheses.holm_adjust([0.01, math.nan, 0.2, 0.04])
    assert with_nan[0] == pytest.approx(0.03) and math.isnan(with_nan[1])
    assert with_nan[2:] == pytest.approx([0.2, 0.08])
    assert hypotheses.holm_adjust([0.6, 0.7]) == [1.0, 1.0]  # capped, monotone


def test_smallest_attainable_wilcoxon_p_is_what_scipy_gives_for_one_sign():
    for n in (3, 5, 8):
        p = scipy_stats.wilcoxon(np.arange(1.0, n + 1)).pvalue
        assert hypotheses.min_attainable_wilcoxon_p(n) == pytest.approx(p)
    assert hypotheses.min_attainable_wilcoxon_p(8) == pytest.approx(0.0078125)


ALPHA = 0.05
REPS = 400
# 3 Monte Carlo standard errors of a rate near ALPHA (or 1 - ALPHA) over REPS repetitions
TOL = 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)


def test_seeds_are_averaged_per_prompt_before_the_test():
    keys = ["a", "a", "b", "b", "c", "c", "d", "e"]
    diffs = [1.0, 3.0, 2.0, 2.0, -1.0, 5.0, 4.0, math.nan]
    result = hypotheses.clustered_paired_test(keys, diffs)
    assert result["n"] == 4 and result["n_pairs"] == 7  # prompt e has no finite pair
    means = [2.0, 2.0, 2.0, 4.0]
    assert result["mean_diff"] == pytest.approx(np.mean(means))
    # 4 prompts, one sign: the exact sign-flip p is 2 / 2^4 and nothing smaller is possible
    assert result["p_value"] == pytest.approx(0.125) == result["min_p"]
    assert result["test"] == "two-sided" and "exact" in result["p_method"]
    assert (result["ci_low"], result["ci_high"]) == (-math.inf, math.inf)
    assert result["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(means).pvalue)
    assert result["wilcoxon_min_p"] == pytest.approx(2 / 2**4)
    one = hypotheses.clustered_paired_test(["a", "a"], [1.0, 2.0])
    assert math.isnan(one["p_value"]) and "need >= 2" in one["p_reason"]


def clustered_draws(rng, n_prompts, prompt_effect, mean, seeds=3):
    """Keys and clip differences: a prompt effect (the cluster) plus per-seed noise; some
    prompts lose a seed (unequal cluster sizes)."""
    effect = prompt_effect(rng, n_prompts) + mean
    diffs = effect[:, None] + 0.5 * rng.standard_normal((n_prompts, seeds))
    keep = np.ones_like(diffs, dtype=bool)
    keep[: n_prompts // 3, 0] = False
    keys = np.broadcast_to(np.arange(n_prompts)[:, None], diffs.shape)
    return keys[keep].tolist(), diffs[keep].tolist()


def centred_exponential(rng, n):
    return rng.exponential(1.0, n) - 1.0  # skewness 2, mean 0


def heavy_symmetric(rng, n):
    return rng.standard_t(3, n)


SCENARIOS = {  # name: (prompts, prompt effect, sign vectors): exact (12) and Monte Carlo
    "symmetric t3, 12 prompts (exact)": (12, heavy_symmetric, 0),
    "skewed exponential, 100 prompts": (100, centred_exponential, 1000),
}


def simulate(name, mean, seed, margin=None):
    n_prompts, effect, n_flips = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    results = []
    for rep in range(REPS):
        keys, diffs = clustered_draws(rng, n_prompts, effect, mean)
        results.append(hypotheses.clustered_paired_test(keys, diffs, max(n_flips, 2), rep, margin))
    return results


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_mean_test_false_positive_rate_is_alpha_and_the_interval_covers(name):
    null = simulate(name, 0.0, seed=1)
    rate = np.mean([r["p_value"] < ALPHA for r in null])
    assert abs(rate - ALPHA) <= TOL, (name, rate)
    # the reported 95% interval (the test inverted) covers a non-zero true mean
    shifted = simulate(name, 0.4, seed=2)
    coverage = np.mean([r["ci_low"] <= 0.4 <= r["ci_high"] for r in shifted])
    assert abs(coverage - (1 - ALPHA)) <= TOL, (name, coverage)
    # interval and test agree on every data set: 0 outside the interval iff p < alpha
    for r in null + shifted:
        assert (r["p_value"] < ALPHA) == (not r["ci_low"] <= 0.0 <= r["ci_high"]), r
    assert np.mean([r["p_value"] < ALPHA for r in shifted]) > 0.1  # both outcomes occur


def test_clips_as_units_would_inflate_the_false_positive_rate():
    """Why prompts are the unit: the same null data tested clip by clip reject far too often."""
    n_prompts, effect, _ = SCENARIOS["symmetric t3, 12 prompts (exact)"]
    rng = np.random.default_rng(3)
    by_prompt, by_clip = [], []
    for rep in range(200):
        keys, diffs = clustered_draws(rng, n_prompts, effect, 0.0)
        by_prompt.append(hypotheses.clustered_paired_test(keys, diffs, 1000, rep)["p_value"])
        by_clip.append(hypotheses.mean_test(diffs, 1000, rep)["p_value"])  # clips as units
    assert np.mean(np.array(by_clip) < ALPHA) > 2 * np.mean(np.array(by_prompt) < ALPHA) > 0


MARGIN = 0.02


def noninferiority_runs(mean, seed, skewed=False, n_prompts=60, reps=REPS):
    rng = np.random.default_rng(seed)
    out = []
    for rep in range(reps):
        effect = (
            rng.exponential(0.04, n_prompts) - 0.04 if skewed else rng.normal(0, 0.04, n_prompts)
        )
        diffs = effect[:, None] + mean + 0.01 * rng.standard_normal((n_prompts, 2))
        keys = np.repeat(np.arange(n_prompts), 2).tolist()
        out.append(
            hypotheses.clustered_paired_test(keys, diffs.ravel().tolist(), 1000, rep, MARGIN)
        )
    return out


def test_noninferiority_holds_alpha_at_the_margin_and_has_power_at_zero():
    for skewed in (False, True):
        at_margin = noninferiority_runs(-MARGIN, seed=4 + skewed, skewed=skewed)
        rate = np.mean([r["p_value"] < ALPHA for r in at_margin])
        assert rate <= ALPHA + TOL, (skewed, rate)
        # the one-sided 95% lower bound covers the true mean (-margin) >= 95% of the time
        coverage = np.mean([r["ni_lower"] <= -MARGIN for r in at_margin])
        assert coverage >= 1 - ALPHA - TOL, (skewed, coverage)
    no_loss = noninferiority_runs(0.0, seed=6)
    assert np.mean([r["p_value"] < ALPHA for r in no_loss]) > 0.9
    for r in at_margin + no_loss:
        assert r["test"] == "noninferiority" and r["margin"] == MARGIN
        # the bound exceeds -margin exactly when the one-sided p < alpha
        assert (r["p_value"] < ALPHA) == (r["ni_lower"] > -MARGIN), r
        assert r["min_p"] == pytest.approx(1 / 1000)
        assert r["ci_low"] <= r["ni_lower"] <= r["mean_diff"] <= r["ci_high"]


def test_primaries_are_labelled_and_holm_adjusted_as_one_family():
    rows = [
        {"model": "m1", "condition": "r", "baseline": "p", "metric": "style", "p_value": 0.01},
        {"model": "m2", "condition": "r", "baseline": "p", "metric": "style", "p_value": 0.04},
        {"model": "m1", "condition": "r", "baseline": "p", "metric": "rms", "p_value": 0.001},
        {
            "model": "m1",
            "condition": "r",
            "baseline": "p",
            "metric": "text",
            "p_value": 0.03,
            "test": "noninferiority",
        },
    ]
    declared = [Hypothesis.parse("r:p:style"), Hypothesis.parse("r:p:text:m1:ni=0.02")]
    labelled = hypotheses.label_and_adjust(rows, declared)
    assert [r["family"] for r in labelled] == ["primary", "primary", "exploratory", "primary"]
    assert [labelled[i]["holm_p"] for i in (0, 1, 3)] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(labelled[2]["holm_p"])  # exploratory: unadjusted only
    assert {labelled[i]["holm_m"] for i in (0, 1, 3)} == {3}
    missing = hypotheses.missing_primaries(labelled, [Hypothesis.parse("x:p:style")], ["m1"])
    assert missing == ["m1: x vs p on style"]
    rows[3]["test"] = "two-sided"  # a declared NI row tested two-sided is a bug
    with pytest.raises(ValueError, match="declared noninferiority"):
        hypotheses.label_and_adjust(rows, declared)


def test_the_hypothesis_form_is_backward_compatible_and_round_trips():
    plain = Hypothesis.parse("retrieval:prompt:clap_style_sim")
    assert plain.test == "two-sided" and plain.models == () and plain.margin is None
    models = Hypothesis.parse("retrieval:prompt:clap_style_sim:A,B")
    assert models.models == ("A", "B") and models.test == "two-sided"
    ni = Hypothesis.parse("retrieval_native:prompt:clap_text_sim:ni=0.02")
    assert ni.test == "noninferiority" and ni.margin == 0.02 and ni.models == ()
    both = Hypothesis.parse("r:p:clap_text_sim:A:ni=0.05")
    assert both.models == ("A",) and both.margin == 0.05
    for h in (plain, models, ni, both):
        assert Hypothesis.parse(h.word()) == h
    for bad, message in (
        ("retrieval:prompt", "CONDITION:BASELINE:METRIC"),
        ("r:p:m:ni=0.02:A", "last field"),
        ("r:p:m:ni=x", "not a number"),
        ("r:p:m:ni=-0.1", ">= 0"),
        ("r:p:m:A:B", "last field"),
    ):
        with pytest.raises(ValueError, match=message):
            Hypothesis.parse(bad)
    conflict = [Hypothesis.parse("r:p:m"), Hypothesis.parse("r:p:m:A:ni=0.02")]
    with pytest.raises(ValueError, match="different kinds or margins"):
        hypotheses.check_declared(conflict)
    apart = [Hypothesis.parse("r:p:m:B"), Hypothesis.parse("r:p:m:A:ni=0.02")]
    assert hypotheses.check_declared(apart) == apart
    assert hypotheses.margin_for(apart, "A", "r", "p", "m") == 0.02
    assert hypotheses.margin_for(apart, "B", "r", "p", "m") is None
