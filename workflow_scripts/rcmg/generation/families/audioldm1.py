"""AudioLDM1 (``cvssp/audioldm``, diffusers ``AudioLDMPipeline``).

Its UNet is conditioned through ``class_labels``: the normalised CLAP text embedding of
the prompt (``ClapTextModelWithProjection``, "specifically the laion/clap-htsat-unfused
variant", per the diffusers ``AudioLDMPipeline`` docstring). The checkpoint has no CLAP
audio tower, so the bank is embedded by the bank CLAP, whose match with this text tower
the alignment check measures; candidates are ranked by the bank CLAP.

* ``prompt`` and ``prompt_aug``: text goes in as ``prompt=[...]`` (the plain pipeline
  call; ``prompt_aug`` only changes the text).
* ``retrieval`` (and its controls): the pipeline's own encoder gives CLAP text embeddings
  for both branches; only the conditional branch is blended with the style (and
  optionally residual-mixed, ``cond_mix: residual``), passed as ``prompt_embeds`` /
  ``negative_prompt_embeds``. ``adapter: external`` maps the style 512 -> 512 first;
  ``adapter: native`` is the direct CLAP blend (no other conditioning path exists).
* ``style_only``: the conditional embedding is the style direction alone.
* style guidance: ``class_labels`` stacked over the negative, prompt and style slots.
* style adapter: ``class_labels = unit(adapter(x))``, trained by the UNet's denoising
  loss; baselines the label text's ``_encode_prompt`` and ``x`` itself.
"""

from __future__ import annotations

from rcmg.generation.families.base import AdapterContext, ConditioningRequest
from rcmg.generation.families.latent_diffusion import LatentDiffusionFamily


def text_embeds(pipe, prompts: list[str], negatives: list[str], device, do_cfg: bool):
    """The pipeline's own normalised CLAP text embeddings: ``(cond [B,512], uncond [B,512] | None)``."""
    embeds = pipe._encode_prompt(prompts, device, 1, do_cfg, negative_prompt=list(negatives))
    if not do_cfg:
        return embeds, None
    uncond, cond = embeds.chunk(2)
    return cond, uncond


def _final(cond, style, alpha: float, opts):
    from rcmg.generation.conditioning import blend_tensor, residual_tensor

    blended = blend_tensor(cond, style, alpha, opts.blend)
    if opts.cond_mix == "residual":
        blended = residual_tensor(cond, blended, style, opts.cond_mix_beta)
    return blended


def _angle_parts(cond, style, alpha: float, opts) -> dict:
    """The angle's parts (degrees): ``blend`` (the blend alone at this alpha) and
    ``residual`` (the residual mix alone, at alpha 0); ``cond`` is both together."""
    from dataclasses import replace

    from rcmg.generation.conditioning import angle

    parts = {"blend": angle(cond[0], _final(cond, style, alpha, replace(opts, cond_mix="none"))[0])}
    parts["residual"] = angle(cond[0], _final(cond, style, 0.0, opts)[0])
    return parts


def retrieval_kwargs(
    pipe, prompts, negatives, device, do_cfg, styles, opts, infos=None, targets=None
):
    """``prompt_embeds`` (blended) and ``negative_prompt_embeds`` (untouched).

    With ``opts.strength_deg`` each item gets the alpha at which its conditional
    embedding turns by that angle (blend and residual together). ``infos`` (a list),
    when given, receives one record per item: alpha, prompt-style cosine, the angle of
    each branch (``cond``; ``uncond`` is never touched), the parts of ``cond``'s angle
    (``blend`` alone, ``residual`` alone) and the norm ratio.
    """
    import torch

    from rcmg.generation.conditioning import (
        OptionError,
        alpha_for,
        angle,
        conditioning_record,
        cos,
        per_item_options,
    )

    cond, uncond = text_embeds(pipe, prompts, negatives, device, do_cfg)
    if styles.shape[-1] != cond.shape[-1]:
        raise OptionError(
            f"style dim {styles.shape[-1]} != AudioLDM1 CLAP text dim {cond.shape[-1]}; "
            "the bank and the model must share the CLAP space"
        )
    styles = styles.to(device=cond.device, dtype=cond.dtype)
    per_item = per_item_options(opts, targets, len(cond))
    if opts.strength_deg is None and targets is None:
        final = _final(cond, styles, opts.alpha, opts)
        solved = [(float(opts.alpha), None)] * len(cond)
    else:
        solved, rows = [], []
        for i in range(len(cond)):
            c, s, o = cond[i : i + 1], styles[i : i + 1], per_item[i]
            alpha, reached = alpha_for(o, lambda a, c=c, s=s, o=o: angle(c, _final(c, s, a, o)))
            solved.append((alpha, reached))
            rows.append(_final(c, s, alpha, o))
        final = torch.cat(rows)
    if infos is not None:
        for i, (alpha, reached) in enumerate(solved):
            infos.append(
                conditioning_record(
                    "clap_class_embedding",
                    per_item[i],
                    alpha,
                    reached,
                    cos(cond[i], styles[i]),
                    {
                        "cond": angle(cond[i], final[i]),
                        "uncond": 0.0,
                        **_angle_parts(cond[i : i + 1], styles[i : i + 1], alpha, per_item[i]),
                    },
                    cond_mix=opts.cond_mix,
                    cond_mix_beta=opts.cond_mix_beta if opts.cond_mix == "residual" else None,
                    norm_ratio=float(final[i].float().norm() / cond[i].float().norm()),
                )
            )
    kwargs = {"prompt_embeds": final}
    if do_cfg:
        kwargs["negative_prompt_embeds"] = uncond
    return kwargs


def style_guided(
    pipe,
    *,
    prompt_embeds,
    negative_prompt_embeds,
    style_embeds,
    **loop,
):
    """Audio ``[B, T]`` (float32) denoised with style guidance (one waveform per prompt):
    ``class_labels`` stacked negative, prompt, style (no cross-attention states).
    ``loop``: ``beta``, ``guidance_scale``, ``num_inference_steps``, ``audio_length_in_s``,
    ``generator`` (:func:`~rcmg.generation.families.latent_diffusion.style_guided_loop`)."""
    import torch

    from rcmg.generation.families.latent_diffusion import style_guided_loop
    from rcmg.generation.style_guidance import check_style_guidance

    check_style_guidance(loop["guidance_scale"], loop["beta"])
    slots = [negative_prompt_embeds, prompt_embeds] + ([style_embeds] if loop["beta"] else [])
    with torch.no_grad():
        return style_guided_loop(
            pipe,
            unet_conditioning={"encoder_hidden_states": None, "class_labels": torch.cat(slots)},
            n_prompts=prompt_embeds.shape[0],
            latents_dtype=prompt_embeds.dtype,
            **loop,
        )


class AudioLDM1(LatentDiffusionFamily):
    name = "audioldm1"
    pipeline_class = "AudioLDMPipeline"
    own_clap_subfolder = None
    checks_alignment = True
    style_only_baseline = True
    residual_mix = True
    style_adapters = ("none", "native", "external")
    adapter_target_space = "clap_class_embedding"
    ranked_by = "the bank CLAP (--clap-model; AudioLDM1 has no audio tower)"
    angle_sites = {"clap_class_embedding": "cond"}

    def own_text_embeddings(self, pipe, texts, device):
        import torch

        with torch.no_grad():
            embeds, _ = text_embeds(pipe, texts, [""] * len(texts), device, False)
        return embeds

    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        import torch

        from rcmg.generation.conditioning import adapt_style

        r = request
        if r.styles is None:
            return {
                "prompt": r.prompts,
                "negative_prompt": r.negatives if r.negative_given else None,
            }
        styles = adapt_style(r.adapter, r.styles) if r.adapter is not None else r.styles
        with torch.no_grad():
            return retrieval_kwargs(
                loaded.pipe,
                r.prompts,
                r.negatives,
                loaded.device,
                r.do_cfg,
                styles,
                r.options,
                r.infos,
                r.targets,
            )

    def style_guided_audio(self, loaded, request, style_kwargs, loop):
        import torch

        with torch.no_grad():
            cond, _ = text_embeds(
                loaded.pipe, request.prompts, request.negatives, loaded.device, True
            )
        return style_guided(
            loaded.pipe,
            prompt_embeds=cond,
            negative_prompt_embeds=style_kwargs["negative_prompt_embeds"],
            style_embeds=style_kwargs["prompt_embeds"],
            **loop,
        )

    # ---------------------------------------------------------------- style adapter
    def adapter_out_dim(self, pipe) -> int:
        return int(pipe.text_encoder.config.projection_dim)

    def adapter_context(self, pipe, captions, latents, x) -> AdapterContext:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            labels, _ = text_embeds(pipe, captions, [""] * len(captions), pipe.device, False)
        return AdapterContext(latents, x, labels.float(), F.normalize(x, dim=-1))

    def adapter_conditioning(self, direction, ctx, rows):
        return direction

    def baseline_conditioning(self, ctx, rows, arm: str):
        source = ctx.labels if arm == "labels_text" else ctx.untrained
        return source[rows]

    def denoiser_eps(self, pipe, noisy, t, cond, ctx, rows):
        dtype = pipe.unet.dtype
        noisy, cond = noisy.to(dtype), cond.to(dtype)
        return pipe.unet(noisy, t, encoder_hidden_states=None, class_labels=cond).sample
