"""Gather the shards of one generate run into the run directory evaluate reads.

A sharded run (config ``models.<m>.sampling.prompt_shards`` > 1) is generated as
``prompt_shards`` jobs, each writing a complete run folder for its items
(``results/shards/{model}/{condition}/seed{seed}/shard{i}/``: ``wav/``, ``items.jsonl``,
``style.npy``, ``hardware.json``, ``run_config.json`` with a ``shard`` record). Every shard
planned all prompts and generated whole batch blocks (:func:`rcmg.generation.batching.shard_ranges`),
so the gathered ``items.jsonl`` rows and ``wav/`` files are exactly those of the unsharded
run. ``run_config.json`` sums the shards' counts and timings and lists each shard
(``shards``, with each shard's hardware record); ``hardware.json`` is shard 0's, plus the
number of shard jobs and whether their hardware differed.

The run directory is published atomically, ``run_config.json`` last, like generate's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from rcmg.workflow.atomic import atomic_members, read_jsonl, write_json, write_jsonl
from rcmg.workflow.cli import InputError

log = logging.getLogger(__name__)

# Config fields that differ between the shards of one run by design.
PER_SHARD_FIELDS = ("prompt_shard", "out_dir", "command")


class ShardError(InputError):
    """Shards that do not form one complete run; the message names the shard and the fix."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ShardError(
            f"{path}: unreadable ({err}); rerun that shard's generate_shard job "
            "(delete the shard folder, then snakemake ... --rerun-incomplete)"
        ) from err


def read_shard(shard_dir: Path) -> dict:
    """One shard's run_config, rows, styles and hardware, checked for completeness."""
    shard_dir = Path(shard_dir)
    config_path = shard_dir / "run_config.json"
    if not config_path.is_file():
        raise ShardError(
            f"{shard_dir}: no run_config.json, so this shard did not finish; run its "
            "generate_shard job first"
        )
    run_config = _read_json(config_path)
    if not run_config.get("shard"):
        raise ShardError(
            f"{config_path}: not a shard (no 'shard' record); gather reads the output of "
            "generate.py --prompt-shards K --prompt-shard I"
        )
    style_path = shard_dir / "style.npy"
    return {
        "dir": shard_dir,
        "run_config": run_config,
        "rows": read_jsonl(shard_dir / "items.jsonl"),
        "style": np.load(style_path) if style_path.is_file() else None,
        "hardware": _read_json(shard_dir / "hardware.json"),
    }


def _run_identity(run_config: dict) -> dict:
    return {k: v for k, v in run_config["config"].items() if k not in PER_SHARD_FIELDS}


def check_shards(shards: list[dict]) -> None:
    """The shards are 0..K-1 of one run (same settings) and tile its items exactly."""
    k = len(shards)
    first = shards[0]["run_config"]
    n_prompts = int(first["n_prompts"])
    drawn = first.get("prompt_subset")
    subset = {int(i) for i in drawn["items"]} if drawn else None
    expected_start = 0
    for position, shard in enumerate(shards):
        rc, where = shard["run_config"], shard["dir"]
        info = rc["shard"]
        if info["index"] != position or info["of"] != k:
            raise ShardError(
                f"{where}: shard {info['index']} of {info['of']}, expected shard {position} "
                f"of {k}; pass every shard of the run, in order"
            )
        if _run_identity(rc) != _run_identity(first) or rc["n_prompts"] != n_prompts:
            diff = sorted(
                key
                for key in set(_run_identity(rc)) | set(_run_identity(first))
                if _run_identity(rc).get(key) != _run_identity(first).get(key)
            )
            raise ShardError(
                f"{where}: generated with other settings than {shards[0]['dir']} "
                f"(differs in {diff or ['n_prompts']}); regenerate the stale shard"
            )
        start, stop = info["items"]
        if start != expected_start:
            raise ShardError(
                f"{where}: covers items [{start}, {stop}), expected to start at {expected_start}"
            )
        items = {int(r["item"]) for r in shard["rows"]}
        expected = set(range(start, stop))
        if subset is not None:  # sweeps.prompts: only the drawn items of the range
            expected &= subset
        if items != expected:
            raise ShardError(
                f"{where}/items.jsonl: items {sorted(items - expected)[:5]} "
                f"outside, or {sorted(expected - items)[:5]} missing from, "
                f"its range [{start}, {stop}); regenerate this shard"
            )
        expected_start = stop
    if expected_start != n_prompts:
        raise ShardError(
            f"the shards cover items [0, {expected_start}) of {n_prompts} prompts; "
            "pass every shard of the run"
        )


def merged_rows_and_styles(shards: list[dict]) -> tuple[list[dict], np.ndarray | None]:
    """items.jsonl rows in item order, with ``style_row`` renumbered into one style.npy."""
    rows, styles, offset = [], [], 0
    for shard in shards:
        for row in shard["rows"]:
            row = dict(row)
            if row.get("style_row") is not None:
                row["style_row"] = int(row["style_row"]) + offset
            rows.append(row)
        if shard["style"] is not None:
            styles.append(shard["style"])
            offset += len(shard["style"])
    return rows, (np.concatenate(styles).astype(np.float32) if styles else None)


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no second copy of the audio) where the file system allows it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _sum_dicts(dicts: list[dict]) -> dict:
    out: dict = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = round(out.get(key, 0.0) + float(value), 6)
    return out


def merged_run_config(shards: list[dict], rows: list[dict]) -> dict:
    from rcmg.generation.provenance import conditioning_summary, prompt_limits_summary

    first = shards[0]["run_config"]
    configs = [s["run_config"] for s in shards]
    timings = _sum_dicts([rc["timings_s"] for rc in configs])
    unet_s = round(sum(float(rc["unet_forward_s"]) for rc in configs), 6)
    n_ok = sum(r["status"] == "ok" for r in rows)
    merged = dict(first)
    merged.update(
        conditioning_summary=conditioning_summary(rows),
        prompt_limits=prompt_limits_summary(rows),
        shard=None,
        n_clips_ok=n_ok,
        n_clips_skipped=len(rows) - n_ok,
        timings_s=timings,
        unet_forward_s=unet_s,
        unet_forward_calls=sum(int(rc["unet_forward_calls"]) for rc in configs),
        unet_forward_fraction=round(unet_s / timings["total"], 6) if timings.get("total") else None,
        started_at=min(rc["started_at"] for rc in configs),
        finished_at=max(rc["finished_at"] for rc in configs),
        config={**first["config"], "prompt_shard": None},
        shards=[
            {
                "index": rc["shard"]["index"],
                "items": rc["shard"]["items"],
                "n_clips_ok": rc["n_clips_ok"],
                "command": rc["command"],
                "code_version": rc.get("code_version"),
                "started_at": rc["started_at"],
                "finished_at": rc["finished_at"],
                "timings_s": rc["timings_s"],
                "hardware": s["hardware"],
                "dir": str(s["dir"]),
            }
            for s, rc in zip(shards, configs, strict=True)
        ],
    )
    return merged


def merged_hardware(shards: list[dict]) -> dict:
    """Shard 0's hardware record, the number of shard jobs, and whether their machines
    differed (each shard's own record is in run_config.json ``shards``)."""
    records = [s["hardware"] for s in shards]
    return {
        **records[0],
        "shard_jobs": len(records),
        "hardware_differs_across_shards": any(r != records[0] for r in records),
    }


def gather_shards(shard_dirs: list[str | Path], out_dir: str | Path) -> Path:
    """Merge the shards of one run into ``out_dir`` (wav/, items.jsonl, style.npy,
    hardware.json, run_config.json), as the unsharded generate job would have written it."""
    from rcmg.generation.job import RUN_MEMBERS

    if not shard_dirs:
        raise ShardError("no shard folders given")
    shards = [read_shard(Path(d)) for d in shard_dirs]
    check_shards(shards)
    rows, styles = merged_rows_and_styles(shards)
    out_dir = Path(out_dir)
    with atomic_members(out_dir, last="run_config.json", owned=RUN_MEMBERS) as tmp:
        (tmp / "wav").mkdir()
        for shard in shards:
            for row in shard["rows"]:
                if row["status"] == "ok" and row.get("wav"):
                    src = shard["dir"] / row["wav"]
                    if not src.is_file():
                        raise ShardError(
                            f"{src}: listed in {shard['dir']}/items.jsonl but missing; "
                            "regenerate this shard"
                        )
                    _link_or_copy(src, tmp / row["wav"])
        if styles is not None:
            np.save(tmp / "style.npy", styles)
        write_jsonl(tmp / "items.jsonl", rows)
        write_json(tmp / "hardware.json", merged_hardware(shards))
        write_json(tmp / "run_config.json", merged_run_config(shards, rows))
    log.info("gathered %d shards (%d rows) into %s", len(shards), len(rows), out_dir)
    return out_dir
