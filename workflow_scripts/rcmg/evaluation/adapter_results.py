"""The style adapters' held-out evaluation as the comparison page shows it.

Each trained adapter's ``adapter_config.json`` (train_adapter,
:mod:`rcmg.generation.adapter_job`) records ``heldout``: the held-out denoising loss of
the adapter, of the labels-text baseline and of the untrained path, per item
(``per_item``; each item's loss is the mean over its fixed timestep/noise draws, shared
by the three arms), plus their means and the paired differences' mean, SD and count of
items where the adapter was lower. It records no interval, so the page computes one
here from the per-item losses: :func:`clustered_mean_t_interval` on the paired
differences (adapter minus baseline), items grouped by uploader (the split's unit:
items of one uploader are not independent). The interval is conditional on the fixed
draws (they are the same for every arm and epoch).

The split (``data``): FSD50K dev rows (train / validation, by uploader) are trained
on, eval rows are held out, and no uploader has items on both sides; this module
re-checks that from the recorded item lists rather than restating it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rcmg.evaluation import report

ARMS = ("adapter", "labels_text", "untrained")
BASELINES = ("labels_text", "untrained")
FIX = "run the train_adapter step for this adapter (rules/adapter.smk) first"


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


def item_group(item: dict) -> str:
    """An item's independence unit: its uploader, else its own source clip (the segment
    id without its ``@offset``), as the split groups it."""
    uploader = str(item.get("uploader") or "")
    if uploader:
        return uploader
    segment = str(item.get("segment_id") or "")
    return "no-uploader:" + (segment.rpartition("@")[0] or segment)


def split_record(data: dict) -> dict:
    """The split as recorded, with the uploader-disjointness re-checked from the items."""
    dev = [*data.get("train_items", []), *data.get("val_items", [])]
    heldout = data.get("heldout_items", [])
    shared = sorted({item_group(i) for i in dev} & {item_group(i) for i in heldout})
    return {
        "n_train": data.get("n_train"),
        "n_val": data.get("n_val"),
        "n_heldout": data.get("n_heldout"),
        "train_splits": sorted({str(i.get("split")) for i in data.get("train_items", [])}),
        "val_splits": sorted({str(i.get("split")) for i in data.get("val_items", [])}),
        "heldout_splits": sorted({str(i.get("split")) for i in heldout}),
        "n_heldout_uploaders": len({item_group(i) for i in heldout}),
        "shared_uploaders": shared,
        "items_listed": bool(dev or heldout),
        "n_excluded": len(data.get("excluded") or []),
        "n_held_out_prompts": data.get("n_held_out_prompts"),
        "n_dropped_near_duplicates": len(data.get("dropped_near_duplicates") or []),
    }


def _label(path: Path, config: dict) -> str:
    """``<model>[@knobs]``: the adapter's folder name (adapters/<model>[@knobs]/)."""
    return path.parent.name or str(config.get("model_key"))


def adapter_result(path: Path, confidence: float = 0.95) -> dict:
    """One adapter's held-out row for the page; ``available`` False (with ``reason``)
    when the file records no held-out comparison. A missing file raises RunDirError."""
    path = Path(path)
    config = report.read_json(path, FIX)
    heldout = config.get("heldout") or {}
    row = {
        "label": _label(path, config),
        "path": str(path),
        "model_key": config.get("model_key"),
        "model_id": config.get("model_id"),
        "family": config.get("family"),
        "target_space": config.get("target_space"),
        "random_weight_model": bool(config.get("random_weight_model")),
        "best_epoch": config.get("best_epoch"),
        "epoch_selection": config.get("epoch_selection"),
        "eval_draws": (config.get("training") or {}).get("eval_draws"),
        "split": split_record(config.get("data") or {}),
        "available": False,
        "reason": "",
        "n": heldout.get("n_items"),
        "n_groups": None,
        "arms": {},
        "diffs": {},
        "notes": [],
    }
    means = heldout.get("mean") or {}
    if not heldout or any(arm not in means for arm in ARMS):
        row["reason"] = f"{path} records no held-out comparison ('heldout'): {FIX}"
        return row
    row["available"] = True
    per_item = heldout.get("per_item") or {}
    n = int(heldout.get("n_items") or 0)
    has_items = all(len(per_item.get(arm) or []) == n > 0 for arm in ARMS)
    items = (config.get("data") or {}).get("heldout_items") or []
    groups = [item_group(i) for i in items] if len(items) == n else None
    no_items = "no per-item losses recorded"
    if not has_items:
        row["notes"].append(f"{path} records no per-item held-out losses: retrain ({FIX})")
    if groups is None and has_items:
        row["notes"].append("held-out item list absent: each item treated as independent")
    for arm in ARMS:
        if has_items:
            ci = clustered_mean_t_interval(per_item[arm], groups, confidence)
        else:
            ci = {"mean": float(means[arm]), "ci_low": math.nan, "ci_high": math.nan}
            ci.update(n=n, reason=no_items)
        row["arms"][arm] = {**ci, "recorded_mean": float(means[arm])}
    for base in BASELINES:
        recorded = heldout.get(f"adapter_minus_{base}") or {}
        if has_items:
            d = np.asarray(per_item["adapter"], float) - np.asarray(per_item[base], float)
            ci = clustered_mean_t_interval(d, groups, confidence)
        else:
            diff = recorded.get("mean", float(means["adapter"]) - float(means[base]))
            ci = {"mean": float(diff), "ci_low": math.nan, "ci_high": math.nan, "n": n}
            ci["reason"] = no_items
        row["diffs"][base] = {
            **ci,
            "recorded_mean": recorded.get("mean"),
            "items_lower": recorded.get("items_lower"),
        }
    row["n_groups"] = row["diffs"]["labels_text"].get("n_groups")
    return row


def adapter_results(paths, confidence: float = 0.95) -> list[dict]:
    """:func:`adapter_result` of every given adapter_config.json, in order."""
    return [adapter_result(Path(p), confidence) for p in paths]


def attach_runs(results: list[dict], runs: list[dict]) -> list[dict]:
    """Each adapter's ``used_by``: the runs whose run_config.json names its checkpoint
    (``condition_params.adapter_checkpoint``, in the adapter's folder)."""
    folders = {}
    for run in runs:
        checkpoint = (run["config"].get("condition_params") or {}).get("adapter_checkpoint")
        if checkpoint:
            c = run["config"]
            label = f"{c.get('model')}/{c.get('condition')}/seed{c.get('seed')}"
            folders.setdefault(Path(checkpoint).resolve().parent, []).append(label)
    for r in results:
        r["used_by"] = folders.get(Path(r["path"]).resolve().parent, [])
    return results


CSV_FIELDS = [
    "adapter",
    "model_key",
    "quantity",
    "n",
    "n_groups",
    "mean",
    "ci_low",
    "ci_high",
    "se",
    "items_lower",
    "method",
    "reason",
    "random_weight_model",
    "path",
]


def csv_rows(results: list[dict]) -> list[dict]:
    """adapter_heldout.csv: per adapter one row per arm (``loss_<arm>``) and per paired
    difference (``adapter_minus_<baseline>``); an unavailable adapter is one row with its
    reason."""
    rows = []
    for r in results:
        base = {
            "adapter": r["label"],
            "model_key": r["model_key"],
            "random_weight_model": r["random_weight_model"],
            "path": r["path"],
        }
        if not r["available"]:
            rows.append({**base, "quantity": "n/a", "reason": r["reason"]})
            continue
        parts = [(f"loss_{arm}", r["arms"][arm]) for arm in ARMS]
        parts += [(f"adapter_minus_{b}", r["diffs"][b]) for b in BASELINES]
        for quantity, ci in parts:
            rows.append({**base, "quantity": quantity, **{k: ci.get(k) for k in CSV_FIELDS[3:12]}})
    return rows
