"""Conditioning per pipeline family for the prompt / prompt_aug / retrieval conditions.

Everything reaches the pipeline through the public ``__call__`` arguments of
``AudioLDMPipeline`` / ``AudioLDM2Pipeline``; nothing is monkeypatched.

* ``prompt`` and ``prompt_aug``: text goes in as ``prompt=[...]`` (the plain pipeline
  call; ``prompt_aug`` only changes the text).
* AudioLDM1 ``retrieval``: the pipeline's own encoder gives CLAP text embeddings for
  both branches; only the conditional branch is blended with the style (and optionally
  residual-mixed); passed as ``prompt_embeds`` / ``negative_prompt_embeds``.
* AudioLDM2 ``retrieval`` ``adapter=mlp``: the style is blended into the CLAP text
  embedding, which then runs through the pipeline's own projection model and GPT-2
  generation (``generated_prompt_embeds``); the T5 branch and the negative branch are
  computed exactly as ``AudioLDM2Pipeline.encode_prompt`` does.
* AudioLDM2 ``adapter=external``: a trained 512 -> H adapter maps the style into the
  language-model hidden space, blended into every generated token embedding.

Blending uses :mod:`rcmg.bank.blend` (alpha = 0 returns the prompt bit-identically, so a
retrieval run at alpha 0 reproduces the prompt condition exactly).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rcmg.bank.blend import BLEND_MODES
from rcmg.workflow import kinds
from rcmg.workflow.cli import InputError

CONDITION_TYPES = kinds.CONDITION_TYPES
STYLE_TYPES = kinds.STYLE_TYPES
ADAPTERS = ("none", "mlp", "external")
COND_MIXES = ("none", "residual")


class OptionError(InputError):
    """Inconsistent generation options; raised before anything is generated."""


@dataclass(frozen=True)
class ConditionOptions:
    condition_type: str
    pipeline: str
    blend: str = "orth"
    alpha: float = 0.08
    adapter: str = "none"
    adapter_checkpoint: str | None = None
    cond_mix: str = "none"
    cond_mix_beta: float = 0.18
    style_topk: int = 4
    style_temp: float = 0.07
    aug_topk: int = 4
    aug_max_tags: int = 6
    strength_deg: float | None = None


def option_default(name: str):
    """The default of :class:`ConditionOptions` field ``name``.

    The one source of the conditioning defaults: ``GenerateConfig`` and the generate
    CLI take theirs from here.
    """
    return ConditionOptions.__dataclass_fields__[name].default


def options_from(source) -> ConditionOptions:
    """A :class:`ConditionOptions` from any object with attributes of the same names."""
    return ConditionOptions(**{f.name: getattr(source, f.name) for f in fields(ConditionOptions)})


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


def _check_unit_interval(name: str, value: float) -> None:
    if not (0.0 <= float(value) <= 1.0):
        raise OptionError(f"{name} must be in [0, 1], got {value}")


def _check_retrieval(opts: ConditionOptions) -> None:
    _check_choice("blend mode", opts.blend, BLEND_MODES)
    _check_choice("adapter", opts.adapter, ADAPTERS)
    _check_choice("cond mix", opts.cond_mix, COND_MIXES)
    _check_unit_interval("--alpha", opts.alpha)
    _check_unit_interval("--cond-mix-beta", opts.cond_mix_beta)
    if opts.style_topk < 1:
        raise OptionError(f"--style-topk must be >= 1, got {opts.style_topk}")
    if not opts.style_temp > 0:
        raise OptionError(f"--style-temp must be > 0, got {opts.style_temp}")
    if opts.pipeline == "audioldm2" and opts.adapter == "none":
        raise OptionError("retrieval on audioldm2 needs --adapter mlp or --adapter external")
    if opts.pipeline == "audioldm2" and opts.cond_mix != "none":
        raise OptionError("--cond-mix residual applies to audioldm1 only; use --cond-mix none")
    if opts.strength_deg is not None and not 0.0 < float(opts.strength_deg) < 90.0:
        raise OptionError(f"--strength-deg must be in (0, 90) degrees, got {opts.strength_deg}")
    if opts.adapter == "external" and not opts.adapter_checkpoint:
        raise OptionError("--adapter external needs --adapter-checkpoint FILE.safetensors")


def validate_options(opts: ConditionOptions) -> None:
    """Raise :class:`OptionError` for anything that would fail later (checked before loading)."""
    _check_choice("condition type", opts.condition_type, CONDITION_TYPES)
    _check_choice("pipeline", opts.pipeline, ("audioldm1", "audioldm2"))
    if opts.condition_type == "prompt_aug":
        if opts.aug_topk < 1 or opts.aug_max_tags < 0:
            raise OptionError("--aug-topk must be >= 1 and --aug-max-tags >= 0")
    if opts.condition_type == "style_only" and opts.pipeline != "audioldm1":
        raise OptionError(
            "--condition-type style_only (the style vector alone as the class embedding) is "
            "AudioLDM1's audio-embedding baseline; use --pipeline audioldm1"
        )
    if opts.condition_type in STYLE_TYPES:
        _check_retrieval(opts)


def style_only_options(opts: ConditionOptions) -> ConditionOptions:
    """``style_only``: the conditional embedding IS the style direction (at the prompt's
    norm): ``lerp`` at alpha 1, no residual, no target angle."""
    from dataclasses import replace

    return replace(opts, blend="lerp", alpha=1.0, cond_mix="none", strength_deg=None)


def effective_adapter(opts: ConditionOptions) -> str:
    """AudioLDM1 has no conditioning path beyond CLAP: ``mlp`` means a direct CLAP blend."""
    if opts.pipeline == "audioldm1" and opts.adapter == "mlp":
        return "none"
    return opts.adapter


# ------------------------------------------------------------------ blending on tensors


def blend_tensor(prompt, style, alpha: float, mode: str):
    """:func:`rcmg.bank.blend.blend` on torch tensors of any float dtype (computed in fp32/fp64)."""
    from rcmg.bank.blend import blend

    if alpha == 0.0:
        return prompt.clone()
    out = blend(
        prompt.float(), style.to(device=prompt.device, dtype=prompt.dtype).float(), alpha, mode
    )
    return out.to(prompt.dtype)


def residual_tensor(cond, blended, style, beta: float):
    """:func:`rcmg.bank.blend.residual_add` on tensors (``beta == 0`` returns ``blended``)."""
    from rcmg.bank.blend import residual_add

    if beta == 0.0:
        return blended.clone()
    out = residual_add(
        cond.float(), blended.float(), style.to(device=cond.device, dtype=cond.dtype).float(), beta
    )
    return out.to(cond.dtype)


def _angle(a, b) -> float:
    from rcmg.bank.blend import angle_deg

    return float(np.asarray(angle_deg(a.float(), b.float())).item())


def _cos(a, b) -> float:
    from rcmg.bank.blend import cosine

    return float(np.asarray(cosine(a.float(), b.float())).item())


def _alpha_for(opts: ConditionOptions, angle_of_alpha) -> tuple[float, bool | None]:
    """``(alpha, reached)``: the fixed alpha, or the one that turns by ``strength_deg``."""
    from rcmg.bank.blend import solve_alpha

    if opts.strength_deg is None:
        return float(opts.alpha), None
    return solve_alpha(angle_of_alpha, float(opts.strength_deg))


def _info(site: str, opts, alpha, reached, cos: float, angles: dict, **extra) -> dict:
    """What items.jsonl records about one item's conditioning (``conditioning`` field)."""
    return {
        "site": site,
        "blend": opts.blend,
        "alpha": float(alpha),
        "strength_deg_target": opts.strength_deg,
        "strength_reached": reached,
        "prompt_style_cos": cos,
        "angles_deg": angles,
        **extra,
    }


def adapt_style(adapter, styles):
    """Run the style adapter (if any) on ``styles`` [B, 512] -> [B, out_dim]."""
    import torch

    if adapter is None:
        return styles
    param = next(adapter.parameters())
    with torch.no_grad():
        return adapter(styles.to(device=param.device, dtype=param.dtype))


# ------------------------------------------------------------------ AudioLDM1


def aldm1_text_embeds(pipe, prompts: list[str], negatives: list[str], device, do_cfg: bool):
    """The pipeline's own normalised CLAP text embeddings: ``(cond [B,512], uncond [B,512] | None)``."""
    embeds = pipe._encode_prompt(prompts, device, 1, do_cfg, negative_prompt=list(negatives))
    if not do_cfg:
        return embeds, None
    uncond, cond = embeds.chunk(2)
    return cond, uncond


def _per_item_options(opts: ConditionOptions, targets, n: int) -> list[ConditionOptions]:
    """``opts`` per item; ``targets`` (one angle or None per item) override ``strength_deg``
    (controls matched to the angles of the retrieval run they control)."""
    from dataclasses import replace

    if targets is None:
        return [opts] * n
    if len(targets) != n:
        raise ValueError(f"{len(targets)} target angles for {n} items")
    return [replace(opts, strength_deg=t) if t is not None else opts for t in targets]


def _aldm1_final(cond, style, alpha: float, opts: ConditionOptions):
    blended = blend_tensor(cond, style, alpha, opts.blend)
    if opts.cond_mix == "residual":
        blended = residual_tensor(cond, blended, style, opts.cond_mix_beta)
    return blended


def aldm1_retrieval_kwargs(
    pipe,
    prompts,
    negatives,
    device,
    do_cfg,
    styles,
    opts: ConditionOptions,
    infos=None,
    targets=None,
):
    """``prompt_embeds`` (blended) and ``negative_prompt_embeds`` (untouched) for AudioLDM1.

    With ``opts.strength_deg`` each item gets the alpha at which its conditional
    embedding turns by that angle (blend and residual together). ``infos`` (a list),
    when given, receives one :func:`_info` per item: alpha, prompt-style cosine, the
    angle of each branch (``cond``; ``uncond`` is never touched) and the norm ratio.
    """
    import torch

    cond, uncond = aldm1_text_embeds(pipe, prompts, negatives, device, do_cfg)
    if styles.shape[-1] != cond.shape[-1]:
        raise OptionError(
            f"style dim {styles.shape[-1]} != AudioLDM1 CLAP text dim {cond.shape[-1]}; "
            "the bank and the model must share the CLAP space"
        )
    styles = styles.to(device=cond.device, dtype=cond.dtype)
    per_item = _per_item_options(opts, targets, len(cond))
    if opts.strength_deg is None and targets is None:
        final = _aldm1_final(cond, styles, opts.alpha, opts)
        solved = [(float(opts.alpha), None)] * len(cond)
    else:
        solved, rows = [], []
        for i in range(len(cond)):
            c, s, o = cond[i : i + 1], styles[i : i + 1], per_item[i]
            alpha, reached = _alpha_for(
                o, lambda a, c=c, s=s, o=o: _angle(c, _aldm1_final(c, s, a, o))
            )
            solved.append((alpha, reached))
            rows.append(_aldm1_final(c, s, alpha, o))
        final = torch.cat(rows)
    if infos is not None:
        for i, (alpha, reached) in enumerate(solved):
            infos.append(
                _info(
                    "clap_class_embedding",
                    per_item[i],
                    alpha,
                    reached,
                    _cos(cond[i], styles[i]),
                    {"cond": _angle(cond[i], final[i]), "uncond": 0.0},
                    cond_mix=opts.cond_mix,
                    cond_mix_beta=opts.cond_mix_beta if opts.cond_mix == "residual" else None,
                    norm_ratio=float(final[i].float().norm() / cond[i].float().norm()),
                )
            )
    kwargs = {"prompt_embeds": final}
    if do_cfg:
        kwargs["negative_prompt_embeds"] = uncond
    return kwargs


# ------------------------------------------------------------------ AudioLDM2


@dataclass
class Aldm2Branches:
    """Text encodings of one batch as ``AudioLDM2Pipeline.encode_prompt`` computes them."""

    clap: object  # [B, 1, 512]
    clap_mask: object  # [B, 1]
    t5: object  # [B, L, D]
    t5_mask: object  # [B, L]


def _check_aldm2_supported(pipe) -> None:
    from transformers import T5Tokenizer, T5TokenizerFast

    if not isinstance(pipe.tokenizer_2, (T5Tokenizer, T5TokenizerFast)):
        raise OptionError(
            f"retrieval conditioning supports AudioLDM2 text-to-audio/music checkpoints (T5 second "
            f"encoder); this model's tokenizer_2 is {type(pipe.tokenizer_2).__name__} (TTS is not supported)"
        )


def _clap_padding(tokenizer) -> str | bool:
    from transformers import RobertaTokenizer, RobertaTokenizerFast

    return "max_length" if isinstance(tokenizer, (RobertaTokenizer, RobertaTokenizerFast)) else True


def aldm2_clap_text(pipe, texts: list[str], device):
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


def aldm2_t5_text(pipe, texts: list[str], device, pad_to: int | None = None):
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


def aldm2_branches(pipe, texts: list[str], device, t5_pad_to: int | None = None) -> Aldm2Branches:
    clap, clap_mask = aldm2_clap_text(pipe, texts, device)
    t5, t5_mask = aldm2_t5_text(pipe, texts, device, pad_to=t5_pad_to)
    return Aldm2Branches(clap, clap_mask, t5, t5_mask)


def aldm2_generate(pipe, branches: Aldm2Branches, max_new_tokens: int | None = None):
    """Projection model + GPT-2 generation: ``generated_prompt_embeds`` [B, T, H]."""
    projected = pipe.projection_model(
        hidden_states=branches.clap,
        hidden_states_1=branches.t5,
        attention_mask=branches.clap_mask,
        attention_mask_1=branches.t5_mask,
    )
    return pipe.generate_language_model(
        projected.hidden_states,
        attention_mask=projected.attention_mask,
        max_new_tokens=max_new_tokens,
    )


# Tokens the projection model puts around the T5 states before GPT-2: the CLAP token with
# its SOS/EOS (3) and the T5 sequence's SOS/EOS (2) (diffusers AudioLDM2ProjectionModel).
LM_INPUT_OVERHEAD = 5


def lm_context_budget(pipe) -> dict:
    """The language model's context budget for one prompt (AudioLDM2).

    GPT-2 sees ``t5_tokens + LM_INPUT_OVERHEAD`` input embeddings and generates
    ``max_new_tokens`` more, one position each, so a prompt fits when
    ``t5_tokens + LM_INPUT_OVERHEAD + max_new_tokens <= n_positions`` (one position of
    slack: the last generated token is never fed back).
    """
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


def _aldm2_encode_one(
    pipe, prompt: str, negative: str, device, do_cfg, style=None, opts=None, adapter=None, info=None
):
    """One prompt's conditioning, computed exactly as ``encode_prompt`` does for a single prompt.

    ``info`` (a dict), when given, is filled with the item's alpha, prompt-style cosine
    and angles per token group: ``clap`` (the CLAP text token), ``t5`` (never touched),
    ``lm_tokens_mean``/``lm_tokens_max`` (the generated language-model tokens against the
    same prompt's unblended generation).
    """
    cond = aldm2_branches(pipe, [prompt], device)
    clap0 = cond.clap
    alpha = reached = None
    if style is not None and adapter is None:
        if style.shape[-1] != cond.clap.shape[-1]:
            raise OptionError(
                f"style dim {style.shape[-1]} != AudioLDM2 CLAP text dim {cond.clap.shape[-1]}"
            )
        s = style.reshape(1, 1, -1)
        alpha, reached = _alpha_for(
            opts, lambda a: _angle(clap0[0, 0], blend_tensor(clap0, s, a, opts.blend)[0, 0])
        )
        cond.clap = blend_tensor(clap0, s, alpha, opts.blend)
    generated = aldm2_generate(pipe, cond)
    generated0 = generated
    if style is not None and adapter is not None:
        adapted = adapt_style(adapter, style.reshape(1, -1)).to(generated.device)[:, None, :]

        def mean_angle(a):
            return float(
                np.mean(_token_angles(generated0, blend_tensor(generated0, adapted, a, opts.blend)))
            )

        alpha, reached = _alpha_for(opts, mean_angle)
        generated = blend_tensor(generated0, adapted, alpha, opts.blend)
    if info is not None and style is not None:
        if adapter is None:
            unblended = (
                aldm2_generate(pipe, Aldm2Branches(clap0, cond.clap_mask, cond.t5, cond.t5_mask))
                if alpha
                else generated
            )
            tokens = _token_angles(unblended, generated)
            cos = _cos(clap0[0, 0], style)
            site = "clap_token"
        else:
            tokens = _token_angles(generated0, generated)
            cos = float(
                np.mean([_cos(generated0[0, t], adapted[0, 0]) for t in range(generated0.shape[1])])
            )
            site = "lm_tokens"
        angles = {
            "clap": _angle(clap0[0, 0], cond.clap[0, 0]),
            "t5": 0.0,
            "lm_tokens_mean": float(np.mean(tokens)),
            "lm_tokens_max": float(np.max(tokens)),
        }
        info.update(
            _info(
                site,
                opts,
                alpha,
                reached,
                cos,
                angles,
                adapter="external" if adapter is not None else "mlp",
            )
        )
    out = {
        "prompt_embeds": cond.t5,
        "attention_mask": cond.t5_mask,
        "generated_prompt_embeds": generated,
    }
    if do_cfg:
        uncond = aldm2_branches(pipe, [negative], device, t5_pad_to=cond.t5.shape[1])
        out.update(
            negative_prompt_embeds=uncond.t5,
            negative_attention_mask=uncond.t5_mask,
            negative_generated_prompt_embeds=aldm2_generate(pipe, uncond),
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


def aldm2_condition_kwargs(
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

    Each prompt is encoded on its own (as the plain pipeline encodes a single prompt), so
    an item's conditioning never depends on which prompts share its batch: upstream
    ``encode_prompt`` pads T5 to the longest prompt of the batch and the padding shifts
    the GPT-2 positions. T5 states are then zero-padded with mask 0 for batching.

    With ``styles`` [B, 512]: ``adapter`` None is the ``mlp`` path (style blended into the
    CLAP text embedding before the pipeline's projection + language model); a loaded
    512 -> H adapter is the ``external`` path (adapted style blended into the generated
    LM embeddings). The negative branch is never touched. ``infos`` (a list), when
    given, receives one record per item (see :func:`_aldm2_encode_one`).
    """
    import torch

    _check_aldm2_supported(pipe)
    per_item = []
    item_opts = _per_item_options(opts, targets, len(prompts)) if opts else [opts] * len(prompts)
    with torch.no_grad():
        for i, (prompt, negative) in enumerate(zip(prompts, negatives, strict=True)):
            info = {} if infos is not None else None
            style = None if styles is None else styles[i]
            per_item.append(
                _aldm2_encode_one(
                    pipe, prompt, negative, device, do_cfg, style, item_opts[i], adapter, info
                )
            )
            if infos is not None:
                infos.append(info or None)
    return _stack_items(per_item)
