"""Style guidance: a second, principled strength knob, for every family that has it.

``eps = eps_u + g * (eps_c - eps_u) + beta * (eps_s - eps_c)``

``eps_u`` is the denoiser's noise prediction under the negative (unconditional)
conditioning, ``eps_c`` under the prompt's own conditioning and ``eps_s`` under the
style-blended conditioning (the retrieval condition's). ``g`` is the classifier-free
guidance scale and ``beta`` the style guidance: ``beta = 0`` is the prompt condition
exactly, ``beta = g`` gives ordinary CFG towards the style-blended conditioning, and in
between the style's effect on the noise prediction is added on top of the prompt's. It
costs one extra denoiser batch slot per step (3 instead of 2: the denoiser forward time
in run_config.json grows by about 3/2).

Why a loop of its own: the pipelines expose no per-branch noise prediction (their
``callback`` sees the latents after the scheduler step), so the combination cannot be
made through their arguments. A family runs its pipeline's own denoising loop with a
third slot (:meth:`rcmg.generation.families.base.ModelFamily.style_guided_audio`; the mel
latent-diffusion families share :func:`rcmg.generation.families.latent_diffusion.
style_guided_loop`); what is here is the maths they share. At ``beta = 0`` the loop runs
the upstream two-slot step and equals the pipeline bit for bit
(tests/unit/generation/test_style_guidance.py).
"""

from __future__ import annotations


def unet_slots_per_step(guidance_scale: float, beta: float) -> int:
    """Denoiser batch slots per step: 1 without CFG, 2 with it, 3 with style guidance."""
    if guidance_scale <= 1.0:
        return 1
    return 3 if beta else 2


def guided_noise(noise_pred, guidance_scale: float, beta: float):
    """The combined noise prediction from the denoiser's stacked slots.

    ``noise_pred`` stacks ``[eps_u, eps_c]`` (``beta = 0``: the upstream CFG step,
    operation for operation) or ``[eps_u, eps_c, eps_s]`` (``beta > 0``) along the batch.
    """
    if beta:
        eps_u, eps_c, eps_s = noise_pred.chunk(3)
        return eps_u + guidance_scale * (eps_c - eps_u) + beta * (eps_s - eps_c)
    eps_u, eps_c = noise_pred.chunk(2)  # the upstream step, operation for operation
    return eps_u + guidance_scale * (eps_c - eps_u)


def check_style_guidance(guidance_scale: float, beta: float) -> None:
    if guidance_scale <= 1.0:
        raise ValueError("style guidance builds on classifier-free guidance: use --guidance > 1")
    if beta < 0:
        raise ValueError(f"style guidance beta must be >= 0, got {beta}")
