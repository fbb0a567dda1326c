"""The effect of candidate ranking (``num_waveforms_per_prompt > 1``), by the judge.

Every candidate is generated, kept and evaluated; the generate job ranks each prompt's
own candidates (``rank`` 0 = best, by a CLAP other than the judge: run_config.ranking).
Here, per prompt with a ranked, evaluated rank-0 candidate: the judge's metric of that
candidate, the mean over all of that prompt's evaluated candidates, and their paired
difference; each a bootstrap mean over prompts (the prompt is the unit, not the clip).
"""

from __future__ import annotations

import math

import numpy as np

from rcmg.evaluation import stats

RANKING_METRICS = ("clap_text_sim", "clap_style_sim")


def _finite(value) -> bool:
    return value is not None and isinstance(value, int | float) and math.isfinite(float(value))


def ranking_effect(rows: list[dict], items: list[dict], n_boot: int, seed: int) -> dict | None:
    """``{n_prompts, metrics: {name: {rank0, all, rank0_minus_all}}}``, or None when no
    candidate was ranked (one waveform per prompt). ``rows``: per_item rows (metrics),
    ``items``: the items.jsonl entries they came from (``rank``)."""
    rank = {(e["item"], e.get("waveform_index") or 0): e.get("rank") for e in items}
    if not any(r is not None for r in rank.values()):
        return None
    groups: dict[int, list[dict]] = {}
    for row in rows:
        if row.get("status") == "ok":
            groups.setdefault(row["item"], []).append(row)
    metrics = {}
    for name in RANKING_METRICS:
        best, mean_all = [], []
        for item, group in sorted(groups.items()):
            values = [(rank.get((item, r.get("waveform_index") or 0)), r.get(name)) for r in group]
            values = [(k, float(v)) for k, v in values if _finite(v)]
            top = [v for k, v in values if k == 0]
            if top:
                best.append(top[0])
                mean_all.append(float(np.mean([v for _, v in values])))
        if not best:
            continue
        b, a = np.asarray(best), np.asarray(mean_all)
        metrics[name] = {
            "rank0": stats.bootstrap_mean_ci(b, n_boot, seed),
            "all": stats.bootstrap_mean_ci(a, n_boot, seed),
            "rank0_minus_all": stats.bootstrap_mean_ci(b - a, n_boot, seed),
        }
    n_prompts = sum(
        any(rank.get((i, r.get("waveform_index") or 0)) == 0 for r in g) for i, g in groups.items()
    )
    return {
        "n_prompts": int(n_prompts),
        "unit": "prompt (paired: rank-0 minus the prompt's mean)",
        "metrics": metrics,
    }
