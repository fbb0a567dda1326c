"""Declared hypotheses: prompt-clustered paired tests of the mean, Holm, attainable p.

A paired comparison of condition B against baseline A (same model) pairs clips by
(prompt, waveform, seed), then AVERAGES the differences per prompt: seeds and
waveforms of one prompt are not independent, so the prompt is the unit of the test
(n = number of prompts). The claims are about the MEAN difference, so the test is a
sign-flip test of the mean of the per-prompt differences (:mod:`rcmg.evaluation.signflip`:
exact over all 2^n sign vectors up to 16 prompts, seeded Monte Carlo beyond), and the
interval beside it is that test inverted: the 95% interval excludes 0 exactly when the
two-sided p < 0.05. Two kinds of test:

* ``two-sided``: H0 mean difference = 0; p = p_value, smallest attainable 2 / 2^n
  (0.125 at 4 prompts) or 2 / K with K Monte Carlo sign vectors.
* ``noninferiority`` with a margin M >= 0 ("text similarity preserved"): H0 mean <= -M
  against H1 mean > -M, one-sided at alpha; reported with the one-sided (1 - alpha)
  lower bound (= the lower end of the two-sided 1 - 2 alpha interval), which exceeds -M
  exactly when p < alpha; smallest attainable p 1 / 2^n (or 1 / K).

The Wilcoxon signed-rank test on the same prompt means is kept as a secondary column
(``wilcoxon_p``; a test of location/median, not of the mean). Primary hypotheses are
declared in config (evaluation.primary_hypotheses); their ``p_value`` are Holm-adjusted
as one family; every other test is two-sided and labelled exploratory (unadjusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcmg.evaluation import signflip, stats

ALPHA = 0.05
TWO_SIDED = "two-sided"
NONINFERIORITY = "noninferiority"
FORM = "CONDITION:BASELINE:METRIC[:MODEL,...][:ni=MARGIN]"


@dataclass(frozen=True)
class Hypothesis:
    """``metric`` of ``condition`` minus ``baseline``, per model (all models by default);
    two-sided, or non-inferiority with ``margin`` (H1: mean difference > -margin)."""

    condition: str
    baseline: str
    metric: str
    models: tuple[str, ...] = ()  # empty: every model that has both conditions
    margin: float | None = None  # set: a non-inferiority test with this margin

    @property
    def test(self) -> str:
        return TWO_SIDED if self.margin is None else NONINFERIORITY

    @classmethod
    def parse(cls, text: str) -> Hypothesis:
        """'CONDITION:BASELINE:METRIC[:MODEL,MODEL][:ni=MARGIN]' (the CLI/rule form)."""
        parts = text.split(":")
        problem = "" if len(parts) in (3, 4, 5) and all(parts[:3]) else "needs 3 to 5 fields"
        models: tuple[str, ...] = ()
        margin = None
        extra = parts[3:] if not problem else []
        if extra and extra[-1].startswith("ni="):
            margin, problem = _margin(extra.pop()[3:])
        if len(extra) > 1 or any(p.startswith("ni=") for p in extra):
            problem = problem or "ni=MARGIN must be the last field, after the models"
        if extra and not problem:
            models = tuple(m for m in extra[0].split(",") if m)
        if problem:
            raise ValueError(
                f"primary hypothesis {text!r}: {problem}; write {FORM} "
                "(config evaluation.primary_hypotheses)"
            )
        return cls(parts[0], parts[1], parts[2], models, margin)

    def word(self) -> str:
        """The CLI/rule form (:meth:`parse` reads it back)."""
        text = f"{self.condition}:{self.baseline}:{self.metric}"
        if self.models:
            text += ":" + ",".join(self.models)
        return text + (f":ni={self.margin:g}" if self.margin is not None else "")

    def applies(self, model: str, condition: str, baseline: str, metric: str) -> bool:
        return (condition, baseline, metric) == (self.condition, self.baseline, self.metric) and (
            not self.models or model in self.models
        )


def _margin(text: str) -> tuple[float | None, str]:
    try:
        value = float(text)
    except ValueError:
        return None, f"margin {text!r} is not a number"
    if not math.isfinite(value) or value < 0:
        return None, f"margin {text!r} must be a finite number >= 0"
    return value, ""


def check_declared(hypotheses: list[Hypothesis]) -> list[Hypothesis]:
    """Refuse two declarations of one test (same condition, baseline, metric and a
    shared model) that disagree on the kind of test or the margin."""
    for i, a in enumerate(hypotheses):
        for b in hypotheses[i + 1 :]:
            same = (a.condition, a.baseline, a.metric) == (b.condition, b.baseline, b.metric)
            overlap = not a.models or not b.models or set(a.models) & set(b.models)
            if same and overlap and a.margin != b.margin:
                raise ValueError(
                    f"primary hypotheses {a.word()!r} and {b.word()!r} declare one test twice "
                    "with different kinds or margins: keep one (config "
                    "evaluation.primary_hypotheses)"
                )
    return hypotheses


def margin_for(hypotheses: list[Hypothesis], model, condition, baseline, metric) -> float | None:
    """The non-inferiority margin a declared hypothesis gives this test (None: two-sided)."""
    for h in hypotheses:
        if h.margin is not None and h.applies(model, condition, baseline, metric):
            return h.margin
    return None


def min_attainable_wilcoxon_p(n: int) -> float:
    """Smallest two-sided exact Wilcoxon signed-rank p with ``n`` non-zero differences."""
    return math.nan if n < 1 else min(1.0, 2.0 / 2.0**n)


def cluster_means(keys, differences) -> tuple[list, np.ndarray]:
    """Mean difference per cluster key (NaN differences dropped), in first-seen key order."""
    sums: dict = {}
    for key, value in zip(keys, differences, strict=True):
        if value is None or not math.isfinite(float(value)):
            continue
        total, count = sums.get(key, (0.0, 0))
        sums[key] = (total + float(value), count + 1)
    ordered = list(sums)
    return ordered, np.array([sums[k][0] / sums[k][1] for k in ordered], dtype=np.float64)


def mean_test(
    means, n_flips: int = 10000, seed: int = 0, margin: float | None = None, alpha: float = ALPHA
) -> dict:
    """Sign-flip test of the mean of ``means`` (one value per prompt) and its interval.

    Returns {mean_diff, sd (of the prompt means, n - 1 denominator: the power
    calculation's input, rcmg.workflow.power), ci_low, ci_high (two-sided 1 - alpha,
    the test inverted; +-inf when unbounded), test, margin, ni_lower (one-sided 1 - alpha lower bound, NI only),
    p_value, p_reason, min_p, p_method}.
    """
    means = np.asarray(means, dtype=np.float64).reshape(-1)
    means = means[np.isfinite(means)]
    kind = TWO_SIDED if margin is None else NONINFERIORITY
    out = {
        "mean_diff": float(means.mean()) if means.size else math.nan,
        "sd": float(means.std(ddof=1)) if means.size >= 2 else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "test": kind,
        "margin": math.nan if margin is None else float(margin),
        "ni_lower": math.nan,
        "p_value": math.nan,
        "p_reason": "",
        "min_p": math.nan,
        "p_method": "",
    }
    if means.size < 2:
        out["p_reason"] = f"n={means.size} prompts (need >= 2)"
        return out
    flips = signflip.sign_flips(means, n_flips, seed)
    out["ci_low"], out["ci_high"] = flips.interval(alpha)
    out["p_method"] = flips.method
    if margin is None:
        out.update(p_value=flips.p_two_sided(0.0), min_p=flips.min_p(two_sided=True))
    else:
        out.update(
            p_value=flips.p_upper(-float(margin)),
            min_p=flips.min_p(two_sided=False),
            ni_lower=flips.lower_bound(alpha),
        )
    return out


def clustered_paired_test(
    keys, differences, n_flips: int = 10000, seed: int = 0, margin: float | None = None
) -> dict:
    """Per-cluster (prompt) mean differences: :func:`mean_test` (primary) and the Wilcoxon
    signed-rank p on the same means (secondary).

    Returns :func:`mean_test`'s keys and {n (prompts), n_pairs, wilcoxon_p,
    wilcoxon_reason, wilcoxon_min_p}.
    """
    clusters, means = cluster_means(keys, differences)
    result = mean_test(means, n_flips, seed, margin)
    p_value, reason = stats.wilcoxon_p(means)
    nonzero = int(np.count_nonzero(means)) if means.size else 0
    result.update(
        n=len(clusters),
        n_pairs=int(sum(1 for d in differences if d is not None and math.isfinite(float(d)))),
        wilcoxon_p=p_value,
        wilcoxon_reason=reason,
        wilcoxon_min_p=min_attainable_wilcoxon_p(nonzero),
    )
    return result


def holm_adjust(p_values) -> list[float]:
    """Holm step-down adjusted p-values (same order as input; NaN stays NaN, not counted).

    With the m finite p sorted ascending p_(1) <= ... <= p_(m):
    adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    """
    values = [float(p) if p is not None else math.nan for p in p_values]
    finite = [i for i, p in enumerate(values) if math.isfinite(p)]
    order = sorted(finite, key=lambda i: values[i])
    m = len(order)
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def label_and_adjust(rows: list[dict], hypotheses: list[Hypothesis]) -> list[dict]:
    """Mark each paired row primary/exploratory; Holm-adjust the primaries' ``p_value``
    (each row's own test: two-sided or non-inferiority) as one family."""
    primary_index = []
    for i, row in enumerate(rows):
        key = (row["model"], row["condition"], row["baseline"], row["metric"])
        is_primary = any(h.applies(*key) for h in hypotheses)
        margin = margin_for(hypotheses, *key)
        expected = TWO_SIDED if margin is None else NONINFERIORITY
        if is_primary and row.get("test", TWO_SIDED) != expected:
            raise ValueError(f"paired row {key} was tested {row.get('test')}, declared {expected}")
        row["family"] = "primary" if is_primary else "exploratory"
        row["holm_p"] = math.nan
        if is_primary:
            primary_index.append(i)
    adjusted = holm_adjust([rows[i]["p_value"] for i in primary_index])
    family_size = sum(1 for j in primary_index if math.isfinite(rows[j]["p_value"]))
    for i, value in zip(primary_index, adjusted, strict=True):
        rows[i]["holm_p"] = value
        rows[i]["holm_m"] = family_size
    return rows


def missing_primaries(rows: list[dict], hypotheses: list[Hypothesis], models) -> list[str]:
    """Declared primaries that no paired row tests (a condition absent for a model...)."""
    missing = []
    for h in hypotheses:
        for model in h.models or models:
            if not any(
                h.applies(r["model"], r["condition"], r["baseline"], r["metric"]) for r in rows
            ):
                missing.append(f"{model}: {h.condition} vs {h.baseline} on {h.metric}")
    return missing
