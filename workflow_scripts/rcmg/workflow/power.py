"""Power of the primary paired tests: minimum detectable effect and prompts needed.

Standard library only (the dry-run planner, rcmg.workflow.plan_cost, imports it while
Snakemake parses; the comparison page uses the same functions). Tested against scipy's
``t`` and ``nct`` and by simulation of the compare step's own test
(tests/unit/evaluation/test_power.py).

**Unit.** The primaries are tested on the n per-prompt mean differences d_1..d_n
(:mod:`rcmg.evaluation.hypotheses`); seeds and waveforms of a prompt are averaged first,
so sd below is the SD of those prompt means (it already contains the seed-to-seed noise at
the run's seeds x waveforms) and N is the number of prompts.

**Level.** The primaries are Holm-adjusted as one family of m; a row is detected when its
Holm p < alpha (0.05). Holm's first step tests the smallest p at alpha / m and its last at
alpha, so every row's Holm threshold lies in [alpha / m, alpha]. The power here is at
``alpha_used = alpha / m`` (the Bonferroni level): a lower bound on the row's power under
Holm, and exact for the row Holm tests first.

**Test.** The deciding test is the sign-flip test of the mean (:mod:`rcmg.evaluation.signflip`),
whose power for prompt means near normal is that of the one-sample t-test at the same size
(the randomisation test is asymptotically the t-test). Power is the noncentral-t formula:
two-sided, P(|T'| > t_{1 - a/2, n-1}); non-inferiority with margin M, one-sided,
P(T' > t_{1 - a, n-1}); T' noncentral t with n - 1 degrees of freedom and noncentrality
lambda = (delta + M) sqrt(n) / sd (M = 0 for two-sided rows), delta the true mean difference.
The sign-flip test's p-values are multiples of 1 / K (K = 2^n sign vectors up to 16
prompts, else n_flips): the level a it can actually hold is the largest attainable p below
alpha_used (``alpha_attainable``: 2c/K two-sided, c/K one-sided), and the t formula is
evaluated at that size. When even the smallest p (2/K, one-sided 1/K) is not below
alpha_used the test cannot reject at all: power 0, MDE infinite (5 prompts: 2/32 = 0.0625).

**MDE.** Two-sided: the smallest delta > 0 with power(delta) = target. Non-inferiority:
the smallest true mean difference delta at which non-inferiority is shown with the target
power, -M + lambda* sd / sqrt(n) (negative: a true loss smaller than that is still shown
non-inferior). **N needed** for a stated effect (two-sided: a difference delta;
non-inferiority: the true difference assumed, 0 = no loss): the smallest n with
power >= target, attainable level included.
"""

from __future__ import annotations

import math
from statistics import NormalDist

ALPHA = 0.05  # rcmg.evaluation.hypotheses.ALPHA: the level Holm's adjusted p is read at
TWO_SIDED = "two-sided"  # the words of rcmg.evaluation.hypotheses (not imported: numpy)
NONINFERIORITY = "noninferiority"
EXACT_MAX_N = 16  # rcmg.evaluation.signflip.EXACT_MAX_N: all 2^n sign vectors up to here
MAX_N = 10**6  # n_needed beyond this is reported as infinite
_NORMAL = NormalDist()
_QUAD_INTERVALS = 240  # Simpson intervals over the chi density (error < 1e-9, tested)


# ---------------------------------------------------------------- distributions
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(x: float, df: float) -> float:
    """P(T > x) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + x * x))
    return tail if x >= 0 else 1.0 - tail


def t_isf(p: float, df: float) -> float:
    """The x with P(T > x) = p (0 < p < 1): bisection on :func:`t_sf`."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a tail probability lies in (0, 1), got {p}")
    if p > 0.5:
        return -t_isf(1.0 - p, df)
    lo, hi = 0.0, max(1.0, _NORMAL.inv_cdf(1.0 - p))
    while t_sf(hi, df) > p:
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def _chi_nodes(df: float, x: float = 0.0) -> list[tuple[float, float]]:
    """Simpson nodes (s, weight x density) of S = sqrt(V / df), V chi-square(df), fine
    enough for Phi(nc - x s): at least 8 nodes per unit of x s."""
    spread = 1.0 / math.sqrt(2.0 * df)
    mode = math.sqrt(max(df - 1.0, 0.0) / df)
    lo, hi = max(0.0, mode - 14.0 * spread), mode + 14.0 * spread
    intervals = _QUAD_INTERVALS
    intervals = max(intervals, min(40000, math.ceil(8.0 * (hi - lo) * abs(x))))
    intervals += intervals % 2
    h = (hi - lo) / intervals
    log_norm = math.log(2.0) + (df / 2.0) * math.log(df / 2.0) - math.lgamma(df / 2.0)
    nodes = []
    for i in range(intervals + 1):
        s = lo + i * h
        weight = (1 if i in (0, intervals) else 4 if i % 2 else 2) * h / 3.0
        if s > 0.0:
            density = math.exp(log_norm + (df - 1.0) * math.log(s) - df * s * s / 2.0)
        else:  # s = 0: the density is finite only for df = 1
            density = math.exp(log_norm) if df == 1.0 else 0.0
        nodes.append((s, weight * density))
    return nodes


def nct_sf(x: float, df: float, nc: float, nodes=None) -> float:
    """P(T' > x), T' = (Z + nc) / S noncentral t: E_S[Phi(nc - x S)] by quadrature
    (``nodes``: :func:`_chi_nodes` of this df and x, reused across nc)."""
    nodes = nodes or _chi_nodes(df, x)
    return min(1.0, max(0.0, sum(w * _NORMAL.cdf(nc - x * s) for s, w in nodes)))


def nct_cdf(x: float, df: float, nc: float, nodes=None) -> float:
    """P(T' < x) (:func:`nct_sf`'s complement, computed directly for small tails)."""
    nodes = nodes or _chi_nodes(df, x)
    return min(1.0, max(0.0, sum(w * _NORMAL.cdf(x * s - nc) for s, w in nodes)))


# ---------------------------------------------------------------- the sign-flip bound
def flip_count(n: int, n_flips: int) -> int:
    """K, the sign vectors the compare step's test uses at n prompts (signflip.sign_flips)."""
    return 2**n if n <= EXACT_MAX_N else 2 * max(1, math.ceil(n_flips / 2))


def attainable_alpha(n: int, alpha: float, one_sided: bool, n_flips: int) -> float:
    """The largest p the sign-flip test can give below ``alpha`` at n prompts (0 when none:
    the test cannot reject). Two-sided p = min(1, 2c/K), one-sided c/K, c >= 1."""
    if n < 2:
        return 0.0
    k = flip_count(n, n_flips)
    step = (1.0 if one_sided else 2.0) / k
    count = math.ceil(alpha / step) - 1  # largest c with c * step < alpha
    return max(0, count) * step


# ---------------------------------------------------------------- power, MDE, N
def t_power(distance: float, sd: float, n: int, level: float, one_sided: bool) -> float:
    """Power of the one-sample t-test at size ``level`` for a true mean ``distance`` from
    H0's bound (two-sided: |delta|, non-inferiority: delta + margin), n values of SD sd."""
    if n < 2 or level <= 0.0 or not (sd > 0.0 and math.isfinite(sd)):
        return 0.0 if n < 2 or level <= 0.0 else math.nan
    df = n - 1.0
    nc = distance * math.sqrt(n) / sd
    crit = t_isf(level if one_sided else level / 2.0, df)
    nodes = _chi_nodes(df, crit)
    if one_sided:
        return nct_sf(crit, df, nc, nodes)
    return nct_sf(crit, df, nc, nodes) + nct_cdf(-crit, df, nc, nodes)


def power(
    effect: float, sd: float, n: int, alpha_used: float, test: str, margin=None, n_flips=10000
) -> float:
    """Power of the compare step's test of one primary at true mean difference ``effect``."""
    one_sided = test == NONINFERIORITY
    level = attainable_alpha(n, alpha_used, one_sided, n_flips)
    distance = effect + float(margin or 0.0) if one_sided else abs(effect)
    return t_power(distance, sd, n, level, one_sided)


def mde(
    sd: float, n: int, alpha_used: float, target: float, test: str, margin=None, n_flips=10000
) -> float:
    """Minimum detectable effect (module docstring): inf when the test cannot reject."""
    one_sided = test == NONINFERIORITY
    level = attainable_alpha(n, alpha_used, one_sided, n_flips)
    if n < 2 or level <= 0.0:
        return math.inf
    if not (sd > 0.0 and math.isfinite(sd)):
        return math.nan
    df = n - 1.0
    crit = t_isf(level if one_sided else level / 2.0, df)
    nodes = _chi_nodes(df, crit)

    def reach(nc: float) -> float:
        upper = nct_sf(crit, df, nc, nodes)
        return upper if one_sided else upper + nct_cdf(-crit, df, nc, nodes)

    lo, hi = 0.0, max(1.0, crit + _NORMAL.inv_cdf(target))
    while reach(hi) < target:
        lo, hi = hi, hi * 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if reach(mid) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-10 * hi:
            break
    distance = hi * sd / math.sqrt(n)
    return distance - float(margin or 0.0) if one_sided else distance


def n_needed(
    effect: float,
    sd: float,
    alpha_used: float,
    target: float,
    test: str,
    margin=None,
    n_flips=10000,
) -> float:
    """Smallest number of prompts with :func:`power` >= target (inf: none up to MAX_N,
    e.g. a distance <= 0 or n_flips too few for alpha_used)."""
    one_sided = test == NONINFERIORITY
    distance = effect + float(margin or 0.0) if one_sided else abs(effect)
    if not (sd > 0.0 and math.isfinite(sd)) or not math.isfinite(distance):
        return math.nan
    if distance <= 0.0:
        return math.inf

    def enough(n: int) -> bool:
        return power(effect, sd, n, alpha_used, test, margin, n_flips) >= target

    # power is not monotone in n below 17 prompts (attainable levels jump): scan those
    for n in range(2, EXACT_MAX_N + 1):
        if enough(n):
            return float(n)
    if not enough(MAX_N):
        return math.inf
    z = _NORMAL.inv_cdf(1.0 - alpha_used / (1 if one_sided else 2)) + _NORMAL.inv_cdf(target)
    guess = max(EXACT_MAX_N + 1, min(MAX_N, math.ceil((z * sd / distance) ** 2)))
    lo, hi = EXACT_MAX_N, guess  # enough(lo) is False
    while not enough(hi):
        lo, hi = hi, min(MAX_N, hi * 2)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return float(hi)


# ---------------------------------------------------------------- one row of power.csv
FIELDS = [
    "contrast",
    "model",
    "metric",
    "test",
    "margin",
    "n_prompts",
    "sd_of_prompt_differences",
    "holm_m",
    "alpha_used",
    "alpha_attainable",
    "power",
    "mde",
    "effect_size_target",
    "power_at_target",
    "n_needed",
    "variance_source",
    "is_pipeline_check",
    "note",
]


def contrast(condition: str, baseline: str) -> str:
    return f"{condition} vs {baseline}"


def power_row(
    *,
    condition: str,
    baseline: str,
    model: str,
    metric: str,
    test: str,
    margin,
    n: int,
    sd: float,
    m: int,
    alpha: float,
    target: float,
    effect,
    n_flips: int,
    variance_source: str,
    is_pipeline_check: bool = False,
) -> dict:
    """One primary's MDE at n prompts and the prompts its stated effect needs."""
    one_sided = test == NONINFERIORITY
    alpha_used = alpha / max(1, m)
    level = attainable_alpha(n, alpha_used, one_sided, n_flips)
    effect = math.nan if effect is None else float(effect)
    margin = math.nan if margin is None else float(margin)
    ni_margin = margin if one_sided else None
    note = []
    if n >= 2 and level <= 0.0:
        smallest = (1.0 if one_sided else 2.0) / flip_count(n, n_flips)
        note.append(
            f"sign-flip: smallest p {smallest:.3g} at {n} prompts is not below "
            f"alpha_used {alpha_used:.3g}: no power, MDE infinite"
        )
    elif n < 2:
        note.append(f"{n} prompt(s): no test")
    if not (sd > 0.0 and math.isfinite(sd)):
        note.append("no finite positive SD of the prompt differences")
    if math.isnan(effect):
        note.append(f"no effect size for {metric} in evaluation.power.effect_sizes")
    return {
        "contrast": contrast(condition, baseline),
        "model": model,
        "metric": metric,
        "test": test,
        "margin": margin,
        "n_prompts": n,
        "sd_of_prompt_differences": sd,
        "holm_m": m,
        "alpha_used": alpha_used,
        "alpha_attainable": level,
        "power": target,
        "mde": mde(sd, n, alpha_used, target, test, ni_margin, n_flips),
        "effect_size_target": effect,
        "power_at_target": (
            math.nan
            if math.isnan(effect)
            else power(effect, sd, n, alpha_used, test, ni_margin, n_flips)
        ),
        "n_needed": (
            math.nan
            if math.isnan(effect)
            else n_needed(effect, sd, alpha_used, target, test, ni_margin, n_flips)
        ),
        "variance_source": variance_source,
        "is_pipeline_check": bool(is_pipeline_check),
        "note": "; ".join(note),
    }


def parse_effects(words) -> dict[str, float]:
    """``METRIC=VALUE`` words (compare.py --power-effects) as {metric: value}."""
    out = {}
    for word in words or ():
        metric, sep, value = str(word).partition("=")
        if not sep or not metric:
            raise ValueError(f"power effect {word!r}: write METRIC=VALUE (evaluation.power)")
        out[metric] = float(value)
    return out
