"""Compare evaluated runs: summary table, paired statistics vs a baseline, plots, index.html.

:func:`compare_runs` (table mode: all runs of the workflow) and
:func:`compare_side_by_side` (any two run folders, item by item) write
OUT/index.html, OUT/summary.csv, OUT/paired.csv and OUT/plots/. The CLI is
workflow_scripts/compare.py.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.evaluation import plots, report, stats
from rcmg.workflow.atomic import atomic_dir, write_text
from rcmg.workflow.runinfo import generate_benchmark_tsv, read_benchmark_tsv

LOG = logging.getLogger("compare")


@dataclass(frozen=True)
class CompareOptions:
    """How runs are compared (the CLI's defaults come from here)."""

    baseline_condition: str = "prompt"  # condition every other condition is paired against
    bench_root: Path = Path("benchmarks")  # Snakemake benchmark root (generate TSVs)
    n_boot: int = 1000  # bootstrap resamples
    seed: int = 0  # bootstrap seed


ITEM_METRICS = [
    "clap_text_sim",
    "clap_text_sim_used",
    "clap_style_sim",
    "rms_dbfs",
    "peak_dbfs",
    "loudness_lufs",
    "clip_fraction",
]
SET_METRICS = ["fad", "kad"]
PAIRED_METRICS = ["clap_text_sim", "rms_dbfs", "peak_dbfs", "loudness_lufs", "clip_fraction"]


def to_float(value) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def summary_metric_names(runs: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for run in runs:
        names.update(dict.fromkeys(run["summary"].get("metrics", {})))
    return list(names)


def benchmark_seconds(bench_root: Path, model, condition, seed) -> float:
    """Mean wall seconds (column ``s``) of the generate job's benchmark TSV, NaN if absent."""
    path = generate_benchmark_tsv(bench_root, model, condition, seed)
    if not path.is_file():
        return math.nan
    values = [to_float(row.get("s")) for row in read_benchmark_tsv(path)]
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        LOG.warning("%s has no numeric 's' column; compute time shown as n/a", path)
        return math.nan
    return float(np.mean(finite))


def run_record(run: dict, out_dir: Path, bench_root: Path) -> dict:
    """One row of the per-run table (metrics are CI dicts from summary.json)."""
    summary, config = run["summary"], run["config"]
    model, condition, seed = config.get("model"), config.get("condition"), config.get("seed")
    bench_s = benchmark_seconds(bench_root, model, condition, seed)
    audio_min = to_float(summary.get("generated_seconds")) / 60.0
    per_min = bench_s / audio_min if audio_min > 0 else math.nan
    return {
        "level": "run",
        "model": model,
        "condition": condition,
        "seed": seed,
        "label": f"{model}/{condition}/seed{seed}",
        "link": report.relative_link(run["dir"] / "report.html", out_dir),
        "is_pipeline_check": bool(summary.get("is_pipeline_check")),
        "n_evaluated": summary.get("n_evaluated"),
        "n_skipped": summary.get("n_skipped"),
        "generated_seconds": to_float(summary.get("generated_seconds")),
        "bench_s": bench_s,
        "compute_s_per_audio_min": per_min,
        "metrics": summary.get("metrics", {}),
    }


def ok_values(rows: list[dict], metric: str) -> np.ndarray:
    return np.array([to_float(r.get(metric)) for r in rows if r.get("status") == "ok"])


def aggregate_group(runs: list[dict], records: list[dict], names, n_boot: int, seed: int) -> dict:
    """Seed-aggregated row: per-item metrics pooled over seeds; set metrics over seed values."""
    first = records[0]
    metrics_out = {}
    for name in names:
        if name in SET_METRICS or name not in ITEM_METRICS:
            seed_values = [to_float((r["metrics"].get(name) or {}).get("mean")) for r in records]
            if len(records) == 1:
                metrics_out[name] = records[0]["metrics"].get(name) or {}
            else:
                metrics_out[name] = stats.bootstrap_mean_ci(seed_values, n_boot, seed)
                metrics_out[name]["reason"] = f"CI over {len(records)} seeds"
        else:
            pooled = np.concatenate([ok_values(run["rows"], name) for run in runs])
            metrics_out[name] = stats.bootstrap_mean_ci(pooled, n_boot, seed)
    bench = [r["compute_s_per_audio_min"] for r in records]
    return {
        **{k: first[k] for k in ("model", "condition")},
        "level": "aggregate",
        "seed": "+".join(str(r["seed"]) for r in records),
        "label": f"{first['model']}/{first['condition']}",
        "link": "",
        "is_pipeline_check": any(r["is_pipeline_check"] for r in records),
        "n_evaluated": sum(int(r["n_evaluated"] or 0) for r in records),
        "n_skipped": sum(int(r["n_skipped"] or 0) for r in records),
        "generated_seconds": sum(r["generated_seconds"] for r in records),
        "bench_s": float(np.nansum([r["bench_s"] for r in records]))
        if any(math.isfinite(r["bench_s"]) for r in records)
        else math.nan,
        "compute_s_per_audio_min": float(np.nanmean(bench))
        if any(math.isfinite(b) for b in bench)
        else math.nan,
        "metrics": metrics_out,
    }


def group_runs(runs: list[dict], records: list[dict]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault((record["model"], record["condition"]), []).append(index)
    return groups


def item_key(row: dict) -> tuple[int, int]:
    """(item, waveform_index) of a per-item row (waveform_index defaults to 0)."""
    waveform = to_float(row.get("waveform_index"))
    return int(to_float(row["item"])), int(waveform) if math.isfinite(waveform) else 0


def pair_rows(rows_a: list[dict], rows_b: list[dict]) -> tuple[list[tuple[dict, dict]], list[str]]:
    """Pair ok items by (item, waveform_index); prompt mismatches are reported, not paired."""
    by_key = {item_key(r): r for r in rows_b}
    pairs, problems = [], []
    for row in rows_a:
        key = item_key(row)
        other = by_key.get(key)
        if other is None:
            problems.append(f"item {key[0]} w{key[1]}: missing in second run")
        elif str(other.get("prompt")) != str(row.get("prompt")):
            problems.append(f"item {key[0]} w{key[1]}: prompts differ")
        elif row.get("status") != "ok" or other.get("status") != "ok":
            problems.append(f"item {key[0]} w{key[1]}: skipped in one run")
        else:
            pairs.append((row, other))
    return pairs, problems


def paired_metric_rows(pairs, n_boot: int, seed: int) -> list[dict]:
    """Per metric: mean of (second - first), bootstrap CI, Wilcoxon p (n/a with reason)."""
    out = []
    for metric in PAIRED_METRICS:
        first = np.array([to_float(a.get(metric)) for a, _ in pairs])
        second = np.array([to_float(b.get(metric)) for _, b in pairs])
        result = stats.paired_difference(first, second, n_boot, seed)
        result["metric"] = metric
        result["p_text"] = stats.format_p(result["wilcoxon_p"], result["p_reason"])
        out.append(result)
    return out


def paired_vs_baseline(runs, records, baseline: str, n_boot: int, seed: int) -> list[dict]:
    """Paired comparisons of each condition vs ``baseline`` (same model, prompts and seeds)."""
    baseline_runs = {
        (r["model"], r["seed"]): runs[i]
        for i, r in enumerate(records)
        if r["condition"] == baseline
    }
    pooled: dict[tuple, dict] = {}
    for index, record in enumerate(records):
        base = baseline_runs.get((record["model"], record["seed"]))
        if record["condition"] == baseline or base is None:
            continue
        pairs, problems = pair_rows(base["rows"], runs[index]["rows"])
        entry = pooled.setdefault(
            (record["model"], record["condition"]), {"pairs": [], "problems": [], "seeds": []}
        )
        entry["pairs"].extend(pairs)
        entry["problems"].extend(f"seed {record['seed']}: {p}" for p in problems)
        entry["seeds"].append(record["seed"])
    rows = []
    for (model, condition), entry in sorted(pooled.items(), key=lambda kv: str(kv[0])):
        for result in paired_metric_rows(entry["pairs"], n_boot, seed):
            rows.append(
                {
                    "model": model,
                    "condition": condition,
                    "baseline": baseline,
                    "seeds": "+".join(str(s) for s in entry["seeds"]),
                    "unpaired": len(entry["problems"]),
                    **result,
                }
            )
    return rows


SUMMARY_FIELDS = [
    "level",
    "model",
    "condition",
    "seed",
    "is_pipeline_check",
    "n_evaluated",
    "n_skipped",
    "generated_seconds",
    "bench_s",
    "compute_s_per_audio_min",
]
PAIRED_FIELDS = [
    "model",
    "condition",
    "baseline",
    "seeds",
    "metric",
    "n",
    "unpaired",
    "mean_diff",
    "ci_low",
    "ci_high",
    "wilcoxon_p",
    "p_reason",
]


def summary_csv(records: list[dict], names: list[str]) -> str:
    fields = SUMMARY_FIELDS + [
        f"{n}_{part}" for n in names for part in ("mean", "ci_low", "ci_high")
    ]
    table = []
    for record in records:
        row = {key: record.get(key) for key in SUMMARY_FIELDS}
        for name in names:
            ci = record["metrics"].get(name) or {}
            row.update({f"{name}_{part}": ci.get(part) for part in ("mean", "ci_low", "ci_high")})
        table.append(row)
    return rows_to_csv(table, fields)


def rows_to_csv(rows: list[dict], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    return buffer.getvalue()


def _cell(value):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def write_plots(out_dir: Path, runs, aggregates, groups, names) -> list[dict]:
    """Bar (mean with CI) and violin (per-item) plots into out_dir/plots/."""
    labels = [a["label"] for a in aggregates]
    figures = []
    with atomic_dir(out_dir / "plots") as tmp:
        for name in names:
            records = [a["metrics"].get(name) or {} for a in aggregates]
            plots.save_bar_ci(
                labels,
                [to_float(r.get("mean")) for r in records],
                [to_float(r.get("ci_low")) for r in records],
                [to_float(r.get("ci_high")) for r in records],
                tmp / f"bar_{name}.png",
                f"{name} (mean, 95% CI)",
            )
            figures.append({"src": f"plots/bar_{name}.png", "alt": f"{name}: mean with 95% CI"})
        for name in ITEM_METRICS:
            if name not in names:
                continue
            values = {
                label: np.concatenate([ok_values(runs[i]["rows"], name) for i in indices])
                for label, indices in zip(labels, groups.values(), strict=True)
            }
            plots.save_violins(values, tmp / f"violin_{name}.png", f"{name} per item")
            figures.append(
                {"src": f"plots/violin_{name}.png", "alt": f"{name}: per-item distribution"}
            )
    return figures


def compare_runs(run_dirs, out_dir: Path, options: CompareOptions = CompareOptions()) -> dict:
    """Table mode over all ``run_dirs``: aggregates per model x condition, paired tests."""
    out_dir = Path(out_dir)
    runs = [report.read_evaluated_run(d) for d in run_dirs]
    records = [run_record(run, out_dir, Path(options.bench_root)) for run in runs]
    names = summary_metric_names(runs)
    groups = group_runs(runs, records)
    aggregates = [
        aggregate_group(
            [runs[i] for i in idx], [records[i] for i in idx], names, options.n_boot, options.seed
        )
        for idx in groups.values()
    ]
    paired = paired_vs_baseline(
        runs, records, options.baseline_condition, options.n_boot, options.seed
    )
    figures = write_plots(out_dir, runs, aggregates, groups, names)
    write_text(out_dir / "summary.csv", summary_csv(aggregates + records, names))
    write_text(out_dir / "paired.csv", rows_to_csv(paired, PAIRED_FIELDS))
    html = report.render_compare(
        {
            "mode": "table",
            "title": "Run comparison",
            "any_pipeline_check": any(r["is_pipeline_check"] for r in records),
            "metric_names": names,
            "aggregates": aggregates,
            "records": records,
            "paired": paired,
            "baseline": options.baseline_condition,
            "plots": figures,
        }
    )
    write_text(out_dir / "index.html", html)
    return {"runs": len(runs), "groups": len(aggregates), "paired_rows": len(paired)}


def side_by_side_rows(run_a, run_b, pairs, out_dir: Path) -> list[dict]:
    rows = []
    for row_a, row_b in pairs:
        item, waveform = item_key(row_a)
        rows.append(
            {
                "item": item,
                "waveform_index": waveform,
                "prompt": row_a.get("prompt"),
                "sides": [_side(run_a, row_a, out_dir), _side(run_b, row_b, out_dir)],
            }
        )
    return rows


def _side(run: dict, row: dict, out_dir: Path) -> dict:
    mel = row.get("mel")
    return {
        "wav": report.relative_link(run["dir"] / str(row["wav"]), out_dir),
        "mel": report.relative_link(run["dir"] / str(mel), out_dir) if isinstance(mel, str) else "",
        "prompt_used": row.get("prompt_used"),
        "metrics": [(m, to_float(row.get(m))) for m in PAIRED_METRICS],
    }


def compare_side_by_side(
    run_a_dir: Path, run_b_dir: Path, out_dir: Path, options: CompareOptions = CompareOptions()
) -> dict:
    """Two run folders item by item (``run_b`` minus ``run_a``)."""
    out_dir = Path(out_dir)
    run_a, run_b = (report.read_evaluated_run(d) for d in (run_a_dir, run_b_dir))
    records = [run_record(run, out_dir, Path(options.bench_root)) for run in (run_a, run_b)]
    names = summary_metric_names([run_a, run_b])
    pairs, problems = pair_rows(run_a["rows"], run_b["rows"])
    rows = side_by_side_rows(run_a, run_b, pairs, out_dir)
    paired = paired_metric_rows(pairs, options.n_boot, options.seed)
    for row in paired:
        row.update(model="", condition=records[1]["label"], baseline=records[0]["label"], seeds="")
    for problem in problems:
        LOG.warning("not paired: %s", problem)
    write_text(out_dir / "summary.csv", summary_csv(records, names))
    write_text(out_dir / "paired.csv", rows_to_csv(paired, PAIRED_FIELDS))
    html = report.render_compare(
        {
            "mode": "side_by_side",
            "title": f"{records[0]['label']} vs {records[1]['label']}",
            "any_pipeline_check": any(r["is_pipeline_check"] for r in records),
            "metric_names": names,
            "records": records,
            "paired": paired,
            "rows": rows,
            "problems": problems,
        }
    )
    write_text(out_dir / "index.html", html)
    return {"pairs": len(rows), "unpaired": len(problems)}
