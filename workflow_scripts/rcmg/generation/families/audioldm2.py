"""AudioLDM2 (``cvssp/audioldm2``; ``cvssp/audioldm2-music`` is the same family with other
weights), diffusers ``AudioLDM2Pipeline``.

Its ``text_encoder`` is a full ``ClapModel`` (HTSAT-base audio tower included): it embeds
the bank, the queries and audio styles (``style_space: own_text_encoder``), and ranks
candidates. A prompt goes through CLAP and T5; the projection model and GPT-2 generate
``max_new_tokens`` language-model tokens (the UNet's first cross-attention states), T5
gives the second cross-attention's states.

* ``prompt`` and ``prompt_aug``: each prompt encoded on its own exactly as
  ``AudioLDM2Pipeline.encode_prompt`` encodes a single prompt (an item's conditioning
  never depends on its batch: upstream pads T5 to the batch's longest prompt, which
  shifts the GPT-2 positions), passed as embeddings; T5 states zero-padded (mask 0).
* ``retrieval`` ``adapter: native``: the style blended into the CLAP text token, then the
  pipeline's own projection + GPT-2 generation; ``adapter: external``: a trained
  512 -> H adapter maps the style into the language-model space, blended into every
  generated token. The T5 branch and the negative branch are never touched.
* token limits: the tokenizers' lengths and the T5 tokens the language model's context
  leaves (:func:`lm_context_budget`); every item records its ``lm_context``.
* style guidance: the GPT-2 and T5 states and the T5 mask stacked over the slots.
* style adapter: ``generated_prompt_embeds = unit(adapter(x))`` at each token's norm of
  the item's label-text generation (T5 states of the label text in every arm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rcmg.generation.families.base import AdapterContext, ConditioningRequest
from rcmg.generation.families.latent_diffusion import LatentDiffusionFamily

# Tokens the projection model puts around the T5 states before GPT-2: the CLAP token with
# its SOS/EOS (3) and the T5 sequence's SOS/EOS (2) (diffusers AudioLDM2ProjectionModel).
LM_INPUT_OVERHEAD = 5


@dataclass
class Branches:
    """Text encodings of one batch as ``AudioLDM2Pipeline.encode_prompt`` computes them."""

    clap: object  # [B, 1, 512]
    clap_mask: object  # [B, 1]
    t5: object  # [B, L, D]
    t5_mask: object  # [B, L]


def check_supported(pipe) -> None:
    from transformers import T5Tokenizer, T5TokenizerFast

    from rcmg.generation.conditioning import OptionError

    if not isinstance(pipe.tokenizer_2, (T5Tokenizer, T5TokenizerFast)):
        raise OptionError(
            f"retrieval conditioning supports AudioLDM2 text-to-audio/music checkpoints (T5 second "
            f"encoder); this model's tokenizer_2 is {type(pipe.tokenizer_2).__name__} (TTS is not supported)"
        )


def _clap_padding(tokenizer) -> str | bool:
    from transformers import RobertaTokenizer, RobertaTokenizerFast

    return "max_length" if isinstance(tokenizer, (RobertaTokenizer, RobertaTokenizerFast)) else True


def clap_text(pipe, texts: list[str], device):
    """CLAP text features ``[B, 1, 512]`` and the all-ones mask ``[B, 1]``."""
    tok = pipe.tokenizer(
        texts,
        padding=_clap_padding(pipe.tokenizer),
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    mask = tok.attention_mask.to(device)
    feats = pipe.text_encoder.get_text_features(tok.input_ids.to(device), attention_mask=mask)
    feats = getattr(feats, "pooler_output", feats)
    return feats[:, None, :], mask.new_ones((len(texts), 1))


def t5_text(pipe, texts: list[str], device, pad_to: int | None = None):
    """T5 hidden states and mask; padded to the batch's longest, or to ``pad_to`` (negatives)."""
    tok = pipe.tokenizer_2(
        texts,
        padding="max_length" if pad_to else True,
        max_length=pad_to or pipe.tokenizer_2.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    mask = tok.attention_mask.to(device)
    hidden = pipe.text_encoder_2(tok.input_ids.to(device), attention_mask=mask)[0]
    return hidden, mask


def branches(pipe, texts: list[str], device, t5_pad_to: int | None = None) -> Branches:
    clap, clap_mask = clap_text(pipe, texts, device)
    t5, t5_mask = t5_text(pipe, texts, device, pad_to=t5_pad_to)
    return Branches(clap, clap_mask, t5, t5_mask)


def generate_lm(pipe, b: Branches, max_new_tokens: int | None = None):
    """Projection model + GPT-2 generation: ``generated_prompt_embeds`` [B, T, H]."""
    projected = pipe.projection_model(
        hidden_states=b.clap,
        hidden_states_1=b.t5,
        attention_mask=b.clap_mask,
        attention_mask_1=b.t5_mask,
    )
    return pipe.generate_language_model(
        projected.hidden_states,
        attention_mask=projected.attention_mask,
        max_new_tokens=max_new_tokens,
    )


def lm_context_budget(pipe) -> dict:
    """The language model's context budget for one prompt.

    GPT-2 sees ``t5_tokens + LM_INPUT_OVERHEAD`` input embeddings and generates
    ``max_new_tokens`` more, one position each, so a prompt fits when
    ``t5_tokens + LM_INPUT_OVERHEAD + max_new_tokens <= n_positions`` (one position of
    slack: the last generated token is never fed back).
    """
    from rcmg.generation.conditioning import OptionError

    config = pipe.language_model.config
    n_positions = int(getattr(config, "n_positions", None) or config.max_position_embeddings)
    max_new = int(getattr(config, "max_new_tokens", None) or 8)
    limit = n_positions - max_new - LM_INPUT_OVERHEAD
    if limit < 3:
        raise OptionError(
            f"the language model's context ({n_positions} positions) leaves {limit} T5 tokens "
            f"after {max_new} generated tokens; this checkpoint cannot take a prompt"
        )
    return {"n_positions": n_positions, "max_new_tokens": max_new, "t5_token_limit": limit}


def lm_hidden_size(pipe) -> int:
    """The language model's hidden size H (read from its config, never assumed)."""
    config = pipe.language_model.config
    return int(getattr(config, "hidden_size", None) or config.n_embd)


def _token_angles(before, after) -> list[float]:
    from rcmg.bank.blend import angle_deg

    return [float(x) for x in np.asarray(angle_deg(before.float(), after.float())).reshape(-1)]


def encode_one(
    pipe, prompt: str, negative: str, device, do_cfg, style=None, opts=None, adapter=None, info=None
):
    """One prompt's conditioning, computed exactly as ``encode_prompt`` does for a single prompt.

    ``info`` (a dict), when given, is filled with the item's alpha, prompt-style cosine
    and angles per token group: ``clap`` (the CLAP text token), ``t5`` (never touched),
    ``lm_tokens_mean``/``lm_tokens_max`` (the generated language-model tokens against the
    same prompt's unblended generation).
    """
    from rcmg.generation.conditioning import (
        OptionError,
        adapt_style,
        alpha_for,
        angle,
        blend_tensor,
        conditioning_record,
        cos,
    )

    cond = branches(pipe, [prompt], device)
    clap0 = cond.clap
    alpha = reached = None
    if style is not None and adapter is None:
        if style.shape[-1] != cond.clap.shape[-1]:
            raise OptionError(
                f"style dim {style.shape[-1]} != AudioLDM2 CLAP text dim {cond.clap.shape[-1]}"
            )
        s = style.reshape(1, 1, -1)
        alpha, reached = alpha_for(
            opts, lambda a: angle(clap0[0, 0], blend_tensor(clap0, s, a, opts.blend)[0, 0])
        )
        cond.clap = blend_tensor(clap0, s, alpha, opts.blend)
    generated = generate_lm(pipe, cond)
    generated0 = generated
    if style is not None and adapter is not None:
        adapted = adapt_style(adapter, style.reshape(1, -1)).to(generated.device)[:, None, :]

        def mean_angle(a):
            return float(
                np.mean(_token_angles(generated0, blend_tensor(generated0, adapted, a, opts.blend)))
            )

        alpha, reached = alpha_for(opts, mean_angle)
        generated = blend_tensor(generated0, adapted, alpha, opts.blend)
    if info is not None and style is not None:
        if adapter is None:
            unblended = (
                generate_lm(pipe, Branches(clap0, cond.clap_mask, cond.t5, cond.t5_mask))
                if alpha
                else generated
            )
            tokens = _token_angles(unblended, generated)
            similarity = cos(clap0[0, 0], style)
            site = "clap_token"
        else:
            tokens = _token_angles(generated0, generated)
            similarity = float(
                np.mean([cos(generated0[0, t], adapted[0, 0]) for t in range(generated0.shape[1])])
            )
            site = "lm_tokens"
        angles = {
            "clap": angle(clap0[0, 0], cond.clap[0, 0]),
            "t5": 0.0,
            "lm_tokens_mean": float(np.mean(tokens)),
            "lm_tokens_max": float(np.max(tokens)),
        }
        info.update(
            conditioning_record(
                site,
                opts,
                alpha,
                reached,
                similarity,
                angles,
                adapter="external" if adapter is not None else "native",
            )
        )
    out = {
        "prompt_embeds": cond.t5,
        "attention_mask": cond.t5_mask,
        "generated_prompt_embeds": generated,
    }
    if do_cfg:
        uncond = branches(pipe, [negative], device, t5_pad_to=cond.t5.shape[1])
        out.update(
            negative_prompt_embeds=uncond.t5,
            negative_attention_mask=uncond.t5_mask,
            negative_generated_prompt_embeds=generate_lm(pipe, uncond),
        )
    return out


def _pad_seq(tensor, length: int):
    """Right-pad ``[1, L, ...]`` (or a ``[1, L]`` mask) with zeros to ``length`` along dim 1."""
    import torch

    missing = length - tensor.shape[1]
    if missing == 0:
        return tensor
    pad = torch.zeros(
        (tensor.shape[0], missing, *tensor.shape[2:]), dtype=tensor.dtype, device=tensor.device
    )
    return torch.cat([tensor, pad], dim=1)


_T5_KEYS = ("prompt_embeds", "attention_mask", "negative_prompt_embeds", "negative_attention_mask")


def _stack_items(per_item: list[dict]) -> dict:
    """Concatenate per-item conditioning; T5 sequences are zero-padded (mask 0) to the longest."""
    import torch

    longest = max(d["prompt_embeds"].shape[1] for d in per_item)
    out = {}
    for key in per_item[0]:
        parts = [_pad_seq(d[key], longest) if key in _T5_KEYS else d[key] for d in per_item]
        out[key] = torch.cat(parts, dim=0)
    return out


def condition_kwargs(
    pipe,
    prompts,
    negatives,
    device,
    do_cfg,
    styles=None,
    opts=None,
    adapter=None,
    infos=None,
    targets=None,
):
    """Keyword arguments for ``AudioLDM2Pipeline.__call__`` for one batch.

    Each prompt is encoded on its own (:func:`encode_one`); T5 states are then
    zero-padded with mask 0 for batching. With ``styles`` [B, 512]: ``adapter`` None is
    the ``native`` path, a loaded 512 -> H adapter the ``external`` path. ``infos`` (a
    list), when given, receives one record per item.
    """
    import torch

    from rcmg.generation.conditioning import per_item_options

    check_supported(pipe)
    per_item = []
    item_opts = per_item_options(opts, targets, len(prompts)) if opts else [opts] * len(prompts)
    with torch.no_grad():
        for i, (prompt, negative) in enumerate(zip(prompts, negatives, strict=True)):
            info = {} if infos is not None else None
            style = None if styles is None else styles[i]
            per_item.append(
                encode_one(
                    pipe, prompt, negative, device, do_cfg, style, item_opts[i], adapter, info
                )
            )
            if infos is not None:
                infos.append(info or None)
    return _stack_items(per_item)


def style_guided(
    pipe,
    *,
    prompt_kwargs: dict,
    style_kwargs: dict,
    **loop,
) -> np.ndarray:
    """Audio ``[B, T]`` with style guidance (one waveform per prompt).

    ``prompt_kwargs`` / ``style_kwargs`` are :func:`condition_kwargs` outputs (with CFG)
    for the prompt alone and for the style condition: ``eps_u`` from the negative branch,
    ``eps_c`` from the prompt's own ``generated_prompt_embeds`` + T5 states, ``eps_s``
    from the style-blended ones. The UNet call and decode are ``AudioLDM2Pipeline.
    __call__``'s (``unet(..., encoder_hidden_states=generated, encoder_hidden_states_1=t5,
    encoder_attention_mask_1=mask)``; ``vae.decode(latents / scaling_factor)``).
    """
    import torch

    from rcmg.generation.families.latent_diffusion import style_guided_loop
    from rcmg.generation.style_guidance import check_style_guidance

    check_style_guidance(loop["guidance_scale"], loop["beta"])
    beta = loop["beta"]
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
            **loop,
        )


def own_clap_scores(pipe, text: str, clips: np.ndarray) -> list[float]:
    """Cosine of each of one prompt's candidates ``[n, T]`` with that prompt, by the
    pipeline's own CLAP. Ranked within the prompt's own group only: upstream
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
    similarity = (
        torch.nn.functional.normalize(audio, dim=-1)
        @ torch.nn.functional.normalize(words, dim=-1).T
    )
    return [float(x) for x in similarity[:, 0].cpu()]


def _pad(tensors, length: int):
    import torch

    out = []
    for t in tensors:
        missing = length - t.shape[1]
        if missing:
            pad = torch.zeros((t.shape[0], missing, *t.shape[2:]), dtype=t.dtype, device=t.device)
            t = torch.cat([t, pad], dim=1)
        out.append(t)
    return torch.cat(out)


class AudioLDM2(LatentDiffusionFamily):
    name = "audioldm2"
    pipeline_class = "AudioLDM2Pipeline"
    text_encoders = ("text_encoder", "text_encoder_2", "projection_model", "language_model")
    own_clap_subfolder = "text_encoder"
    checks_alignment = False
    style_only_baseline = False
    residual_mix = False
    style_adapters = ("native", "external")
    unsupported_knobs = ("cond_mix_beta", "style_guidance")
    adapter_target_space = "language_model_tokens"
    ranked_by = "the model's own CLAP (AudioLDM2Pipeline.text_encoder, HTSAT-base), not the evaluation judge"
    angle_sites = {"clap_token": "clap", "lm_tokens": "lm_tokens_mean"}

    def token_limits(self, pipe):
        budget = lm_context_budget(pipe)
        return [
            *self.tokenizer_limits(pipe),
            (
                pipe.tokenizer_2,
                budget["t5_token_limit"],
                f"language-model context ({budget['n_positions']} positions, "
                f"{budget['max_new_tokens']} generated)",
            ),
        ]

    def prompt_context(self, pipe, text: str) -> dict:
        """What GPT-2 will see for ``text``: recorded per item in items.jsonl."""
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

    def conditioning(self, loaded, request: ConditioningRequest) -> dict:
        r = request
        return condition_kwargs(
            loaded.pipe,
            r.prompts,
            r.negatives,
            loaded.device,
            r.do_cfg,
            r.styles,
            r.options,
            r.adapter,
            r.infos,
            r.targets,
        )

    def style_guided_audio(self, loaded, request, style_kwargs, loop):
        own = condition_kwargs(loaded.pipe, request.prompts, request.negatives, loaded.device, True)
        return style_guided(loaded.pipe, prompt_kwargs=own, style_kwargs=style_kwargs, **loop)

    def rank_scores(self, loaded, clap, text, clips):
        return own_clap_scores(loaded.pipe, text, clips)

    # ---------------------------------------------------------------- style adapter
    def adapter_out_dim(self, pipe) -> int:
        return lm_hidden_size(pipe)

    def adapter_context(self, pipe, captions, latents, x) -> AdapterContext:
        import torch

        from rcmg.generation.conditioning import blend_tensor

        labels, untrained, t5, masks, norms = [], [], [], [], []
        with torch.no_grad():
            for caption, row in zip(captions, x, strict=True):
                b = branches(pipe, [caption], pipe.device)  # one text: no batch padding
                tokens = generate_lm(pipe, b).float()
                style = blend_tensor(b.clap, row.reshape(1, 1, -1).to(b.clap.dtype), 1.0, "lerp")
                native = generate_lm(pipe, Branches(style, b.clap_mask, b.t5, b.t5_mask))
                labels.append(tokens)
                untrained.append(native.float())
                t5.append(b.t5)
                masks.append(b.t5_mask)
                norms.append(tokens.norm(dim=-1))
        return AdapterContext(
            latents, x, labels, untrained, {"t5": t5, "t5_mask": masks, "norms": norms}
        )

    def adapter_conditioning(self, direction, ctx, rows):
        import torch

        norms = torch.cat([ctx.extra["norms"][r] for r in rows])  # max_new_tokens each: same T
        return direction[:, None, :] * norms[..., None]

    def baseline_conditioning(self, ctx, rows, arm: str):
        import torch

        source = ctx.labels if arm == "labels_text" else ctx.untrained
        return torch.cat([source[r] for r in rows])

    def denoiser_eps(self, pipe, noisy, t, cond, ctx, rows):
        dtype = pipe.unet.dtype
        noisy, cond = noisy.to(dtype), cond.to(dtype)
        t5 = [ctx.extra["t5"][r].to(dtype) for r in rows]
        masks = [ctx.extra["t5_mask"][r] for r in rows]
        longest = max(s.shape[1] for s in t5)
        return pipe.unet(
            noisy,
            t,
            encoder_hidden_states=cond,
            encoder_hidden_states_1=_pad(t5, longest),
            encoder_attention_mask_1=_pad(masks, longest),
            return_dict=False,
        )[0]
