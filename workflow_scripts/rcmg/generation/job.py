"""The generate job: one model load, all prompts in batches, one run directory.

The job names no model family: the model is a :class:`~rcmg.generation.families.base.
ModelFamily` (``--family``, config ``models.<m>.family``) and the job runs its stages in
order: checks (:mod:`~rcmg.generation.job_checks`), loading
(:mod:`~rcmg.generation.resources`), planning and controls
(:mod:`~rcmg.generation.planning`, :mod:`~rcmg.generation.controls`), batches and shards
(:mod:`~rcmg.generation.batching`), ranking (:mod:`~rcmg.generation.ranking`) and
provenance (:mod:`~rcmg.generation.provenance`).

Run directory (``results/runs/{model}/{condition}/seed{seed}/``): generate's files are
staged in a temporary sibling and published only when complete, ``run_config.json``
last (``rcmg.workflow.atomic.atomic_members``); evaluate's files in the same folder are left alone::

    wav/{item:04d}.wav | wav/{item:04d}_w{k}.wav    float32 WAV at the family's rate and channels
    items.jsonl                                     one row per clip (status ok | skipped)
    style.npy                                       [n_styles, 512] (retrieval only)
    run_config.json, hardware.json

Seeding: every item gets its own CPU ``torch.Generator`` seeded with ``seed + item``
(item = 0-based prompt index in the file, blank/comment lines not counted). With
``num_waveforms_per_prompt = n`` the item's generator is used for its ``n`` latents in
order. Results therefore do not depend on ``--batch`` or on which other prompts share a
batch (up to floating-point batching effects of the BLAS kernels).

Batches are fixed blocks of the prompt file: items ``[b * batch, (b + 1) * batch)`` share
a batch (skipped items leave their block smaller), never "the next ``batch`` items that
were not skipped". Shards (``--prompt-shards K --prompt-shard I``) are contiguous runs of
whole blocks (:func:`shard_ranges`), and every shard plans *all* prompts (retrieval,
mismatched styles, control angles see the whole set) before generating only its own
items: so the gathered shards (:mod:`rcmg.generation.gather`) hold exactly the audio and
items.jsonl rows of the unsharded run, bit for bit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rcmg.generation.batching import generate_audio, shard_of, subset_info
from rcmg.generation.conditioning import OptionError
from rcmg.generation.generate_config import GenerateConfig, ItemPlan, Resources
from rcmg.generation.job_checks import validate_config
from rcmg.generation.planning import plan_items
from rcmg.generation.prompts import read_prompt_file
from rcmg.generation.provenance import (
    attach_provenance,
    item_rows,
    now,
    record_space,
    run_config,
    style_rows,
    write_wavs,
)
from rcmg.generation.resources import load_resources
from rcmg.workflow.atomic import atomic_members, write_json, write_jsonl
from rcmg.workflow.runinfo import PhaseTimer, hardware_info

log = logging.getLogger(__name__)

__all__ = ["GenerateConfig", "ItemPlan", "Resources", "run_generation"]


DEFAULT_REFERENCE_STATS = "data/processed/reference/ref_stats.npz"


RUN_MEMBERS = ("wav", "items.jsonl", "hardware.json", "style.npy", "run_config.json")


def run_generation(cfg: GenerateConfig) -> Path:
    """Validate, load once, plan, generate, and write the run directory atomically."""
    started = now()
    timer = PhaseTimer()
    prompt_file = read_prompt_file(cfg.prompts)
    validate_config(cfg)
    with timer.phase("load"):
        res = load_resources(cfg, prompt_file.items)
    timer.cuda = res.loaded.device.startswith("cuda")
    plans = plan_items(cfg, prompt_file.items, res, timer)
    found = shard_of(cfg, len(plans))
    if found is not None:
        plans = [p for p in plans if found[0] <= p.item < found[1]]
        log.info(
            "shard %d of %d: items [%d, %d) of %d",
            cfg.prompt_shard,
            cfg.prompt_shards,
            *found,
            len(prompt_file.items),
        )
    if cfg.prompt_subset is not None:
        # after planning every prompt (mismatched styles, control angles see the whole set)
        # drawn from the whole file's items, so every shard keeps its part of one draw
        keep = set(subset_info(cfg, [it.item for it in prompt_file.items])["items"])
        plans = [p for p in plans if p.item in keep]
        log.info("prompt subset: items %s (seed %d)", sorted(keep), cfg.prompt_subset_seed)
    attach_provenance(plans, res.retriever)
    out_dir = Path(cfg.out_dir)
    audio, unet = generate_audio(cfg, res, plans, timer)
    with atomic_members(out_dir, last="run_config.json", owned=RUN_MEMBERS) as tmp:
        with timer.phase("write"):
            write_wavs(
                tmp,
                audio,
                res.family.sample_rate(res.loaded.pipe),
                cfg.num_waveforms_per_prompt,
            )
            styles, rows_of_style = style_rows(plans)
            if styles is not None:
                np.save(tmp / "style.npy", styles)
            rows = item_rows(cfg, plans, rows_of_style)
            record_space(rows, res.space)
            write_jsonl(tmp / "items.jsonl", rows)
            write_json(tmp / "hardware.json", hardware_info(res.loaded.device))
        timings = timer.as_dict()
        write_json(
            tmp / "run_config.json",
            run_config(cfg, res.loaded, prompt_file, rows, timings, unet, started, res.space),
        )
    n_skipped = sum(p.skip_reason is not None for p in plans)
    log.info(
        "wrote %s (%d items, %d skipped) in %.1f s",
        out_dir,
        len(plans),
        n_skipped,
        timings["total"],
    )
    return out_dir


def evaluate_script() -> Path:
    """The evaluate step's CLI (the same code the workflow's evaluate rule runs)."""
    return Path(__file__).resolve().parents[2] / "evaluate.py"


def check_evaluation_inputs(reference_stats: str | Path) -> None:
    """Fail before generating when ``--metrics/--report/--visualize`` could not run."""
    if not Path(reference_stats).is_file():
        raise OptionError(
            f"--metrics/--report/--visualize evaluate the run against --reference-stats "
            f"{reference_stats}, which does not exist; build it with the reference_stats step "
            "(snakemake ... reference_stats) or pass --reference-stats FILE"
        )


def evaluate_run(run_dir: Path, clap_model: str, reference_stats, device: str = "auto") -> None:
    """Run ``workflow_scripts/evaluate.py`` on ``run_dir`` (metrics, plots, report.html).

    A subprocess of the evaluate CLI, so the original scripts' ``--metrics --visualize
    --report`` produce exactly what the workflow's evaluate rule produces.
    """
    import subprocess
    import sys

    command = [
        sys.executable,
        str(evaluate_script()),
        "--run-dir",
        str(run_dir),
        "--clap-model",
        str(clap_model),
        "--reference-stats",
        str(reference_stats),
        "--device",
        device,
    ]
    log.info("evaluating %s: %s", run_dir, " ".join(command))
    done = subprocess.run(command, check=False)
    if done.returncode != 0:
        raise OptionError(
            f"evaluation of {run_dir} failed (exit {done.returncode}); rerun "
            f"`{' '.join(command)}` to see why (the generated run is complete)"
        )
