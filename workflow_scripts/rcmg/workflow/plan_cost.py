"""What a plan costs before it runs: clips and estimated device hours per rule.

Standard library only (rules/common.smk prints :func:`table` when Snakemake plans, e.g.
``snakemake -n``). The rates are config ``cost`` (config/README.md#cost): per generated
clip ``fixed_s + steps x s_per_step`` of the model (x1.5 for the denoising part when the
condition uses style guidance: a third UNet pass next to the two of classifier-free
guidance), per evaluated clip ``evaluate_s_per_clip``. They are the measured figures of
the machine named in ``cost.measured_on``, not a GPU guess.
"""

from __future__ import annotations

from rcmg.workflow.sweeps import RunPoint, effective

STYLE_GUIDANCE_FACTOR = 1.5  # UNet passes per step: 3 with style guidance vs 2 (CFG)


def _rate(table: dict, model: str) -> float:
    return float(table.get(model, table["default"]))


def estimate(config: dict, points: list[RunPoint], n_prompts: int) -> list[dict]:
    """Rows {rule, jobs, clips, hours} for generate and evaluate over every planned run
    (all points x seeds, whether or not their outputs exist yet)."""
    cost = config["cost"]
    seeds = len(config["seeds"])
    gen_clips = gen_s = 0.0
    for p in points:
        settings = effective(config, p.model, p.condition)
        sampling = settings["sampling"]
        subset = settings["prompt_subset"]  # sweeps.prompts: a subset run's count
        prompts = min(n_prompts, subset["n"]) if subset else n_prompts
        clips = prompts * sampling["num_waveforms_per_prompt"] * seeds
        denoise = sampling["steps"] * _rate(cost["generate_s_per_step"], p.model)
        if settings["condition"].get("style_guidance"):
            denoise *= STYLE_GUIDANCE_FACTOR
        gen_clips += clips
        gen_s += clips * (_rate(cost["generate_fixed_s"], p.model) + denoise)
    eval_s = gen_clips * float(cost["evaluate_s_per_clip"])
    jobs = len(points) * seeds
    return [
        {"rule": "generate", "jobs": jobs, "clips": int(gen_clips), "hours": gen_s / 3600},
        {"rule": "evaluate", "jobs": jobs, "clips": int(gen_clips), "hours": eval_s / 3600},
    ]


def table(config: dict, points: list[RunPoint], n_prompts: int) -> str:
    """The estimate as the few lines Snakemake prints while planning."""
    rows = estimate(config, points, n_prompts)
    lines = [
        f"planned runs: {len(points)} points x {len(config['seeds'])} seed(s), "
        f"{n_prompts} prompts; estimated device hours at config cost rates "
        f"(measured on: {config['cost']['measured_on']})"
    ]
    for r in rows:
        lines.append(
            f"  {r['rule']:<9} {r['jobs']:>6} jobs {r['clips']:>8} clips {r['hours']:>10.1f} h"
        )
    lines.append(
        f"  {'total':<9} {'':>6}      {'':>8}       {sum(r['hours'] for r in rows):>10.1f} h"
    )
    return "\n".join(lines)
