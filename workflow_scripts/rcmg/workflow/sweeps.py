"""Sweeps: the method's knobs as a planned grid of run points (config ``sweeps:``).

Standard library only: rules/common.smk imports this while Snakemake parses, so the
planning of a large grid stays fast.

A *run point* is one run directory ``runs/{model}/{condition}/seed{seed}``. The
configured conditions are run points as they are (``retrieval_native``); a sweep adds
points whose condition part names the base condition and the swept values,
canonically::

    retrieval_native@alpha=0.05,guidance=2.6

Knobs come in the order of :data:`KNOBS`, values are formatted one way however they
were written (``0.1``, ``0.10`` and ``1e-1`` are ``0.1``; ``3`` and ``3.0`` are ``3``),
so renaming or reordering a sweep never renames its directories, and the same point
reached by two sweeps is one run.

Config syntax (config/README.md, ``sweeps``)::

    sweeps:
      alpha_x_guidance:              # a name (labels the curves)
        models: [audioldm]           # optional: default every model the conditions run on
        conditions: [retrieval_native]
        product: {alpha: [0.02, 0.05], guidance: [2.6, 3.2]}   # every combination (4)
      beta_with_alpha:
        conditions: [retrieval_native]
        zip: {alpha: [0.02, 0.04], cond_mix_beta: [0.1, 0.2]}  # i-th values together (2)

A swept knob the baseline condition also has (:data:`BASELINE_KNOBS`: guidance, steps,
scheduler) sweeps the baseline at the same values (*matched baseline*): the point above
is compared with ``prompt@guidance=2.6``, not with the default ``prompt`` run.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from rcmg.workflow.kinds import AUDIO_PROMPT_TYPES

SEP = "@"  # base condition SEP knob=value,knob=value (condition keys never contain it)

# knob -> (where the effective setting lives, value kind)
KNOBS: dict[str, tuple[str, str]] = {
    "guidance": ("sampling", "float"),
    "steps": ("sampling", "int"),
    "scheduler": ("sampling", "scheduler"),
    "alpha": ("condition", "unit"),
    "strength_deg": ("condition", "angle"),
    "style_guidance": ("condition", "float"),
    # continuation / melody: seconds of the retrieved item's audio given to the model
    "prompt_seconds": ("condition", "positive"),
    # the init-audio route (conditions.<c>.init_noise_level): the sigma denoising starts from
    "init_noise_level": ("condition", "positive"),
    "cond_mix_beta": ("retrieval", "unit"),
    "style_topk": ("retrieval", "int"),
    "style_temp": ("retrieval", "positive"),
    # the trained style adapter (config adapter_training), for `adapter: external`
    # conditions of models without a `projector`: the adapter variant is in the path
    "adapter_lr": ("adapter", "positive"),
    "adapter_hidden": ("adapter", "int"),
    "adapter_epochs": ("adapter", "int"),
    # a family's own adapter setting (ModelFamily.adapter_options): MusicGen's and Stable Audio's K tokens
    "adapter_style_tokens": ("adapter", "int"),
}
ADAPTER_KNOBS = tuple(k for k, (where, _) in KNOBS.items() if where == "adapter")
ADAPTER_PREFIX = "adapter_"  # adapter_lr -> adapter_training.lr
# ``sweeps.prompts: N``: sweep points and their matched baselines generate a seeded subset
# of N prompts (``sweeps.prompts_seed``), keeping the items' indices. A subset run is a
# different run from the full one, so its name ends in ``prompts=N`` (after the knobs):
# every point of a curve, the configured values' too, and its baseline are on the same
# items; configured runs are never subset. Not sweep names (reserved keys of ``sweeps``).
SUBSET = "prompts"
SUBSET_SEED = "prompts_seed"
RESERVED = (SUBSET, SUBSET_SEED)
NAME_KEYS = (*KNOBS, SUBSET)
BASELINE_KNOBS = ("guidance", "steps", "scheduler")
# "default": the checkpoint's own scheduler (the only choice of a family without one: MusicGen)
SCHEDULERS = ("ddim", "dpmpp", "pndm", "euler", "lms", "heun", "unipc", "default")
STYLE_TYPES = ("retrieval", "retrieval_random", "retrieval_mismatched", "style_only")
BLENDED_TYPES = ("retrieval", "retrieval_random", "retrieval_mismatched")


class SweepError(ValueError):
    """A sweep the config cannot plan; the message names the key."""


@dataclass(frozen=True)
class RunPoint:
    """One run directory's model and condition part, and what makes it differ."""

    model: str
    condition: str  # the run's condition name: a config key, or base@knob=value,...
    base: str  # the config condition it derives from
    settings: tuple[tuple[str, str], ...] = ()  # knobs differing from the configured run
    # (sweep name, its swept (knob, value) at this point) for each sweep that plans it
    sweeps: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    baseline: str | None = None  # run condition of its matched baseline (sweep points)
    roles: tuple[str, ...] = field(default=("configured",))  # configured/sweep/baseline


# ---------------------------------------------------------------- canonical names


def canonical_value(knob: str, value) -> str:
    """The one spelling of ``value`` for ``knob`` (raises SweepError naming the knob)."""
    if knob not in KNOBS:
        raise SweepError(f"unknown sweep knob '{knob}' (one of {', '.join(KNOBS)})")
    kind = KNOBS[knob][1]
    if kind == "scheduler":
        if value not in SCHEDULERS:
            raise SweepError(f"{knob}: '{value}' is not one of {', '.join(SCHEDULERS)}")
        return str(value)
    if isinstance(value, bool):
        raise SweepError(f"{knob}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SweepError(f"{knob}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise SweepError(f"{knob}: {value!r} is not a finite number")
    if kind == "int":
        if not number.is_integer() or number < 1:
            raise SweepError(f"{knob}: {value!r} is not a positive integer")
        return str(int(number))
    limits = {
        "unit": (0.0 <= number <= 1.0, "within [0, 1]"),
        "angle": (0.0 < number < 90.0, "strictly between 0 and 90 degrees"),
        "positive": (number > 0, "positive"),
        "float": (number >= 0, "non-negative"),
    }
    ok, what = limits[kind]
    if not ok:
        raise SweepError(f"{knob}: {value!r} must be {what}")
    if number == 0:
        return "0"
    text = format(number, ".10g")
    if "e" in text:  # 1e-05 -> 1e-5, 1e+20 -> 1e20: one spelling of the exponent
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else ""
        text = f"{mantissa}e{sign}{int(exponent.lstrip('+-'))}"
    return text


def typed_value(knob: str, canonical: str):
    """A canonical value as the config type it replaces (int, float or str)."""
    kind = KNOBS[knob][1]
    if kind == "scheduler":
        return canonical
    if kind == "int":
        return int(canonical)
    return float(canonical)


def ordered(settings) -> tuple[tuple[str, str], ...]:
    settings = dict(settings)
    return tuple((k, settings[k]) for k in NAME_KEYS if k in settings)


def point_name(base: str, settings) -> str:
    """``base@k=v,...`` with knobs in KNOBS order; ``base`` when nothing is set."""
    settings = dict(settings)
    if not settings:
        return base
    parts = [f"{k}={settings[k]}" for k in NAME_KEYS if k in settings]
    return base + SEP + ",".join(parts)


def parse_point(condition: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`point_name`: (base condition, {knob: canonical value})."""
    if SEP not in condition:
        return condition, {}
    base, rest = condition.split(SEP, 1)
    settings = {}
    for part in rest.split(","):
        knob, _, value = part.partition("=")
        settings[knob] = value
    return base, settings


# ---------------------------------------------------------------- the grid of one sweep


def sweep_settings(name: str, sweep: dict) -> list[dict[str, str]]:
    """The canonical settings of every point of one sweep, in config order."""
    key = f"sweeps.{name}"
    has_product, has_zip = "product" in sweep, "zip" in sweep
    if has_product == has_zip:
        raise SweepError(f"{key}: give exactly one of 'product' (every combination) or 'zip'")
    mode = "product" if has_product else "zip"
    lists = sweep[mode]
    if not isinstance(lists, dict) or not lists:
        raise SweepError(f"{key}.{mode}: map each knob to a list of values")
    canonical: dict[str, list[str]] = {}
    for knob, values in lists.items():
        if knob not in KNOBS:
            raise SweepError(
                f"{key}.{mode}.{knob}: not a sweepable knob (one of {', '.join(KNOBS)})"
            )
        if not isinstance(values, list) or not values:
            raise SweepError(f"{key}.{mode}.{knob}: give a non-empty list of values")
        try:
            spelled = [canonical_value(knob, v) for v in values]
        except SweepError as err:
            raise SweepError(f"{key}.{mode}.{err}") from None
        dupes = sorted({v for v in spelled if spelled.count(v) > 1})
        if dupes:
            raise SweepError(
                f"{key}.{mode}.{knob}: {', '.join(dupes)} given more than once "
                "(values are compared as numbers: 0.1, 0.10 and 1e-1 are one point)"
            )
        canonical[knob] = spelled
    knobs = list(canonical)
    if mode == "zip":
        lengths = {k: len(v) for k, v in canonical.items()}
        if len(set(lengths.values())) > 1:
            raise SweepError(
                f"{key}.zip: zipped lists must have one length (got "
                + ", ".join(f"{k}: {n}" for k, n in lengths.items())
                + "); use 'product' for every combination"
            )
        combos = list(zip(*canonical.values(), strict=True))
    else:
        combos = list(itertools.product(*canonical.values()))
    return [dict(zip(knobs, combo, strict=True)) for combo in combos]


def knob_problem(knob: str, model: str, cond_name: str, config: dict) -> str | None:
    """Why ``knob`` has no effect on ``model`` x ``cond_name`` (None when it has)."""
    cond = config["conditions"][cond_name]
    ctype = cond["type"]
    if KNOBS[knob][0] == "sampling":
        return None
    if KNOBS[knob][0] == "adapter":
        if ctype not in STYLE_TYPES or cond.get("adapter") != "external":
            return f"{knob} applies to 'adapter: external' style conditions, not '{cond_name}'"
        if config["models"][model].get("projector"):
            return (
                f"{knob} has no effect on {model}: it uses its converted projector "
                f"(models.{model}.projector), not a trained adapter"
            )
        return None
    if knob in ("alpha", "style_topk", "style_temp") and ctype not in STYLE_TYPES:
        return f"{knob} applies to style conditions, not type '{ctype}'"
    if knob == "alpha" and "strength_deg" in cond:
        return "alpha has no effect when the condition sets strength_deg (sweep strength_deg)"
    if knob == "strength_deg" and ctype not in BLENDED_TYPES:
        return f"strength_deg applies to retrieval types, not '{ctype}'"
    if knob == "cond_mix_beta" and ctype not in STYLE_TYPES:
        return f"cond_mix_beta applies to style conditions, not type '{ctype}'"
    if knob == "style_guidance" and ctype not in BLENDED_TYPES:
        return f"style_guidance applies to retrieval/control conditions, not '{ctype}'"
    if knob == "init_noise_level" and "init_noise_level" not in cond:
        return (
            f"init_noise_level applies to init-audio conditions (conditions.<c>.init_noise_level "
            f"with adapter: none), not '{cond_name}'"
        )
    if knob in ("alpha", "strength_deg", "style_guidance") and "init_noise_level" in cond:
        return f"{knob} has no effect on the init-audio route (sweep init_noise_level)"
    if knob == "prompt_seconds" and ctype not in AUDIO_PROMPT_TYPES:
        return (
            f"prompt_seconds applies to {', '.join(AUDIO_PROMPT_TYPES)} conditions, not '{ctype}'"
        )
    return None


def condition_models(config: dict, cond_name: str) -> list[str]:
    return config["conditions"][cond_name].get("models") or list(config["models"])


# ---------------------------------------------------------------- the plan


def plan(config: dict) -> list[RunPoint]:
    """Every run point of the config: configured model x condition, then sweep points and
    their matched baselines (deduplicated, in a stable order). Raises SweepError."""
    models, conditions = config["models"], config["conditions"]
    baseline = config["evaluation"]["baseline_condition"]
    points: dict[tuple[str, str], RunPoint] = {}

    def add(point: RunPoint) -> None:
        key = (point.model, point.condition)
        point = RunPoint(
            model=point.model,
            condition=point.condition,
            base=point.base,
            settings=ordered(parse_point(point.condition)[1]),
            sweeps=point.sweeps,
            baseline=point.baseline,
            roles=point.roles,
        )
        old = points.get(key)
        if old is None:
            points[key] = point
            return
        points[key] = RunPoint(
            model=old.model,
            condition=old.condition,
            base=old.base,
            settings=old.settings,
            sweeps=tuple(dict.fromkeys(old.sweeps + point.sweeps)),
            baseline=old.baseline if old.baseline is not None else point.baseline,
            roles=tuple(dict.fromkeys(old.roles + point.roles)),
        )

    for m in models:
        for c in conditions:
            if m in condition_models(config, c):
                add(RunPoint(model=m, condition=c, base=c))
    subset = prompt_subset(config)
    for name, sweep in sweep_defs(config).items():
        key = f"sweeps.{name}"
        grid = sweep_settings(name, sweep)
        conds = sweep.get("conditions") or []
        if not conds:
            raise SweepError(f"{key}.conditions: name the conditions this sweep runs on")
        for c in conds:
            if c not in conditions:
                raise SweepError(
                    f"{key}.conditions: '{c}' is not a key of 'conditions' ({', '.join(conditions)})"
                )
            if SEP in c:
                raise SweepError(f"{key}.conditions: '{c}' contains '{SEP}'")
        chosen = sweep.get("models")
        for m in chosen or []:
            if m not in models:
                raise SweepError(
                    f"{key}.models: '{m}' is not a key of 'models' ({', '.join(models)})"
                )
        for c in conds:
            runs_on = [m for m in condition_models(config, c) if not chosen or m in chosen]
            if chosen and not runs_on:
                raise SweepError(
                    f"{key}: condition '{c}' runs on none of {chosen} (conditions.{c}.models)"
                )
            for m in runs_on:
                for knob in grid[0]:
                    why = knob_problem(knob, m, c, config)
                    if why:
                        raise SweepError(f"{key}: {why} (condition {c}, model {m})")
                for settings in grid:
                    matched = {k: v for k, v in settings.items() if k in BASELINE_KNOBS}
                    if subset:
                        settings = {**settings, SUBSET: subset}
                        matched[SUBSET] = subset
                    has_baseline = baseline in conditions and m in condition_models(
                        config, baseline
                    )
                    base_point = run_name(config, m, baseline, matched) if has_baseline else None
                    add(
                        RunPoint(
                            model=m,
                            condition=run_name(config, m, c, settings),
                            base=c,
                            sweeps=((name, ordered(_swept(settings))),),
                            baseline=base_point if c != baseline else None,
                            roles=("sweep",),
                        )
                    )
                    if has_baseline and base_point != baseline and c != baseline:
                        add(
                            RunPoint(
                                model=m,
                                condition=base_point,
                                base=baseline,
                                roles=("baseline",),
                            )
                        )
    return list(points.values())


def sweep_defs(config: dict) -> dict:
    """The named sweeps of ``sweeps`` (its reserved keys, ``prompts``/``prompts_seed``, left out)."""
    return {k: v for k, v in (config.get("sweeps") or {}).items() if k not in RESERVED}


def prompt_subset(config: dict) -> str | None:
    """``sweeps.prompts`` as a canonical count (None: sweep points use every prompt)."""
    n = (config.get("sweeps") or {}).get(SUBSET)
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SweepError(f"sweeps.{SUBSET}: {n!r} is not a positive integer (prompts per point)")
    return str(n)


def subset_seed(config: dict) -> int:
    return int((config.get("sweeps") or {}).get(SUBSET_SEED, 0))


def _swept(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k in KNOBS}


def configured_value(config: dict, model: str, cond_name: str, knob: str) -> str | None:
    """The canonical value ``knob`` has in the configured ``model`` x ``cond_name`` run
    (None when the condition does not set it: strength_deg, style_guidance)."""
    cond = config["conditions"][cond_name]
    where = KNOBS[knob][0]
    if knob == "alpha":
        value = cond.get("alpha", config["models"][model]["retrieval"]["alpha"])
    elif where == "adapter":
        value = config["adapter_training"][knob.removeprefix(ADAPTER_PREFIX)]
    elif where == "condition":
        value = cond.get(knob)
    else:
        value = config["models"][model][where][knob]
    return None if value is None else canonical_value(knob, value)


def run_name(config: dict, model: str, cond_name: str, settings: dict) -> str:
    """A point's run condition: the knobs whose value differs from the configured run's
    (a point equal to the configured run IS that run: one directory, one job)."""
    differ = {
        k: v
        for k, v in settings.items()
        if k == SUBSET or configured_value(config, model, cond_name, k) != v
    }
    return point_name(cond_name, differ)


def problems(config: dict) -> list[str]:
    """Sweep problems as config_checks messages (empty when the sweeps plan)."""
    try:
        plan(config)
    except SweepError as err:
        return [str(err)]
    return []


def sweep_words(points: list[RunPoint]) -> list[str]:
    """Each sweep point as SWEEP:MODEL:CONDITION:BASELINE:knob=v,... (compare's
    ``--sweep-points``): the curves take their points from the plan, never from disk."""
    words = []
    for p in points:
        for name, swept in p.sweeps:
            settings = ",".join(f"{k}={v}" for k, v in swept)
            words.append(f"{name}:{p.model}:{p.condition}:{p.baseline or ''}:{settings}")
    return words


def parse_sweep_word(word: str) -> dict:
    """Inverse of :func:`sweep_words` for one word."""
    name, model, condition, baseline, settings = word.split(":", 4)
    values = dict(part.partition("=")[::2] for part in settings.split(",") if part)
    return {
        "sweep": name,
        "model": model,
        "condition": condition,
        "baseline": baseline or None,
        "settings": values,
    }


def effective(config: dict, model: str, condition: str) -> dict:
    """The settings a run point's generate job uses: the model's ``sampling`` and
    ``retrieval`` and the condition's keys, with the point's swept values in place."""
    base, settings = parse_point(condition)
    out = {
        "sampling": dict(config["models"][model]["sampling"]),
        "retrieval": dict(config["models"][model]["retrieval"]),
        "condition": dict(config["conditions"][base]),
        "adapter": dict(config["adapter_training"]),
        # a subset run's prompt count and the seed of its draw (None: every prompt)
        "prompt_subset": None,
    }
    if SUBSET in settings:
        settings = dict(settings)
        out["prompt_subset"] = {"n": int(settings.pop(SUBSET)), "seed": subset_seed(config)}
    for knob, value in settings.items():
        where = KNOBS[knob][0]
        key = knob.removeprefix(ADAPTER_PREFIX) if where == "adapter" else knob
        out[where][key] = typed_value(knob, value)
    return out


# ---------------------------------------------------------------- adapter variants


def adapter_variant(condition: str) -> str:
    """The adapter-variant part of a run condition's adapter folder:
    ``@lr=0.001,hidden=64`` (adapter knobs without their prefix, in KNOBS order), or ``""``
    for the configured adapter (``adapters/<model>/``, built once for every unswept run)."""
    _, settings = parse_point(condition)
    parts = [
        f"{k.removeprefix(ADAPTER_PREFIX)}={settings[k]}" for k in ADAPTER_KNOBS if k in settings
    ]
    return SEP + ",".join(parts) if parts else ""


def adapter_training(config: dict, variant: str) -> dict:
    """``adapter_training`` with an adapter variant's values in place (train_adapter's
    params): the inverse of :func:`adapter_variant`."""
    out = dict(config["adapter_training"])
    if variant:
        for part in variant.removeprefix(SEP).split(","):
            key, _, value = part.partition("=")
            knob = ADAPTER_PREFIX + key
            if knob not in ADAPTER_KNOBS:
                raise SweepError(f"adapter variant '{variant}': unknown setting '{key}'")
            out[key] = typed_value(knob, canonical_value(knob, value))
    return out


def matched_baseline(condition: str, baseline: str, available) -> str:
    """The run condition a point is compared with: the baseline at the point's values of
    BASELINE_KNOBS when that run is among ``available``, else ``baseline`` itself."""
    _, settings = parse_point(condition)
    matched = {k: v for k, v in settings.items() if k in (*BASELINE_KNOBS, SUBSET)}
    name = point_name(baseline, matched)
    return name if name in set(available) else baseline
