"""What the generate job records: one items.jsonl row per clip (prompt used, retrieved
bank items with their provenance and licences, conditioning angles, ranks, skips), the
WAVs, and run_config.json (every parameter, the command, code version, timings)."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path

import numpy as np

from rcmg.generation.batching import shard_info, subset_info
from rcmg.generation.conditioning import effective_adapter
from rcmg.generation.generate_config import GenerateConfig, ItemPlan
from rcmg.generation.job_checks import alignment_summary
from rcmg.generation.prompts import paired_reference_summary
from rcmg.generation.ranking import ranking_record, ranks_within_group
from rcmg.workflow.runinfo import code_version


def wav_name(item: int, k: int, n_waveforms: int) -> str:
    """``wav/0007.wav`` (or ``wav/0007_w1.wav``): never derived from the prompt text."""
    return f"wav/{item:04d}.wav" if n_waveforms == 1 else f"wav/{item:04d}_w{k}.wav"


def style_rows(plans: list[ItemPlan]) -> tuple[np.ndarray | None, dict[int, int]]:
    with_style = [p for p in plans if p.skip_reason is None and p.style is not None]
    if not with_style:
        return None, {}
    rows = {p.item: i for i, p in enumerate(with_style)}
    return np.stack([p.style for p in with_style]).astype(np.float32), rows


def attach_provenance(plans: list[ItemPlan], retriever) -> None:
    """Give every retrieved bank item of every plan its provenance (clip, Freesound title
    and uploader, licence and its deed, source URL), read from the bank mapping row, so
    items.jsonl says what each generated clip used. Missing metadata stays empty here;
    the evaluate step's bank-item audit lists it as a warning."""
    from rcmg.data.licences import item_provenance

    if retriever is None:
        return
    for plan in plans:
        enriched = []
        for hit in plan.retrieved:
            row = hit.get("row")
            mapping_row = retriever.mapping[row] if row is not None else None
            provenance, _warnings = item_provenance(hit, mapping_row)
            enriched.append({**provenance, **hit})  # the hit's own fields (score, tags) win
        plan.retrieved = enriched


def item_rows(cfg: GenerateConfig, plans: list[ItemPlan], style_rows: dict[int, int]) -> list[dict]:
    rows = []
    n = cfg.num_waveforms_per_prompt
    for plan in plans:
        ranks = ranks_within_group(plan.rank_scores) if plan.rank_scores else None
        for k in range(n):
            ok = plan.skip_reason is None
            rows.append(
                {
                    "item": plan.item,
                    "waveform_index": k,
                    "wav": wav_name(plan.item, k, n) if ok else None,
                    "prompt": plan.source.prompt,
                    "prompt_used": plan.prompt_used,
                    "negative_prompt": cfg.negative_prompt,
                    "seed": int(cfg.seed) + plan.item,
                    "status": "ok" if ok else "skipped",
                    "skip_reason": plan.skip_reason,
                    "style_source": plan.style_source,
                    "style_row": style_rows.get(plan.item),
                    "retrieved": plan.retrieved,
                    "augment_tags": plan.augment_tags,
                    "notes": list(plan.source.notes),
                    "truncated": plan.truncated,
                    "conditioning": plan.conditioning,
                    "rank": ranks[k] if ranks else None,
                    "rank_score": plan.rank_scores[k] if ranks else None,
                    "lm_context": plan.lm_context,
                    "line": plan.source.line,
                    "reference_clip": plan.source.reference,
                }
            )
    return rows


def record_space(rows: list[dict], space: dict | None) -> None:
    """Bank conditions: each item names the style space its bank vectors and query lived
    in and that space's verified weight fingerprint (None for other conditions)."""
    for row in rows:
        row["style_space"] = space["name"] if space else None
        row["space_fingerprint"] = space["fingerprint"] if space else None


def write_wavs(
    run_dir: Path, audio: dict[int, np.ndarray], sample_rate: int, n_waveforms: int
) -> None:
    import soundfile as sf

    (run_dir / "wav").mkdir(parents=True, exist_ok=True)
    for item, clips in sorted(audio.items()):
        for k, clip in enumerate(clips):
            sf.write(
                run_dir / wav_name(item, k, n_waveforms),
                clip.astype(np.float32) if clip.ndim == 1 else clip.astype(np.float32).T,
                sample_rate,
                subtype="FLOAT",
            )


def _condition_params(cfg: GenerateConfig, space: dict | None = None) -> dict:
    params: dict = {"condition_type": cfg.condition_type}
    if cfg.needs_bank:
        params.update(
            clap_model=cfg.clap_model,
            clap_subfolder=cfg.clap_subfolder,
            style_space=space,
            bank=cfg.bank,
            bank_mapping=cfg.bank_mapping,
            index=cfg.index or "exact (IndexFlatIP built on the fly)",
        )
    if cfg.condition_type == "prompt_aug":
        params.update(aug_topk=cfg.aug_topk, aug_max_tags=cfg.aug_max_tags)
    if cfg.uses_audio_prompt:
        params.update(
            prompt_seconds=cfg.prompt_seconds,
            audio_prompt_source=cfg.audio_prompt_source,
            segments_root=cfg.segments_root,
        )
    if cfg.uses_style:
        opts = cfg.condition_options()
        params.update(
            match_angles=cfg.match_angles,
            style_topk=cfg.style_topk,
            style_temp=cfg.style_temp,
            blend=cfg.blend,
            alpha=cfg.alpha,
            adapter=cfg.adapter,
            adapter_effective=effective_adapter(opts),
            adapter_checkpoint=cfg.adapter_checkpoint,
            cond_mix=cfg.cond_mix,
            cond_mix_beta=cfg.cond_mix_beta,
            strength_deg=cfg.strength_deg,
            init_noise_level=cfg.init_noise_level,
            segments_root=cfg.segments_root if cfg.init_noise_level is not None else None,
            alignment=alignment_summary(cfg),
        )
    return params


def _run_params(cfg: GenerateConfig, loaded) -> dict:
    return {
        "steps": cfg.steps,
        "guidance": cfg.guidance,
        "seconds": cfg.seconds,
        "batch": cfg.batch,
        "dtype": loaded.dtype,
        "dtype_requested": cfg.dtype,
        "scheduler": loaded.scheduler,
        "scheduler_requested": cfg.scheduler,
        "negative_prompt": cfg.negative_prompt,
        "num_waveforms_per_prompt": cfg.num_waveforms_per_prompt,
        "blend": cfg.blend,
        "alpha": cfg.alpha,
        "style_guidance": cfg.style_guidance,
        "candidate_ranking": cfg.model_family.ranked_by
        if cfg.num_waveforms_per_prompt > 1
        else None,
        "device": loaded.device,
        "seeding": "per item: torch.Generator('cpu').manual_seed(seed + item)",
        "sample_rate": cfg.model_family.sample_rate(loaded.pipe),
        "channels": cfg.model_family.channels(loaded.pipe),
    }


def _distribution(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "n": int(v.size),
        "mean": round(float(v.mean()), 6),
        **{
            k: round(float(x), 6)
            for k, x in zip(("min", "p25", "median", "p75", "max"), q, strict=True)
        },
        "values": [round(float(x), 6) for x in v],
    }


def conditioning_summary(rows: list[dict]) -> dict:
    """Distribution over the run's items of the angle per branch / token group, the alpha
    used and the prompt-style cosine (retrieval runs); shown in the run report."""
    ok = [
        r
        for r in rows
        if r["status"] == "ok"
        and (r.get("conditioning") or {}).get("angles_deg") is not None
        and r["waveform_index"] == 0
    ]
    if not ok:
        return {}
    out = {}
    for key in ok[0]["conditioning"]["angles_deg"]:
        out[f"angle_deg.{key}"] = _distribution([r["conditioning"]["angles_deg"][key] for r in ok])
    out["alpha"] = _distribution([r["conditioning"]["alpha"] for r in ok])
    out["prompt_style_cos"] = _distribution([r["conditioning"]["prompt_style_cos"] for r in ok])
    targeted = [r for r in ok if r["conditioning"].get("strength_reached") is not None]
    if targeted:  # a target angle (strength_deg, a control's matched angle): how often missed
        missed = [float(r["conditioning"]["strength_reached"] is False) for r in targeted]
        out["strength_unreached"] = _distribution(missed)
    return out


def prompt_limits_summary(rows: list[dict]) -> dict:
    """Which items were truncated (and why) or skipped: shown in the run report."""
    first = [r for r in rows if r["waveform_index"] == 0]
    return {
        "n_truncated": sum(bool(r.get("truncated")) for r in first),
        "truncated": {str(r["item"]): r["notes"] for r in first if r.get("truncated")},
        "skipped": {str(r["item"]): r["skip_reason"] for r in first if r["status"] != "ok"},
    }


SEEDING = (
    "per item: torch.Generator('cpu').manual_seed(seed + item); retrieval_random rows: "
    "numpy default_rng([seed, item, 0x5EED])"
)


def run_config(cfg, loaded, prompt_file, rows, timings, unet, started, space=None) -> dict:
    from rcmg.models.hf_loading import revision_records
    from rcmg.models.random_weights import is_random_weight_model
    from rcmg.workflow.runinfo import determinism_settings

    n_ok = sum(r["status"] == "ok" for r in rows)
    return {
        "conditioning_summary": conditioning_summary(rows),
        "prompt_limits": prompt_limits_summary(rows),
        "model": cfg.model_key,
        "model_id": cfg.model_id,
        "family": cfg.family,
        "condition": cfg.condition,
        "condition_params": _condition_params(cfg, space),
        "style_space": space,
        "seed": cfg.seed,
        "params": _run_params(cfg, loaded),
        "ranking": ranking_record(cfg),
        "prompts_file": str(cfg.prompts),
        "n_prompts": len(prompt_file.items),
        "shard": shard_info(cfg, len(prompt_file.items)),
        "prompt_subset": subset_info(cfg, [it.item for it in prompt_file.items]),
        "paired_reference": paired_reference_summary(prompt_file),
        "blank_lines_skipped": prompt_file.blank_lines,
        "comment_lines": prompt_file.comment_lines,
        "n_clips_ok": n_ok,
        "n_clips_skipped": len(rows) - n_ok,
        "command": cfg.command,
        "code_version": code_version(),
        "timings_s": timings,
        **unet,
        "unet_forward_fraction": round(unet["unet_forward_s"] / timings["total"], 6)
        if timings["total"]
        else None,
        "started_at": started,
        "finished_at": now(),
        "is_pipeline_check": is_random_weight_model(cfg.model_id),
        # the generator weights' licence, where its family records one
        "model_license": cfg.model_family.weights_license(cfg.model_id),
        # models as ID or ID@REVISION, with what they resolved to (issue 15 item 7)
        "model_revisions": revision_records(
            {"generator": cfg.model_id, "bank_clap": cfg.clap_model}
        ),
        "determinism": determinism_settings(SEEDING),
        "config": asdict(cfg),
    }


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
