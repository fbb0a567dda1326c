"""The generate job's planning, before any denoising: every prompt's text (truncated to the
family's limits), its augmentation tags or its style vector, and its skip reason.

Every prompt is planned, whichever shard generates it (retrieval, mismatched styles and
control angles see the whole set; :mod:`rcmg.generation.controls`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rcmg.generation.conditioning import OptionError
from rcmg.generation.controls import (
    plan_matched_angles,
    plan_mismatched_audio_prompts,
    plan_mismatched_styles,
    plan_random_audio_prompts,
    plan_random_styles,
)
from rcmg.generation.generate_config import CLAP_DIM, GenerateConfig, ItemPlan, Resources
from rcmg.generation.prompts import PromptItem, augment_prompt, truncate_to_tokens
from rcmg.workflow.runinfo import PhaseTimer


def _truncate_for_model(text: str, limits) -> tuple[str, list[str]]:
    notes = []
    for tok, limit, why in limits:
        cut, was_cut = truncate_to_tokens(text, tok, max_length=limit)
        if was_cut:
            notes.append(f"prompt truncated to {limit} tokens ({type(tok).__name__}: {why})")
            text = cut
    return text, notes


def _fits(limits, text: str) -> bool:
    return all(len(tok(text)["input_ids"]) <= limit for tok, limit, _why in limits)


def visible_text(text: str) -> str:
    """``text`` without whitespace, control and format (zero-width) characters."""
    import unicodedata

    return "".join(ch for ch in text if unicodedata.category(ch)[0] not in ("Z", "C"))


def usable(vector: np.ndarray | None) -> bool:
    return (
        vector is not None
        and bool(np.all(np.isfinite(vector)))
        and float(np.linalg.norm(vector)) > 1e-8
    )


def hit_dict(hit, score=None) -> dict:
    return {
        "row": int(hit.row),
        "segment_id": hit.segment_id,
        "score": float(hit.score) if score is None else score,
        "tags": list(hit.tags),
    }


def plan_items(
    cfg: GenerateConfig, items: list[PromptItem], res: Resources, timer: PhaseTimer
) -> list[ItemPlan]:
    """Prompt text, augmentation tags, style vectors and skips for every item."""
    family = res.family
    limits = family.token_limits(res.loaded.pipe)
    plans = []
    for it in items:
        text, notes = _truncate_for_model(it.prompt, limits)
        it.notes.extend(notes)
        plan = ItemPlan(source=it, prompt_used=text, truncated=bool(notes))
        if not visible_text(text):
            plan.skip_reason = (
                "prompt has no visible characters (only whitespace/zero-width/control "
                "characters); write a prompt or delete the line"
            )
        plans.append(plan)
    if cfg.condition_type == "prompt_aug":
        _plan_augmentation(cfg, [p for p in plans if p.skip_reason is None], res, limits, timer)
    elif cfg.uses_audio_prompt:
        _plan_audio_prompts(cfg, [p for p in plans if p.skip_reason is None], res, timer)
    elif cfg.uses_style:
        _plan_styles(cfg, [p for p in plans if p.skip_reason is None], res, timer)
        if cfg.condition_type == "retrieval_random":
            plan_random_styles(cfg, plans, res)
        elif cfg.condition_type == "retrieval_mismatched":
            plan_mismatched_styles(plans)
        if cfg.match_angles:
            plan_matched_angles(cfg, plans, family)
    for plan in plans:
        plan.lm_context = family.prompt_context(res.loaded.pipe, plan.prompt_used)
        if plan.lm_context is None:
            continue
        if not plan.lm_context["fits"] and plan.skip_reason is None:  # never after truncation
            plan.skip_reason = f"prompt does not fit the language model: {plan.lm_context}"
    return plans


def _text_queries(res: Resources, plans: list[ItemPlan], timer: PhaseTimer) -> np.ndarray:
    with timer.phase("encode"):
        return res.clap.embed_text([p.prompt_used for p in plans])


def _plan_augmentation(cfg, plans, res, limits, timer) -> None:
    from rcmg.bank.retrieval import tags_for_augmentation

    queries = _text_queries(res, plans, timer)
    for plan, query in zip(plans, queries, strict=True):
        if not usable(query):
            plan.skip_reason = (
                "CLAP text embedding of the prompt is zero/NaN; cannot query the bank"
            )
            continue
        with timer.phase("retrieve"):
            hits = res.retriever.search(query[None, :], cfg.aug_topk)[0]
        tags = tags_for_augmentation(hits, max(cfg.aug_max_tags, 0) * 4 or 1)
        plan.prompt_used, plan.augment_tags = augment_prompt(
            plan.prompt_used,
            tags,
            cfg.aug_max_tags,
            fits=lambda t: _fits(limits, t),
        )
        plan.retrieved = [hit_dict(h) for h in hits]


def segments_root(cfg) -> Path:
    """Where the bank items' 16 kHz segments are: ``--segments-root``, or the workflow
    layout beside the bank (``<processed>/<dataset>/segments``)."""
    from rcmg.generation.adapter_job import default_segments_root, read_mapping

    if cfg.segments_root:
        return Path(cfg.segments_root)
    return default_segments_root(Path(cfg.bank), read_mapping(Path(cfg.bank_mapping)))


def _plan_audio_prompts(cfg, plans, res, timer) -> None:
    """Each prompt's audio prompt: the first ``prompt_seconds`` of 16 kHz audio of its top
    bank hit, or (``audio_prompt_source``, the controls) of a seeded random bank item or
    of the top hit of the prompt half the set away (:mod:`rcmg.generation.controls`)."""
    from rcmg.generation.adapter_training import bank_items, load_segment_audio

    root = segments_root(cfg)
    queries = _text_queries(res, plans, timer)
    for plan, query in zip(plans, queries, strict=True):
        plan.style_source = "bank_audio"
        plan.query = query
        if not usable(query):
            plan.skip_reason = (
                "CLAP text embedding of the prompt is zero/NaN; cannot query the bank"
            )
            continue
        with timer.phase("retrieve"):
            hit = res.retriever.search(query[None, :], 1)[0][0]
            plan.retrieved = [hit_dict(hit)]
    # whose top hit each item's audio prompt is (random: none, a seeded draw)
    hit_of = {p.item: p.item for p in plans}
    if cfg.audio_prompt_source == "random":
        plan_random_audio_prompts(cfg, plans, res)
        hit_of = {}
    elif cfg.audio_prompt_source == "mismatched":
        hit_of = plan_mismatched_audio_prompts(plans)
    for plan in plans:
        if plan.skip_reason is not None:
            continue
        row = int(plan.retrieved[0]["row"])
        plan.audio_prompt_item = {
            "source": cfg.audio_prompt_source,
            "row": row,
            "segment_id": plan.retrieved[0]["segment_id"],
            "top_hit_of_item": hit_of.get(plan.item),
        }
        with timer.phase("retrieve"):
            item = bank_items([{**res.retriever.mapping[row], "row": row}])
            plan.audio_prompt = load_segment_audio(item, root, cfg.prompt_seconds)[0]


def _plan_styles(cfg, plans, res, timer) -> None:
    from rcmg.bank.blend import style_vector
    from rcmg.bank.retrieval import retrieved_style

    bank_plans = [p for p in plans if p.source.style.kind == "bank"]
    queries = (
        _text_queries(res, bank_plans, timer) if bank_plans else np.zeros((0, CLAP_DIM), np.float32)
    )
    for plan, query in zip(bank_plans, queries, strict=True):
        plan.style_source = "bank"
        plan.query = query
        if not usable(query):
            plan.skip_reason = (
                "CLAP text embedding of the prompt is zero/NaN; cannot query the bank"
            )
            continue
        with timer.phase("retrieve"):
            found = retrieved_style(res.retriever, query, cfg.style_topk, cfg.style_temp)
            plan.retrieved = [hit_dict(h) for h in found.hits]
            plan.style = found.vector
            if found.error:
                plan.skip_reason = found.error
    id_rows = _check_style_ids([p.source for p in plans], res.retriever, Path(cfg.prompts))
    for plan in plans:
        if plan.source.style.kind == "ids":
            _plan_id_style(plan, res.retriever, id_rows, style_vector, timer)
        elif plan.source.style.kind == "audio":
            _plan_audio_style(plan, res, timer)
    for plan in plans:
        if plan.skip_reason is None and not usable(plan.style):
            plan.skip_reason = f"style vector ({plan.style_source}) is NaN or zero; check the bank/audio it came from"


def safe_style(plan: ItemPlan, style_vector, vectors, scores, temperature):
    try:
        return np.asarray(
            style_vector(vectors, np.asarray(scores, np.float64), temperature), np.float32
        )
    except ValueError as err:
        plan.skip_reason = f"style vector could not be formed: {err}"
        return None


def _plan_id_style(plan: ItemPlan, retriever, id_rows: dict, style_vector, timer) -> None:
    plan.style_source = "ids"
    rows = [id_rows[s] for s in plan.source.style.segment_ids]
    with timer.phase("retrieve"):
        plan.retrieved = [
            {
                "row": r,
                "segment_id": str(retriever.mapping[r].get("segment_id", "")),
                "score": None,  # chosen by id, not by similarity
                "weight": 1.0 / len(rows),
                "tags": list(retriever.mapping[r].get("tags") or []),
            }
            for r in rows
        ]
        vectors = np.asarray(retriever.bank[rows], dtype=np.float32)
        plan.style = safe_style(plan, style_vector, vectors, np.zeros(len(rows)), 1.0)


def _plan_audio_style(plan: ItemPlan, res: Resources, timer) -> None:
    from rcmg.data.audio_io import resample

    plan.style_source = "audio"
    wave, sr = res.style_audio[plan.item]
    with timer.phase("encode"):
        wave48 = resample(wave, sr, res.clap.sampling_rate)
        plan.style = res.clap.embed_audio(wave48[None, :])[0]
    plan.retrieved = []


def _check_style_ids(items: list[PromptItem], retriever, prompts_path: Path) -> dict[str, int]:
    rows = {str(m.get("segment_id", "")): r for r, m in enumerate(retriever.mapping)}
    for it in items:
        unknown = [s for s in it.style.segment_ids if s not in rows]
        if unknown:
            raise OptionError(
                f"{prompts_path}:{it.line}: segment id(s) {unknown} are not in the bank mapping "
                f"{retriever.mapping_path}; use ids listed there"
            )
    return rows
