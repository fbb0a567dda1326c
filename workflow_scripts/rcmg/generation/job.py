"""The generate job: one model load, all prompts in batches, one run directory.

Run directory (``results/runs/{model}/{condition}/seed{seed}/``): generate's files are
staged in a temporary sibling and published only when complete, ``run_config.json``
last (``rcmg.workflow.atomic.atomic_members``); evaluate's files in the same folder are left alone::

    wav/{item:04d}.wav | wav/{item:04d}_w{k}.wav    mono float32 WAV at the vocoder rate
    items.jsonl                                     one row per clip (status ok | skipped)
    style.npy                                       [n_styles, 512] (retrieval only)
    run_config.json, hardware.json

Seeding: every item gets its own CPU ``torch.Generator`` seeded with ``seed + item``
(item = 0-based prompt index in the file, blank/comment lines not counted). With
``num_waveforms_per_prompt = n`` the item's generator is used for its ``n`` latents in
order. Results therefore do not depend on ``--batch`` or on which other prompts share a
batch (up to floating-point batching effects of the BLAS kernels).

Batches are fixed blocks of the prompt file: items ``[b * batch, (b + 1) * batch)`` share
a batch (skipped items leave their block smaller), never "the next ``batch`` items that
were not skipped". Shards (``--prompt-shards K --prompt-shard I``) are contiguous runs of
whole blocks (:func:`shard_ranges`), and every shard plans *all* prompts (retrieval,
mismatched styles, control angles see the whole set) before generating only its own
items: so the gathered shards (:mod:`rcmg.generation.gather`) hold exactly the audio and
items.jsonl rows of the unsharded run, bit for bit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rcmg.generation.conditioning import (
    LM_INPUT_OVERHEAD,
    STYLE_TYPES,
    ConditionOptions,
    OptionError,
    adapt_style,
    aldm1_retrieval_kwargs,
    aldm1_text_embeds,
    aldm2_condition_kwargs,
    effective_adapter,
    lm_context_budget,
    lm_hidden_size,
    option_default,
    options_from,
    style_only_options,
    validate_options,
)
from rcmg.generation.prompts import (
    PromptItem,
    augment_prompt,
    paired_reference_summary,
    read_prompt_file,
    truncate_to_tokens,
)
from rcmg.workflow.atomic import atomic_members, write_json, write_jsonl
from rcmg.workflow.runinfo import ModuleHookTimer, PhaseTimer, code_version, hardware_info

log = logging.getLogger(__name__)

CLAP_DIM = 512
# Where the workflow's reference_stats step writes the FAD reference (config.yaml paths).
DEFAULT_REFERENCE_STATS = "data/processed/reference/ref_stats.npz"


@dataclass
class GenerateConfig:
    model_key: str
    model_id: str
    pipeline: str
    condition: str
    condition_type: str
    prompts: str
    out_dir: str
    seed: int = 42
    steps: int = 200
    guidance: float = 3.2
    seconds: float = 10.0
    batch: int = 2
    dtype: str = "auto"
    scheduler: str = "default"
    negative_prompt: str = ""
    num_waveforms_per_prompt: int = 1
    device: str = "auto"
    clap_model: str | None = None
    # the style space (config models.<m>.style_space): its CLAP's subfolder/revision, its
    # name and the records of the jobs that embedded it (their weight fingerprints)
    clap_subfolder: str = ""
    clap_revision: str | None = None
    # The evaluation judge's CLAP (evaluation.clap.model): only to warn when candidates
    # are ranked by the judge itself (ranking by the judge inflates its scores).
    judge_clap: str | None = None
    style_space: str | None = None
    space_records: list[str] = field(default_factory=list)
    bank: str | None = None
    bank_mapping: str | None = None
    index: str | None = None
    aug_topk: int = option_default("aug_topk")
    aug_max_tags: int = option_default("aug_max_tags")
    style_topk: int = option_default("style_topk")
    style_temp: float = option_default("style_temp")
    blend: str = option_default("blend")
    alpha: float = option_default("alpha")
    adapter: str = option_default("adapter")
    adapter_checkpoint: str | None = option_default("adapter_checkpoint")
    cond_mix: str = option_default("cond_mix")
    cond_mix_beta: float = option_default("cond_mix_beta")
    strength_deg: float | None = option_default("strength_deg")
    # Controls: match each item's angle to the items.jsonl of the run they control.
    match_angles: str | None = None
    # AudioLDM1 style guidance beta (rcmg.generation.style_guidance); 0 = off.
    style_guidance: float = 0.0
    # align_check output for this model (AudioLDM1) and the refusal threshold.
    alignment: str | None = None
    min_alignment_cosine: float | None = None
    # Sharding: this job generates the items of shard ``prompt_shard`` of ``prompt_shards``
    # (None: all of them, an unsharded run); see shard_ranges.
    prompt_shards: int = 1
    prompt_shard: int | None = None
    # Subset (config sweeps.prompts, sweep points and their matched baselines only): this
    # run generates a seeded draw of this many prompts, keeping their item indices, so
    # runs with the same count and seed pair item by item (see prompt_subset).
    prompt_subset: int | None = None
    prompt_subset_seed: int = 0
    command: str = ""

    def condition_options(self) -> ConditionOptions:
        opts = options_from(self)
        return style_only_options(opts) if self.condition_type == "style_only" else opts

    @property
    def needs_bank(self) -> bool:
        return self.condition_type in ("prompt_aug", *STYLE_TYPES)

    @property
    def uses_style(self) -> bool:
        return self.condition_type in STYLE_TYPES

    @property
    def ranks_with_bank_clap(self) -> bool:
        """AudioLDM1 with candidates: ranked by the bank CLAP (it has no audio tower), in
        every condition alike (the prompt condition included)."""
        return self.num_waveforms_per_prompt > 1 and self.pipeline == "audioldm1"


@dataclass
class ItemPlan:
    """What will be generated for one prompt (decided before any denoising)."""

    source: PromptItem
    prompt_used: str
    style_source: str = "none"
    style: np.ndarray | None = None
    retrieved: list[dict] = field(default_factory=list)
    augment_tags: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    truncated: bool = False
    lm_context: dict | None = None
    conditioning: dict | None = None  # retrieval: alpha, prompt-style cosine, angles
    rank_scores: list[float] | None = None  # num_waveforms_per_prompt > 1: own-CLAP scores
    query: np.ndarray | None = None  # the prompt's CLAP text embedding (bank conditions)
    target_deg: float | None = None  # controls: the angle of the run they control

    @property
    def item(self) -> int:
        return self.source.item


@dataclass
class Resources:
    loaded: object  # rcmg.models.pipelines.LoadedPipeline
    clap: object | None = None
    retriever: object | None = None
    adapter: object | None = None
    style_audio: dict = field(default_factory=dict)
    space: dict | None = None  # the verified style space (name, fingerprint), bank conditions


# ------------------------------------------------------------------ validation


def _check_numbers(cfg: GenerateConfig) -> None:
    checks = [
        (cfg.steps >= 1, f"--steps must be >= 1, got {cfg.steps}"),
        (cfg.batch >= 1, f"--batch must be >= 1, got {cfg.batch}"),
        (cfg.seconds > 0, f"--seconds must be > 0, got {cfg.seconds}"),
        (cfg.num_waveforms_per_prompt >= 1, "--num-waveforms-per-prompt must be >= 1"),
        (cfg.seed >= 0, f"--seed must be >= 0, got {cfg.seed}"),
        (cfg.style_guidance >= 0, "--style-guidance must be >= 0"),
        (cfg.prompt_shards >= 1, f"--prompt-shards must be >= 1, got {cfg.prompt_shards}"),
        (
            cfg.prompt_subset is None or cfg.prompt_subset >= 1,
            f"--prompt-subset must be >= 1 (prompts to draw), got {cfg.prompt_subset}",
        ),
        (
            cfg.prompt_shard is None or 0 <= cfg.prompt_shard < cfg.prompt_shards,
            f"--prompt-shard must be in [0, --prompt-shards={cfg.prompt_shards}), "
            f"got {cfg.prompt_shard}",
        ),
        (
            cfg.prompt_shard is not None or cfg.prompt_shards == 1,
            "--prompt-shards > 1 needs --prompt-shard (which shard this job generates)",
        ),
    ]
    if cfg.ranks_with_bank_clap:
        checks.append(
            (
                bool(cfg.clap_model),
                "AudioLDM1 with --num-waveforms-per-prompt > 1 ranks its candidates by "
                "--clap-model (it has no audio tower): pass the bank CLAP",
            )
        )
    if cfg.style_guidance:
        checks += [
            (
                cfg.condition_type in STYLE_TYPES,
                "--style-guidance applies to style conditions (retrieval, controls)",
            ),
            (cfg.guidance > 1.0, "--style-guidance builds on CFG: use --guidance > 1"),
            (
                cfg.num_waveforms_per_prompt == 1,
                "--style-guidance needs --num-waveforms-per-prompt 1",
            ),
        ]
    for ok, message in checks:
        if not ok:
            raise OptionError(message)


def _check_bank_files(cfg: GenerateConfig) -> None:
    """The bank is needed; its mapping and index are optional (a bare ``.npy`` bank gets
    synthetic mapping rows and an exact index built on the fly)."""
    if not cfg.bank:
        raise OptionError(f"--condition-type {cfg.condition_type} needs --bank (or --style_bank)")
    for flag, value in (
        ("--bank", cfg.bank),
        ("--bank-mapping", cfg.bank_mapping),
        ("--index", cfg.index),
    ):
        if value and not Path(value).is_file():
            raise OptionError(
                f"{flag} {value} does not exist; build it with the build_bank/build_index steps"
            )
    if not cfg.clap_model:
        raise OptionError(
            f"--condition-type {cfg.condition_type} needs --clap-model (the bank's CLAP model)"
        )


def alignment_summary(cfg: GenerateConfig) -> dict | None:
    """The align_check figures (without the per-text list) for run_config.json."""
    if not cfg.alignment:
        return None
    import json

    figures = json.loads(Path(cfg.alignment).read_text())
    return {k: v for k, v in figures.items() if k != "per_text"}


def check_alignment(cfg: GenerateConfig) -> None:
    """Refuse a style condition whose bank space does not match the model's (align_check)."""
    if not cfg.alignment or cfg.min_alignment_cosine is None or not cfg.uses_style:
        return
    if cfg.adapter == "external":  # the trained adapter is the map between the spaces
        return
    fig = alignment_summary(cfg)
    if fig["cosine_median"] < cfg.min_alignment_cosine:
        raise OptionError(
            f"{cfg.alignment}: the bank CLAP ({fig['clap_model']}) and {cfg.model_id}'s own text "
            f"tower do not share a space (median per-text cosine {fig['cosine_median']:.3f} < "
            f"{cfg.min_alignment_cosine}; Procrustes residual {fig['procrustes_residual']:.3f}, "
            f"CKA {fig['linear_cka']:.3f}: {fig['verdict']}); a style from the bank would not mean "
            "the same thing in the model's conditioning. Use adapter: external (a trained map), "
            "embed the bank with the model's own CLAP, or lower alignment.min_cosine knowingly"
        )


def validate_config(cfg: GenerateConfig) -> None:
    """Every check that needs no model: raises before anything is loaded or generated."""
    _check_numbers(cfg)
    check_alignment(cfg)
    validate_options(cfg.condition_options())
    if cfg.needs_bank:
        _check_bank_files(cfg)
    for record in cfg.space_records:
        if not Path(record).is_file():
            raise OptionError(
                f"--space-record {record} does not exist; embed the style space "
                f"{cfg.style_space} first (space_embed, or clap_embed for the bank's space)"
            )
    if cfg.space_records and not cfg.style_space:
        raise OptionError("--space-record needs --style-space (the space the records embed)")
    if cfg.match_angles and not Path(cfg.match_angles).is_file():
        raise OptionError(
            f"--match-angles {cfg.match_angles} does not exist; generate the retrieval run it "
            "controls first (its items.jsonl)"
        )
    if cfg.adapter == "external" and cfg.uses_style:
        from rcmg.generation.adapter import read_safetensors_header

        read_safetensors_header(cfg.adapter_checkpoint)


def _read_style_audio(items: list[PromptItem]) -> dict[int, tuple[np.ndarray, int]]:
    from rcmg.data.audio_io import read_audio

    return {it.item: read_audio(it.style.audio_path) for it in items if it.style.kind == "audio"}


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


# ------------------------------------------------------------------ loading


def load_resources(cfg: GenerateConfig, items: list[PromptItem]) -> Resources:
    """Load the pipeline once, plus CLAP / retriever / adapter when the condition needs them."""
    from rcmg.models.pipelines import load_pipeline

    retriever = style_audio = None
    if cfg.needs_bank:
        from rcmg.bank.retrieval import StyleRetriever

        retriever = StyleRetriever(cfg.bank, cfg.bank_mapping, cfg.index)
        if retriever.dim != CLAP_DIM:
            raise OptionError(
                f"bank {cfg.bank} has dim {retriever.dim}; expected CLAP dim {CLAP_DIM}"
            )
        space = verify_style_space(cfg, [m.get("segment_id") for m in retriever.mapping])
    if cfg.uses_style:
        style_audio = _read_style_audio(items)
    loaded = load_pipeline(cfg.model_id, cfg.pipeline, cfg.device, cfg.dtype, cfg.scheduler)
    res = Resources(loaded=loaded, retriever=retriever, style_audio=style_audio or {})
    if cfg.needs_bank:
        from rcmg.models.clap import ClapEmbedder

        res.space = space
        if conditions_in_own_clap(cfg):  # the conditioning CLAP itself embeds the queries
            res.clap = ClapEmbedder.from_pipeline(loaded.pipe, loaded.device)
        else:
            res.clap = ClapEmbedder(
                cfg.clap_model,
                device=loaded.device,
                dtype="float32",
                subfolder=cfg.clap_subfolder,
                revision=cfg.clap_revision,
            )
        if res.clap.dim != retriever.dim:
            raise OptionError(
                f"CLAP model {cfg.clap_model} has dim {res.clap.dim} but bank {cfg.bank} has {retriever.dim}"
            )
    if cfg.ranks_with_bank_clap and res.clap is None:
        from rcmg.models.clap import ClapEmbedder

        res.clap = ClapEmbedder(
            cfg.clap_model,
            device=loaded.device,
            dtype="float32",
            subfolder=cfg.clap_subfolder,
            revision=cfg.clap_revision,
        )
    if cfg.uses_style and cfg.adapter == "external":
        res.adapter = _load_external_adapter(cfg, loaded)
    return res


def conditions_in_own_clap(cfg: GenerateConfig) -> bool:
    """AudioLDM2 with a declared space: its own ``text_encoder`` (a full ClapModel) is the
    conditioning CLAP and the space's CLAP; it embeds the queries (and audio styles)."""
    return bool(cfg.style_space) and cfg.pipeline == "audioldm2"


def conditioning_clap(cfg: GenerateConfig) -> tuple[str, dict]:
    """(label, fingerprint) of the CLAP whose space the style vectors must live in.

    AudioLDM2: the pipeline's own ``text_encoder`` (it turns the prompt into the CLAP token
    the style is blended into). AudioLDM1 (no audio tower): the CLAP that embeds the
    queries, the space's own; whether it matches the model's text tower is the alignment
    check's question.
    """
    from rcmg.models.fingerprint import clap_space_fingerprint

    if conditions_in_own_clap(cfg):
        return f"{cfg.model_id}/text_encoder", clap_space_fingerprint(cfg.model_id, "text_encoder")
    sub = f"/{cfg.clap_subfolder}" if cfg.clap_subfolder else ""
    return f"{cfg.clap_model}{sub}", clap_space_fingerprint(
        cfg.clap_model, cfg.clap_subfolder, cfg.clap_revision
    )


def verify_style_space(cfg: GenerateConfig, segment_ids: list) -> dict:
    """Check the declared style space against the weights: the fingerprint recorded by
    every job that embedded the space must be the conditioning CLAP's, and the space must
    hold the bank mapping's items in order. Returns what run_config/items record."""
    import json

    from rcmg.bank.spaces import segment_ids_digest

    label, fingerprint = conditioning_clap(cfg)
    out = {
        "name": cfg.style_space,
        "conditioning_clap": label,
        "fingerprint": fingerprint["sha256"],
        "fingerprint_tensors": fingerprint["tensors"],
        "records": list(cfg.space_records),
        "verified": False,
    }
    if not cfg.style_space:
        out["note"] = "no --style-space declared: the bank's space is not checked"
        return out
    if fingerprint["sha256"] is None:
        raise OptionError(
            f"cannot fingerprint {label}, the conditioning CLAP of {cfg.model_key} "
            f"({fingerprint['reason']}); give a local folder or a model in the HF cache"
        )
    digest = segment_ids_digest(segment_ids)
    for path in cfg.space_records:
        record = json.loads(Path(path).read_text())
        made_by = record.get("fingerprint") or {}
        if made_by.get("sha256") != fingerprint["sha256"]:
            model = made_by.get("model", "?") + (
                f"/{made_by['subfolder']}" if made_by.get("subfolder") else ""
            )
            raise OptionError(
                f"style space '{cfg.style_space}' ({path}) was embedded with {model} (weights "
                f"sha256 {str(made_by.get('sha256'))[:12]}) but {cfg.model_key}'s conditioning "
                f"CLAP is {label} (sha256 {fingerprint['sha256'][:12]}): its style vectors "
                "would be blended into another space. Fix models."
                f"{cfg.model_key}.style_space (own_text_encoder for AudioLDM2), or re-embed the "
                "space if its weights changed (snakemake --forcerun space_embed / clap_embed)"
            )
        if record.get("segment_ids_sha256") not in (None, digest):
            raise OptionError(
                f"style space '{cfg.style_space}' ({path}) holds other bank items than "
                f"{cfg.bank_mapping}; re-embed it from this bank (space_embed)"
            )
    out.update(verified=True, segment_ids_sha256=digest)
    return out


def _load_external_adapter(cfg: GenerateConfig, loaded):
    from rcmg.generation.adapter import load_adapter

    out_dim = lm_hidden_size(loaded.pipe) if cfg.pipeline == "audioldm2" else CLAP_DIM
    return load_adapter(
        cfg.adapter_checkpoint, expected_in=CLAP_DIM, expected_out=out_dim, device=loaded.device
    )


# ------------------------------------------------------------------ planning


def token_limits(pipe, family: str) -> list[tuple[object, int, str]]:
    """``(tokenizer, max tokens, why)`` for every limit a prompt must fit.

    Each text tokenizer's ``model_max_length``; for AudioLDM2 also the T5 tokens the
    language model's context leaves (:func:`rcmg.generation.conditioning.lm_context_budget`).
    """
    from rcmg.models.pipelines import pipeline_tokenizers

    limits = [
        (tok, int(tok.model_max_length), f"{type(tok).__name__} max length")
        for tok in pipeline_tokenizers(pipe)
    ]
    if family == "audioldm2":
        budget = lm_context_budget(pipe)
        limits.append(
            (
                pipe.tokenizer_2,
                budget["t5_token_limit"],
                f"language-model context ({budget['n_positions']} positions, "
                f"{budget['max_new_tokens']} generated)",
            )
        )
    return limits


def _truncate_for_pipeline(text: str, limits) -> tuple[str, list[str]]:
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


def lm_context(pipe, text: str) -> dict:
    """What GPT-2 will see for ``text`` (AudioLDM2): recorded per item in items.jsonl."""
    budget = lm_context_budget(pipe)
    tok = pipe.tokenizer_2
    n_t5 = len(tok(text, truncation=True, max_length=tok.model_max_length)["input_ids"])
    used = n_t5 + LM_INPUT_OVERHEAD + budget["max_new_tokens"]
    return {
        **budget,
        "t5_tokens": n_t5,
        "lm_positions_used": used,
        "fits": used <= budget["n_positions"],
    }


def _usable(vector: np.ndarray | None) -> bool:
    return (
        vector is not None
        and bool(np.all(np.isfinite(vector)))
        and float(np.linalg.norm(vector)) > 1e-8
    )


def _hit_dict(hit, score=None) -> dict:
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
    limits = token_limits(res.loaded.pipe, cfg.pipeline)
    plans = []
    for it in items:
        text, notes = _truncate_for_pipeline(it.prompt, limits)
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
    elif cfg.uses_style:
        _plan_styles(cfg, [p for p in plans if p.skip_reason is None], res, timer)
        if cfg.condition_type == "retrieval_random":
            _plan_random_styles(cfg, plans, res)
        elif cfg.condition_type == "retrieval_mismatched":
            _plan_mismatched_styles(plans)
        if cfg.match_angles:
            _plan_matched_angles(cfg, plans)
    if cfg.pipeline == "audioldm2":
        for plan in plans:
            plan.lm_context = lm_context(res.loaded.pipe, plan.prompt_used)
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
        if not _usable(query):
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
        plan.retrieved = [_hit_dict(h) for h in hits]


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
        if not _usable(query):
            plan.skip_reason = (
                "CLAP text embedding of the prompt is zero/NaN; cannot query the bank"
            )
            continue
        with timer.phase("retrieve"):
            found = retrieved_style(res.retriever, query, cfg.style_topk, cfg.style_temp)
            plan.retrieved = [_hit_dict(h) for h in found.hits]
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
        if plan.skip_reason is None and not _usable(plan.style):
            plan.skip_reason = f"style vector ({plan.style_source}) is NaN or zero; check the bank/audio it came from"


def _plan_random_styles(cfg, plans, res) -> None:
    """``retrieval_random``: the style of ``style_topk`` bank rows drawn at random (seeded
    by run seed and item), weighted by their scores to the prompt like retrieved hits."""
    from rcmg.bank.blend import style_vector

    n = len(res.retriever)
    for plan in plans:
        if plan.skip_reason is not None or plan.style_source != "bank":
            continue
        rng = np.random.default_rng([int(cfg.seed), plan.item, 0x5EED])
        rows = sorted(int(r) for r in rng.choice(n, size=min(cfg.style_topk, n), replace=False))
        vectors = np.asarray(res.retriever.bank[rows], np.float32)
        query = plan.query / np.linalg.norm(plan.query)
        scores = vectors @ query / np.linalg.norm(vectors, axis=1)
        plan.retrieved = [
            _hit_dict(res.retriever.hit(r, float(sc))) for r, sc in zip(rows, scores, strict=True)
        ]
        plan.style = _safe_style(plan, style_vector, vectors, scores, cfg.style_temp)
        plan.style_source = "bank_random"


def _plan_mismatched_styles(plans) -> None:
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


def _plan_matched_angles(cfg, plans) -> None:
    """Controls turn each item by the angle the controlled retrieval run turned it by."""
    from rcmg.workflow.atomic import read_jsonl

    site = {"clap_class_embedding": "cond", "clap_token": "clap", "lm_tokens": "lm_tokens_mean"}
    matched = {}
    for row in read_jsonl(cfg.match_angles):
        info = row.get("conditioning")
        if row.get("status") == "ok" and info and row.get("waveform_index", 0) == 0:
            matched[int(row["item"])] = float(info["angles_deg"][site[info["site"]]])
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


def _safe_style(plan: ItemPlan, style_vector, vectors, scores, temperature):
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
        plan.style = _safe_style(plan, style_vector, vectors, np.zeros(len(rows)), 1.0)


def _plan_audio_style(plan: ItemPlan, res: Resources, timer) -> None:
    from rcmg.data.audio_io import resample

    plan.style_source = "audio"
    wave, sr = res.style_audio[plan.item]
    with timer.phase("encode"):
        wave48 = resample(wave, sr, res.clap.sampling_rate)
        plan.style = res.clap.embed_audio(wave48[None, :])[0]
    plan.retrieved = []


# ------------------------------------------------------------------ generation


def item_generators(plans: list[ItemPlan], seed: int, n_waveforms: int) -> list:
    """One CPU generator per item (seed + item), repeated for the item's waveforms."""
    import torch

    gens = []
    for plan in plans:
        g = torch.Generator(device="cpu").manual_seed(int(seed) + plan.item)
        gens.extend([g] * n_waveforms)
    return gens


def condition_kwargs(
    cfg: GenerateConfig, res: Resources, plans: list[ItemPlan], infos: list | None = None
) -> dict:
    """The conditioning part of the pipeline call for one batch (``infos``: per-item records)."""
    import torch

    loaded = res.loaded
    prompts = [p.prompt_used for p in plans]
    negatives = [cfg.negative_prompt] * len(plans)
    do_cfg = cfg.guidance > 1.0
    styles = None
    targets = [p.target_deg for p in plans] if cfg.match_angles else None
    if cfg.uses_style:
        styles = torch.from_numpy(np.stack([p.style for p in plans]).astype(np.float32)).to(
            loaded.device
        )
    if cfg.pipeline == "audioldm2":
        opts = cfg.condition_options()
        return aldm2_condition_kwargs(
            loaded.pipe,
            prompts,
            negatives,
            loaded.device,
            do_cfg,
            styles,
            opts,
            res.adapter,
            infos,
            targets,
        )
    if styles is None:
        return {"prompt": prompts, "negative_prompt": negatives if cfg.negative_prompt else None}
    if res.adapter is not None:
        styles = adapt_style(res.adapter, styles)
    with torch.no_grad():
        return aldm1_retrieval_kwargs(
            loaded.pipe,
            prompts,
            negatives,
            loaded.device,
            do_cfg,
            styles,
            cfg.condition_options(),
            infos,
            targets,
        )


def _hook_groups(pipe) -> dict[str, list]:
    vae = pipe.vae
    encoders = ["text_encoder", "text_encoder_2", "projection_model", "language_model"]
    return {
        "encode": [getattr(pipe, n, None) for n in encoders],
        "unet": [pipe.unet],
        "decode": [getattr(vae, "post_quant_conv", None), vae.decoder],
        "vocode": [pipe.vocoder],
    }


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


def _run_batch(cfg, res, batch, hooks, timer):
    """Generate one batch; splits its wall time into encode / denoise / decode / vocode."""
    import time

    t0 = time.perf_counter()
    infos: list = []
    kwargs = condition_kwargs(cfg, res, batch, infos)
    if cfg.uses_style:
        for plan, info in zip(batch, infos, strict=True):
            plan.conditioning = info
            if cfg.match_angles:
                info["matched_to"] = {"items_jsonl": cfg.match_angles, "angle_deg": plan.target_deg}
    mid = dict(hooks.seconds)
    t1 = time.perf_counter()
    if cfg.style_guidance:
        audio = _style_guided_batch(cfg, res, batch, kwargs)
    else:
        audio = _pipeline_batch(cfg, res, batch, kwargs)
    call_s = time.perf_counter() - t1
    in_call = {k: hooks.seconds[k] - mid[k] for k in ("encode", "decode", "vocode")}
    timer.add("encode", (t1 - t0) + in_call["encode"])
    timer.add("decode", in_call["decode"])
    timer.add("vocode", in_call["vocode"])
    timer.add("denoise", max(call_s - sum(in_call.values()), 0.0))
    return np.asarray(audio, dtype=np.float32).reshape(len(batch), cfg.num_waveforms_per_prompt, -1)


def _style_guided_batch(cfg, res, batch, kwargs):
    """Style guidance: eps_c from the prompt's own conditioning, eps_s from the blended one
    (``kwargs``, the style condition's)."""
    import torch

    from rcmg.generation.style_guidance import aldm1_style_guided, aldm2_style_guided

    pipe, device = res.loaded.pipe, res.loaded.device
    prompts = [p.prompt_used for p in batch]
    negatives = [cfg.negative_prompt] * len(batch)
    loop = dict(
        beta=cfg.style_guidance,
        guidance_scale=cfg.guidance,
        num_inference_steps=cfg.steps,
        audio_length_in_s=cfg.seconds,
        generator=item_generators(batch, cfg.seed, 1),
    )
    if cfg.pipeline == "audioldm2":
        own = aldm2_condition_kwargs(pipe, prompts, negatives, device, True)
        return aldm2_style_guided(pipe, prompt_kwargs=own, style_kwargs=kwargs, **loop)
    with torch.no_grad():
        cond, _ = aldm1_text_embeds(pipe, prompts, negatives, device, True)
    return aldm1_style_guided(
        pipe,
        prompt_embeds=cond,
        negative_prompt_embeds=kwargs["negative_prompt_embeds"],
        style_embeds=kwargs["prompt_embeds"],
        **loop,
    )


def _pipeline_batch(cfg, res, batch, kwargs):
    return res.loaded.pipe(
        audio_length_in_s=cfg.seconds,
        num_inference_steps=cfg.steps,
        guidance_scale=cfg.guidance,
        num_waveforms_per_prompt=cfg.num_waveforms_per_prompt,
        generator=item_generators(batch, cfg.seed, cfg.num_waveforms_per_prompt),
        output_type="np",
        **kwargs,
    ).audios


def generate_audio(
    cfg: GenerateConfig, res: Resources, plans: list[ItemPlan], timer: PhaseTimer
) -> tuple[dict, dict]:
    """Generate every non-skipped item; returns ``({item: [n, T] audio}, unet stats)``."""
    from tqdm import tqdm

    todo = [p for p in plans if p.skip_reason is None]
    audio: dict[int, np.ndarray] = {}
    cuda = res.loaded.device.startswith("cuda")
    with ModuleHookTimer(_hook_groups(res.loaded.pipe), cuda=cuda) as hooks:
        batches = list(_blocks(todo, cfg.batch))
        for batch in tqdm(batches, desc=f"generate {cfg.model_key}/{cfg.condition}", unit="batch"):
            clips = _run_batch(cfg, res, batch, hooks, timer)
            audio.update({p.item: clips[i] for i, p in enumerate(batch)})
            if cfg.num_waveforms_per_prompt > 1 and cfg.pipeline == "audioldm2":
                for i, plan in enumerate(batch):
                    plan.rank_scores = own_clap_scores(res.loaded.pipe, plan.prompt_used, clips[i])
            elif cfg.ranks_with_bank_clap:
                rate = int(res.loaded.pipe.vocoder.config.sampling_rate)
                for i, plan in enumerate(batch):
                    plan.rank_scores = embedder_scores(res.clap, plan.prompt_used, clips[i], rate)
        from rcmg.generation.style_guidance import unet_slots_per_step

        unet = {
            "unet_forward_s": round(hooks.seconds["unet"], 6),
            "unet_forward_calls": hooks.calls["unet"],
            # batch slots per prompt and step: 2 with CFG, 3 with style guidance
            "unet_slots_per_step": unet_slots_per_step(cfg.guidance, cfg.style_guidance),
        }
    return audio, unet


RANKED_BY = {
    "audioldm2": "the model's own CLAP (AudioLDM2Pipeline.text_encoder, HTSAT-base), not the evaluation judge",
    # AudioLDM1's text_encoder is ClapTextModelWithProjection, "specifically the
    # laion/clap-htsat-unfused variant" (diffusers AudioLDMPipeline docstring): no audio
    # tower, so the bank CLAP (clap.model, that model in config.yaml) scores the audio.
    "audioldm1": "the bank CLAP (--clap-model; AudioLDM1 has no audio tower)",
}
RANKING_SCOPE = "within prompt"


def embedder_scores(embedder, text: str, clips: np.ndarray, sample_rate: int) -> list[float]:
    """Cosine of each of one prompt's candidates ``[n, T]`` (at ``sample_rate``) with that
    prompt, by a :class:`ClapEmbedder` (the bank CLAP for AudioLDM1): the clips are
    resampled to the embedder's rate (48 kHz for CLAP), as ``own_clap_scores`` does."""
    from rcmg.data.audio_io import resample

    rate = int(embedder.sampling_rate)
    waves = [resample(np.asarray(c, np.float32), sample_rate, rate) for c in clips]
    audio = embedder.embed_audio(np.stack(waves))
    words = embedder.embed_text([text])
    return [float(x) for x in audio @ words[0]]


def _model_key(ref: str | None) -> str | None:
    """A model id/path compared as the same model: revision dropped, folders resolved."""
    if not ref:
        return None
    from rcmg.models.hf_loading import split_revision

    name = str(split_revision(str(ref))[0]).rstrip("/")
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def ranking_record(cfg: GenerateConfig) -> dict | None:
    """Which CLAP ranked the candidates (``run_config.ranking``); None for one waveform.

    ``warning`` is set when that CLAP is the evaluation judge's model (same id/path):
    ranking by the judge inflates the judge's own scores of the ranked candidates.
    """
    if cfg.num_waveforms_per_prompt <= 1:
        return None
    from rcmg.models.fingerprint import clap_space_fingerprint

    if cfg.pipeline == "audioldm2":
        model, sub, rev = cfg.model_id, "text_encoder", None
    else:
        model, sub, rev = cfg.clap_model, cfg.clap_subfolder, cfg.clap_revision
    clap = f"{model}/{sub}" if sub else str(model)
    fingerprint = clap_space_fingerprint(model, sub, rev)
    same = bool(cfg.judge_clap) and _model_key(model) == _model_key(cfg.judge_clap)
    return {
        "clap": clap,
        "revision": rev,
        "fingerprint": fingerprint["sha256"],
        "fingerprint_reason": fingerprint["reason"],
        "by": RANKED_BY[cfg.pipeline],
        "scope": RANKING_SCOPE,
        "text": "prompt_used (the text the model was conditioned on)",
        "score": "cosine of the candidate's CLAP audio embedding with the text's",
        "judge": cfg.judge_clap,
        "warning": (
            f"candidates ranked by the evaluation judge's CLAP ({cfg.judge_clap}): ranking by "
            "the judge inflates its scores of the ranked candidates; set clap.model (the "
            "ranking CLAP) and evaluation.clap.model to different models"
        )
        if same
        else None,
    }


def own_clap_scores(pipe, text: str, clips: np.ndarray) -> list[float]:
    """Cosine of each of one prompt's candidates ``[n, T]`` with that prompt, by the
    pipeline's own CLAP (AudioLDM2). Ranked within the prompt's own group only: upstream
    ``score_waveforms`` sorts across the whole batch and can hand a prompt another
    prompt's waveforms (and it is never called here: prompts go in as embeddings)."""
    import torch

    from rcmg.data.audio_io import resample

    fe = pipe.feature_extractor
    vocoder_sr = int(pipe.vocoder.config.sampling_rate)
    waves = [resample(np.asarray(c, np.float32), vocoder_sr, fe.sampling_rate) for c in clips]
    feats = fe(waves, return_tensors="pt", sampling_rate=fe.sampling_rate).input_features
    param = next(pipe.text_encoder.parameters())
    tok = pipe.tokenizer([text], return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        audio = pipe.text_encoder.get_audio_features(
            input_features=feats.to(param.device, param.dtype)
        )
        words = pipe.text_encoder.get_text_features(
            **{k: v.to(param.device) for k, v in tok.items()}
        )
    audio = getattr(audio, "pooler_output", audio).float()
    words = getattr(words, "pooler_output", words).float()
    cos = (
        torch.nn.functional.normalize(audio, dim=-1)
        @ torch.nn.functional.normalize(words, dim=-1).T
    )
    return [float(x) for x in cos[:, 0].cpu()]


def ranks_within_group(scores: list[float]) -> list[int]:
    """Rank (0 = best) of each candidate among its own prompt's candidates; ties by index."""
    order = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
    ranks = [0] * len(scores)
    for position, k in enumerate(order):
        ranks[k] = position
    return ranks


# ------------------------------------------------------------------ writing


def wav_name(item: int, k: int, n_waveforms: int) -> str:
    """``wav/0007.wav`` (or ``wav/0007_w1.wav``): never derived from the prompt text."""
    return f"wav/{item:04d}.wav" if n_waveforms == 1 else f"wav/{item:04d}_w{k}.wav"


def _style_rows(plans: list[ItemPlan]) -> tuple[np.ndarray | None, dict[int, int]]:
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
                clip.astype(np.float32),
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
        "candidate_ranking": RANKED_BY[cfg.pipeline] if cfg.num_waveforms_per_prompt > 1 else None,
        "device": loaded.device,
        "seeding": "per item: torch.Generator('cpu').manual_seed(seed + item)",
        "sample_rate": int(loaded.pipe.vocoder.config.sampling_rate),
    }


def _distribution(values: list[float]) -> dict:
    v = np.asarray(values, np.float64)
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {
        "n": int(v.size),
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
        if r["status"] == "ok" and r.get("conditioning") and r["waveform_index"] == 0
    ]
    if not ok:
        return {}
    out = {}
    for key in ok[0]["conditioning"]["angles_deg"]:
        out[f"angle_deg.{key}"] = _distribution([r["conditioning"]["angles_deg"][key] for r in ok])
    out["alpha"] = _distribution([r["conditioning"]["alpha"] for r in ok])
    out["prompt_style_cos"] = _distribution([r["conditioning"]["prompt_style_cos"] for r in ok])
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
        "pipeline": cfg.pipeline,
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
        "finished_at": _now(),
        "is_pipeline_check": is_random_weight_model(cfg.model_id),
        # models as ID or ID@REVISION, with what they resolved to (issue 15 item 7)
        "model_revisions": revision_records(
            {"generator": cfg.model_id, "bank_clap": cfg.clap_model}
        ),
        "determinism": determinism_settings(SEEDING),
        "config": asdict(cfg),
    }


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


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# What generate owns in a run folder; evaluate's metrics/, visualizations/ and report.html
# beside them are left to evaluate (and to Snakemake's own output bookkeeping).
RUN_MEMBERS = ("wav", "items.jsonl", "hardware.json", "style.npy", "run_config.json")


def run_generation(cfg: GenerateConfig) -> Path:
    """Validate, load once, plan, generate, and write the run directory atomically."""
    started = _now()
    timer = PhaseTimer()
    prompt_file = read_prompt_file(cfg.prompts)
    validate_config(cfg)
    with timer.phase("load"):
        res = load_resources(cfg, prompt_file.items)
    timer.cuda = res.loaded.device.startswith("cuda")
    plans = plan_items(cfg, prompt_file.items, res, timer)
    found = shard_of(cfg, len(plans))
    if found is not None:
        plans = [p for p in plans if found[0] <= p.item < found[1]]
        log.info(
            "shard %d of %d: items [%d, %d) of %d",
            cfg.prompt_shard,
            cfg.prompt_shards,
            *found,
            len(prompt_file.items),
        )
    if cfg.prompt_subset is not None:
        # after planning every prompt (mismatched styles, control angles see the whole set)
        # drawn from the whole file's items, so every shard keeps its part of one draw
        keep = set(subset_info(cfg, [it.item for it in prompt_file.items])["items"])
        plans = [p for p in plans if p.item in keep]
        log.info("prompt subset: items %s (seed %d)", sorted(keep), cfg.prompt_subset_seed)
    attach_provenance(plans, res.retriever)
    out_dir = Path(cfg.out_dir)
    audio, unet = generate_audio(cfg, res, plans, timer)
    with atomic_members(out_dir, last="run_config.json", owned=RUN_MEMBERS) as tmp:
        with timer.phase("write"):
            write_wavs(
                tmp,
                audio,
                int(res.loaded.pipe.vocoder.config.sampling_rate),
                cfg.num_waveforms_per_prompt,
            )
            styles, style_rows = _style_rows(plans)
            if styles is not None:
                np.save(tmp / "style.npy", styles)
            rows = item_rows(cfg, plans, style_rows)
            record_space(rows, res.space)
            write_jsonl(tmp / "items.jsonl", rows)
            write_json(tmp / "hardware.json", hardware_info(res.loaded.device))
        timings = timer.as_dict()
        write_json(
            tmp / "run_config.json",
            run_config(cfg, res.loaded, prompt_file, rows, timings, unet, started, res.space),
        )
    n_skipped = sum(p.skip_reason is not None for p in plans)
    log.info(
        "wrote %s (%d items, %d skipped) in %.1f s",
        out_dir,
        len(plans),
        n_skipped,
        timings["total"],
    )
    return out_dir


# ------------------------------------------------------------------ evaluation afterwards


def evaluate_script() -> Path:
    """The evaluate step's CLI (the same code the workflow's evaluate rule runs)."""
    return Path(__file__).resolve().parents[2] / "evaluate.py"


def check_evaluation_inputs(reference_stats: str | Path) -> None:
    """Fail before generating when ``--metrics/--report/--visualize`` could not run."""
    if not Path(reference_stats).is_file():
        raise OptionError(
            f"--metrics/--report/--visualize evaluate the run against --reference-stats "
            f"{reference_stats}, which does not exist; build it with the reference_stats step "
            "(snakemake ... reference_stats) or pass --reference-stats FILE"
        )


def evaluate_run(run_dir: Path, clap_model: str, reference_stats, device: str = "auto") -> None:
    """Run ``workflow_scripts/evaluate.py`` on ``run_dir`` (metrics, plots, report.html).

    A subprocess of the evaluate CLI, so the original scripts' ``--metrics --visualize
    --report`` produce exactly what the workflow's evaluate rule produces.
    """
    import subprocess
    import sys

    command = [
        sys.executable,
        str(evaluate_script()),
        "--run-dir",
        str(run_dir),
        "--clap-model",
        str(clap_model),
        "--reference-stats",
        str(reference_stats),
        "--device",
        device,
    ]
    log.info("evaluating %s: %s", run_dir, " ".join(command))
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise OptionError(
            f"evaluation of {run_dir} failed (exit {done.returncode}); rerun "
            f"`{' '.join(command)}` to see why (the generated run is complete)"
        )
