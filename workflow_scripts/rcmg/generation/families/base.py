"""What a model family must provide: the one interface the jobs call.

The generate job (:mod:`rcmg.generation.job` and the modules it runs), the style
adapter's training (:mod:`rcmg.generation.adapter_training`) and the alignment check
know a model only through a :class:`ModelFamily`. A new generator is one module with one
subclass, plus ``models.<m>.family`` in the config (a registered name, or an import path
``package.module:ClassName``; :mod:`rcmg.generation.families`). Start from
:mod:`rcmg.generation.families.audioldm1` (the smallest real family) or the minimal
family in ``tests/unit/generation/minimal_family.py``.

A family answers, for the orchestrator:

Plan-time traits (class attributes, read while Snakemake parses: no model is loaded)
    ``name``, ``own_clap_subfolder`` (the checkpoint's own full CLAP, audio tower
    included, that the model conditions on; None: queries are embedded by the bank
    CLAP), ``checks_alignment`` (does align_check compare the bank CLAP with the model's
    own text tower), ``style_only_baseline``, ``residual_mix``, ``style_adapters``,
    ``unsupported_knobs`` (sweep knobs that do nothing on it), ``audio_prompt_types``
    (continuation / melody: the retrieved item's audio as a prompt), ``init_audio_route``
    (it takes a retrieval condition's top retrieved item's audio as the initial audio the
    denoising starts from, ``--init-noise-level``: a modifier of the retrieval conditions
    and their controls, not a condition type of its own), ``schedulers`` (the
    ``--scheduler`` names it takes; None: every generic one), ``adapter_target_space``,
    ``ranked_by``, ``angle_sites``, ``adapter_audio_rate`` (which segment array adapter
    training reads, 16 or 48 kHz), ``adapter_scheduler`` (the ``--scheduler`` adapter
    training loads: only its config is used, nothing is sampled).

Loading
    :meth:`load` (HF folder or hub id, dtype, device, scheduler; offline errors name the
    fix), :meth:`sample_rate`, :meth:`channels`, :meth:`timing_groups`.

Prompts and spaces
    :meth:`token_limits` (every tokenizer limit and context budget a prompt must fit),
    :meth:`prompt_context` (the per-item context record, or None),
    :meth:`own_text_embeddings` (its own text space, for the alignment check),
    :meth:`own_clap` (its own CLAP as an embedder, families with ``own_clap_subfolder``),
    :meth:`check_options` (condition options it cannot take, before loading),
    :meth:`condition_problem` (the same for a config condition, while the config is read).

Conditioning and audio
    :meth:`conditioning` (the generation call's conditioning for one batch under every
    condition type: prompt and augmentation as text; retrieval blends, residual mix,
    style-only, controls at a target angle as embeddings, each item's record appended to
    ``request.infos``), :meth:`generate` (one batch of audio ``[B * n, T]`` or
    ``[B * n, C, T]`` at :meth:`sample_rate`), :meth:`style_guided_audio` (style
    guidance's extra branch), :meth:`matched_angle` (the angle a control matches).

Ranking
    :meth:`rank_scores` (each candidate's score with its prompt; by default the bank
    CLAP, ``clap``), :meth:`ranking_clap` (which CLAP that is).

Style adapter
    ``adapter_options`` (its own adapter_training keys, given to the next two as keyword
    arguments), :meth:`adapter_out_dim` (what the 512 -> H adapter maps to), :meth:`adapter_latents`
    (bank audio -> the denoiser's training latents), :meth:`adapter_context`,
    :meth:`adapter_conditioning`, :meth:`baseline_conditioning`, :meth:`denoiser_eps`
    (the denoiser's prediction through the frozen model), :meth:`adapter_loss` (the loss it
    trains by: the denoising MSE by default; a family without diffusion overrides it,
    with ``adapter_loss_description`` and ``adapter_loss_is_stochastic``),
    :meth:`adapter_timesteps`, :meth:`adapter_frozen_modules`, :meth:`adapter_front_end`.
    Every family's adapter is compared on the same held-out arms
    (``adapter_training.ARMS``): :meth:`baseline_conditioning` answers ``labels_text``
    (the model's own text path on the item's label text) and ``untrained`` (the path
    without a trained adapter: the native projection where the model has one; for the
    style-token families, MusicGen and Stable Audio, the unit style vector zero-padded to
    the token width in each token, placed at the adapter's scale).

Provenance
    :meth:`weights_license` (the generator's weights licence, recorded per run).

Every method gets the loaded pipeline (or :class:`~rcmg.models.pipelines.LoadedPipeline`)
it works on; a family holds no state of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class ConditioningRequest:
    """One batch's conditioning inputs, the same for every family.

    ``styles``: ``[B, 512]`` style vectors on the model's device (None for the prompt and
    augmentation conditions); ``options``: the condition's
    :class:`~rcmg.generation.conditioning.ConditionOptions`; ``adapter``: the trained
    style adapter (``adapter: external``) or None; ``targets``: per item, the angle a
    control must turn by (None: ``options.strength_deg`` or the fixed alpha);
    ``infos``: a list that receives one record per item (None: no records);
    ``audio_prompts``: continuation / melody, each item's audio prompt (16 kHz, ``[T]``);
    ``init_audio``: the init-audio route (``init_audio_route`` families, a retrieval
    condition with ``--init-noise-level``), each item's retrieved window (None: off).
    """

    prompts: list[str]
    negatives: list[str]
    do_cfg: bool
    options: object
    styles: object | None = None
    adapter: object | None = None
    targets: list | None = None
    infos: list | None = None
    negative_given: bool = False  # a --negative-prompt was given (not the empty default)
    # continuation / melody: per item the retrieved item's first seconds, 16 kHz mono
    audio_prompts: list | None = None
    # the init-audio route: per item {"wave" [T] float32, "rate", "row", "segment_id", "score"}
    init_audio: list | None = None


@dataclass
class SamplingSettings:
    """The sampling arguments of one batch's generation call."""

    seconds: float
    steps: int
    guidance: float
    n_waveforms: int
    generators: list = field(default_factory=list)


@dataclass
class AdapterContext:
    """Per-item tensors for adapter training, computed once (no grad) by the family.

    ``latents`` ``[N, ...]`` the items' training latents; ``x`` ``[N, 512]`` their bank
    rows; ``labels`` / ``untrained`` the two baselines' conditioning (the model's own text
    path on the item's label text; the path without a trained adapter); ``extra`` what
    else the family's denoiser call needs per item.
    """

    latents: object
    x: object
    labels: object
    untrained: object
    extra: dict = field(default_factory=dict)


class ModelFamily:
    """The interface of a model family (see the module docstring for the whole list)."""

    name: ClassVar[str] = ""
    own_clap_subfolder: ClassVar[str | None] = None
    checks_alignment: ClassVar[bool] = False
    style_only_baseline: ClassVar[bool] = False
    residual_mix: ClassVar[bool] = False
    style_adapters: ClassVar[tuple[str, ...]] = ("none", "native", "external")
    unsupported_knobs: ClassVar[tuple[str, ...]] = ()
    # adapter_training keys beyond the generic ones that shape its adapter (e.g. MusicGen's
    # style_tokens); passed to adapter_out_dim / adapter_context as keyword arguments
    adapter_options: ClassVar[tuple[str, ...]] = ()
    # which of kinds.AUDIO_PROMPT_TYPES (the retrieved item's audio as a prompt) it takes
    audio_prompt_types: ClassVar[tuple[str, ...]] = ()
    adapter_target_space: ClassVar[str] = ""
    ranked_by: ClassVar[str] = "the bank CLAP (--clap-model)"
    # conditioning record's ``site`` -> the ``angles_deg`` key a control matches
    angle_sites: ClassVar[dict[str, str]] = {}
    # what adapter_config.json says the adapter is trained by (adapter_loss)
    adapter_loss_description: ClassVar[str] = (
        "mean((eps_pred - eps)^2) of the frozen UNet on the item's own latent "
        "(z_t = scheduler.add_noise(z0, eps, t), t uniform); only the adapter trains"
    )
    # False: the loss draws no timestep or noise (one held-out draw per item is exact)
    adapter_loss_is_stochastic: ClassVar[bool] = True
    schedulers: ClassVar[tuple[str, ...] | None] = None  # None: the generic --scheduler names
    init_audio_route: ClassVar[bool] = False  # takes --init-noise-level (retrieved audio)
    adapter_audio_rate: ClassVar[int] = 16_000  # segment array adapter training reads
    adapter_scheduler: ClassVar[str] = "default"  # --scheduler training loads (never samples)

    @classmethod
    def planned_steps(cls, sampling: dict) -> int:
        """Plan-time: the denoising steps one clip of ``sampling`` (a config
        ``models.<m>.sampling``) costs; the cost planner multiplies them by
        ``cost.generate_s_per_step``. Standard library only (Snakemake parses)."""
        return int(sampling["steps"])

    # ---------------------------------------------------------------- loading
    def load(self, model_id: str, device: str, dtype: str, scheduler: str):
        """The loaded model as a :class:`~rcmg.models.pipelines.LoadedPipeline`."""
        raise NotImplementedError

    def sample_rate(self, pipe) -> int:
        raise NotImplementedError

    def channels(self, pipe) -> int:
        return 1

    def timing_groups(self, pipe) -> dict[str, list]:
        """Modules whose forward time is the ``encode``, ``unet`` (denoiser), ``decode``
        and ``vocode`` phases of run_config.json (missing modules are None)."""
        return {"encode": [], "unet": [], "decode": [], "vocode": []}

    # ---------------------------------------------------------------- prompts, spaces
    def token_limits(self, pipe) -> list[tuple[object, int, str]]:
        """``(tokenizer, max tokens, why)`` for every limit a prompt must fit."""
        return []

    def prompt_context(self, pipe, text: str) -> dict | None:
        """The context record of one prompt (items.jsonl ``lm_context``); a record with
        ``fits: False`` skips the item. None: the family has no such budget."""
        return None

    def own_text_embeddings(self, pipe, texts: list[str], device):
        """The model's own text embeddings ``[N, D]`` (the alignment check's second space)."""
        raise NotImplementedError(f"{self.name} has no text tower to check alignment against")

    def condition_problem(self, condition: dict) -> str | None:
        """Why this family cannot take the config condition ``condition`` (its
        ``conditions.<c>`` mapping), or None: checked while the config is read."""
        if condition.get("init_noise_level") is not None and not self.init_audio_route:
            return (
                "init_noise_level (the retrieved item's audio as the pipeline's initial audio) "
                f"is not a route of the {self.name} family; remove it or run the condition on "
                "a family with it (Stable Audio)"
            )
        return self._audio_prompt_problem(condition.get("type"))

    def _audio_prompt_problem(self, condition_type) -> str | None:
        from rcmg.workflow.kinds import AUDIO_PROMPT_TYPES

        if condition_type in AUDIO_PROMPT_TYPES and condition_type not in self.audio_prompt_types:
            takes = ", ".join(self.audio_prompt_types) or "none"
            return (
                f"{condition_type} (the retrieved item's audio as a prompt) is not a condition "
                f"of the {self.name} family (it takes: {takes})"
            )
        return None

    def check_options(self, opts) -> None:
        """Raise :class:`~rcmg.generation.conditioning.OptionError` for condition options
        this family cannot take (checked before anything is loaded)."""
        from rcmg.generation.conditioning import STYLE_TYPES, OptionError

        why = self._audio_prompt_problem(opts.condition_type)
        if why:
            raise OptionError(f"--condition-type {why}")
        if opts.condition_type == "style_only" and not self.style_only_baseline:
            raise OptionError(
                "--condition-type style_only (the style vector alone as the conditioning) is "
                f"not a baseline of the {self.name} family; run it on a family that has it "
                "(style_only_baseline)"
            )
        if getattr(opts, "init_noise_level", None) is not None and not self.init_audio_route:
            raise OptionError(
                f"--init-noise-level (the retrieved audio as initial audio) is not a route of "
                f"the {self.name} family; drop it"
            )
        if opts.condition_type in STYLE_TYPES:
            if opts.adapter not in self.style_adapters:
                raise OptionError(
                    f"retrieval on {self.name} needs "
                    + " or ".join(f"--adapter {a}" for a in self.style_adapters)
                )
            if opts.cond_mix != "none" and not self.residual_mix:
                raise OptionError(
                    f"--cond-mix residual (a residual mix of the conditioning) does not apply to "
                    f"{self.name}; use --cond-mix none"
                )

    # ---------------------------------------------------------------- conditioning, audio
    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        """Keyword arguments of :meth:`generate` that condition one batch."""
        raise NotImplementedError

    def generate(self, loaded, conditioning: dict, settings: SamplingSettings):
        """One batch of audio: ``[B * n_waveforms, T]`` (or ``[..., C, T]``) float."""
        raise NotImplementedError

    def style_guided_audio(self, loaded, request: ConditioningRequest, style_kwargs: dict, loop):
        """Style guidance: audio ``[B, T]`` from ``eps_u + g (eps_c - eps_u) + beta (eps_s -
        eps_c)``, ``eps_s`` under ``style_kwargs`` (this batch's :meth:`conditioning`)."""
        raise NotImplementedError(f"style guidance is not available for {self.name}")

    def weights_license(self, model_id: str) -> dict | None:
        """The generator weights' licence (``license``, ``url``, ``source``, ``note``) as
        run_config.json and ATTRIBUTION.md record it; None: not recorded by this family."""
        return None

    def matched_angle(self, info: dict) -> float:
        """The angle (degrees) of a conditioning record that a control run matches."""
        return float(info["angles_deg"][self.angle_sites[info["site"]]])

    # ---------------------------------------------------------------- ranking
    def ranking_clap(self, model_id, clap_model, clap_subfolder, clap_revision):
        """``(model, subfolder, revision)`` of the CLAP :meth:`rank_scores` uses."""
        if self.own_clap_subfolder:
            return model_id, self.own_clap_subfolder, None
        return clap_model, clap_subfolder, clap_revision

    def own_clap(self, loaded):
        """A :class:`~rcmg.models.clap.ClapEmbedder` of the model's own CLAP, shared with the
        loaded pipeline (families with ``own_clap_subfolder``: ``text_encoder``,
        ``tokenizer`` and ``feature_extractor`` of the pipeline)."""
        from rcmg.models.clap import ClapEmbedder

        return ClapEmbedder.from_pipeline(loaded.pipe, loaded.device)

    def rank_scores(self, loaded, clap, text: str, clips) -> list[float]:
        """Cosine of each of one prompt's candidates ``[n, T]`` with the prompt, by
        ``clap`` (a :class:`~rcmg.models.clap.ClapEmbedder` of the bank CLAP)."""
        import numpy as np

        from rcmg.data.audio_io import resample

        rate = int(clap.sampling_rate)
        source = self.sample_rate(loaded.pipe)
        waves = [resample(np.asarray(c, np.float32), source, rate) for c in clips]
        audio = clap.embed_audio(np.stack(waves))
        words = clap.embed_text([text])
        return [float(x) for x in audio @ words[0]]

    # ---------------------------------------------------------------- style adapter
    def adapter_out_dim(self, pipe) -> int:
        raise NotImplementedError(f"{self.name} has no style adapter")

    def generation_adapter_dim(self, pipe, found: int) -> int:
        """The out_dim a trained adapter must have for generation, given the checkpoint's
        (``found``); by default :meth:`adapter_out_dim` with the family's defaults (a
        family whose adapter shape is an option, MusicGen's K tokens, accepts each)."""
        return int(self.adapter_out_dim(pipe))

    def adapter_front_end(self) -> dict:
        """What turns bank audio into training latents (recorded in adapter_config.json)."""
        return {}

    def adapter_latents(self, pipe, waves, seconds: float, batch: int = 8):
        raise NotImplementedError(f"{self.name} has no style adapter")

    def adapter_context(self, pipe, captions: list[str], latents, x) -> AdapterContext:
        raise NotImplementedError(f"{self.name} has no style adapter")

    def adapter_conditioning(self, direction, ctx: AdapterContext, rows):
        """The conditioning from the adapter's unit output ``direction`` for items ``rows``."""
        raise NotImplementedError(f"{self.name} has no style adapter")

    def baseline_conditioning(self, ctx: AdapterContext, rows, arm: str):
        raise NotImplementedError(f"{self.name} has no style adapter")

    def denoiser_eps(self, pipe, noisy, t, cond, ctx: AdapterContext, rows):
        """The frozen denoiser's prediction under ``cond`` (its training objective's)."""
        raise NotImplementedError(f"{self.name} has no style adapter")

    def adapter_timesteps(self, pipe) -> int:
        """How many training timesteps ``t`` is drawn from (the scheduler's)."""
        return int(pipe.scheduler.config.num_train_timesteps)

    def adapter_frozen_modules(self, pipe) -> list:
        """The modules frozen while the adapter trains."""
        return [pipe.unet, pipe.vae]

    def adapter_loss(self, pipe, z0, noise, t, cond, ctx: AdapterContext, rows):
        """The training loss of items ``rows`` under ``cond`` (a scalar tensor with grad):
        by default the denoising MSE, ``z_t = scheduler.add_noise(z0, noise, t)`` and the
        target ``noise`` (the velocity for ``v_prediction`` schedulers)."""
        import torch.nn.functional as F

        from rcmg.generation.adapter_training import denoising_target

        noisy = pipe.scheduler.add_noise(z0, noise, t)
        eps = self.denoiser_eps(pipe, noisy, t, cond, ctx, rows)
        return F.mse_loss(eps.float(), denoising_target(pipe.scheduler, z0, noise, t).float())
