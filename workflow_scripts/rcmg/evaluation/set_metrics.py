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
  FAD-infinity (:func:`fad_infinity`) extrapolates to N -> infinity; its interval is a
  jackknife of the whole fit (on common subsamples) and covers the population FAD.
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


def fad_inf_sizes(n_total: int, min_n: int, steps: int) -> np.ndarray:
    """The fit's subsample sizes: ``int(linspace(min_n, N, steps))`` as fadtk's
    ``score_inf`` builds them, duplicates dropped, kept within [min_n, N]."""
    sizes = np.unique(np.linspace(min_n, n_total, steps).astype(int))
    return sizes[(sizes >= min_n) & (sizes <= n_total)]


def fad_inf_fit(sizes, values) -> dict:
    """fadtk's FAD-inf fit: least squares FAD = intercept + slope / n
    (``np.polyfit(1 / n, FAD, 1)``), R² = 1 - SS_res / SS_tot (NaN when the values do
    not vary). Returns {intercept, slope, r2}."""
    xs = 1.0 / np.asarray(sizes, dtype=np.float64)
    ys = np.asarray(values, dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = float(np.sum((ys - (slope * xs + intercept)) ** 2))
    spread = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1.0 - residual / spread if spread > 0 else math.nan
    return {"intercept": float(intercept), "slope": float(slope), "r2": r2}


class _FadInfDesign:
    """The FAD-infinity subsamples as common random numbers: every clip holds one uniform
    key per repeat, and the subsample of size n in repeat r is the n clips of smallest
    key among those present (a uniform draw without replacement). A fit with clips
    deleted (the jackknife) reuses the same keys, so it differs from the full fit by the
    deleted clips, not by fresh subsampling noise."""

    def __init__(self, gen: np.ndarray, options: SetMetricOptions):
        self.gen = gen
        self.min_n = max(2, options.fad_inf_min_n)
        self.steps = options.fad_inf_steps
        self.repeats = options.fad_inf_repeats
        keys = np.random.default_rng(options.seed).random((self.repeats, len(gen)))
        self.order = np.argsort(keys, axis=1, kind="stable")  # clips by key, per repeat

    def sizes(self, n_total: int) -> np.ndarray:
        return fad_inf_sizes(n_total, self.min_n, self.steps)

    def points(self, mu_r, sigma_r, root, deleted: np.ndarray | None = None):
        """[[n, mean FAD of the repeats], ...] over :meth:`sizes` of the clips present;
        None with fewer than 3 sizes."""
        present = np.ones(len(self.gen), dtype=bool)
        if deleted is not None:
            present[deleted] = False
        order = [row[present[row]] for row in self.order]
        n_total = int(present.sum())
        sizes = self.sizes(n_total)
        if sizes.size < 3:
            return None
        dim = self.gen.shape[1]
        points = []
        for size in sizes:
            repeats = 1 if size == n_total else self.repeats
            values = [
                metrics.frechet_distance_to_reference(
                    self.gen[order[r][:size]], mu_r, sigma_r, root if size - 1 >= dim else None
                )
                for r in range(repeats)
            ]
            points.append([int(size), float(np.mean(values))])
        return points

    def intercept(self, mu_r, sigma_r, root, deleted=None) -> float:
        points = self.points(mu_r, sigma_r, root, deleted)
        if points is None:
            return math.nan
        return fad_inf_fit(*zip(*points, strict=True))["intercept"]


def _satterthwaite(var_a: float, df_a: int, var_b: float, df_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of var_a + var_b (df_a when both are 0)."""
    denominator = var_a**2 / df_a + var_b**2 / df_b
    return (var_a + var_b) ** 2 / denominator if denominator > 0 else float(df_a)


def fad_infinity(gen, ref, options: SetMetricOptions = SetMetricOptions(), labels=None) -> dict:
    """FAD-infinity: FAD at subsample sizes n in [min_n, N], OLS fit FAD = a + b / n, with
    a jackknife interval of the whole fit.

    Fit (:func:`fad_inf_fit`, fadtk's ``score_inf`` formula: sizes
    ``int(linspace(min_n, N, steps))``, ``polyfit(1/n, FAD, 1)``, the intercept, R²).
    Subsamples are drawn WITHOUT replacement (``fad_inf_repeats`` per size, averaged;
    one at n = N). Given the sample, E[FAD_n] ~ FAD_N + c (1/n - 1/N), so the intercept
    estimates the population FAD (to first order); fadtk draws with replacement, whose
    E[FAD_n] ~ FAD_N + c/n extrapolates to FAD_N - leaving the c/N bias in. Only the
    generated side is extrapolated (the reference stays at its M clips, as in fadtk), so
    the O(1/M) bias of the reference covariance stays in.

    Interval: the whole fit is recomputed with one block of generated clips deleted
    (``fad_blocks`` blocks of whole prompt clusters, ``labels``; default: each clip its
    own) and with one block of reference clips deleted, on the same subsample keys
    (:class:`_FadInfDesign`); the two jackknife variances add, and the interval is
    ``a +- t_df * se`` with Welch-Satterthwaite df from the two block counts. The
    regression's own standard error of the intercept is not used: its points are
    subsamples of one sample, so it sees only the subsampling noise (simulated coverage
    0.36-0.57, tests/unit/evaluation/test_set_metrics.py). Where the interval cannot be
    formed (fewer than 3 prompt clusters, or a block deletion leaving fewer than 3 sizes)
    the point is kept and ``reason`` says why.

    Returns {mean: intercept, ci_low, ci_high, se, n, method, reason, slope, r2, points
    [[n, FAD], ...], min_n, fit_range {min_n, max_n, steps, repeats, requested_steps}}.
    """
    gen, ref, reason = _check_sets(gen, ref, "FAD-inf")
    n_total = len(gen)
    design = _FadInfDesign(gen, options)
    sizes = design.sizes(n_total) if not reason else np.zeros(0, dtype=int)
    fit_range = {
        "min_n": int(sizes[0]) if sizes.size else design.min_n,
        "max_n": int(sizes[-1]) if sizes.size else n_total,
        "steps": int(sizes.size),
        "repeats": design.repeats,
        "requested_steps": design.steps,
    }
    extra = {
        "slope": math.nan,
        "r2": math.nan,
        "points": [],
        "min_n": design.min_n,
        "fit_range": fit_range,
    }
    if reason:
        return _na(n_total, reason, **extra)
    if sizes.size < 3:
        return _na(
            n_total,
            f"N={n_total} gives {sizes.size} subsample sizes >= min_n={design.min_n} (need 3): "
            "lower evaluation.fad_inf_min_n or add clips",
            **extra,
        )
    reference = _Moments(ref)
    mu_r, sigma_r, _ = reference.stats()
    root = metrics.psd_sqrt(sigma_r) if n_total - 1 >= gen.shape[1] else None
    points = design.points(mu_r, sigma_r, root)
    fit = fad_inf_fit(*zip(*points, strict=True))
    extra.update(slope=fit["slope"], r2=fit["r2"], points=points)
    fit_text = (
        f"OLS of FAD on 1/n over {sizes.size} sizes n={sizes[0]}..{n_total} "
        f"({design.repeats} subsamples each without replacement, 1 at n=N)"
    )
    labels = range(n_total) if labels is None else labels
    gen_blocks = blocks(clusters(labels), options.fad_blocks, options.seed)
    if len(gen_blocks) < 3:
        record = _na(n_total, NO_INTERVAL.format(len(gen_blocks)), **extra)
        return {**record, "mean": fit["intercept"], "method": fit_text}
    leave_gen = [design.intercept(mu_r, sigma_r, root, deleted=b) for b in gen_blocks]
    if not np.isfinite(leave_gen).all():
        largest = max(len(b) for b in gen_blocks)
        record = _na(
            n_total,
            f"deleting a jackknife block ({largest} of {n_total} clips) leaves fewer than 3 "
            f"subsample sizes >= min_n={design.min_n}: no interval; lower "
            "evaluation.fad_inf_min_n or add clips",
            **extra,
        )
        return {**record, "mean": fit["intercept"], "method": fit_text}
    ref_blocks = blocks(clusters(range(len(ref))), options.fad_blocks, options.seed + 1)
    leave_ref = []
    for b in ref_blocks:
        mu_b, sigma_b, _ = reference.stats(b)
        root_b = metrics.psd_sqrt(sigma_b) if root is not None else None
        leave_ref.append(design.intercept(mu_b, sigma_b, root_b))
    var_gen, var_ref = jackknife_variance(leave_gen), jackknife_variance(leave_ref)
    df = _satterthwaite(var_gen, len(gen_blocks) - 1, var_ref, len(ref_blocks) - 1)
    from scipy import stats as scipy_stats

    se = math.sqrt(var_gen + var_ref)
    half = float(scipy_stats.t.ppf(0.5 + options.confidence / 2.0, df)) * se
    method = (
        f"{fit_text}; jackknife of the whole fit ({len(gen_blocks)} + {len(ref_blocks)} "
        f"blocks), t interval with {df:.1f} df"
    )
    return {
        "mean": fit["intercept"],
        "ci_low": fit["intercept"] - half,
        "ci_high": fit["intercept"] + half,
        "se": se,
        "n": n_total,
        "method": method,
        "reason": "",
        "df": df,
        **extra,
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
