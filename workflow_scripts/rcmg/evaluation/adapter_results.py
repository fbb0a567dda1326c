"""The style adapters' held-out evaluation as the comparison page shows it.

Each trained adapter's ``adapter_config.json`` (train_adapter,
:mod:`rcmg.generation.adapter_job`) records ``heldout``: the held-out denoising loss of
the adapter, of the labels-text baseline, of the untrained path and of the shuffled
arm (the trained adapter given another held-out item's style vector, from a seeded
uploader-respecting derangement, ``heldout.shuffle``), per item (``per_item``; each
item's loss is the mean over its fixed timestep/noise draws, shared by every arm), plus
their means and the paired differences' mean, SD and count of items where the adapter
was lower. The page computes the intervals here from the per-item losses:
:func:`clustered_mean_t_interval` on the paired differences (adapter minus baseline),
items grouped by uploader (the split's unit: items of one uploader are not
independent), and the verdict "uses the item it is given" from adapter minus shuffled
(:func:`rcmg.generation.heldout_verdict.uses_given_item`, the function the job used for the
recorded ``heldout.uses_given_item``). The intervals are conditional on the fixed
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
from rcmg.generation.heldout_verdict import SHUFFLED, clustered_mean_t_interval, uses_given_item

__all__ = ["adapter_result", "adapter_results", "clustered_mean_t_interval", "csv_rows"]

ARMS = ("adapter", "labels_text", "untrained")  # required: a file without them is n/a
BASELINES = ("labels_text", "untrained")
OPTIONAL_ARMS = (SHUFFLED,)  # adapter files written before the shuffled arm lack it
NO_SHUFFLED = (
    "no shuffled-embedding arm recorded (this adapter_config.json predates it): "
    "retrain to test whether the adapter uses the item it is given"
)
FIX = "run the train_adapter step for this adapter (rules/adapter.smk) first"


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
        "arm_names": list(ARMS),
        "uses_given_item": None,
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
    shuffled = SHUFFLED in means and (not has_items or len(per_item.get(SHUFFLED) or []) == n)
    arms = [*ARMS, *([SHUFFLED] if shuffled else [])]
    row["arm_names"] = arms
    for arm in arms:
        if has_items:
            ci = clustered_mean_t_interval(per_item[arm], groups, confidence)
        else:
            ci = {"mean": float(means[arm]), "ci_low": math.nan, "ci_high": math.nan}
            ci.update(n=n, reason=no_items)
        row["arms"][arm] = {**ci, "recorded_mean": float(means[arm])}
    for base in arms[1:]:
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
    row["uses_given_item"] = given_item_verdict(
        heldout, per_item, groups, has_items and shuffled, confidence
    )
    row["n_groups"] = row["diffs"]["labels_text"].get("n_groups")
    return row


def given_item_verdict(heldout, per_item, groups, usable: bool, confidence) -> dict:
    """The page's "uses the item it is given" verdict, recomputed from the per-item losses
    (``usable``: the adapter's and the shuffled arm's, one per item) with the page's
    uploader groups; not tested, with the reason, without them (an older file, the
    derangement recorded as impossible, or no per-item losses)."""
    if usable:
        return uses_given_item(per_item["adapter"], per_item[SHUFFLED], groups, confidence)
    reason = (heldout.get("shuffle") or {}).get("reason") or NO_SHUFFLED
    if SHUFFLED in (heldout.get("mean") or {}):
        reason = "no per-item losses recorded for the shuffled arm"
    return uses_given_item(None, None, groups, confidence, reason)


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
    "verdict",
    "random_weight_model",
    "path",
]


def csv_rows(results: list[dict]) -> list[dict]:
    """adapter_heldout.csv: per adapter one row per arm (``loss_<arm>``), per paired
    difference (``adapter_minus_<baseline>``) and the verdict row ``uses_given_item``
    (``verdict`` yes/no/not tested; the interval of adapter minus shuffled, or the
    reason); an unavailable adapter is one row with its reason."""
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
        parts = [(f"loss_{arm}", r["arms"][arm]) for arm in r["arm_names"]]
        parts += [(f"adapter_minus_{b}", r["diffs"][b]) for b in r["arm_names"][1:]]
        for quantity, ci in parts:
            rows.append({**base, "quantity": quantity, **{k: ci.get(k) for k in CSV_FIELDS[3:12]}})
        verdict = r["uses_given_item"]
        ci = verdict["diff"] or {}
        rows.append(
            {
                **base,
                **{k: ci.get(k) for k in CSV_FIELDS[3:12]},
                "quantity": "uses_given_item",
                "items_lower": verdict["items_lower"],
                "reason": verdict["reason"] or ci.get("reason", ""),
                "verdict": verdict["verdict"],
            }
        )
    return rows
