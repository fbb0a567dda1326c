"""The sign-flip test of a mean and its inverted interval: definitions checked by brute
force, the interval/test agreement, attainable p and unbounded intervals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from rcmg.evaluation import signflip


def brute_force(x, delta):
    """#{|T_f| >= |T_id|} / 2^n and #{T_f >= T_id} / 2^n over every sign vector."""
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=x.size)))
    t = signs @ (x - delta)
    t_id = float(np.sum(x - delta))
    tol = 1e-12
    return np.mean(np.abs(t) >= abs(t_id) - tol), np.mean(t >= t_id - tol)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_exact_p_values_are_the_sign_flip_definition(n):
    rng = np.random.default_rng(n)
    x = rng.exponential(1.0, n) - 0.7
    flips = signflip.sign_flips(x)
    assert flips.exact and flips.n_flips == 2**n
    for delta in (0.0, 0.15, -0.4, float(x.mean()) + 0.01, float(x.max()) + 1.0):
        two_sided, upper = brute_force(x, delta)
        assert flips.p_two_sided(delta) == pytest.approx(two_sided)
        assert flips.p_upper(delta) == pytest.approx(upper)
        assert flips.p_lower(delta) == pytest.approx(brute_force(-x, -delta)[1])


def test_monte_carlo_p_matches_the_normal_approximation_and_is_seeded():
    rng = np.random.default_rng(0)
    x = rng.normal(0.25, 1.0, 60)
    first = signflip.sign_flips(x, n_flips=20000, seed=1)
    assert not first.exact and first.n_flips == 20000
    assert first.p_two_sided() == signflip.sign_flips(x, 20000, 1).p_two_sided()
    # the flip distribution of sum(x) has variance sum(x^2): a z-test is its large-n limit
    z = abs(x.sum()) / math.sqrt(np.sum(x**2))
    normal_p = math.erfc(z / math.sqrt(2.0))
    assert first.p_two_sided() == pytest.approx(normal_p, abs=0.01)
    assert first.min_p() == pytest.approx(2 / 20000) and first.min_p(False) == 1 / 20000


def test_interval_is_the_test_inverted_and_the_bounds_nest():
    rng = np.random.default_rng(5)
    for n, n_flips in ((7, 0), (14, 0), (25, 3000), (80, 3000)):
        x = rng.standard_t(3, n) * 0.1 + 0.03
        flips = signflip.sign_flips(x, max(n_flips, 2), seed=n)
        low, high = flips.interval(0.05)
        eps = 1e-9 * max(1.0, abs(low), abs(high))
        # just inside the ends is accepted, just beyond them rejected
        assert flips.p_two_sided(low + eps) >= 0.05 > flips.p_two_sided(low - eps)
        assert flips.p_two_sided(high - eps) >= 0.05 > flips.p_two_sided(high + eps)
        assert low <= flips.mean <= high
        # one-sided 95% bound = the 90% two-sided interval's lower end, inside the 95% one
        bound = flips.lower_bound(0.05)
        assert bound == flips.interval(0.10)[0] and low <= bound <= flips.mean
        assert flips.p_upper(bound + eps) >= 0.05 > flips.p_upper(bound - eps)


def test_few_prompts_give_the_smallest_attainable_p_and_unbounded_intervals():
    # 4 prompts, all one sign: p = 2 / 16 = 0.125, the 95% interval cannot exclude anything
    flips = signflip.sign_flips([0.1, 0.2, 0.3, 0.4])
    assert flips.p_two_sided() == pytest.approx(0.125) == flips.min_p()
    assert flips.interval(0.05) == (-math.inf, math.inf)
    assert flips.lower_bound(0.05) == -math.inf  # one-sided min p 1/16 = 0.0625 > 0.05
    # 6 prompts: min p 2/64 = 0.031 < 0.05, so the interval is bounded and excludes 0
    six = signflip.sign_flips([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    low, high = six.interval(0.05)
    assert six.p_two_sided() == pytest.approx(2 / 64) and 0 < low < high < math.inf
    # all differences zero (8 prompts): p = 1 and the interval is the point 0
    zero = signflip.sign_flips([0.0] * 8)
    assert zero.p_two_sided() == 1.0 and zero.interval() == (0.0, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        six.interval(0.0)
    with pytest.raises(ValueError, match="finite"):
        signflip.sign_flips([math.nan])
