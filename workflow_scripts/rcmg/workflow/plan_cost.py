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
"""

from __future__ import annotations

from collections.abc import Sequence

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


def estimate(
    config: dict,
    points: list[RunPoint],
    n_prompts: int | None,
    model_prompts: dict[str, int | None] | None = None,
) -> list[dict]:
    """Rows {rule, runs, clips, hours} for generate and evaluate over every planned run
    (all points x seeds, whether or not their outputs exist yet). ``n_prompts`` None (an
    unknown prompt count): clips and hours are None, runs are still counted. A run is one
    point x seed (its generate work may be several prompt-shard jobs). ``model_prompts``:
    the counts of the models with a prompt set of their own (``models.<m>.prompts``)."""
    cost = config["cost"]
    seeds = len(config["seeds"])
    runs = len(points) * seeds
    counts = {p.model: (model_prompts or {}).get(p.model, n_prompts) for p in points}
    if None in counts.values():
        return [{"rule": r, "runs": runs, "clips": None, "hours": None} for r in RULES]
    gen_clips = gen_s = 0.0
    for p in points:
        settings = effective(config, p.model, p.condition)
        sampling = settings["sampling"]
        subset = settings["prompt_subset"]  # sweeps.prompts: a subset run's count
        n_model = counts[p.model]
        prompts = min(n_model, subset["n"]) if subset else n_model
        clips = prompts * sampling["num_waveforms_per_prompt"] * seeds
        denoise = sampling["steps"] * _rate(cost["generate_s_per_step"], p.model)
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
    model_prompts: dict[str, int | None] | None = None,
) -> str:
    """The estimate as the few lines Snakemake prints while planning; ``source`` (where
    the prompt count comes from, :func:`prompt_count`) is its last line; ``model_prompts``
    the counts of models with their own prompt set (:func:`estimate`)."""
    rows = estimate(config, points, n_prompts, model_prompts)
    prompts = "an unknown number of" if n_prompts is None else n_prompts
    if model_prompts:
        own = ", ".join(f"{m}: {'?' if n is None else n}" for m, n in model_prompts.items())
        prompts = f"{prompts} ({own})"
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
    total = None if rows[0]["hours"] is None else sum(r["hours"] for r in rows)
    lines.append(f"  {'total':<9} {'':>6}      {'':>8}       {_cell(total, 10, '.1f')} h")
    if source:
        lines.append(f"  prompts: {source}")
    return "\n".join(lines)
