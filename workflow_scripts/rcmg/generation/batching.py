"""The generate job's batches and shards: fixed blocks of the prompt file, one seeded
generator per item, the family's conditioning and audio per batch, timed by phase.

Batches are fixed blocks of the prompt file: items ``[b * batch, (b + 1) * batch)`` share
a batch (skipped items leave their block smaller). Shards are contiguous runs of whole
blocks (:func:`shard_ranges`), so gathered shards equal the unsharded run bit for bit.
"""

from __future__ import annotations

import numpy as np

from rcmg.generation.families.base import ConditioningRequest, SamplingSettings
from rcmg.generation.generate_config import GenerateConfig, ItemPlan, Resources
from rcmg.workflow.runinfo import ModuleHookTimer, PhaseTimer


def item_generators(plans: list[ItemPlan], seed: int, n_waveforms: int) -> list:
    """One CPU generator per item (seed + item), repeated for the item's waveforms."""
    import torch

    gens = []
    for plan in plans:
        g = torch.Generator(device="cpu").manual_seed(int(seed) + plan.item)
        gens.extend([g] * n_waveforms)
    return gens


def _blocks(plans: list[ItemPlan], size: int):
    """Batches as fixed blocks of item indices (``item // size``), in item order: the same
    batches whether the run is generated whole or in shards (shard_ranges)."""
    groups: dict[int, list[ItemPlan]] = {}
    for plan in plans:
        groups.setdefault(plan.item // size, []).append(plan)
    for block in sorted(groups):
        yield groups[block]


def shard_ranges(n_items: int, batch: int, shards: int) -> list[tuple[int, int]]:
    """``[start, stop)`` item ranges of ``shards`` contiguous shards of ``n_items``.

    Boundaries fall on multiples of ``batch`` (whole batch blocks, so a shard's batches are
    the unsharded run's batches) and the blocks are spread as evenly as possible, the first
    shards taking one more block. With more shards than blocks the last shards are empty.
    """
    if batch < 1 or shards < 1:
        raise ValueError(f"batch and shards must be >= 1, got {batch}, {shards}")
    n_blocks = -(-n_items // batch)
    base, extra = divmod(n_blocks, shards)
    ranges, block = [], 0
    for i in range(shards):
        take = base + (1 if i < extra else 0)
        start, block = block, block + take
        ranges.append((min(start * batch, n_items), min(block * batch, n_items)))
    return ranges


def shard_of(cfg: GenerateConfig, n_items: int) -> tuple[int, int] | None:
    """The item range this job generates (None: an unsharded run, all items)."""
    if cfg.prompt_shard is None:
        return None
    return shard_ranges(n_items, cfg.batch, cfg.prompt_shards)[cfg.prompt_shard]


def prompt_subset(items: list[int], n: int, seed: int) -> list[int]:
    """The item indices of a seeded draw of ``n`` of ``items`` (all when ``n >= len``), in
    item order. Depends only on the items, ``n`` and ``seed`` (not on the model, condition
    or run seed), so a sweep point and its matched baseline draw the same prompts."""
    ids = sorted(items)
    if n >= len(ids):
        return ids
    chosen = np.random.default_rng(int(seed)).choice(len(ids), size=int(n), replace=False)
    return sorted(ids[i] for i in chosen)


def subset_info(cfg: GenerateConfig, items: list[int]) -> dict | None:
    """The subset a run generated (None: every prompt)."""
    if cfg.prompt_subset is None:
        return None
    return {
        "n": cfg.prompt_subset,
        "seed": cfg.prompt_subset_seed,
        "of": len(items),
        "items": prompt_subset(items, cfg.prompt_subset, cfg.prompt_subset_seed),
    }


def shard_info(cfg: GenerateConfig, n_items: int) -> dict | None:
    """Which items a shard job generated (None for an unsharded run)."""
    found = shard_of(cfg, n_items)
    if found is None:
        return None
    return {"index": cfg.prompt_shard, "of": cfg.prompt_shards, "items": list(found)}


def init_waveform(cfg: GenerateConfig, res: Resources, plan: ItemPlan) -> dict:
    """The init-audio route's waveform of ``plan``: its best-scored retrieved bank item's
    48 kHz segment window (the retrieval's top hit; a control's own random or donated
    item), read from ``--segments-root`` (or the workflow layout beside the bank)."""
    from rcmg.data.segmenting import ARRAY_48K, SegmentConfig
    from rcmg.generation.conditioning import OptionError
    from rcmg.generation.planning import segments_root

    hits = [h for h in plan.retrieved if h.get("row") is not None]
    if not hits:
        raise OptionError(f"item {plan.item} retrieved no bank item to take the audio of")
    hit = max(hits, key=lambda h: float(h["score"]) if h.get("score") is not None else -2.0)
    row = res.retriever.mapping[int(hit["row"])]
    if row.get("shard") is None or row.get("shard_row") is None:
        raise OptionError(
            f"bank mapping row {hit['row']} has no shard/shard_row: rebuild the bank with "
            "build_bank (the init-audio route reads the item's segment audio)"
        )
    path = segments_root(cfg) / str(row["shard"]) / ARRAY_48K
    if not path.is_file():
        raise OptionError(
            f"{path} does not exist (bank item {hit.get('segment_id')}); pass --segments-root "
            "the folder holding the bank dataset's segment shards"
        )
    wave = np.asarray(np.load(path, mmap_mode="r")[int(row["shard_row"])], dtype=np.float32)
    return {
        "wave": wave,
        "rate": SegmentConfig.sr_clap,
        "row": int(hit["row"]),
        "segment_id": hit.get("segment_id"),
        "score": hit.get("score"),
    }


def batch_request(cfg: GenerateConfig, res: Resources, plans: list[ItemPlan], infos=None):
    """One batch's :class:`~rcmg.generation.families.base.ConditioningRequest`."""
    import torch

    styles = None
    if cfg.uses_style:
        styles = torch.from_numpy(np.stack([p.style for p in plans]).astype(np.float32)).to(
            res.loaded.device
        )
    init_audio = None
    if cfg.init_noise_level is not None:
        init_audio = [init_waveform(cfg, res, p) for p in plans]
    return ConditioningRequest(
        init_audio=init_audio,
        prompts=[p.prompt_used for p in plans],
        negatives=[cfg.negative_prompt] * len(plans),
        do_cfg=cfg.guidance > 1.0,
        options=cfg.condition_options(),
        styles=styles,
        adapter=res.adapter,
        targets=[p.target_deg for p in plans] if cfg.match_angles else None,
        infos=infos,
        negative_given=bool(cfg.negative_prompt),
        audio_prompts=[p.audio_prompt for p in plans] if cfg.uses_audio_prompt else None,
    )


def _run_batch(cfg, res, batch, hooks, timer):
    """Generate one batch; splits its wall time into encode / denoise / decode / vocode."""
    import time

    t0 = time.perf_counter()
    infos: list = []
    request = batch_request(cfg, res, batch, infos)
    kwargs = res.family.conditioning(res.loaded, request)
    if cfg.uses_audio_prompt:
        for plan, info in zip(batch, infos, strict=True):
            plan.conditioning = {**info, "audio_prompt_item": plan.audio_prompt_item}
    if cfg.uses_style:
        for plan, info in zip(batch, infos, strict=True):
            plan.conditioning = info
            if cfg.match_angles:
                info["matched_to"] = {"items_jsonl": cfg.match_angles, "angle_deg": plan.target_deg}
    mid = dict(hooks.seconds)
    t1 = time.perf_counter()
    if cfg.style_guidance:
        loop = dict(
            beta=cfg.style_guidance,
            guidance_scale=cfg.guidance,
            num_inference_steps=cfg.steps,
            audio_length_in_s=cfg.seconds,
            generator=item_generators(batch, cfg.seed, 1),
        )
        audio = res.family.style_guided_audio(res.loaded, request, kwargs, loop)
    else:
        settings = SamplingSettings(
            seconds=cfg.seconds,
            steps=cfg.steps,
            guidance=cfg.guidance,
            n_waveforms=cfg.num_waveforms_per_prompt,
            generators=item_generators(batch, cfg.seed, cfg.num_waveforms_per_prompt),
        )
        audio = res.family.generate(res.loaded, kwargs, settings)
    call_s = time.perf_counter() - t1
    in_call = {k: hooks.seconds[k] - mid[k] for k in ("encode", "decode", "vocode")}
    timer.add("encode", (t1 - t0) + in_call["encode"])
    timer.add("decode", in_call["decode"])
    timer.add("vocode", in_call["vocode"])
    timer.add("denoise", max(call_s - sum(in_call.values()), 0.0))
    audio = np.asarray(audio, dtype=np.float32)
    return audio.reshape(len(batch), cfg.num_waveforms_per_prompt, *audio.shape[1:])


def generate_audio(
    cfg: GenerateConfig, res: Resources, plans: list[ItemPlan], timer: PhaseTimer
) -> tuple[dict, dict]:
    """Generate every non-skipped item; returns ``({item: [n, T] audio}, denoiser stats)``."""
    from tqdm import tqdm

    from rcmg.generation.style_guidance import unet_slots_per_step
    from rcmg.workflow.pause_point import pause_point

    todo = [p for p in plans if p.skip_reason is None]
    audio: dict[int, np.ndarray] = {}
    cuda = res.loaded.device.startswith("cuda")
    ranks = cfg.num_waveforms_per_prompt > 1
    with ModuleHookTimer(res.family.timing_groups(res.loaded.pipe), cuda=cuda) as hooks:
        batches = list(_blocks(todo, cfg.batch))
        bar = tqdm(batches, desc=f"generate {cfg.model_key}/{cfg.condition}", unit="batch")
        for n, batch in enumerate(bar):
            clips = _run_batch(cfg, res, batch, hooks, timer)
            audio.update({p.item: clips[i] for i, p in enumerate(batch)})
            if n == 0:  # a test's deterministic kill point
                pause_point("generate.first_batch", cfg.out_dir)
            if ranks:
                for i, plan in enumerate(batch):
                    plan.rank_scores = res.family.rank_scores(
                        res.loaded, res.clap, plan.prompt_used, clips[i]
                    )
        unet = {
            "unet_forward_s": round(hooks.seconds["unet"], 6),
            "unet_forward_calls": hooks.calls["unet"],
            # batch slots per prompt and step: 2 with CFG, 3 with style guidance
            "unet_slots_per_step": unet_slots_per_step(cfg.guidance, cfg.style_guidance),
        }
    return audio, unet
