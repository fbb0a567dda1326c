"""Per-run results the comparison page states run by run: candidate ranking's effect and
the paired reference audio.

* ranking: ``run_config.json`` ``ranking`` (which CLAP ranked the candidates, written by
  the generate job; None with one candidate per prompt) and ``metrics/summary.json``
  ``ranking_effect`` (:mod:`rcmg.evaluation.ranking`: the judge's metrics of the rank-0
  candidate vs the mean of all candidates, per prompt, bootstrap over prompts).
* paired reference: ``run_config.json`` ``paired_reference`` ({n_found, n_prompts}; None
  when the prompt set pairs no reference audio) and the metrics computed against those
  clips (``ast_kl_*``, :mod:`rcmg.evaluation.classifier_view`), with the clip count the
  evaluation recorded (``summary.classifier.n_paired``).

Nothing is dropped: a run lacking a record gets a row that says what is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

PAIRED_METRICS = ("ast_kl_bernoulli", "ast_kl_sigmoid")  # KL(paired reference || generated)
RANKING_FIX = "re-run evaluate.py on this run (it writes ranking_effect into summary.json)"


def run_label(run: dict) -> str:
    c = run["config"]
    return f"{c.get('model')}/{c.get('condition')}/seed{c.get('seed')}"


def same_model(a, b) -> bool:
    """Two model references name the same model (revision dropped, folders resolved)."""
    if not a or not b:
        return False

    def key(ref) -> str:
        text = str(ref).strip().rstrip("/")
        head, sep, tail = text.rpartition("@")
        if sep and head and tail and "/" not in tail and not Path(text).expanduser().exists():
            text = head
        path = Path(os.path.expanduser(text))
        return str(path.resolve()) if path.exists() else text

    return key(a) == key(b)


def judge_of(summary: dict) -> str:
    return str((summary.get("judge") or {}).get("model") or summary.get("clap_model") or "")


def ranking_row(run: dict) -> dict | None:
    """The ranked run's row (None when the run generated one candidate per prompt)."""
    config, summary = run["config"], run["summary"]
    ranking = config.get("ranking")
    n_candidates = (config.get("params") or {}).get("num_waveforms_per_prompt")
    if not ranking:
        if ranking is None and "ranking" not in config and (n_candidates or 1) > 1:
            ranking = {}  # candidates without a ranking record: say so below
        else:
            return None
    judge = judge_of(summary)
    same = bool(ranking.get("warning")) or same_model(ranking.get("clap"), judge)
    effect = summary.get("ranking_effect")
    row = {
        "label": run_label(run),
        "model": config.get("model"),
        "family": config.get("family"),
        "n_candidates": n_candidates,
        "ranking_clap": ranking.get("clap") or "not recorded (run_config.json has no ranking)",
        "ranked_by": ranking.get("by") or "",
        "fingerprint": (ranking.get("fingerprint") or "n/a")[:12],
        "judge": judge or "not recorded",
        "same_as_judge": same,
        "warning": ranking.get("warning")
        or (
            f"candidates ranked by the judge's CLAP ({judge}): ranking by the judge inflates "
            "its scores of the ranked candidates"
            if same
            else ""
        ),
        "available": bool(effect and effect.get("metrics")),
        "reason": "",
        "n_prompts": (effect or {}).get("n_prompts"),
        "unit": (effect or {}).get("unit", ""),
        "metrics": [],
    }
    if "ranking_effect" not in summary:
        row["reason"] = f"{run['dir']}/metrics/summary.json has no ranking_effect: {RANKING_FIX}"
    elif not row["available"]:
        row["reason"] = "no prompt has an evaluated rank-0 candidate (ranking_effect is empty)"
    for name, m in ((effect or {}).get("metrics") or {}).items():
        row["metrics"].append(
            {
                "name": name,
                "rank0": m.get("rank0"),
                "all": m.get("all"),
                "diff": m.get("rank0_minus_all"),
            }
        )
    return row


def ranking_section(runs: list[dict]) -> dict:
    """{rows: ranked runs, unranked: labels of one-candidate runs}."""
    rows, unranked = [], []
    for run in runs:
        row = ranking_row(run)
        if row is None:
            unranked.append(run_label(run))
        else:
            rows.append(row)
    return {"rows": rows, "unranked": unranked}


def paired_reference(config: dict) -> dict:
    """{recorded, n_found, n_prompts, text} of a run's run_config.json."""
    if "paired_reference" not in config:
        text = "not recorded (run_config.json predates paired_reference: regenerate the run)"
        return {"recorded": False, "n_found": None, "n_prompts": None, "text": text}
    record = config["paired_reference"]
    if record is None:
        text = "none (the prompt set pairs no reference audio)"
        return {"recorded": True, "n_found": 0, "n_prompts": None, "text": text}
    found, total = record.get("n_found"), record.get("n_prompts")
    return {
        "recorded": True,
        "n_found": found,
        "n_prompts": total,
        "text": f"paired reference audio: {found} of {total} prompts",
    }


def paired_reference_row(run: dict) -> dict:
    summary = run["summary"]
    classifier = summary.get("classifier") or {}
    metrics = summary.get("metrics") or {}
    return {
        "label": run_label(run),
        "prompts_file": run["config"].get("prompts_file", "n/a"),
        **paired_reference(run["config"]),
        "n_evaluated": summary.get("n_evaluated"),
        "classifier": classifier.get("model") if classifier.get("enabled") else None,
        "n_paired_clips": classifier.get("n_paired") if classifier.get("enabled") else None,
        "n_missing_clips": len(classifier.get("missing_reference_clips") or []),
        "classifier_reason": "" if classifier.get("enabled") else classifier.get("reason") or "",
        "metrics": [(name, metrics.get(name)) for name in PAIRED_METRICS],
    }


def paired_reference_section(runs: list[dict]) -> dict:
    """{rows: one per run, any: whether any run's prompt set pairs reference audio}."""
    rows = [paired_reference_row(run) for run in runs]
    return {"rows": rows, "any": any(r["n_found"] for r in rows)}


def strength_section(runs: list[dict]) -> dict:
    """Per style run: how far its conditioning turned (``run_config.json``
    ``conditioning_summary``, written by the generate job): the mean angle of each part
    (AudioLDM1: ``cond`` in total, ``blend`` alone, ``residual`` alone; AudioLDM2: the CLAP
    token and the LM tokens), the alpha used, and the fraction of items whose target angle
    (``strength_deg``, a control's matched angle) was not reached."""
    rows, keys = [], []
    for run in runs:
        found = run["config"].get("conditioning_summary") or {}
        if not found:
            continue
        angles = {
            k.removeprefix("angle_deg."): d for k, d in found.items() if k.startswith("angle_deg.")
        }
        keys.extend(k for k in angles if k not in keys)
        unreached = found.get("strength_unreached")
        rows.append(
            {
                "label": run_label(run),
                "n": (found.get("alpha") or {}).get("n"),
                "angles": {k: d.get("mean", d.get("median")) for k, d in angles.items()},
                "alpha": (found.get("alpha") or {}).get("mean"),
                "unreached": None if unreached is None else unreached.get("mean"),
                "n_targeted": None if unreached is None else unreached.get("n"),
            }
        )
    return {"rows": rows, "parts": keys}
