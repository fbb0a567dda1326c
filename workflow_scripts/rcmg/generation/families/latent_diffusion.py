"""The shared base of the mel latent-diffusion families (a diffusers pipeline whose UNet
denoises VAE latents of a log-mel spectrogram, decoded by a HiFi-GAN vocoder).

What two such families share, as diffusers shares it between their pipelines: loading
through ``from_pretrained`` as the family's pipeline class, the vocoder's rate, the
modules timed per phase, the plain pipeline call, the denoising loop that style guidance
runs with a third batch slot, and the adapter's training latents (the model's own mel
front end, :mod:`rcmg.models.mel`, into the VAE). A subclass adds its conditioning.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from rcmg.generation.families.base import ModelFamily, SamplingSettings


class LatentDiffusionFamily(ModelFamily):
    """A diffusers mel latent-diffusion pipeline with a vocoder (mono audio)."""

    pipeline_class: ClassVar[str] = ""  # the diffusers class (model_index.json _class_name)
    text_encoders: ClassVar[tuple[str, ...]] = ("text_encoder",)

    def load(self, model_id: str, device: str, dtype: str, scheduler: str):
        from rcmg.models.pipelines import load_pipeline

        return load_pipeline(model_id, self.name, self.pipeline_class, device, dtype, scheduler)

    def sample_rate(self, pipe) -> int:
        return int(pipe.vocoder.config.sampling_rate)

    def timing_groups(self, pipe) -> dict[str, list]:
        vae = pipe.vae
        return {
            "encode": [getattr(pipe, n, None) for n in self.text_encoders],
            "unet": [pipe.unet],
            "decode": [getattr(vae, "post_quant_conv", None), vae.decoder],
            "vocode": [pipe.vocoder],
        }

    def tokenizer_limits(self, pipe) -> list[tuple[object, int, str]]:
        """Each text tokenizer's ``model_max_length``."""
        from rcmg.models.pipelines import pipeline_tokenizers

        return [
            (tok, int(tok.model_max_length), f"{type(tok).__name__} max length")
            for tok in pipeline_tokenizers(pipe)
        ]

    def token_limits(self, pipe) -> list[tuple[object, int, str]]:
        return self.tokenizer_limits(pipe)

    def generate(self, loaded, conditioning: dict, settings: SamplingSettings):
        """The plain pipeline call (``output_type="np"``) with the given conditioning."""
        return loaded.pipe(
            audio_length_in_s=settings.seconds,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance,
            num_waveforms_per_prompt=settings.n_waveforms,
            generator=settings.generators,
            output_type="np",
            **conditioning,
        ).audios

    # ---------------------------------------------------------------- style adapter
    def adapter_front_end(self) -> dict:
        from rcmg.models.mel import AUDIOLDM_MEL, MEL_SOURCE

        return {**AUDIOLDM_MEL, "source": MEL_SOURCE}

    def check_geometry(self, pipe, frames: int) -> None:
        """The mel/latent shape the pipeline's VAE and UNet take (names the fix otherwise)."""
        from rcmg.generation.adapter_training import TrainingDataError
        from rcmg.models.mel import AUDIOLDM_MEL

        n_mels = int(getattr(pipe.vocoder.config, "model_in_dim", AUDIOLDM_MEL["n_mels"]))
        if n_mels != AUDIOLDM_MEL["n_mels"]:
            raise TrainingDataError(
                f"the model's vocoder takes {n_mels} mel bins; the mel front end makes "
                f"{AUDIOLDM_MEL['n_mels']} (only the 16 kHz / 64-bin checkpoints are supported)"
            )
        factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        factor *= 2 ** (len(pipe.unet.config.down_block_types) - 1)
        if frames % factor:
            raise TrainingDataError(
                f"{frames} mel frames is not a multiple of {factor} (VAE x UNet downsampling); "
                f"choose adapter_training.seconds as a multiple of {factor * 0.01:.2f}"
            )

    def adapter_latents(self, pipe, waves: np.ndarray, seconds: float, batch: int = 8):
        """``[N, C, frames/4, 16]`` latents: normalize_wav -> log-mel -> VAE mean * scaling."""
        import torch

        from rcmg.generation.adapter_training import TrainingDataError
        from rcmg.models.mel import log_mel, n_frames, normalize_wav

        frames = n_frames(seconds)
        self.check_geometry(pipe, frames)
        vae = pipe.vae
        out = []
        with torch.no_grad():
            for start in range(0, len(waves), batch):
                chunk = np.stack([normalize_wav(w) for w in waves[start : start + batch]])
                mel = log_mel(chunk, frames)[:, None].to(device=vae.device, dtype=vae.dtype)
                z = vae.encode(mel).latent_dist.mean * vae.config.scaling_factor
                out.append(z.float())
        latents = torch.cat(out)
        if not torch.isfinite(latents).all():
            raise TrainingDataError("the VAE produced NaN/inf latents; check the model weights")
        return latents


def style_guided_loop(
    pipe,
    *,
    unet_conditioning: dict,
    n_prompts: int,
    latents_dtype,
    beta: float,
    guidance_scale: float,
    num_inference_steps: int,
    audio_length_in_s: float,
    generator,
) -> np.ndarray:
    """Audio ``[n_prompts, T]`` (float32): the upstream denoising loop with style guidance.

    The loop of the diffusers mel-LDM pipelines' ``__call__``, reusing the loaded
    pipeline's own components and helpers (``scheduler``, ``prepare_latents``,
    ``prepare_extra_step_kwargs``, ``unet``, ``vae``, ``mel_spectrogram_to_waveform``)
    with a third batch slot. ``unet_conditioning`` is what differs per family: the UNet's
    conditioning keyword arguments, each stacked over the
    :func:`~rcmg.generation.style_guidance.unet_slots_per_step` slots in the order
    negative, prompt, style. Decoded with ``vae.decode(latents / scaling_factor)`` and
    vocoded with ``mel_spectrogram_to_waveform``. Call under ``torch.no_grad()``.
    """
    import torch

    from rcmg.generation.style_guidance import guided_noise, unet_slots_per_step

    device = pipe._execution_device
    vocoder_upsample_factor = (
        np.prod(pipe.vocoder.config.upsample_rates) / pipe.vocoder.config.sampling_rate
    )
    height = int(audio_length_in_s / vocoder_upsample_factor)
    original_waveform_length = int(audio_length_in_s * pipe.vocoder.config.sampling_rate)
    if height % pipe.vae_scale_factor != 0:
        height = int(np.ceil(height / pipe.vae_scale_factor)) * pipe.vae_scale_factor
    pipe.scheduler.set_timesteps(num_inference_steps, device=device)
    latents = pipe.prepare_latents(
        n_prompts, pipe.unet.config.in_channels, height, latents_dtype, device, generator, None
    )
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generator, 0.0)
    n_slots = unet_slots_per_step(guidance_scale, beta)
    for t in pipe.scheduler.timesteps:
        latent_model_input = torch.cat([latents] * n_slots)
        latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
        noise_pred = pipe.unet(latent_model_input, t, **unet_conditioning, return_dict=False)[0]
        noise_pred = guided_noise(noise_pred, guidance_scale, beta)
        latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs).prev_sample
    mel_spectrogram = pipe.vae.decode(1 / pipe.vae.config.scaling_factor * latents).sample
    audio = pipe.mel_spectrogram_to_waveform(mel_spectrogram)[:, :original_waveform_length]
    return audio.numpy()
