"""The controls' styles: ``retrieval_random`` (seeded random bank rows),
``retrieval_mismatched`` (the style retrieved for another prompt) and, for both, each
item's target angle (the angle the controlled retrieval run turned that item by), so a
control differs from its condition only in which style it carries.

The audio-prompt conditions (continuation, melody) have the same two controls through
``audio_prompt_source``: ``random`` (a seeded random bank item) and ``mismatched`` (the
top hit of the prompt half the set away) in place of the prompt's own top hit, at the
same ``prompt_seconds`` through the same path (:func:`plan_random_audio_prompts`,
:func:`plan_mismatched_audio_prompts`)."""

from __future__ import annotations

import numpy as np


def plan_random_styles(cfg, plans, res) -> None:
    """``retrieval_random``: the style of ``style_topk`` bank rows drawn at random (seeded
    by run seed and item), weighted by their scores to the prompt like retrieved hits."""
    from rcmg.bank.blend import style_vector
    from rcmg.generation.planning import hit_dict, safe_style

    n = len(res.retriever)
    for plan in plans:
        if plan.skip_reason is not None or plan.style_source != "bank":
            continue
        rows = random_bank_rows(cfg.seed, plan.item, n, cfg.style_topk)
        vectors = np.asarray(res.retriever.bank[rows], np.float32)
        query = plan.query / np.linalg.norm(plan.query)
        scores = vectors @ query / np.linalg.norm(vectors, axis=1)
        plan.retrieved = [
            hit_dict(res.retriever.hit(r, float(sc))) for r, sc in zip(rows, scores, strict=True)
        ]
        plan.style = safe_style(plan, style_vector, vectors, scores, cfg.style_temp)
        plan.style_source = "bank_random"


def plan_mismatched_styles(plans) -> None:
    """``retrieval_mismatched``: item i takes the style retrieved for the prompt half the
    set away (``(i + n // 2) mod n`` among the bank-styled items): real retrieved content,
    for the wrong prompt."""
    usable = [p for p in plans if p.skip_reason is None and p.style_source == "bank"]
    if len(usable) < 2:
        for p in usable:
            p.skip_reason = "retrieval_mismatched needs at least 2 prompts with retrieved styles"
        return
    shift = len(usable) // 2
    own = [(p.style, p.retrieved, p.item) for p in usable]
    for i, plan in enumerate(usable):
        plan.style, plan.retrieved, donor = own[(i + shift) % len(usable)]
        plan.style_source = f"bank_of_item_{donor}"


def plan_matched_angles(cfg, plans, family) -> None:
    """Controls turn each item by the angle the controlled retrieval run turned it by
    (the family says which angle of its conditioning record that is)."""
    from rcmg.workflow.atomic import read_jsonl

    matched = {}
    for row in read_jsonl(cfg.match_angles):
        info = row.get("conditioning")
        if row.get("status") == "ok" and info and row.get("waveform_index", 0) == 0:
            matched[int(row["item"])] = family.matched_angle(info)
    for plan in plans:
        if plan.skip_reason is not None:
            continue
        if plan.item not in matched:
            plan.skip_reason = (
                f"no angle for item {plan.item} in {cfg.match_angles} (skipped there)"
            )
        elif matched[plan.item] <= 0:
            plan.skip_reason = f"the controlled run turned item {plan.item} by 0 degrees"
        else:
            plan.target_deg = matched[plan.item]


def random_bank_rows(seed: int, item: int, n: int, k: int) -> list[int]:
    """``k`` distinct bank rows of ``n``, drawn from the generator seeded by run seed and
    item (the draw of ``retrieval_random`` and of the random audio prompt)."""
    rng = np.random.default_rng([int(seed), int(item), 0x5EED])
    return sorted(int(r) for r in rng.choice(n, size=min(k, n), replace=False))


def plan_random_audio_prompts(cfg, plans, res) -> None:
    """``audio_prompt_source: random``: each item's audio prompt is one bank item drawn at
    random (seeded by run seed and item: the first row ``retrieval_random`` draws at
    ``style_topk`` 1), recorded with its score to the prompt like a retrieved hit."""
    from rcmg.generation.planning import hit_dict

    for plan in plans:
        if plan.skip_reason is not None or not plan.retrieved:
            continue
        [row] = random_bank_rows(cfg.seed, plan.item, len(res.retriever), 1)
        vector = np.asarray(res.retriever.bank[row], np.float32)
        query = plan.query / np.linalg.norm(plan.query)
        score = float(vector @ query / np.linalg.norm(vector))
        plan.retrieved = [hit_dict(res.retriever.hit(row, score))]
        plan.style_source = "bank_audio_random"


def plan_mismatched_audio_prompts(plans) -> dict[int, int]:
    """``audio_prompt_source: mismatched``: item i takes the top hit of the prompt half the
    set away (``(i + n // 2) mod n`` among the items with a hit), as
    ``retrieval_mismatched`` takes its style. Returns item -> the item whose hit it took."""
    usable = [p for p in plans if p.skip_reason is None and p.retrieved]
    if len(usable) < 2:
        for p in usable:
            p.skip_reason = "audio_prompt_source mismatched needs at least 2 prompts with a hit"
        return {}
    shift = len(usable) // 2
    own = [(p.retrieved, p.item) for p in usable]
    donors = {}
    for i, plan in enumerate(usable):
        plan.retrieved, donor = own[(i + shift) % len(usable)]
        plan.style_source = f"bank_audio_of_item_{donor}"
        donors[plan.item] = donor
    return donors
