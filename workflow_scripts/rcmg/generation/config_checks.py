"""Every cross-key check of a validated config, and those that need the model families.

:func:`problems` is what the Snakefile raises (all at once, before any job runs): the
plumbing's checks (:mod:`rcmg.workflow.config_checks`: keys, paths, conditions,
revisions), the style spaces (:func:`rcmg.bank.spaces.space_problems`), the model
families (``models.<m>.family``, resolved by registered name or import path only here, so
the plumbing knows no family), and, once those are sound, the sweeps. Each message names
the key and the fix.
"""

from __future__ import annotations

from pathlib import Path

# sweep knobs of a family's own adapter settings (ModelFamily.adapter_options)
FAMILY_ADAPTER_KNOBS = ("adapter_style_tokens",)


def problems(config: dict, workdir: str | Path = ".") -> list[str]:
    from rcmg.bank.spaces import space_problems
    from rcmg.workflow import config_checks, sweeps

    out = [
        *config_checks.problems(config, Path(workdir)),
        *family_problems(config),
        *space_problems(config),
    ]
    if not out:  # sweeps refer to models and conditions: check them once those are sound
        out += sweeps.problems(config) or sweep_knob_problems(config)
    return out


def family_problems(config: dict) -> list[str]:
    """Every ``models.<m>.family`` resolves, and ``style_only`` conditions run only on
    families that have that baseline."""
    from rcmg.generation.families import family_class, family_problem

    models = config["models"]
    out = []
    has_baseline = {}  # the models whose family resolves: whether it has style_only
    for key, model in models.items():
        why = family_problem(model["family"])
        if why:
            out.append(f"models.{key}.family: {why}")
        else:
            has_baseline[key] = family_class(model["family"]).style_only_baseline
    having = [m for m, has in has_baseline.items() if has]
    for name, cond in config["conditions"].items():
        if cond["type"] != "style_only":
            continue
        runs_on = cond.get("models") or list(models)
        other = [m for m in runs_on if has_baseline.get(m) is False]
        if other:
            out.append(
                f"conditions.{name}: style_only is a baseline of the families that have it "
                f"(models {having or 'none configured'}); set 'models' to such models "
                f"(not {other})"
            )
    out += condition_problems(config)
    out += adapter_option_problems(config)
    return out


def adapter_option_problems(config: dict) -> list[str]:
    """``adapter_training.<key>`` of a family's own adapter settings (``style_tokens``)
    when no configured model's family has it."""
    from rcmg.generation.families import family_class, family_problem

    out = []
    for key in ("style_tokens",):
        if key not in config.get("adapter_training", {}):
            continue
        having = [
            m
            for m, model in config["models"].items()
            if not family_problem(model["family"])
            and key in family_class(model["family"]).adapter_options
        ]
        if not having:
            out.append(
                f"adapter_training.{key}: no configured model's family has it (MusicGen's "
                "style tokens); remove it"
            )
    return out


def condition_problems(config: dict) -> list[str]:
    """A condition a model's family cannot take (``ModelFamily.condition_problem``), named
    with the model, so the config says where it runs (``conditions.<c>.models``)."""
    from rcmg.generation.families import family_class, family_problem

    models = config["models"]
    out = []
    for name, cond in config["conditions"].items():
        for key in cond.get("models") or list(models):
            if key not in models or family_problem(models[key]["family"]):
                continue  # reported elsewhere (unknown model / family)
            family = family_class(models[key]["family"])()
            why = family.condition_problem(cond)
            if why:
                out.append(
                    f"conditions.{name}: {why} (model {key}, family {family.name}); set "
                    f"conditions.{name}.models to the models that take it, or change the "
                    "condition"
                )
    return out


def sweep_knob_problems(config: dict) -> list[str]:
    """A sweep knob the family ignores (``ModelFamily.unsupported_knobs``) is refused, as
    :func:`rcmg.workflow.sweeps.knob_problem` refuses the knobs no model uses: the first
    one found, as the sweeps report theirs. Call it once the sweeps plan."""
    from rcmg.generation.families import family_class
    from rcmg.workflow import sweeps

    for point in sweeps.plan(config):
        family = family_class(config["models"][point.model]["family"])
        for name, swept in point.sweeps:
            for knob, _ in swept:
                own = knob.removeprefix("adapter_")
                if knob in FAMILY_ADAPTER_KNOBS and own not in family.adapter_options:
                    return [
                        f"sweeps.{name}: {knob} does not apply to {point.model} (family "
                        f"{family.name}: its adapter has no {own}) (condition {point.base}, "
                        f"model {point.model})"
                    ]
                if knob in family.unsupported_knobs:
                    return [
                        f"sweeps.{name}: {knob} does not apply to {point.model} (family "
                        f"{family.name}) (condition {point.base}, model {point.model})"
                    ]
    return []
