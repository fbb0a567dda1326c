"""What a plan costs before it runs: clips and estimated device hours per rule.

Standard library only (rules/common.smk prints :func:`table` when Snakemake plans, e.g.
``snakemake -n``). The rates are config ``cost`` (config/README.md#cost): per generated
clip ``fixed_s + steps x s_per_step`` of the model (x1.5 for the denoising part when the
condition uses style guidance: a third UNet pass next to the two of classifier-free
guidance), per evaluated clip ``evaluate_s_per_clip``. They are the measured figures of
the machine named in ``cost.measured_on``, not a GPU guess.

The prompt count is given: that of the set the generate jobs read
(:func:`rcmg.generation.prompt_count.prompt_count`). Only planning invocations print the
table (:func:`announces`): not ``--lint`` or the other commands that parse the Snakefile
without planning.

:func:`power_table` follows it: each planned primary hypothesis's minimum detectable
effect at the planned prompts and the prompts its configured effect needs
(config ``evaluation.power``, :mod:`rcmg.workflow.power`), from the SD of the per-prompt
differences in a finished run's ``power.csv`` (``evaluation.power.variance_from``; default
this experiment's own last comparison), or a line saying none is available yet and which
file it would read.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from rcmg.workflow import power as power_maths  # standard library only
from rcmg.workflow.sweeps import RunPoint, effective

STYLE_GUIDANCE_FACTOR = 1.5  # UNet passes per step: 3 with style guidance vs 2 (CFG)
RULES = ("generate", "evaluate")  # the rows of the table
# Snakemake 9 command-line flags that parse the Snakefile but plan and run nothing
NOT_PLANNING = (
    "--lint",
    "--list-rules",
    "--list",
    "-l",
    "--list-target-rules",
    "--lt",
    "--list-conda-envs",
    "--unlock",
    "--cleanup-metadata",
    "--cm",
    "--cleanup-shadow",
    "--print-compilation",
    "--containerize",
    "--export-cwl",
    "--archive",
    "--generate-unit-tests",
)


def announces(is_main_process: bool, argv: Sequence[str]) -> bool:
    """Whether this Snakemake process prints the table: the main process of a planning
    or running invocation (not a job's own parse, not ``--lint``/``--list-rules``/...)."""
    flags = {a.split("=", 1)[0] for a in argv[1:]}
    return is_main_process and not flags.intersection(NOT_PLANNING)


def _rate(table: dict, model: str) -> float:
    return float(table.get(model, table["default"]))


def configured_steps(model: str, sampling: dict) -> int:
    """The denoising steps of a clip: ``sampling.steps`` (a family may plan its own:
    ``ModelFamily.planned_steps``, passed in as ``steps_for``)."""
    return int(sampling["steps"])


def estimate(
    config: dict, points: list[RunPoint], n_prompts: int | None, steps_for=configured_steps
) -> list[dict]:
    """Rows {rule, runs, clips, hours} for generate and evaluate over every planned run
    (all points x seeds, whether or not their outputs exist yet). ``n_prompts`` None (an
    unknown prompt count): clips and hours are None, runs are still counted. A run is one
    point x seed (its generate work may be several prompt-shard jobs). ``steps_for(model,
    sampling)``: the steps one clip costs (the Snakefile asks each model's family: a token
    decoder's steps follow the clip's length, not ``sampling.steps``)."""
    cost = config["cost"]
    seeds = len(config["seeds"])
    runs = len(points) * seeds
    if n_prompts is None:
        return [{"rule": r, "runs": runs, "clips": None, "hours": None} for r in RULES]
    gen_clips = gen_s = 0.0
    for p in points:
        settings = effective(config, p.model, p.condition)
        sampling = settings["sampling"]
        subset = settings["prompt_subset"]  # sweeps.prompts: a subset run's count
        prompts = min(n_prompts, subset["n"]) if subset else n_prompts
        clips = prompts * sampling["num_waveforms_per_prompt"] * seeds
        denoise = steps_for(p.model, sampling) * _rate(cost["generate_s_per_step"], p.model)
        if settings["condition"].get("style_guidance"):
            denoise *= STYLE_GUIDANCE_FACTOR
        gen_clips += clips
        gen_s += clips * (_rate(cost["generate_fixed_s"], p.model) + denoise)
    eval_s = gen_clips * float(cost["evaluate_s_per_clip"])
    return [
        {"rule": "generate", "runs": runs, "clips": int(gen_clips), "hours": gen_s / 3600},
        {"rule": "evaluate", "runs": runs, "clips": int(gen_clips), "hours": eval_s / 3600},
    ]


def _cell(value, width: int, spec: str = "") -> str:
    return f"{'?' if value is None else format(value, spec):>{width}}"


def table(
    config: dict,
    points: list[RunPoint],
    n_prompts: int | None,
    source: str | None = None,
    steps_for=configured_steps,
) -> str:
    """The estimate as the few lines Snakemake prints while planning; ``source`` (where
    the prompt count comes from, :func:`prompt_count`) is its last line."""
    rows = estimate(config, points, n_prompts, steps_for)
    prompts = "an unknown number of" if n_prompts is None else n_prompts
    lines = [
        f"planned runs: {len(points)} points x {len(config['seeds'])} seed(s), "
        f"{prompts} prompts; estimated device hours at config cost rates "
        f"(measured on: {config['cost']['measured_on']})"
    ]
    for r in rows:
        lines.append(
            f"  {r['rule']:<9} {r['runs']:>6} runs {_cell(r['clips'], 8)} clips "
            f"{_cell(r['hours'], 10, '.1f')} h"
        )
    total = None if n_prompts is None else sum(r["hours"] for r in rows)
    lines.append(f"  {'total':<9} {'':>6}      {'':>8}       {_cell(total, 10, '.1f')} h")
    if source:
        lines.append(f"  prompts: {source}")
    return "\n".join(lines)


# ---------------------------------------------------------------- power of the primaries
POWER_DEFAULTS = {"target_power": 0.8, "effect_sizes": {}, "variance_from": None}


def power_settings(config: dict) -> dict:
    """``evaluation.power`` with its defaults; ``variance_from`` None becomes this
    experiment's own comparison, ``<paths.results>/report/power.csv``."""
    given = (config.get("evaluation") or {}).get("power") or {}
    settings = {**POWER_DEFAULTS, **given}
    settings["effect_sizes"] = dict(settings.get("effect_sizes") or {})
    if not settings["variance_from"]:
        settings["variance_from"] = f"{config['paths']['results']}/report/power.csv"
    return settings


def planned_primaries(config: dict, points: list[RunPoint]) -> list[dict]:
    """The (hypothesis, model) rows compare will test: models named by the hypothesis (or
    every model) that run both its condition and its baseline. Their count is the Holm
    family size m."""
    planned = {(p.model, p.condition) for p in points}
    evaluation = config["evaluation"]
    rows = []
    for h in evaluation.get("primary_hypotheses") or []:
        noninferior = h.get("test", power_maths.TWO_SIDED) == power_maths.NONINFERIORITY
        margin = h.get("margin", evaluation.get("noninferiority_margin")) if noninferior else None
        for model in h.get("models") or list(config["models"]):
            if {(model, h["condition"]), (model, h["baseline"])} <= planned:
                rows.append(
                    {
                        "model": model,
                        "condition": h["condition"],
                        "baseline": h["baseline"],
                        "metric": h["metric"],
                        "test": power_maths.NONINFERIORITY
                        if noninferior
                        else power_maths.TWO_SIDED,
                        "margin": margin,
                    }
                )
    return rows


def read_power_csv(path: Path) -> dict[tuple, dict]:
    """A finished comparison's power.csv by (contrast, model, metric)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {(r["contrast"], r["model"], r["metric"]): r for r in csv.DictReader(fh)}


def _float(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def power_estimates(config: dict, points: list[RunPoint], n_prompts: int | None) -> dict:
    """{source, found, rows}: per planned primary, :func:`rcmg.workflow.power.power_row`
    at ``n_prompts`` with the SD the source file has for it (None when it has none)."""
    settings = power_settings(config)
    source = Path(settings["variance_from"])
    primaries = planned_primaries(config, points)
    found = source.is_file()
    table = read_power_csv(source) if found else {}
    rows = []
    for p in primaries:
        key = (power_maths.contrast(p["condition"], p["baseline"]), p["model"], p["metric"])
        prior = table.get(key)
        sd = _float(prior["sd_of_prompt_differences"]) if prior else math.nan
        estimate = None
        if prior and n_prompts and math.isfinite(sd):
            stand_in = str(prior.get("is_pipeline_check", "")).lower() in ("true", "1")
            estimate = power_maths.power_row(
                **p,
                n=n_prompts,
                sd=sd,
                m=len(primaries),
                alpha=power_maths.ALPHA,
                target=float(settings["target_power"]),
                effect=settings["effect_sizes"].get(p["metric"]),
                n_flips=int(config["evaluation"].get("n_flips", 10000)),
                variance_source=f"{source}: N={prior['n_prompts']} prompts",
                is_pipeline_check=stand_in,
            )
        rows.append({**p, "estimate": estimate})
    return {"source": str(source), "found": found, "rows": rows, "m": len(primaries)}


def _num(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return "inf" if math.isinf(value) else f"{value:.3g}"


def power_table(config: dict, points: list[RunPoint], n_prompts: int | None) -> str:
    """The power lines the dry run prints below the cost table."""
    settings = power_settings(config)
    result = power_estimates(config, points, n_prompts)
    m, source = result["m"], result["source"]
    head = (
        f"power of the {m} planned primaries (evaluation.power): MDE at "
        f"{'?' if n_prompts is None else n_prompts} prompts, power {settings['target_power']}, "
        f"alpha {power_maths.ALPHA} / m = {power_maths.ALPHA / max(1, m):.3g} (Holm's first "
        "step), sign-flip test (noncentral t)"
    )
    if not m:
        return head + "\n  no primary hypothesis is planned"
    if not result["found"]:
        return (
            head + f"\n  no finished run's variance available yet: would read {source} "
            "(power.csv of a finished comparison; evaluation.power.variance_from)"
        )
    lines = [head + f"; SD of the per-prompt differences from {source}"]
    for row in result["rows"]:
        label = (
            f"  {row['model']}: {power_maths.contrast(row['condition'], row['baseline'])} "
            f"{row['metric']} ({row['test']}"
            + (f", margin {row['margin']:g}" if row["margin"] is not None else "")
            + ")"
        )
        e = row["estimate"]
        if e is None:
            why = "unknown prompt count" if not n_prompts else f"no SD for this row in {source}"
            lines.append(f"{label}: {why}")
            continue
        text = f"{label}: sd {_num(e['sd_of_prompt_differences'])}, MDE {_num(e['mde'])}"
        if math.isfinite(e["effect_size_target"]):
            text += f"; N for {e['effect_size_target']:g}: {_num(e['n_needed'])}"
        if e["is_pipeline_check"]:
            text += " (stand-in: pipeline-check runs)"
        if e["note"]:
            text += f" [{e['note']}]"
        lines.append(text)
    return "\n".join(lines)
