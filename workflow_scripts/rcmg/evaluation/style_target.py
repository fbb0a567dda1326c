"""Scoring a run against its model's style target (:mod:`rcmg.generation.style_targets`).

With a target file, every condition of a model is scored against the same bank items per
prompt: ``clap_style_sim`` (the judge's space: those rows re-embedded by the judge, the
target's weights) and ``clap_style_sim_bankspace`` (the bank CLAP's space: the rows'
bank vectors, the same weights). The style a run actually carried (a control's random or
donor style, a sweep point's other top-k) is the second, labelled column
``clap_style_sim_carried`` (the judge's space); ``carries_target`` says per item whether
the run carried exactly the target's rows.
"""

from __future__ import annotations

import math

import numpy as np

TARGET_SOURCE = "target: the model's own retrieval"


def target_hits(ok_rows: list[dict], targets: dict[int, dict], path) -> list[list[dict]]:
    """Each evaluated clip's target hits ([] where the target skipped the prompt).

    The target file must be the run's prompt file's: an item whose prompt differs, or
    that the file lacks, is an error naming the fix (never a silent wrong target)."""
    out = []
    for row in ok_rows:
        item = int(row["item"])
        target = targets.get(item)
        if target is None or str(target.get("prompt")) != str(row.get("prompt")):
            found = "missing" if target is None else f"for prompt {target.get('prompt')!r}"
            raise ValueError(
                f"{path}: the style target of item {item} is {found} but the run's prompt is "
                f"{row.get('prompt')!r}; rerun the style_target step for this prompt file "
                "(snakemake --forcerun style_target)"
            )
        out.append(list(target.get("target") or []) if target.get("status") == "ok" else [])
    return out


def rows_of(hits: list[dict]) -> tuple[int, ...]:
    return tuple(sorted(int(h["row"]) for h in hits if isinstance(h.get("row"), int)))


def carries_target(carried: list[list[dict]], targets: list[list[dict]]) -> list[str]:
    """'1' / '0' per clip (the run's style is / is not the target's rows), '' when either
    is absent (a run without a style carries none)."""
    return [
        ("1" if rows_of(c) == rows_of(t) else "0") if c and t else ""
        for c, t in zip(carried, targets, strict=True)
    ]


def unit_rows(bank: np.ndarray) -> np.ndarray:
    """Bank vectors as unit rows (float64), so a weighted mean is a style direction."""
    bank = np.asarray(bank, dtype=np.float64)
    norms = np.linalg.norm(bank, axis=1, keepdims=True)
    return np.divide(bank, norms, out=np.zeros_like(bank), where=norms > 0)


def bankspace_sims(style_audio: np.ndarray, hits, bank_path, temperature: float) -> np.ndarray:
    """cos(clip in the bank CLAP's space, weighted bank vectors of its target rows).

    Only the rows the targets name are read from the (memory-mapped) bank and made unit
    length; the hits are renumbered into that subset."""
    from rcmg.evaluation.judge_bank import judge_style_sims

    bank = np.load(bank_path, mmap_mode="r")
    if len(style_audio) and bank.shape[1] != style_audio.shape[1]:
        raise ValueError(
            f"bank {bank_path} is {bank.shape[1]}-d but the clips' bank-CLAP embeddings are "
            f"{style_audio.shape[1]}-d; evaluate with the CLAP the bank was built with"
        )
    used = sorted({row for h in hits for row in rows_of(h)})
    if used and (used[0] < 0 or used[-1] >= len(bank)):
        raise ValueError(
            f"a style target names bank row {used[-1] if used[-1] >= len(bank) else used[0]} "
            f"but {bank_path} has {len(bank)} rows; rerun the style_target step for this bank"
        )
    position = {row: i for i, row in enumerate(used)}
    local = [
        [{**h, "row": position[h["row"]]} for h in item if isinstance(h.get("row"), int)]
        for item in hits
    ]
    subset = unit_rows(np.asarray(bank[used]).reshape(len(used), bank.shape[1]))
    return judge_style_sims(style_audio, local, subset, temperature)


def summary(carried: list[str], hits: list[list[dict]], path) -> dict:
    """The summary.json record: where the target came from and how often it was carried."""
    flagged = [c for c in carried if c]
    return {
        "file": str(path),
        "source": TARGET_SOURCE,
        "n_with_target": sum(1 for h in hits if h),
        "n_without_target": sum(1 for h in hits if not h),
        "carried_fraction": (
            sum(c == "1" for c in flagged) / len(flagged) if flagged else math.nan
        ),
    }
