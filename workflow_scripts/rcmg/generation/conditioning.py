"""Condition options and the blending operations every model family conditions with.

A condition (config ``conditions.<name>``, CLI ``--condition-type`` and the retrieval
options) is a :class:`ConditionOptions`; :func:`validate_options` checks it before
anything is loaded, the generic checks here and the family's own
(:meth:`rcmg.generation.families.base.ModelFamily.check_options`). How a family turns a
batch's prompts and style vectors into its conditioning is its module's
(:mod:`rcmg.generation.families`); the operations they share are here: the blend on
tensors (:mod:`rcmg.bank.blend`; alpha = 0 returns the prompt bit-identically, so a
retrieval run at alpha 0 reproduces the prompt condition exactly), the residual mix,
the alpha that reaches a target angle, the adapter call and the per-item record.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rcmg.bank.blend import BLEND_MODES
from rcmg.workflow import kinds
from rcmg.workflow.cli import InputError

CONDITION_TYPES = kinds.CONDITION_TYPES
STYLE_TYPES = kinds.STYLE_TYPES
AUDIO_PROMPT_TYPES = kinds.AUDIO_PROMPT_TYPES
AUDIO_PROMPT_SOURCES = kinds.AUDIO_PROMPT_SOURCES
ADAPTERS = ("none", "native", "external")
# The original scripts' names for the same paths: ``--adapter mlp`` was the model's own
# conditioning path (each family module says what that is); no MLP is trained on that
# path, so it is called ``native`` here.
ADAPTER_ALIASES = {"mlp": "native"}


def canonical_adapter(name: str) -> str:
    """``mlp`` (the original scripts' flag) -> ``native``; every other name unchanged."""
    return ADAPTER_ALIASES.get(str(name), str(name))


COND_MIXES = ("none", "residual")


class OptionError(InputError):
    """Inconsistent generation options; raised before anything is generated."""


@dataclass(frozen=True)
class ConditionOptions:
    condition_type: str
    family: str
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
    # continuation / melody: seconds of the retrieved item's audio given to the model
    prompt_seconds: float = 3.0
    # continuation / melody: whose audio: the prompt's top hit, or the controls' seeded
    # random bank item / the top hit of the prompt half the set away (rcmg.generation.controls)
    audio_prompt_source: str = "top"
    # the init-audio route (families with ``init_audio_route``): the retrieved item's audio
    # as the initial audio, denoised from this noise level (sigma); None: off
    init_noise_level: float | None = None


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
    if opts.strength_deg is not None and not 0.0 < float(opts.strength_deg) < 90.0:
        raise OptionError(f"--strength-deg must be in (0, 90) degrees, got {opts.strength_deg}")
    if opts.init_noise_level is not None and not float(opts.init_noise_level) > 0:
        raise OptionError(f"--init-noise-level must be > 0 (a sigma), got {opts.init_noise_level}")
    if opts.adapter == "external" and not opts.adapter_checkpoint:
        raise OptionError("--adapter external needs --adapter-checkpoint FILE.safetensors")


def validate_options(opts: ConditionOptions) -> None:
    """Raise :class:`OptionError` for anything that would fail later (checked before loading)."""
    from rcmg.generation.families import FamilyError, get_family

    _check_choice("condition type", opts.condition_type, CONDITION_TYPES)
    try:
        family = get_family(opts.family)
    except FamilyError as err:
        raise OptionError(str(err)) from err
    if opts.condition_type == "prompt_aug":
        if opts.aug_topk < 1 or opts.aug_max_tags < 0:
            raise OptionError("--aug-topk must be >= 1 and --aug-max-tags >= 0")
    if opts.condition_type in STYLE_TYPES:
        _check_retrieval(opts)
    if opts.condition_type in AUDIO_PROMPT_TYPES:
        if not opts.prompt_seconds > 0:
            raise OptionError(f"--prompt-seconds must be > 0, got {opts.prompt_seconds}")
        _check_choice("--audio-prompt-source", opts.audio_prompt_source, AUDIO_PROMPT_SOURCES)
    elif opts.audio_prompt_source != "top":
        raise OptionError(
            f"--audio-prompt-source {opts.audio_prompt_source} only applies to "
            f"{', '.join(AUDIO_PROMPT_TYPES)} (the retrieved item's audio as a prompt); drop it"
        )
    family.check_options(opts)


def style_only_options(opts: ConditionOptions) -> ConditionOptions:
    """``style_only``: the conditional embedding IS the style direction (at the prompt's
    norm): ``lerp`` at alpha 1, no residual, no target angle."""
    from dataclasses import replace

    return replace(opts, blend="lerp", alpha=1.0, cond_mix="none", strength_deg=None)


def effective_adapter(opts: ConditionOptions) -> str:
    """A family whose style adapters include ``none`` has no conditioning path beyond the
    blend itself: ``native`` there means the direct blend (``none``)."""
    from rcmg.generation.families import get_family

    if opts.adapter == "native" and "none" in get_family(opts.family).style_adapters:
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


def angle(a, b) -> float:
    from rcmg.bank.blend import angle_deg

    return float(np.asarray(angle_deg(a.float(), b.float())).item())


def cos(a, b) -> float:
    from rcmg.bank.blend import cosine

    return float(np.asarray(cosine(a.float(), b.float())).item())


def alpha_for(opts: ConditionOptions, angle_of_alpha) -> tuple[float, bool | None]:
    """``(alpha, reached)``: the fixed alpha, or the one that turns by ``strength_deg``."""
    from rcmg.bank.blend import solve_alpha

    if opts.strength_deg is None:
        return float(opts.alpha), None
    return solve_alpha(angle_of_alpha, float(opts.strength_deg))


def conditioning_record(
    site: str, opts, alpha, reached, prompt_style_cos: float, angles: dict, **extra
) -> dict:
    """What items.jsonl records about one item's conditioning (``conditioning`` field)."""
    return {
        "site": site,
        "blend": opts.blend,
        "alpha": float(alpha),
        "strength_deg_target": opts.strength_deg,
        "strength_reached": reached,
        "prompt_style_cos": prompt_style_cos,
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


def per_item_options(opts: ConditionOptions, targets, n: int) -> list[ConditionOptions]:
    """``opts`` per item; ``targets`` (one angle or None per item) override ``strength_deg``
    (controls matched to the angles of the retrieval run they control)."""
    from dataclasses import replace

    if targets is None:
        return [opts] * n
    if len(targets) != n:
        raise ValueError(f"{len(targets)} target angles for {n} items")
    return [replace(opts, strength_deg=t) if t is not None else opts for t in targets]
