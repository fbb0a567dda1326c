"""What one generate job is given and what it builds up: its config, per-item plans and
loaded resources (shared by the job's modules, :mod:`rcmg.generation.job`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rcmg.generation.conditioning import (
    AUDIO_PROMPT_TYPES,
    STYLE_TYPES,
    ConditionOptions,
    option_default,
    options_from,
    style_only_options,
)
from rcmg.generation.prompts import PromptItem

CLAP_DIM = 512


@dataclass
class GenerateConfig:
    model_key: str
    model_id: str
    family: str  # a registered family name or package.module:ClassName (rcmg.generation.families)
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
    # continuation / melody: seconds of the top retrieved item's audio (its 16 kHz segment
    # from the bank dataset's shards under segments_root) given to the model
    prompt_seconds: float = option_default("prompt_seconds")
    # ... whose audio: top (the prompt's top hit), random, mismatched (the controls)
    audio_prompt_source: str = option_default("audio_prompt_source")
    init_noise_level: float | None = option_default("init_noise_level")
    # the bank dataset's segment shards (the init-audio route reads the retrieved items' audio)
    segments_root: str | None = None
    # Controls: match each item's angle to the items.jsonl of the run they control.
    match_angles: str | None = None
    # style guidance beta (rcmg.generation.style_guidance); 0 = off.
    style_guidance: float = 0.0
    # align_check output for this model (families that check alignment) and the threshold.
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
        return self.condition_type in ("prompt_aug", *STYLE_TYPES, *AUDIO_PROMPT_TYPES)

    @property
    def uses_style(self) -> bool:
        return self.condition_type in STYLE_TYPES

    @property
    def uses_audio_prompt(self) -> bool:
        return self.condition_type in AUDIO_PROMPT_TYPES

    @property
    def model_family(self):
        """The :class:`~rcmg.generation.families.base.ModelFamily` this run generates with."""
        from rcmg.generation.families import get_family

        return get_family(self.family)

    @property
    def ranks_with_bank_clap(self) -> bool:
        """Candidates of a family without its own CLAP: ranked by the bank CLAP, in every
        condition alike (the prompt condition included)."""
        return self.num_waveforms_per_prompt > 1 and not self.model_family.own_clap_subfolder


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
    audio_prompt: np.ndarray | None = None  # continuation / melody: 16 kHz [T]
    # ... and which bank item it is: source (top / random / mismatched), row, segment_id
    # (mismatched: the donor item), recorded in the item's conditioning
    audio_prompt_item: dict | None = None

    @property
    def item(self) -> int:
        return self.source.item


@dataclass
class Resources:
    loaded: object  # rcmg.models.pipelines.LoadedPipeline
    family: object = None  # rcmg.generation.families.base.ModelFamily
    clap: object | None = None
    retriever: object | None = None
    adapter: object | None = None
    style_audio: dict = field(default_factory=dict)
    space: dict | None = None  # the verified style space (name, fingerprint), bank conditions
