"""Sign-flip (randomisation) test of a mean, and the interval that inverts it.

Data: one value per cluster (here the per-prompt mean difference) x_1..x_n, mean m.
For a hypothesised mean delta the statistic is T(delta) = sum_i (x_i - delta); its
reference distribution flips the sign of each centred value:
T_f(delta) = sum_i f_i (x_i - delta), f in F. F is every sign vector (exact, 2^n of them)
when n <= EXACT_MAX_N, else the identity and random vectors, each with its negation
(seeded Monte Carlo). F is closed under negation in both cases, so the two-sided p is
exactly twice the smaller one-sided p.

Write c_f = sum_i f_i (x_i - m) and E_f = sum_i f_i (both independent of delta). Then
T_f(delta) >= T_id(delta) iff v_f >= m - delta with v_f = c_f / (n - E_f) (v = +inf for
the identity, E_f = n), and T_f(delta) <= T_id(delta) iff w_f >= delta - m with
w_f = -c_f / (n - E_f). Hence, with K = |F|:

* p_upper(delta) = #{v_f >= m - delta} / K   (H1: mean > delta; one-sided)
* p_lower(delta) = #{w_f >= delta - m} / K   (H1: mean < delta)
* p(delta) = min(1, 2 min(p_upper, p_lower)) (two-sided; = #{|T_f| >= |T_id|} / K)

Each is monotone in delta, so the set of delta a level-alpha test does not reject is an
interval whose ends are order statistics of v and w: lower = m - v_(k), upper = m + w_(k)
(k-th largest, k the smallest count with p >= alpha). The interval and the test are the
same computation: 0 lies outside the (1 - alpha) interval exactly when p(0) < alpha, and
the one-sided (1 - alpha) lower bound exceeds -margin exactly when the non-inferiority p
(p_upper(-margin)) is < alpha.

Validity: exact (p uniform or conservative) when the x_i are independent and symmetric
about the hypothesised mean; without symmetry the test and interval are asymptotically
valid for the mean (the flip variance sum (x_i - delta)^2 estimates n var under H0), and
with few clusters and strong skew they are liberal like the t-test (config/README.md,
statistics). Studentising changes nothing: sum (f_i x_i)^2 does not depend on f, so a
flipped t is a monotone function of the flipped mean. The smallest attainable two-sided
p is 2 / K (2 / 2^n exact; 0.125 at 4 clusters), one-sided 1 / K; an interval at a level
the data cannot reach is unbounded (inf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_MAX_N = 16  # all 2^n sign vectors up to here (65,536 x 16)
_CHUNK = 2048  # random sign vectors drawn per block (memory: CHUNK x n)


@dataclass(frozen=True)
class SignFlips:
    """The sign-flip distribution of the mean of ``n`` values (see the module docstring)."""

    mean: float
    n: int
    n_flips: int  # K, the size of F (identity and negations included)
    exact: bool
    v: np.ndarray  # ascending thresholds of the upper test (c_f / (n - E_f))
    w: np.ndarray  # ascending thresholds of the lower test (-c_f / (n - E_f))

    @property
    def method(self) -> str:
        if self.exact:
            return f"sign-flip, exact (all 2^{self.n} = {self.n_flips} sign vectors)"
        return f"sign-flip, Monte Carlo ({self.n_flips} sign vectors, seeded)"

    def _at_least(self, values: np.ndarray, threshold: float) -> int:
        return int(values.size - np.searchsorted(values, threshold, side="left"))

    def _kth_largest(self, values: np.ndarray, k: int) -> float:
        return float(values[values.size - k])

    def p_upper(self, delta: float = 0.0) -> float:
        """One-sided p of H0: mean <= delta against H1: mean > delta."""
        return self._at_least(self.v, self.mean - delta) / self.n_flips

    def p_lower(self, delta: float = 0.0) -> float:
        """One-sided p of H0: mean >= delta against H1: mean < delta."""
        return self._at_least(self.w, delta - self.mean) / self.n_flips

    def p_two_sided(self, delta: float = 0.0) -> float:
        count = min(
            self._at_least(self.v, self.mean - delta), self._at_least(self.w, delta - self.mean)
        )
        return _two_sided(count, self.n_flips)

    def min_p(self, two_sided: bool = True) -> float:
        """Smallest p the test can give with these data's n (the identity always counts)."""
        return _two_sided(1, self.n_flips) if two_sided else _one_sided(1, self.n_flips)

    def interval(self, alpha: float = 0.05) -> tuple[float, float]:
        """Two-sided (1 - alpha) interval: every delta with p_two_sided(delta) >= alpha."""
        k = _smallest_count(lambda c: _two_sided(c, self.n_flips), alpha, self.n_flips)
        return self.mean - self._kth_largest(self.v, k), self.mean + self._kth_largest(self.w, k)

    def lower_bound(self, alpha: float = 0.05) -> float:
        """One-sided (1 - alpha) lower bound: the smallest delta with p_upper(delta) >= alpha
        (= the lower end of the two-sided 1 - 2 alpha interval)."""
        k = _smallest_count(lambda c: _one_sided(c, self.n_flips), alpha, self.n_flips)
        return self.mean - self._kth_largest(self.v, k)


def _two_sided(count: int, total: int) -> float:
    return min(1.0, 2.0 * count / total)


def _one_sided(count: int, total: int) -> float:
    return count / total


def _smallest_count(p_of, alpha: float, total: int) -> int:
    """Smallest count c in 1..total with p_of(c) >= alpha (p_of non-decreasing): the
    same expression as the p-values, so the interval's ends and "p < alpha" agree."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    count = max(1, min(total, math.floor(alpha * total / 2.0)))
    while count > 1 and p_of(count - 1) >= alpha:
        count -= 1
    while p_of(count) < alpha:
        count += 1
    return count


def _all_signs(n: int) -> np.ndarray:
    codes = np.arange(2**n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)
    return (codes & 1).astype(np.float64) * 2.0 - 1.0


def _flip_sums(centred: np.ndarray, n_flips: int, seed: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(c_f, E_f) over F: every sign vector, or the identity plus random ones, each with
    its negation."""
    n = centred.size
    if n <= EXACT_MAX_N:
        signs = _all_signs(n)
        return signs @ centred, signs.sum(axis=1), True
    half = max(1, math.ceil(n_flips / 2))
    rng = np.random.default_rng(seed)
    c_parts, e_parts = [np.array([centred.sum()])], [np.array([float(n)])]
    remaining = half - 1
    while remaining > 0:
        rows = min(_CHUNK, remaining)
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8).astype(np.float64) * 2.0 - 1.0
        c_parts.append(signs @ centred)
        e_parts.append(signs.sum(axis=1))
        remaining -= rows
    c, e = np.concatenate(c_parts), np.concatenate(e_parts)
    return np.concatenate([c, -c]), np.concatenate([e, -e]), False


def sign_flips(values, n_flips: int = 10000, seed: int = 0) -> SignFlips:
    """The sign-flip distribution of the mean of the finite ``values`` (n >= 1)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("sign_flips needs at least one finite value")
    if n_flips < 2:
        raise ValueError(f"n_flips must be >= 2, got {n_flips}")
    n, mean = int(x.size), float(x.mean())
    c, e, exact = _flip_sums(x - mean, n_flips, seed)
    identity = e >= n  # E_f = n only for the all-plus vector
    gap = np.where(identity, 1.0, n - e)
    v = np.where(identity, np.inf, c / gap)
    w = np.where(identity, np.inf, -c / gap)
    return SignFlips(mean, n, int(c.size), exact, np.sort(v), np.sort(w))
