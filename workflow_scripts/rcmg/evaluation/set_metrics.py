"""Set metrics (FAD, FAD-infinity, KAD) with intervals that never pair a clip with itself.

Intervals are jackknife intervals (estimate +- z * SE): the generated side is deleted
one *cluster* at a time (a cluster = all clips of one prompt: seeds and waveforms of a
prompt are not independent), the reference side one clip (KAD) or one block (FAD) at a
time, and the two variances add (two-sample jackknife). A leave-out set never holds a
clip twice, unlike the with-replacement bootstrap, whose duplicates enter KAD's
off-diagonal terms with kernel value 1 and shrink FAD's covariance rank. By the
Efron-Stein inequality the jackknife variance is conservative in expectation.

* KAD is an unbiased U-statistic: its interval covers the population MMD^2
  (tests/unit/evaluation/test_set_metrics.py checks coverage by simulation).
* FAD is biased upward by O(1/N): its interval is an interval for the FAD *at this N*
  (the expectation of the estimator at this sample size), centred on the point value.
  FAD-infinity (:func:`fad_infinity`) extrapolates to N -> infinity.
* Paired differences (:func:`paired_set_difference`) delete a prompt from BOTH
  conditions at once, so "retrieval lowers KAD vs prompt" is itself an interval.

Pure numpy; every function returns plain dicts (NaN + ``reason`` when undefined).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcmg.evaluation import metrics

SET_METRICS = ("fad", "kad")
NO_INTERVAL = "{} prompts: no interval (the jackknife needs >= 3)"


@dataclass(frozen=True)
class SetMetricOptions:
    """Interval and FAD-infinity settings (config: evaluation.fad_blocks, fad_inf_*)."""

    confidence: float = 0.95
    fad_blocks: int = 20  # jackknife blocks per side for FAD (each costs one FAD)
    fad_inf_min_n: int = 500  # smallest subsample of the FAD-infinity fit (fadtk: 500)
    fad_inf_steps: int = 10  # subsample sizes from min_n to N
    fad_inf_repeats: int = 3  # subsamples averaged per size
    seed: int = 0


def _z(confidence: float) -> float:
    from scipy import stats as scipy_stats

    return float(scipy_stats.norm.ppf(0.5 + confidence / 2.0))


def _record(value, se, n, confidence, method, reason="", **extra) -> dict:
    if not math.isfinite(value) or not math.isfinite(se):
        low = high = math.nan
    else:
        half = _z(confidence) * se
        low, high = value - half, value + half
    return {
        "mean": float(value),
        "ci_low": float(low),
        "ci_high": float(high),
        "se": float(se),
        "n": int(n),
        "method": method,
        "reason": reason,
        **extra,
    }


def _na(n: int, reason: str, **extra) -> dict:
    return {
        "mean": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "se": math.nan,
        "n": int(n),
        "method": "",
        "reason": reason,
        **extra,
    }


def jackknife_variance(leave_out_values) -> float:
    """(G-1)/G * sum (theta_(-g) - mean)^2 over G leave-out values (NaN when G < 2)."""
    values = np.asarray(leave_out_values, dtype=np.float64)
    if values.size < 2 or not np.isfinite(values).all():
        return math.nan
    g = values.size
    return float((g - 1) / g * np.sum((values - values.mean()) ** 2))


def clusters(labels) -> list[np.ndarray]:
    """Row indices per distinct label, in order of first appearance."""
    labels = list(labels)
    order: dict = {}
    for i, label in enumerate(labels):
        order.setdefault(label, []).append(i)
    return [np.asarray(rows, dtype=np.int64) for rows in order.values()]


def blocks(groups: list[np.ndarray], n_blocks: int, seed: int) -> list[np.ndarray]:
    """Groups dealt into at most ``n_blocks`` blocks in a seeded order (a group stays whole)."""
    order = np.random.default_rng(seed).permutation(len(groups))
    count = max(1, min(n_blocks, len(groups)))
    dealt = [[] for _ in range(count)]
    for position, g in enumerate(order):
        dealt[position % count].append(groups[g])
    return [np.concatenate(parts) for parts in dealt if parts]


# ---------------------------------------------------------------- KAD


class _KadReference:
    """The reference's squared distances and kadtk bandwidth (computed once per reference)."""

    def __init__(self, ref: np.ndarray):
        self.d2 = metrics._squared_distances(ref, ref)
        self.bandwidth = metrics.median_from_squared_distances(self.d2)


class _KadState:
    """Kernel sums of one generated set vs the reference, for closed-form deletions."""

    def __init__(self, gen: np.ndarray, ref: np.ndarray, reference: _KadReference):
        k_xx, k_yy, k_xy = metrics.kad_kernels(gen, ref, reference.bandwidth, reference.d2)
        self.k_xx = k_xx
        self.n, self.m = len(k_xx), len(k_yy)
        self.row_xx = k_xx.sum(1)
        self.row_yy = k_yy.sum(1)
        self.row_xy = k_xy.sum(1)  # per generated clip
        self.col_xy = k_xy.sum(0)  # per reference clip
        self.s_xx, self.s_yy, self.s_xy = self.row_xx.sum(), self.row_yy.sum(), self.row_xy.sum()

    def value(self) -> float:
        n, m = self.n, self.m
        return metrics.KAD_SCALE * (
            self.s_xx / (n * (n - 1)) + self.s_yy / (m * (m - 1)) - 2 * self.s_xy / (n * m)
        )

    def without_generated(self, rows: np.ndarray) -> float:
        """KAD with generated ``rows`` deleted (NaN when < 2 clips remain)."""
        n, m = self.n - len(rows), self.m
        if n < 2:
            return math.nan
        block = self.k_xx[np.ix_(rows, rows)].sum()
        s_xx = self.s_xx - 2.0 * self.row_xx[rows].sum() + block
        s_xy = self.s_xy - self.row_xy[rows].sum()
        return metrics.KAD_SCALE * (
            s_xx / (n * (n - 1)) + self.s_yy / (m * (m - 1)) - 2 * s_xy / (n * m)
        )

    def without_each_reference(self) -> np.ndarray:
        """KAD with reference clip l deleted, for every l -> [M]."""
        n, m = self.n, self.m - 1
        s_yy = self.s_yy - 2.0 * self.row_yy
        s_xy = self.s_xy - self.col_xy
        return metrics.KAD_SCALE * (
            self.s_xx / (n * (n - 1)) + s_yy / (m * (m - 1)) - 2 * s_xy / (n * m)
        )


def _check_sets(gen, ref, name: str, min_gen: int = 2, min_ref: int = 3):
    gen = np.asarray(gen, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if gen.ndim != 2 or ref.ndim != 2 or gen.shape[1] != ref.shape[1]:
        raise ValueError(f"{name} needs [N, D] and [M, D] sets, got {gen.shape} and {ref.shape}")
    if len(gen) < min_gen or len(ref) < min_ref:
        return gen, ref, f"{name} needs >= {min_gen} generated and >= {min_ref} reference clips"
    return gen, ref, ""


def kad_interval(gen, ref, labels=None, options: SetMetricOptions = SetMetricOptions()) -> dict:
    """KAD (kadtk convention) with a two-sample jackknife interval for the population MMD^2.

    ``labels`` (one per generated row, e.g. the prompt) define the clusters deleted
    together; default: each clip its own cluster.
    """
    gen, ref, reason = _check_sets(gen, ref, "KAD")
    if reason:
        return _na(len(gen), reason)
    labels = range(len(gen)) if labels is None else labels
    groups = clusters(labels)
    reference = _KadReference(ref)
    state = _KadState(gen, ref, reference)
    if len(groups) < 3:
        return {**_na(len(gen), NO_INTERVAL.format(len(groups))), "mean": state.value()}
    var_gen = jackknife_variance([state.without_generated(g) for g in groups])
    var_ref = jackknife_variance(state.without_each_reference())
    method = f"jackknife ({len(groups)} prompt clusters x {len(ref)} reference clips)"
    return _record(
        state.value(),
        math.sqrt(var_gen + var_ref),
        len(gen),
        options.confidence,
        method,
        bandwidth=reference.bandwidth,
        n_prompts=len(groups),
    )


# ---------------------------------------------------------------- FAD


class _Moments:
    """Sum and scatter of a set, for mean/covariance with rows deleted (downdating)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self.total = x.sum(0)
        self.scatter = x.T @ x

    def stats(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        total, scatter, n = self.total, self.scatter, len(self.x)
        if rows is not None and len(rows):
            part = self.x[rows]
            total, scatter, n = total - part.sum(0), scatter - part.T @ part, n - len(rows)
        mu = total / n
        sigma = (scatter - n * np.outer(mu, mu)) / (n - 1)
        return mu, (sigma + sigma.T) / 2.0, n


class _Reference:
    """Reference mean/covariance with rows deleted, and sqrt(covariance) computed lazily
    (only an [N > D] generated set needs it: smaller sets use the N x N eigenproblem of
    :func:`metrics.frechet_distance_to_reference`). Deleted-block stats are cached, so
    two conditions of a paired difference share them."""

    def __init__(self, ref: np.ndarray):
        self.moments = _Moments(ref)
        self._cache: dict = {}

    def stats(self, rows: np.ndarray | None = None) -> dict:
        key = None if rows is None else tuple(np.sort(rows).tolist())
        if key not in self._cache:
            mu, sigma, _ = self.moments.stats(rows)
            self._cache[key] = {"mu": mu, "sigma": sigma, "root": None}
        return self._cache[key]

    def root(self, entry: dict) -> np.ndarray:
        if entry["root"] is None:
            entry["root"] = metrics.psd_sqrt(entry["sigma"])
        return entry["root"]


class _FadState:
    """FAD of one generated set vs the reference with generated or reference rows deleted.

    N <= D: the N x N eigenproblem. N > D: Tr sqrt(S_g S_r) is the sum of square roots of
    the eigenvalues of R S_g R with R = sqrt(S_r) when generated rows are deleted, or of
    G S_r G with G = sqrt(S_g) when reference rows are deleted: each root is computed once,
    each deletion costs two products and one symmetric eigenvalue problem.
    """

    def __init__(self, gen: np.ndarray, ref: np.ndarray | _Reference):
        self.gen = gen
        self.gen_moments = _Moments(gen)
        self.ref = ref if isinstance(ref, _Reference) else _Reference(ref)
        self._gen_root = None

    def value(self, gen_rows=None, ref_rows=None) -> float:
        n, dim = len(self.gen) - (0 if gen_rows is None else len(gen_rows)), self.gen.shape[1]
        if n < 2:
            return math.nan
        entry = self.ref.stats(ref_rows)
        if n - 1 < dim:
            x = self.gen if gen_rows is None else np.delete(self.gen, gen_rows, 0)
            return metrics.frechet_distance_to_reference(x, entry["mu"], entry["sigma"])
        mu_g, sigma_g, _ = self.gen_moments.stats(gen_rows)
        if ref_rows is None:
            root = self.ref.root(entry)
            product = root @ sigma_g @ root
        elif gen_rows is None:
            if self._gen_root is None:
                self._gen_root = metrics.psd_sqrt(sigma_g)
            product = self._gen_root @ entry["sigma"] @ self._gen_root
        else:
            root = metrics.psd_sqrt(entry["sigma"])
            product = root @ sigma_g @ root
        eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
        trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
        diff = mu_g - entry["mu"]
        return float(diff @ diff + np.trace(sigma_g) + np.trace(entry["sigma"]) - 2.0 * trace_sqrt)


def fad_interval(gen, ref, labels=None, options: SetMetricOptions = SetMetricOptions()) -> dict:
    """FAD at this N with a grouped two-sample jackknife interval (FAD at this N, not FAD-inf).

    The generated side is deleted in ``options.fad_blocks`` blocks of whole prompt
    clusters, the reference side in as many blocks of clips; the interval is centred on
    the point value, so it always contains it.
    """
    gen, ref, reason = _check_sets(gen, ref, "FAD")
    if reason:
        return _na(len(gen), reason)
    labels = range(len(gen)) if labels is None else labels
    gen_blocks = blocks(clusters(labels), options.fad_blocks, options.seed)
    state = _FadState(gen, ref)
    if len(gen_blocks) < 3:
        return {**_na(len(gen), NO_INTERVAL.format(len(gen_blocks))), "mean": state.value()}
    ref_blocks = blocks(clusters(range(len(ref))), options.fad_blocks, options.seed + 1)
    var_gen = jackknife_variance([state.value(gen_rows=b) for b in gen_blocks])
    var_ref = jackknife_variance([state.value(ref_rows=b) for b in ref_blocks])
    method = (
        f"grouped jackknife ({len(gen_blocks)} + {len(ref_blocks)} blocks); FAD at N={len(gen)}"
    )
    return _record(
        state.value(), math.sqrt(var_gen + var_ref), len(gen), options.confidence, method
    )


def fad_infinity(gen, ref, options: SetMetricOptions = SetMetricOptions()) -> dict:
    """FAD-infinity: FAD at subsample sizes n in [min_n, N], OLS fit FAD = a + b / n.

    Subsamples are drawn WITHOUT replacement (``fad_inf_repeats`` per size, averaged).
    Given the sample, E[FAD_n] ~ FAD_N + c (1/n - 1/N), so the intercept estimates the
    population FAD (to first order); fadtk draws with replacement, whose E[FAD_n] ~
    FAD_N + c/n extrapolates to FAD_N - leaving the c/N bias in. Only the generated
    side is extrapolated (the reference stays at its M clips, as in fadtk).
    Returns {mean: intercept, slope, r2, points [[n, FAD], ...], n, min_n, reason}.
    """
    gen, ref, reason = _check_sets(gen, ref, "FAD-inf")
    n_total = len(gen)
    extra = {"slope": math.nan, "r2": math.nan, "points": [], "min_n": options.fad_inf_min_n}
    if reason:
        return _na(n_total, reason, **extra)
    min_n = max(2, options.fad_inf_min_n)
    sizes = np.unique(np.linspace(min_n, n_total, options.fad_inf_steps).astype(int))
    sizes = sizes[(sizes >= min_n) & (sizes <= n_total)]
    if sizes.size < 3:
        return _na(
            n_total,
            f"N={n_total} gives {sizes.size} subsample sizes >= min_n={min_n} (need 3): "
            "lower evaluation.fad_inf_min_n or add clips",
            **extra,
        )
    rng = np.random.default_rng(options.seed)
    mu_r, sigma_r = metrics.gaussian_stats(ref)
    root = metrics.psd_sqrt(sigma_r) if n_total - 1 >= gen.shape[1] else None
    points = []
    for size in sizes:
        repeats = 1 if size == n_total else options.fad_inf_repeats
        values = []
        for _ in range(repeats):
            rows = rng.choice(n_total, size=int(size), replace=False)
            use_root = root if size - 1 >= gen.shape[1] else None
            values.append(metrics.frechet_distance_to_reference(gen[rows], mu_r, sigma_r, use_root))
        points.append([int(size), float(np.mean(values))])
    xs = 1.0 / np.array([p[0] for p in points], dtype=np.float64)
    ys = np.array([p[1] for p in points])
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = np.sum((ys - (slope * xs + intercept)) ** 2)
    spread = np.sum((ys - ys.mean()) ** 2)
    r2 = float(1.0 - residual / spread) if spread > 0 else math.nan
    method = f"OLS on 1/n, {sizes.size} sizes in [{min_n}, {n_total}], without replacement"
    return {
        "mean": float(intercept),
        "ci_low": math.nan,
        "ci_high": math.nan,
        "se": math.nan,
        "n": n_total,
        "method": method,
        "reason": "",
        "slope": float(slope),
        "r2": r2,
        "points": points,
        "min_n": min_n,
    }


# ---------------------------------------------------------------- paired differences


def paired_set_difference(
    metric: str,
    gen_a,
    labels_a,
    gen_b,
    labels_b,
    ref,
    options: SetMetricOptions = SetMetricOptions(),
) -> dict:
    """metric(B) - metric(A) against one reference, with a jackknife interval.

    A prompt (label) is deleted from BOTH conditions at once (FAD: blocks of prompts);
    reference clips (FAD: blocks) are deleted from both as well, so shared reference
    noise cancels. Prompts present in only one condition are deleted from that one.
    """
    if metric not in SET_METRICS:
        raise ValueError(f"unknown set metric {metric!r}; use one of {SET_METRICS}")
    gen_a, ref, reason_a = _check_sets(gen_a, ref, metric.upper())
    gen_b, _, reason_b = _check_sets(gen_b, ref, metric.upper())
    n = min(len(gen_a), len(gen_b))
    if reason_a or reason_b:
        return _na(n, reason_a or reason_b)
    labels_a, labels_b = list(labels_a), list(labels_b)
    keys = list(dict.fromkeys([*labels_a, *labels_b]))
    rows_a = {k: np.flatnonzero([x == k for x in labels_a]) for k in keys}
    rows_b = {k: np.flatnonzero([x == k for x in labels_b]) for k in keys}
    if len(keys) < 3:
        return _na(n, f"{len(keys)} prompts: the jackknife needs >= 3")
    if metric == "kad":
        reference = _KadReference(ref)
        state_a, state_b = _KadState(gen_a, ref, reference), _KadState(gen_b, ref, reference)
        value = state_b.value() - state_a.value()
        leave_prompt = [
            state_b.without_generated(rows_b[k]) - state_a.without_generated(rows_a[k])
            for k in keys
        ]
        leave_ref = state_b.without_each_reference() - state_a.without_each_reference()
        method = f"paired jackknife ({len(keys)} prompts x {len(ref)} reference clips)"
    else:
        shared = _Reference(ref)
        state_a, state_b = _FadState(gen_a, shared), _FadState(gen_b, shared)
        value = state_b.value() - state_a.value()
        key_blocks = blocks(
            [np.array([i]) for i in range(len(keys))], options.fad_blocks, options.seed
        )
        leave_prompt = []
        for block in key_blocks:
            drop = [keys[i] for i in block]
            drop_a = np.concatenate([rows_a[k] for k in drop]).astype(np.int64)
            drop_b = np.concatenate([rows_b[k] for k in drop]).astype(np.int64)
            leave_prompt.append(state_b.value(gen_rows=drop_b) - state_a.value(gen_rows=drop_a))
        ref_blocks = blocks(clusters(range(len(ref))), options.fad_blocks, options.seed + 1)
        leave_ref = [state_b.value(ref_rows=b) - state_a.value(ref_rows=b) for b in ref_blocks]
        method = f"paired grouped jackknife ({len(key_blocks)} + {len(ref_blocks)} blocks)"
    se = math.sqrt(jackknife_variance(leave_prompt) + jackknife_variance(leave_ref))
    return _record(value, se, n, options.confidence, method, n_prompts=len(keys))


def per_reference_subset(gen, labels, ref, ref_datasets, options=SetMetricOptions()) -> dict:
    """KAD and FAD of ``gen`` against each reference dataset on its own.

    FAD is n/a where a subset has no more clips than dimensions (its covariance is
    singular); KAD is defined for any subset of >= 3 clips.
    """
    ref = np.asarray(ref, dtype=np.float64)
    names = list(dict.fromkeys(ref_datasets))
    if len(names) < 2:
        return {}
    out = {}
    for name in names:
        rows = np.flatnonzero(np.asarray(ref_datasets) == name)
        subset = ref[rows]
        fad = (
            fad_interval(gen, subset, labels, options)
            if len(rows) > ref.shape[1]
            else _na(len(gen), f"{len(rows)} reference clips <= {ref.shape[1]} dimensions")
        )
        out[name] = {
            "n_ref": int(len(rows)),
            "kad": kad_interval(gen, subset, labels, options),
            "fad": fad,
        }
    return out
