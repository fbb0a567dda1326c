"""Holm adjustment (hand-computed), prompt-clustered paired tests, attainable p, labels."""

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


def test_seeds_are_averaged_per_prompt_before_the_test():
    keys = ["a", "a", "b", "b", "c", "c", "d", "e"]
    diffs = [1.0, 3.0, 2.0, 2.0, -1.0, 5.0, 4.0, math.nan]
    result = hypotheses.clustered_paired_test(keys, diffs, n_boot=100)
    assert result["n"] == 4 and result["n_pairs"] == 7  # prompt e has no finite pair
    means = [2.0, 2.0, 2.0, 4.0]
    assert result["mean_diff"] == pytest.approx(np.mean(means))
    assert result["wilcoxon_p"] == pytest.approx(scipy_stats.wilcoxon(means).pvalue)
    assert result["min_p"] == pytest.approx(2 / 2**4)


def test_primaries_are_labelled_and_holm_adjusted_as_one_family():
    rows = [
        {"model": "m1", "condition": "r", "baseline": "p", "metric": "style", "wilcoxon_p": 0.01},
        {"model": "m2", "condition": "r", "baseline": "p", "metric": "style", "wilcoxon_p": 0.04},
        {"model": "m1", "condition": "r", "baseline": "p", "metric": "rms", "wilcoxon_p": 0.001},
        {"model": "m1", "condition": "r", "baseline": "p", "metric": "text", "wilcoxon_p": 0.03},
    ]
    declared = [Hypothesis.parse("r:p:style"), Hypothesis.parse("r:p:text:m1")]
    labelled = hypotheses.label_and_adjust(rows, declared)
    assert [r["family"] for r in labelled] == ["primary", "primary", "exploratory", "primary"]
    assert [labelled[i]["holm_p"] for i in (0, 1, 3)] == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(labelled[2]["holm_p"])  # exploratory: unadjusted only
    missing = hypotheses.missing_primaries(labelled, [Hypothesis.parse("x:p:style")], ["m1"])
    assert missing == ["m1: x vs p on style"]
    with pytest.raises(ValueError, match="CONDITION:BASELINE:METRIC"):
        Hypothesis.parse("retrieval:prompt")
