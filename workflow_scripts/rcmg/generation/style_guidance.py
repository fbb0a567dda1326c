"""Style guidance for AudioLDM1 and AudioLDM2: a second, principled strength knob.

``eps = eps_u + g * (eps_c - eps_u) + beta * (eps_s - eps_c)``

``eps_u`` is the UNet's noise prediction under the negative (unconditional) embedding,
``eps_c`` under the prompt's own CLAP embedding and ``eps_s`` under the style-blended
embedding (the retrieval condition's). ``g`` is the classifier-free guidance scale and
``beta`` the style guidance: ``beta = 0`` is the prompt condition exactly, ``beta = g``
gives ordinary CFG towards the style-blended conditioning, and in between the style's
effect on the noise prediction is added on top of the prompt's. It costs one extra UNet
batch slot per step (3 instead of 2: the UNet forward time in run_config.json grows by
about 3/2).

Why a loop of our own: ``AudioLDMPipeline.__call__`` exposes no per-branch noise
prediction (its ``callback`` sees the latents after the scheduler step), so the
combination cannot be made through its arguments. :func:`style_guided_loop` is the
upstream denoising loop the two families share (``AudioLDMPipeline.__call__``,
diffusers ``pipelines/deprecated/audioldm``, and ``AudioLDM2Pipeline.__call__``),
reusing the loaded pipeline's own components and helpers (``scheduler``,
``prepare_latents``, ``prepare_extra_step_kwargs``, ``unet``, ``vae``,
``mel_spectrogram_to_waveform``) with a third batch slot. What differs per family is
only the UNet's conditioning arguments, stacked over the slots: :func:`aldm1_style_guided`
and :func:`aldm2_style_guided` build them and pass them in. At ``beta = 0`` the loop runs
the upstream two-slot step and equals the pipeline bit for bit; at ``beta > 0`` it equals
the two per-family loops it replaced bit for bit (tests/unit/generation/
test_style_guidance.py).
"""

from __future__ import annotations

import numpy as np


def unet_slots_per_step(guidance_scale: float, beta: float) -> int:
    """UNet batch slots per denoising step: 1 without CFG, 2 with it, 3 with style guidance."""
    if guidance_scale <= 1.0:
        return 1
    return 3 if beta else 2


def guided_noise(noise_pred, guidance_scale: float, beta: float):
    """The combined noise prediction from the UNet's stacked slots.

    ``noise_pred`` stacks ``[eps_u, eps_c]`` (``beta = 0``: the upstream CFG step,
    operation for operation) or ``[eps_u, eps_c, eps_s]`` (``beta > 0``) along the batch.
    """
    if beta:
        eps_u, eps_c, eps_s = noise_pred.chunk(3)
        return eps_u + guidance_scale * (eps_c - eps_u) + beta * (eps_s - eps_c)
    eps_u, eps_c = noise_pred.chunk(2)  # the upstream step, operation for operation
    return eps_u + guidance_scale * (eps_c - eps_u)


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

    ``unet_conditioning`` is what differs per family: the UNet's conditioning keyword
    arguments, each stacked over the ``unet_slots_per_step`` slots in the order negative,
    prompt, style (AudioLDM1: ``class_labels``; AudioLDM2: the GPT-2 and T5 states and
    the T5 mask). Both families then decode with ``vae.decode(latents / scaling_factor)``
    (AudioLDM1's ``decode_latents`` is that expression) and vocode with the pipeline's
    ``mel_spectrogram_to_waveform``. Call under ``torch.no_grad()``.
    """
    import torch

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


def _check_options(guidance_scale: float, beta: float) -> None:
    if guidance_scale <= 1.0:
        raise ValueError("style guidance builds on classifier-free guidance: use --guidance > 1")
    if beta < 0:
        raise ValueError(f"style guidance beta must be >= 0, got {beta}")


# ------------------------------------------------------------------ AudioLDM1


def aldm1_style_guided(
    pipe,
    *,
    prompt_embeds,
    negative_prompt_embeds,
    style_embeds,
    beta: float,
    guidance_scale: float,
    num_inference_steps: int,
    audio_length_in_s: float,
    generator,
) -> np.ndarray:
    """Audio ``[B, T]`` (float32) denoised with style guidance (one waveform per prompt).

    AudioLDM1 conditions its UNet through ``class_labels`` (the CLAP text embeddings, no
    cross-attention states).
    """
    import torch

    _check_options(guidance_scale, beta)
    slots = [negative_prompt_embeds, prompt_embeds] + ([style_embeds] if beta else [])
    with torch.no_grad():
        return style_guided_loop(
            pipe,
            unet_conditioning={"encoder_hidden_states": None, "class_labels": torch.cat(slots)},
            n_prompts=prompt_embeds.shape[0],
            latents_dtype=prompt_embeds.dtype,
            beta=beta,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            audio_length_in_s=audio_length_in_s,
            generator=generator,
        )


# ------------------------------------------------------------------ AudioLDM2


def aldm2_style_guided(
    pipe,
    *,
    prompt_kwargs: dict,
    style_kwargs: dict,
    beta: float,
    guidance_scale: float,
    num_inference_steps: int,
    audio_length_in_s: float,
    generator,
) -> np.ndarray:
    """AudioLDM2 audio ``[B, T]`` with style guidance (one waveform per prompt).

    ``prompt_kwargs`` / ``style_kwargs`` are :func:`rcmg.generation.conditioning.
    aldm2_condition_kwargs` outputs (with CFG) for the prompt alone and for the style
    condition: ``eps_u`` from the negative branch, ``eps_c`` from the prompt's own
    ``generated_prompt_embeds`` + T5 states, ``eps_s`` from the style-blended ones. The
    UNet call and decode are ``AudioLDM2Pipeline.__call__``'s (``encode_prompt`` with given
    embeddings concatenates ``[negative, cond]``; ``unet(..., encoder_hidden_states=
    generated, encoder_hidden_states_1=t5, encoder_attention_mask_1=mask)``;
    ``vae.decode(latents / scaling_factor)``).
    """
    import torch

    _check_options(guidance_scale, beta)
    device = pipe._execution_device
    p, s = prompt_kwargs, style_kwargs
    if p["prompt_embeds"].shape != s["prompt_embeds"].shape:
        raise ValueError("prompt and style conditioning must share the T5 branch (same shape)")
    t5_dtype = pipe.text_encoder_2.dtype
    lm_dtype = pipe.language_model.dtype

    def slots(key: str, dtype=None):
        parts = [p[f"negative_{key}"], p[key]] + ([s[key]] if beta else [])
        parts = [
            x.to(device=device) if dtype is None else x.to(device=device, dtype=dtype)
            for x in parts
        ]
        return torch.cat(parts)

    with torch.no_grad():
        t5 = slots("prompt_embeds", t5_dtype)
        return style_guided_loop(
            pipe,
            unet_conditioning={
                "encoder_hidden_states": slots("generated_prompt_embeds", lm_dtype),
                "encoder_hidden_states_1": t5,
                "encoder_attention_mask_1": slots("attention_mask"),
            },
            n_prompts=p["prompt_embeds"].shape[0],
            latents_dtype=t5.dtype,
            beta=beta,
            guidance_scale=guidance_scale,
            num_inference_steps=num_inference_steps,
            audio_length_in_s=audio_length_in_s,
            generator=generator,
        )
