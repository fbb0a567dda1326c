"""Run-directory readers and HTML rendering (jinja2, autoescaped) for reports.

report.html (one run) and index.html (comparison) are self-contained: relative links
only, no external scripts, styles or fonts, so a zipped folder opens anywhere.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from rcmg.workflow.atomic import read_jsonl
from rcmg.workflow.cli import InputError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
PIPELINE_CHECK_BANNER = "pipeline check — random weights, not music"
EMBEDDINGS_FILE = "metrics/embeddings.npz"  # written by run_eval, read by comparison
METRIC_LABELS = {
    "fad": "FAD at N [jackknife CI]",
    "fad_inf": "FAD-inf [jackknife CI] (R², fit range)",
    "kad": "KAD (kadtk, ×100) [jackknife CI]",
}


class RunDirError(InputError, FileNotFoundError):
    """A run directory lacks a file the step needs (the message names it and the fix)."""


def require_file(path: Path, fix: str) -> Path:
    if not Path(path).is_file():
        raise RunDirError(f"missing {path}: {fix}")
    return Path(path)


def read_json(path: Path, fix: str) -> dict:
    require_file(path, fix)
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def read_run_inputs(run_dir: Path) -> tuple[dict, dict, list[dict]]:
    """(run_config, hardware, items) of a generated run; clear errors when absent."""
    run_dir = Path(run_dir)
    fix = "run the generate step for this run first (results/runs/{model}/{condition}/seed{seed})"
    config = read_json(run_dir / "run_config.json", fix)
    hardware = read_json(run_dir / "hardware.json", fix)
    items = read_jsonl(require_file(run_dir / "items.jsonl", fix))
    return config, hardware, items


def read_per_item_csv(path: Path) -> list[dict]:
    """Rows of metrics/per_item.csv with numeric cells parsed to float (empty -> NaN)."""
    require_file(path, "run evaluate.py on this run directory first")
    with open(path, encoding="utf-8", newline="") as fh:
        return [
            {key: _parse_cell(value) for key, value in row.items()} for row in csv.DictReader(fh)
        ]


def _parse_cell(value: str):
    if value == "":
        return math.nan
    try:
        number = float(value)
    except ValueError:
        return value
    return number


def read_evaluated_run(run_dir: Path) -> dict:
    """Everything compare needs from an evaluated run directory."""
    run_dir = Path(run_dir)
    fix = "run evaluate.py on this run directory first"
    summary = read_json(run_dir / "metrics" / "summary.json", fix)
    rows = read_per_item_csv(run_dir / "metrics" / "per_item.csv")
    config = read_json(run_dir / "run_config.json", "run the generate step for this run first")
    embeddings = None
    if (run_dir / EMBEDDINGS_FILE).is_file():
        import numpy as np

        with np.load(run_dir / EMBEDDINGS_FILE, allow_pickle=False) as data:
            embeddings = {key: data[key] for key in data.files}
    return {
        "dir": run_dir,
        "summary": summary,
        "rows": rows,
        "config": config,
        "embeddings": embeddings,
    }


def read_reference(path: Path) -> dict:
    """ref_stats.npz -> {mu, sigma, embeddings, n, model, path, dataset, composition}.

    ``dataset``: each reference row's dataset ('pooled' for files written before
    composition was recorded); ``composition``: {dataset: {requested, available, drawn}}.
    """
    require_file(Path(path), "run reference_stats.py first (it caches ref_stats.npz)")
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        raw = {key: data[key] for key in data.files}
    n = int(raw["n"])
    dataset = [str(d) for d in raw["dataset"]] if "dataset" in raw else ["pooled"] * n
    composition = json.loads(str(raw["composition"])) if "composition" in raw else {}
    if not composition:
        composition = {"pooled": {"requested": n, "drawn": n}}
    return {
        "mu": raw["mu"],
        "sigma": raw["sigma"],
        "embeddings": raw["embeddings"],
        "n": n,
        "model": str(raw.get("model", "")),
        "path": str(path),
        "dataset": dataset,
        "composition": composition,
        # the AudioSet classifier's view of the same clips (None: not computed)
        "classifier_model": str(raw["classifier_model"]) if "classifier_model" in raw else None,
        "classifier_embeddings": raw.get("classifier_embeddings"),
        # the judge's text-similarity ceiling / floor on the reference (reference_stats)
        "calibration": json.loads(str(raw["calibration"])) if "calibration" in raw else {},
    }


def composition_rows(composition: dict) -> list[dict]:
    """Rows for the 'reference composition' table of every report."""
    total = sum(int(entry.get("drawn", 0)) for entry in composition.values()) or 1
    return [
        {
            "dataset": name,
            "requested": entry.get("requested"),
            "available": entry.get("available", ""),
            "drawn": entry.get("drawn"),
            "share": int(entry.get("drawn", 0)) / total,
            "spec": f"{entry['kind']} {entry['value']:g}" if "kind" in entry else "",
            "short": int(entry.get("drawn", 0)) < int(entry.get("requested", 0)),
        }
        for name, entry in composition.items()
    ]


def format_number(value, digits: int = 3) -> str:
    """Compact text for a metric value; NaN/None -> 'n/a'."""
    if value is None or isinstance(value, str):
        return "n/a" if value in (None, "") else value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}g}" if abs(float(value)) < 1e4 else f"{float(value):.4g}"


def format_ci(record: dict | None, digits: int = 3) -> str:
    """'mean [low, high]' or 'n/a (reason)'."""
    if not record:
        return "n/a"
    mean = record.get("mean")
    if mean is None or not math.isfinite(float(mean)):
        reason = record.get("reason") or ""
        return f"n/a ({reason})" if reason else "n/a"
    low, high = record.get("ci_low"), record.get("ci_high")
    text = format_number(mean, digits)
    if _finite(low) and _finite(high):
        text += f" [{format_number(low, digits)}, {format_number(high, digits)}]"
    if "r2" in record:
        text += f" (R²={format_number(record['r2'], digits)}{fit_range_text(record)})"
    if record.get("fit_range") and not (_finite(low) and _finite(high)) and record.get("reason"):
        text += f" (no interval: {record['reason']})"
    return text


def format_bound(value, digits: int = 3) -> str:
    """An interval end: '−∞' / '∞' when unbounded, else :func:`format_number`."""
    if isinstance(value, int | float) and math.isinf(float(value)):
        return "−∞" if value < 0 else "∞"
    return format_number(value, digits)


def fit_range_text(record: dict) -> str:
    """FAD-inf's fit range beside its value: ``; fit n=500–2000, 10 sizes × 3`` ('' when
    the record has none)."""
    fit = record.get("fit_range") or {}
    if not fit.get("steps"):
        return ""
    return f"; fit n={fit['min_n']}–{fit['max_n']}, {fit['steps']} sizes × {fit['repeats']}"


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def relative_link(target: Path, from_dir: Path) -> str:
    """POSIX relative path from ``from_dir`` to ``target`` (for href/src attributes)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(from_dir).resolve())).as_posix()


def environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = format_number
    env.filters["ci"] = format_ci
    env.filters["bound"] = format_bound
    return env


def render_run_report(context: dict) -> str:
    """HTML for one run. ``context`` keys: see ``run_report.html.j2``."""
    return (
        environment()
        .get_template("run_report.html.j2")
        .render(banner=PIPELINE_CHECK_BANNER, metric_labels=METRIC_LABELS, **context)
    )


def render_compare(context: dict) -> str:
    """HTML for the comparison page (table mode or side-by-side mode)."""
    return (
        environment()
        .get_template("compare.html.j2")
        .render(banner=PIPELINE_CHECK_BANNER, metric_labels=METRIC_LABELS, **context)
    )
