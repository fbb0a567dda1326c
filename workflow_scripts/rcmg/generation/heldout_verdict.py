"""A mean with a cluster-robust t interval, and the style adapter's "uses the item it is
given" verdict built on it.

Kept apart from the comparison page's modules (no report, no templates) because the
train_adapter job records the same verdict in ``adapter_config.json``: its code hash
covers this file, not the page's.
"""

from __future__ import annotations

import math

import numpy as np

SHUFFLED = "shuffled"


def clustered_mean_t_interval(values, groups=None, confidence: float = 0.95) -> dict:
    """Mean of ``values`` with a cluster-robust t interval (values correlated in a group).

    ``se^2 = G/(G-1) * sum_g (sum_{i in g} (x_i - mean))^2 / n^2`` (CR1) with the
    ``t_{G-1}`` quantile, over the G groups of ``groups`` (one label per value; default:
    every value its own group, which is the classical ``mean +- t_{n-1} s / sqrt(n)``).
    With equal group sizes it is the t interval of the group means, exact for normal
    data. Non-finite values are dropped with their labels. Returns {mean, ci_low,
    ci_high, n, n_groups, se, method, reason}; fewer than two groups give NaN bounds
    and a reason.
    """
    from scipy import stats as scipy_stats

    x = np.asarray(values, dtype=np.float64).reshape(-1)
    labels = list(range(x.size)) if groups is None else list(groups)
    if len(labels) != x.size:
        raise ValueError(f"{x.size} values but {len(labels)} group labels")
    keep = np.isfinite(x)
    labels = [g for g, k in zip(labels, keep, strict=True) if k]
    x = x[keep]
    n, n_groups = int(x.size), len(set(labels))
    record = {
        "mean": float(x.mean()) if n else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "n": n,
        "n_groups": n_groups,
        "se": math.nan,
        "method": f"{100 * confidence:g}% cluster-robust t interval over {n_groups} group(s)",
        "reason": "",
    }
    if n_groups < 2:
        record["reason"] = (
            "no finite values" if n == 0 else f"{n_groups} group: no spread between groups"
        )
        return record
    sums: dict = {}
    for g, r in zip(labels, x - record["mean"], strict=True):
        sums[g] = sums.get(g, 0.0) + float(r)
    se = math.sqrt(n_groups / (n_groups - 1) * sum(s * s for s in sums.values()) / n**2)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, n_groups - 1)) * se
    record.update(ci_low=record["mean"] - half, ci_high=record["mean"] + half, se=se)
    return record


def uses_given_item(
    adapter_losses, shuffled_losses, groups=None, confidence: float = 0.95, reason: str = ""
) -> dict:
    """Does the trained adapter use the item it is given? Paired per item: its held-out
    loss on the item's own style vector minus its loss on another held-out item's
    (the ``shuffled`` arm, same draws), with :func:`clustered_mean_t_interval`.

    ``verdict``: ``"yes"`` when the whole interval is below 0 (its own item's vector
    lowers the loss), ``"no"`` otherwise (``text`` says whether the interval holds 0
    or lies above it), ``"not tested"`` when there is no shuffled arm (``reason``, e.g.
    the derangement was impossible) or no interval (fewer than two uploader groups).
    Returns {verdict, text, diff (the interval record), items_lower, reason}.
    """
    out = {"verdict": "not tested", "text": "", "diff": None, "items_lower": None, "reason": ""}
    if shuffled_losses is None:
        out["reason"] = reason or "no shuffled-embedding arm recorded"
    else:
        a = np.asarray(adapter_losses, dtype=np.float64)
        s = np.asarray(shuffled_losses, dtype=np.float64)
        if a.shape != s.shape:
            raise ValueError(f"{a.size} adapter losses but {s.size} shuffled-arm losses")
        d = a - s
        ci = clustered_mean_t_interval(d, groups, confidence)
        out["diff"] = ci
        out["items_lower"] = int((d < 0).sum())
        if ci["reason"]:
            out["reason"] = f"no interval: {ci['reason']}"
        elif ci["ci_high"] < 0:
            out["verdict"] = "yes"
        else:
            out["verdict"] = "no"
    if out["verdict"] == "not tested":
        out["text"] = f"uses the item it is given: not tested ({out['reason']})"
        return out
    ci = out["diff"]
    level = f"{100 * confidence:g}%"
    where = {
        "yes": "below 0: its own item's style vector lowers the loss",
        "no": "above 0: another item's vector does better"
        if ci["ci_low"] > 0
        else "holds 0: another held-out item's vector does as well",
    }[out["verdict"]]
    out["text"] = (
        f"uses the item it is given: {out['verdict']} (adapter minus shuffled "
        f"{ci['mean']:+.4g} [{ci['ci_low']:+.4g}, {ci['ci_high']:+.4g}], {level} CI over "
        f"{ci['n_groups']} uploader group(s), {ci['n']} items, {out['items_lower']} lower; "
        f"{where})"
    )
    return out
