"""Stable Audio Open (``stabilityai/stable-audio-open-1.0``), diffusers ``StableAudioPipeline``.

A ``StableAudioDiTModel`` denoises the latents of an ``AutoencoderOobleck`` (44.1 kHz
stereo, 2048 samples per latent frame, 64 channels; the DiT always runs on its
``sample_size`` = 1024 frames = 47.55 s and the pipeline crops to the asked duration).
The prompt goes through T5 (``google-t5/t5-base``, 128 tokens) and the projection model
(the identity as published: T5 width = conditioning width 768), timing through the
projection model's number conditioners (start and end seconds); the DiT cross-attends to
``[T5 states, start, end]`` and takes ``[start, end]`` as its global states. The
published scheduler is ``CosineDPMSolverMultistepScheduler`` (v-prediction, exponential
sigmas 0.3..500, ``t = atan(sigma) 2 / pi``): its SDE noise needs ``torchsde``;
``--scheduler cosine_ode`` is the same sigmas, preconditioning and timestep conditioning
with the deterministic DPM-Solver++ (no ``torchsde``).

The checkpoint has no CLAP: queries and audio styles are embedded by the bank CLAP
(``--clap-model``; its space is the style space the adapter was trained from), there is
no text tower to check alignment against, and candidates are ranked by the bank CLAP.

* ``prompt`` and ``prompt_aug``: ``prompt=[...]`` (the plain pipeline call; a negative
  prompt only when one is given, so CFG's unconditional branch is the pipeline's zeros).
* ``retrieval`` (and its controls; ``adapter: external`` only): the trained style adapter
  maps the bank's 512-d style to K tokens in the T5 output space the pipeline's
  ``prompt_embeds`` take (``adapter_training.style_tokens``, default
  :data:`STYLE_TOKENS`, at most :data:`MAX_STYLE_TOKENS`; read back from the
  checkpoint's out_dim); they fill the last K of the 128 T5 positions (the prompt is held
  to ``128 - MAX_STYLE_TOKENS`` tokens in every condition, so those are always padding)
  with the attention mask set to 1 there. The T5 states are the
  pipeline's own (``encode_prompt``'s tokenisation); the pipeline projects and masks them.
  Strength: the style tokens' Frobenius norm is ``alpha`` times the prompt's masked T5
  states' norm; the tokens sit on positions the prompt leaves zero, so the whole
  conditioning sequence turns by ``atan(alpha)`` (recorded as ``angles_deg.sequence``;
  ``strength_deg`` solves for it, controls match it). ``alpha = 0`` leaves the mask at 0:
  the prompt condition bit for bit.
* ``init_audio``: the retrieved style's bank item waveform (48 kHz segment, resampled to
  44.1 kHz, mono repeated to stereo as the pipeline does) as ``initial_audio_waveforms``.
* style adapter: trained by the model's own objective, v-prediction on the cosine
  schedule (``x_t = cos(u pi/2) z0 + sin(u pi/2) eps``, target ``cos eps - sin z0``,
  DiT timestep ``u``), through the frozen DiT on the VAE latents (posterior mean) of the
  bank item's audio, with the item's label text in the T5 positions in every arm
  (``adapter_loss``); the baselines are the label text alone, ``untrained`` (the unit
  style vector zero-padded into each of the K tokens, placed at the adapter's scale:
  MusicGen's convention) and the shuffled style.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from rcmg.generation.families.base import AdapterContext, ConditioningRequest, ModelFamily

# the last MAX_STYLE_TOKENS of the 128 T5 positions are held free in every condition (the
# prompt is truncated to 128 - MAX_STYLE_TOKENS tokens); an adapter's K style tokens
# (adapter_training.style_tokens, 1..MAX_STYLE_TOKENS) fill the last K of them
MAX_STYLE_TOKENS = 8
STYLE_TOKENS = 8  # the default K (adapter_training.style_tokens unset)
TRAIN_TOKEN_SCALE = 1.0  # training: ||style tokens|| = this x ||label-text T5 states||
ODE_SCHEDULER = "cosine_ode"
WEIGHTS_LICENSE = {
    "license": "Stability AI Community License",
    "url": "https://huggingface.co/stabilityai/stable-audio-open-1.0/blob/main/LICENSE.md",
    "source": "stabilityai/stable-audio-open-1.0 model card and LICENSE.md",
    "note": "gated on the hub: accept the licence on the model page; commercial use above "
    "the licence's revenue threshold needs a Stability AI enterprise licence",
}
LOSS_DESCRIPTION = (
    "mean((v_pred - v)^2) of the frozen DiT on the item's own VAE latent: v-prediction on "
    "the cosine schedule, x_t = cos(u pi/2) z0 + sin(u pi/2) eps, v = cos(u pi/2) eps - "
    "sin(u pi/2) z0, u = (t + 0.5) / num_train_timesteps with t uniform; only the adapter "
    "trains"
)
TORCHSDE_FIX = (
    "install torchsde (pip install torchsde==0.2.6; pinned in requirements.txt and "
    "envs/torch-gpu.yaml) or run with --scheduler cosine_ode (the same sigmas and timestep "
    "conditioning, deterministic DPM-Solver++)"
)


def ode_scheduler(config: dict):
    """The published scheduler's deterministic twin: ``EDMDPMSolverMultistepScheduler``
    (``dpmsolver++``) with the published sigmas and ``atan`` noise conditioning."""
    from diffusers import EDMDPMSolverMultistepScheduler

    class CosineODEScheduler(EDMDPMSolverMultistepScheduler):
        """EDM DPM-Solver++ with Stable Audio's timestep conditioning ``atan(sigma) 2/pi``."""

        def precondition_noise(self, sigma):
            import math

            import torch

            if not isinstance(sigma, torch.Tensor):
                sigma = torch.tensor([sigma])
            return sigma.atan() / math.pi * 2

    keys = (
        "sigma_min", "sigma_max", "sigma_data", "sigma_schedule", "num_train_timesteps",
        "prediction_type", "rho", "solver_order", "solver_type", "lower_order_final",
        "euler_at_final", "final_sigmas_type",
    )  # fmt: skip
    return CosineODEScheduler(
        **{k: config[k] for k in keys if k in config}, algorithm_type="dpmsolver++"
    )


def _scheduler_config(model_id: str) -> dict:
    """The checkpoint's ``scheduler/scheduler_config.json`` (local folder or HF cache)."""
    import json
    from pathlib import Path

    from rcmg.models.hf_loading import load_pretrained

    def read(source, **kwargs):
        folder = Path(source)
        if folder.is_dir():
            return json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(source, "scheduler/scheduler_config.json", **kwargs)
        return json.loads(Path(path).read_text())

    return load_pretrained(read, model_id)


def t5_states(pipe, texts: list[str], device):
    """T5 hidden states and mask exactly as ``StableAudioPipeline.encode_prompt`` tokenises
    (padded to ``model_max_length``), before the projection model."""
    tok = pipe.tokenizer(
        texts,
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    ids, mask = tok.input_ids.to(device), tok.attention_mask.to(device)
    pipe.text_encoder.eval()
    return pipe.text_encoder(ids, attention_mask=mask)[0], mask


def negative_states(pipe, negatives: list[str], device):
    """The negative branch as ``encode_prompt`` builds it (masked positions zeroed)."""
    import torch

    states, mask = t5_states(pipe, negatives, device)
    return torch.where(mask.to(torch.bool).unsqueeze(2), states, 0.0), mask


def place_tokens(states, mask, tokens, alpha: float):
    """``states`` ``[1, L, D]`` with ``tokens`` ``[1, K, D]`` (unit Frobenius norm) at
    ``alpha`` x the prompt's masked-state norm on the last K positions (mask 1 there)."""
    k = tokens.shape[1]
    states, mask = states.clone(), mask.clone()
    if alpha == 0.0:
        return states, mask
    masked = states * mask.unsqueeze(-1).to(states.dtype)
    scale = float(alpha) * masked.float().norm()
    states[:, -k:] = (tokens.float() * scale).to(states.dtype)
    mask[:, -k:] = 1
    return states, mask


def sequence_angle(states, mask, placed, placed_mask) -> float:
    """The angle (degrees) the masked conditioning sequence turns by."""
    from rcmg.generation.conditioning import angle

    before = (states * mask.unsqueeze(-1).to(states.dtype)).reshape(1, -1)
    after = (placed * placed_mask.unsqueeze(-1).to(placed.dtype)).reshape(1, -1)
    return angle(before, after)


def with_sigma_max(scheduler, sigma: float):
    """A copy of ``scheduler`` whose schedule starts at ``sigma`` (its ``sigma_max``)."""
    import copy

    if not 0 < float(sigma) <= float(scheduler.config.sigma_max):
        from rcmg.generation.conditioning import OptionError

        raise OptionError(
            f"--init-noise-level {sigma} must be in (0, {scheduler.config.sigma_max}] (the "
            "scheduler's sigma_max)"
        )
    out = copy.deepcopy(scheduler)
    out.register_to_config(sigma_max=float(sigma))
    return out


# > the Oobleck encoder's reach in latent frames: 7, measured on the tiny build; the reach
# depends only on kernels, strides and dilations, which the tiny build keeps as published
ENCODER_MARGIN_FRAMES = 16


def padded_latents(pipe, audio):
    """VAE posterior means ``[B, C, F]`` of ``audio`` ``[B, channels, T]`` zero-padded to
    the DiT's ``F = sample_size`` frames (``F x hop_length`` samples), without encoding
    the padding: the encoder is convolutional, so beyond its reach (a margin of
    :data:`ENCODER_MARGIN_FRAMES`) the latents of the zeros are one constant frame, and
    the last frames are the right edge of any long run of zeros. Equal to encoding the
    padded audio (checked against it by the tests)."""
    import math

    import torch

    vae = pipe.vae
    hop, frames = int(vae.hop_length), int(pipe.transformer.config.sample_size)
    margin = ENCODER_MARGIN_FRAMES
    n = math.ceil(audio.shape[-1] / hop)
    audio = audio.to(device=vae.device, dtype=vae.dtype)
    if n + 3 * margin >= frames:
        full = audio.new_zeros((*audio.shape[:2], frames * hop))
        full[..., : audio.shape[-1]] = audio[..., : frames * hop]
        return vae.encode(full).latent_dist.mean.float()
    head_audio = audio.new_zeros((*audio.shape[:2], (n + 2 * margin) * hop))
    head_audio[..., : audio.shape[-1]] = audio
    head = vae.encode(head_audio).latent_dist.mean[..., : n + margin]
    zeros = vae.encode(audio.new_zeros((1, audio.shape[1], 3 * margin * hop))).latent_dist.mean
    middle = zeros[..., margin : margin + 1].expand(len(audio), -1, frames - n - 2 * margin)
    tail = zeros[..., -margin:].expand(len(audio), -1, -1)
    return torch.cat([head, middle, tail], dim=-1).float()


def style_tokens(adapter, styles, width: int):
    """The adapter's output per item as K tokens ``[B, K, D]`` of unit Frobenius norm."""
    import torch.nn.functional as F

    from rcmg.generation.conditioning import adapt_style

    out = adapt_style(adapter, styles).float()
    return F.normalize(out, dim=-1).reshape(len(out), -1, width)


class StableAudio(ModelFamily):
    name = "stable_audio"
    pipeline_class = "StableAudioPipeline"
    own_clap_subfolder = None
    checks_alignment = False  # no CLAP text tower to compare the bank CLAP with
    style_only_baseline = False
    residual_mix = False
    style_adapters = ("none", "external")  # none: the init-audio route only
    init_audio_route = True
    unsupported_knobs = ("cond_mix_beta", "style_guidance")
    adapter_target_space = "style_tokens"
    adapter_options = ("style_tokens",)  # K (1..MAX_STYLE_TOKENS; the K sweep)
    adapter_loss_description = LOSS_DESCRIPTION
    adapter_audio_rate = 48_000
    adapter_scheduler = ODE_SCHEDULER  # training reads only the published sigma/timestep config
    ranked_by = "the bank CLAP (--clap-model; Stable Audio has no CLAP of its own)"
    angle_sites = {"style_tokens": "sequence"}  # the init-audio route matches no angle
    schedulers: ClassVar[tuple[str, ...]] = ("default", ODE_SCHEDULER)

    def weights_license(self, model_id: str) -> dict | None:
        return dict(WEIGHTS_LICENSE)

    # ---------------------------------------------------------------- loading
    def load(self, model_id: str, device: str, dtype: str, scheduler: str):
        from rcmg.models.hf_loading import ModelLoadError
        from rcmg.models.pipelines import load_pipeline

        if scheduler not in self.schedulers:
            raise ModelLoadError(
                f"--scheduler {scheduler} does not apply to {self.name} (a v-prediction model "
                f"on EDM sigmas); use one of {', '.join(self.schedulers)}"
            )
        components = {}
        if scheduler == ODE_SCHEDULER:
            built = ode_scheduler(_scheduler_config(model_id))
            components["scheduler"] = None  # not loaded (its class may need torchsde): set below
        else:
            from diffusers.utils import is_torchsde_available

            if not is_torchsde_available():
                raise ModelLoadError(
                    f"{model_id}: the published scheduler (CosineDPMSolverMultistepScheduler) "
                    f"needs the torchsde package, which is not installed; {TORCHSDE_FIX}"
                )
        loaded = load_pipeline(
            model_id, self.name, self.pipeline_class, device, dtype, "default", components
        )
        if scheduler == ODE_SCHEDULER:
            loaded.pipe.scheduler = built
            loaded.scheduler = ODE_SCHEDULER
        return loaded

    def sample_rate(self, pipe) -> int:
        return int(pipe.vae.config.sampling_rate)

    def channels(self, pipe) -> int:
        return int(pipe.vae.config.audio_channels)

    def max_seconds(self, pipe) -> float:
        return pipe.transformer.config.sample_size * pipe.vae.hop_length / self.sample_rate(pipe)

    def timing_groups(self, pipe) -> dict[str, list]:
        return {
            "encode": [pipe.text_encoder, pipe.projection_model],
            "unet": [pipe.transformer],
            "decode": [pipe.vae.decoder],
            "vocode": [],
        }

    # ---------------------------------------------------------------- prompts
    def token_limits(self, pipe):
        tok = pipe.tokenizer
        limit = int(tok.model_max_length)
        return [
            (tok, limit, f"{type(tok).__name__} max length"),
            (
                tok,
                limit - MAX_STYLE_TOKENS,
                f"the last {MAX_STYLE_TOKENS} of the {limit} T5 positions hold the style tokens "
                "(every condition, so prompt and retrieval runs read the same text)",
            ),
        ]

    def check_options(self, opts) -> None:
        from rcmg.generation.conditioning import STYLE_TYPES, OptionError

        super().check_options(opts)
        if opts.condition_type not in STYLE_TYPES:
            return
        init = opts.init_noise_level is not None
        if init and opts.adapter != "none":
            raise OptionError(
                "the init-audio route (--init-noise-level) conditions on the retrieved audio, "
                "not on style tokens: use --adapter none"
            )
        if not init and opts.adapter != "external":
            raise OptionError(
                f"retrieval on {self.name} needs --adapter external (the trained style "
                "tokens) or --init-noise-level with --adapter none (the retrieved audio)"
            )

    # ---------------------------------------------------------------- conditioning, audio
    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        r = request
        text = {
            "prompt": r.prompts,
            "negative_prompt": r.negatives if r.negative_given else None,
        }
        if r.init_audio is not None:
            return {**text, **self.init_kwargs(loaded, r)}
        if r.styles is None:
            return text
        return self.style_kwargs(loaded, r)

    def init_kwargs(self, loaded, r: ConditioningRequest) -> dict:
        """The init-audio route: each item's retrieved audio (44.1 kHz, mono repeated to
        every channel) as ``initial_audio_waveforms``, denoised from ``init_noise_level``."""
        import torch

        from rcmg.data.audio_io import resample
        from rcmg.generation.conditioning import conditioning_record

        pipe = loaded.pipe
        rate, sigma = self.sample_rate(pipe), float(r.options.init_noise_level)
        waves = [resample(a["wave"], int(a["rate"]), rate) for a in r.init_audio]
        audio = np.zeros((len(waves), self.channels(pipe), max(len(w) for w in waves)), np.float32)
        for i, wave in enumerate(waves):
            audio[i, :, : len(wave)] = wave
        if r.infos is not None:
            for a in r.init_audio:
                r.infos.append(
                    conditioning_record(
                        "init_audio",
                        r.options,
                        0.0,
                        None,
                        float(a["score"]) if a.get("score") is not None else float("nan"),
                        {},
                        init_noise_level=sigma,
                        init_item={"row": a["row"], "segment_id": a["segment_id"]},
                        strength="init_noise_level: the sigma denoising starts from (the "
                        "same for a run and its controls)",
                    )
                )
        return {
            "initial_audio_waveforms": torch.from_numpy(audio).to(loaded.device),
            "initial_audio_sampling_rate": rate,
            "init_noise_level": sigma,
        }

    def matched_angle(self, info: dict) -> float:
        from rcmg.generation.conditioning import OptionError

        if info.get("site") == "init_audio":
            raise OptionError(
                "the init-audio route matches no angle: its controls take the same "
                "--init-noise-level"
            )
        return super().matched_angle(info)

    def style_kwargs(self, loaded, r: ConditioningRequest) -> dict:
        import torch

        from rcmg.generation.conditioning import (
            alpha_for,
            conditioning_record,
            cos,
            per_item_options,
        )

        pipe = loaded.pipe
        with torch.no_grad():
            states, mask = t5_states(pipe, r.prompts, loaded.device)
            tokens = style_tokens(r.adapter, r.styles, states.shape[-1]).to(states.device)
            rows, masks = [], []
            for i, opts in enumerate(per_item_options(r.options, r.targets, len(r.prompts))):
                s, m, t = states[i : i + 1], mask[i : i + 1], tokens[i : i + 1]
                alpha, reached = alpha_for(
                    opts, lambda a, s=s, m=m, t=t: sequence_angle(s, m, *place_tokens(s, m, t, a))
                )
                placed, placed_mask = place_tokens(s, m, t, alpha)
                rows.append(placed)
                masks.append(placed_mask)
                if r.infos is not None:
                    prompt_mean = (s * m.unsqueeze(-1)).sum(1) / m.sum()
                    r.infos.append(
                        conditioning_record(
                            "style_tokens",
                            opts,
                            alpha,
                            reached,
                            cos(prompt_mean[0], t[0].mean(0)),
                            {"sequence": sequence_angle(s, m, placed, placed_mask)},
                            adapter="external",
                            style_tokens=int(t.shape[1]),
                            strength="angle of the masked T5 conditioning sequence",
                        )
                    )
            out = {"prompt_embeds": torch.cat(rows), "attention_mask": torch.cat(masks)}
            if r.do_cfg and r.negative_given:
                neg, neg_mask = negative_states(pipe, r.negatives, loaded.device)
                out.update(negative_prompt_embeds=neg, negative_attention_mask=neg_mask)
        return out

    def generate(self, loaded, conditioning: dict, settings):
        """The plain pipeline call (``output_type="np"``): ``[B * n, channels, T]``. The
        init-audio route runs it with the scheduler's ``sigma_max`` at ``init_noise_level``
        (stable-audio-tools' init noise level: the schedule starts there)."""
        kwargs = dict(conditioning)
        sigma = kwargs.pop("init_noise_level", None)
        pipe, scheduler = loaded.pipe, loaded.pipe.scheduler
        if sigma is not None:
            pipe.scheduler = with_sigma_max(scheduler, sigma)
        try:
            return pipe(
                audio_end_in_s=settings.seconds,
                num_inference_steps=settings.steps,
                guidance_scale=settings.guidance,
                num_waveforms_per_prompt=settings.n_waveforms,
                generator=settings.generators,
                output_type="np",
                **kwargs,
            ).audios
        finally:
            pipe.scheduler = scheduler

    def rank_scores(self, loaded, clap, text, clips):
        """Bank-CLAP cosine per candidate, on the stereo downmix (mean of the channels)."""
        mono = [np.asarray(c, np.float32).mean(axis=0) if c.ndim == 2 else c for c in clips]
        return super().rank_scores(loaded, clap, text, mono)

    # ---------------------------------------------------------------- style adapter
    def adapter_out_dim(self, pipe, style_tokens: int = STYLE_TOKENS) -> int:
        if not 1 <= int(style_tokens) <= MAX_STYLE_TOKENS:
            from rcmg.generation.adapter_training import TrainingDataError

            raise TrainingDataError(
                f"--style-tokens must be in 1..{MAX_STYLE_TOKENS} for {self.name} (the T5 "
                f"positions every condition leaves free), got {style_tokens}"
            )
        return int(style_tokens) * int(pipe.text_encoder.config.d_model)

    def generation_adapter_dim(self, pipe, found: int) -> int:
        """Any K of 1..:data:`MAX_STYLE_TOKENS`: an adapter to K x the T5 width (else the
        default K's, to name the fix)."""
        width = int(pipe.text_encoder.config.d_model)
        fits = found % width == 0 and 1 <= found // width <= MAX_STYLE_TOKENS
        return found if fits else self.adapter_out_dim(pipe)

    def adapter_front_end(self) -> dict:
        return {
            "audio": "the bank item's 48 kHz segment resampled to 44.1 kHz, mono repeated to "
            "stereo (the pipeline's rule for mono initial audio), zero-padded to the DiT's "
            "sample_size x hop_length samples",
            "latents": "AutoencoderOobleck posterior mean (no scaling factor, as the pipeline); "
            "the padding's frames beyond the encoder's reach filled with the latent of zeros",
            "style_tokens": f"out_dim / the T5 width (default {STYLE_TOKENS}, at most "
            f"{MAX_STYLE_TOKENS}; family_options)",
            "token_scale": TRAIN_TOKEN_SCALE,
            "objective": "v-prediction on the cosine schedule: x_t = cos(u pi/2) z0 + "
            "sin(u pi/2) eps, target cos(u pi/2) eps - sin(u pi/2) z0, DiT timestep u = "
            "(t + 0.5) / num_train_timesteps",
        }

    def adapter_latents(self, pipe, waves: np.ndarray, seconds: float, batch: int = 8):
        """``[N, C, sample_size]`` VAE latents (posterior mean) of each item's audio at
        44.1 kHz stereo zero-padded to the DiT's full length, as the pipeline pads initial
        audio: :func:`padded_latents` (exact, without encoding the padding)."""
        import torch

        from rcmg.data.audio_io import resample
        from rcmg.generation.adapter_training import TrainingDataError

        rate = self.sample_rate(pipe)
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), batch):
                chunk = [
                    resample(np.asarray(w, np.float32), self.adapter_audio_rate, rate)
                    for w in waves[start : start + batch]
                ]
                audio = np.zeros((len(chunk), self.channels(pipe), max(len(x) for x in chunk)))
                for j, x in enumerate(chunk):
                    audio[j, :, : len(x)] = x  # mono repeated to every channel
                out.append(padded_latents(pipe, torch.from_numpy(audio.astype(np.float32))))
        latents = torch.cat(out)
        if not torch.isfinite(latents).all():
            raise TrainingDataError("the VAE produced NaN/inf latents; check the model weights")
        return latents

    def adapter_context(
        self, pipe, captions, latents, x, style_tokens: int = STYLE_TOKENS
    ) -> AdapterContext:
        """The label text's T5 states (held to ``128 - MAX_STYLE_TOKENS`` tokens, as in
        generation) and norms; ``labels``: K zero tokens (mask 0: the label text alone);
        ``untrained``: the unit style vector zero-padded (or cut) to the T5 width in each of
        the K tokens, flattened to one unit direction (MusicGen's convention), placed as
        the adapter's direction is."""
        import torch
        import torch.nn.functional as F

        from rcmg.generation.prompts import truncate_to_tokens

        k = int(style_tokens)
        limit = int(pipe.tokenizer.model_max_length) - MAX_STYLE_TOKENS
        texts = [truncate_to_tokens(c, pipe.tokenizer, max_length=limit)[0] for c in captions]
        states, masks, norms = [], [], []
        with torch.no_grad():
            for text in texts:
                s, m = t5_states(pipe, [text], pipe.device)
                states.append(s.float())
                masks.append(m)
                norms.append((s * m.unsqueeze(-1)).float().norm())
        width = states[0].shape[-1]
        labels = [torch.zeros(1, k, width) for _ in texts]
        padded = F.pad(F.normalize(x.float(), dim=-1), (0, max(width - x.shape[-1], 0)))
        untrained = F.normalize(padded[:, :width].repeat(1, k), dim=-1)
        return AdapterContext(
            latents, x, labels, untrained, {"t5": states, "mask": masks, "norms": norms}
        )

    def adapter_conditioning(self, direction, ctx, rows):
        import torch

        width = ctx.extra["t5"][0].shape[-1]
        scale = torch.stack([ctx.extra["norms"][r] for r in rows]).to(direction.device)
        tokens = direction.reshape(len(rows), -1, width)
        return tokens * (TRAIN_TOKEN_SCALE * scale)[:, None, None]

    def baseline_conditioning(self, ctx, rows, arm: str):
        import torch

        if arm == "labels_text":
            return torch.cat([ctx.labels[r] for r in rows]).to(ctx.latents.device)
        if arm == "untrained":
            return self.adapter_conditioning(ctx.untrained[list(rows)], ctx, rows)
        raise ValueError(f"{self.name} has no {arm!r} baseline")

    def adapter_frozen_modules(self, pipe) -> list:
        return [pipe.transformer, pipe.vae, pipe.text_encoder, pipe.projection_model]

    def adapter_loss(self, pipe, z0, noise, t, cond, ctx, rows):
        """The v-objective (:data:`LOSS_DESCRIPTION`): the frozen DiT's velocity under
        ``cond`` on :meth:`cosine_noisy` against :meth:`velocity_target`."""
        import torch.nn.functional as F

        noisy = self.cosine_noisy(pipe, z0, noise, t)
        v = self.denoiser_eps(pipe, noisy, t, cond, ctx, rows)
        return F.mse_loss(v.float(), self.velocity_target(pipe, z0, noise, t).float())

    def cosine_noisy(self, pipe, z0, noise, t):
        """The DiT's training input at integer timesteps ``t``: ``cos z0 + sin eps``."""
        a, s = self._cosine(pipe, t, z0)
        return a * z0 + s * noise

    def velocity_target(self, pipe, z0, noise, t):
        """The velocity the DiT predicts at ``t``: ``cos eps - sin z0``."""
        a, s = self._cosine(pipe, t, z0)
        return a * noise - s * z0

    def _unit_time(self, pipe, t):
        return (t.float() + 0.5) / int(pipe.scheduler.config.num_train_timesteps)

    def _cosine(self, pipe, t, like):
        """``(cos(u pi/2), sin(u pi/2))`` shaped to broadcast over ``like``."""
        import math

        u = self._unit_time(pipe, t).to(like.device) * (math.pi / 2)
        shape = (-1,) + (1,) * (like.ndim - 1)
        return u.cos().reshape(shape), u.sin().reshape(shape)

    def denoiser_eps(self, pipe, noisy, t, cond, ctx, rows):
        """The frozen DiT's v-prediction with ``cond`` (style tokens ``[B, K, D]``) on the
        last K T5 positions of each item's label text, and the training duration's timing."""
        import torch
        from diffusers.models.embeddings import get_1d_rotary_pos_embed

        dtype = pipe.transformer.dtype
        device = noisy.device
        states, masks = [], []
        for i, r in enumerate(rows):
            s = ctx.extra["t5"][r].to(device)
            m = ctx.extra["mask"][r].to(device)
            k = cond.shape[1]
            s = torch.cat([s[:, :-k], cond[i : i + 1].to(s.dtype)], dim=1)
            m = m.clone()
            m[:, -k:] = (cond[i].abs().sum() > 0).to(m.dtype)
            states.append(s)
            masks.append(m)
        states, masks = torch.cat(states), torch.cat(masks)
        projected = pipe.projection_model(text_hidden_states=states.to(dtype)).text_hidden_states
        projected = projected * masks.unsqueeze(-1).to(projected.dtype)
        seconds = float(ctx.extra.get("seconds", 0.0)) or self.max_seconds(pipe)
        timing = pipe.projection_model(
            start_seconds=torch.zeros(len(rows), device=device),
            end_seconds=torch.full((len(rows),), seconds, device=device),
        )
        start, end = timing.seconds_start_hidden_states, timing.seconds_end_hidden_states
        rotary = get_1d_rotary_pos_embed(
            pipe.rotary_embed_dim, noisy.shape[2] + 1, use_real=True, repeat_interleave_real=False
        )
        return pipe.transformer(
            noisy.to(dtype),
            self._unit_time(pipe, t).to(device=device, dtype=dtype),
            encoder_hidden_states=torch.cat([projected, start, end], dim=1),
            global_hidden_states=torch.cat([start, end], dim=2),
            rotary_embedding=rotary,
            return_dict=False,
        )[0]
