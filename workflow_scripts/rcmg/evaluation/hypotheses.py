"""Declared hypotheses: prompt-clustered paired tests, Holm adjustment, attainable p-values.

A paired comparison of condition B against baseline A (same model) pairs clips by
(prompt, waveform, seed), then AVERAGES the differences per prompt: seeds and
waveforms of one prompt are not independent, so the prompt is the unit of the test
(n = number of prompts). The test is the two-sided Wilcoxon signed-rank test on the
per-prompt mean differences; with n prompts its smallest attainable p is 2 / 2^n
(all differences of one sign), shown beside every p so that "n/s" at n = 5 is read as
"could not have been significant". Primary hypotheses are declared in config
(evaluation.primary_hypotheses); their p-values are Holm-adjusted as one family; every
other test is labelled exploratory (unadjusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rcmg.evaluation import stats


@dataclass(frozen=True)
class Hypothesis:
    """``metric`` of ``condition`` minus ``baseline``, per model (all models by default)."""

    condition: str
    baseline: str
    metric: str
    models: tuple[str, ...] = ()  # empty: every model that has both conditions

    @classmethod
    def parse(cls, text: str) -> Hypothesis:
        """'CONDITION:BASELINE:METRIC[:MODEL,MODEL]' (the CLI/rule form)."""
        parts = text.split(":")
        if len(parts) not in (3, 4) or not all(parts[:3]):
            raise ValueError(
                f"primary hypothesis {text!r}: write CONDITION:BASELINE:METRIC[:MODEL,...] "
                "(config evaluation.primary_hypotheses)"
            )
        models = tuple(m for m in parts[3].split(",") if m) if len(parts) == 4 else ()
        return cls(parts[0], parts[1], parts[2], models)

    def applies(self, model: str, condition: str, baseline: str, metric: str) -> bool:
        return (condition, baseline, metric) == (self.condition, self.baseline, self.metric) and (
            not self.models or model in self.models
        )


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


def clustered_paired_test(keys, differences, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-cluster (prompt) mean differences: mean, bootstrap CI over prompts, Wilcoxon p.

    Returns {mean_diff, ci_low, ci_high, n (prompts), n_pairs, wilcoxon_p, p_reason,
    min_p}.
    """
    clusters, means = cluster_means(keys, differences)
    summary = stats.bootstrap_mean_ci(means, n_boot, seed)
    p_value, reason = stats.wilcoxon_p(means)
    nonzero = int(np.count_nonzero(means)) if means.size else 0
    return {
        "mean_diff": summary["mean"],
        "ci_low": summary["ci_low"],
        "ci_high": summary["ci_high"],
        "n": len(clusters),
        "n_pairs": int(sum(1 for d in differences if d is not None and math.isfinite(float(d)))),
        "wilcoxon_p": p_value,
        "p_reason": reason,
        "min_p": min_attainable_wilcoxon_p(nonzero),
    }


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
    """Mark each paired row primary/exploratory; Holm-adjust the primaries' p as one family."""
    primary_index = []
    for i, row in enumerate(rows):
        is_primary = any(
            h.applies(row["model"], row["condition"], row["baseline"], row["metric"])
            for h in hypotheses
        )
        row["family"] = "primary" if is_primary else "exploratory"
        row["holm_p"] = math.nan
        if is_primary:
            primary_index.append(i)
    adjusted = holm_adjust([rows[i]["wilcoxon_p"] for i in primary_index])
    for i, value in zip(primary_index, adjusted, strict=True):
        rows[i]["holm_p"] = value
        rows[i]["holm_m"] = sum(1 for j in primary_index if math.isfinite(rows[j]["wilcoxon_p"]))
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
