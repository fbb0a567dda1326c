"""One style target per prompt and model: the bank items the model's own retrieval returns.

Every condition of a model (prompt, augmentation, retrieval, its controls, style-only,
sweep points) is scored against the same target at evaluation, so a paired difference
between two conditions is a difference in their audio, never in what they were compared
with. The target is what the model's ``retrieval`` condition would carry at the model's
configured settings: the prompt truncated to the family's token limits, embedded by the
CLAP that embeds the model's queries (its own ``text_encoder`` for a family with its own
CLAP, else the bank CLAP), the top ``style_topk`` rows of the model's declared style
space, weighted ``softmax(score / style_temp)``. It is computed by the same planning code
the generate job runs (:func:`rcmg.generation.planning.plan_items`), once per model.

``style_targets.jsonl``: one row per prompt item::

    {"item", "prompt", "prompt_used", "status": "ok" | "skipped", "skip_reason",
     "target": [{"row", "segment_id", "score", "tags"}], "style_source",
     "style_topk", "style_temp", "space": {name, conditioning_clap, fingerprint, ...}}

A prompt whose style is given by the prompt file (segment ids) targets those rows; one
given as an audio file has no bank target (``status: skipped`` with the reason).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from rcmg.generation.generate_config import GenerateConfig
from rcmg.workflow.atomic import read_jsonl, write_jsonl
from rcmg.workflow.runinfo import PhaseTimer

log = logging.getLogger(__name__)

TARGET_CONDITION = "style_target"


def target_config(cfg: GenerateConfig) -> GenerateConfig:
    """``cfg`` as the model's own retrieval (no controls, no trained adapter, no alignment
    gate: the target is what retrieval returns, whether or not a style may be blended in
    this space). Planning does not depend on the adapter; ``native`` is every family's own path."""
    return replace(
        cfg,
        condition=TARGET_CONDITION,
        condition_type="retrieval",
        adapter="native",
        adapter_checkpoint=None,
        alignment=None,
        min_alignment_cosine=None,
        match_angles=None,
        style_guidance=0.0,
        strength_deg=None,
        num_waveforms_per_prompt=1,
        prompt_shards=1,
        prompt_shard=None,
        prompt_subset=None,
    )


def target_row(plan, cfg: GenerateConfig, space: dict | None) -> dict:
    """The style_targets.jsonl row of one planned prompt."""
    skip = plan.skip_reason
    if skip is None and not plan.retrieved:
        skip = f"the prompt's style is {plan.style_source}: no bank item to target"
    return {
        "item": plan.item,
        "prompt": plan.source.prompt,
        "prompt_used": plan.prompt_used,
        "status": "ok" if skip is None else "skipped",
        "skip_reason": skip,
        "style_source": plan.style_source,
        "target": [
            {k: h.get(k) for k in ("row", "segment_id", "score", "tags")} for h in plan.retrieved
        ]
        if skip is None
        else [],
        "style_topk": cfg.style_topk,
        "style_temp": cfg.style_temp,
        "space": space or {},
    }


def write_style_targets(cfg: GenerateConfig, out: Path) -> Path:
    """Plan ``cfg``'s prompts as its model's retrieval and write ``out`` atomically."""
    from rcmg.generation.job_checks import validate_config
    from rcmg.generation.planning import plan_items
    from rcmg.generation.prompts import read_prompt_file
    from rcmg.generation.resources import load_resources

    cfg = target_config(cfg)
    prompt_file = read_prompt_file(cfg.prompts)
    validate_config(cfg)
    timer = PhaseTimer()
    res = load_resources(cfg, prompt_file.items)
    plans = plan_items(cfg, prompt_file.items, res, timer)
    rows = [target_row(p, cfg, res.space) for p in plans]
    out = Path(out)
    write_jsonl(out, rows)
    log.info(
        "wrote %s: %d prompts, %d with a target",
        out,
        len(rows),
        sum(r["status"] == "ok" for r in rows),
    )
    return out


def read_style_targets(path: Path) -> dict[int, dict]:
    """item -> its style_targets.jsonl row."""
    rows = read_jsonl(path)
    if not rows:
        raise ValueError(f"{path} holds no style targets; rerun the style_target step")
    return {int(r["item"]): r for r in rows}
