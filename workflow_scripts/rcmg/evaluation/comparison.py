"""Compare evaluated runs: summary table, paired statistics vs a baseline, plots, index.html.

:func:`compare_runs` (table mode: all runs of the workflow) and
:func:`compare_side_by_side` (any two run folders, item by item) write
OUT/index.html, OUT/summary.csv, OUT/paired.csv and OUT/plots/; table mode also
OUT/power.csv (each primary's minimum detectable effect, :mod:`rcmg.workflow.power`). The CLI is
workflow_scripts/compare.py.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rcmg.data.coverage import coverage_rows
from rcmg.evaluation import adapter_results as adapter_tables
from rcmg.evaluation import (
    agreement,
    hypotheses,
    overview,
    plots,
    report,
    set_metrics,
    stats,
    sweep_curves,
)
from rcmg.evaluation import run_sections as run_tables
from rcmg.evaluation.hypotheses import Hypothesis
from rcmg.evaluation.set_metrics import SetMetricOptions
from rcmg.workflow import power, tables
from rcmg.workflow.atomic import atomic_dir, write_text
from rcmg.workflow.runinfo import generate_benchmark_tsv, read_benchmark_tsv
from rcmg.workflow.sweeps import SEP, matched_baseline, parse_point

LOG = logging.getLogger("compare")


@dataclass(frozen=True)
class CompareOptions:
    """How runs are compared (the CLI's defaults come from here)."""

    baseline_condition: str = "prompt"  # condition every other condition is paired against
    bench_root: Path = Path("benchmarks")  # Snakemake benchmark root (generate TSVs)
    n_boot: int = 1000  # bootstrap resamples
    n_flips: int = 10000  # Monte Carlo sign vectors of the paired mean test (> 16 prompts)
    seed: int = 0  # bootstrap and sign-flip seed
    reference_stats: Path | None = None  # ref_stats.npz: pooled set metrics need it
    min_n: int = 1000  # clips per model x condition below which every table warns
    primary: tuple[str, ...] = ()  # hypotheses.FORM words (the Holm family)
    fad_blocks: int = 20
    fad_inf_min_n: int = 500
    fad_inf_steps: int = 10
    fad_inf_repeats: int = 3
    coverage: tuple[Path, ...] = ()  # coverage.json of every dataset (stated on the page)
    listening: Path | None = None  # preferences.json of the listening test (listening_ingest)
    # sweep points from the plan (rcmg.workflow.sweeps.sweep_words), never from disk
    sweep_points: tuple[str, ...] = ()
    selection: sweep_curves.Selection = sweep_curves.Selection()  # the `best` table's choice
    # adapter_config.json of every trained style adapter (train_adapter): held-out table
    adapters: tuple[Path, ...] = ()
    # power.csv (evaluation.power): the power the MDE is stated at, METRIC=EFFECT words
    power_target: float = 0.8
    power_effects: tuple[str, ...] = ()

    def set_metric_options(self) -> SetMetricOptions:
        return SetMetricOptions(
            fad_blocks=self.fad_blocks,
            fad_inf_min_n=self.fad_inf_min_n,
            fad_inf_steps=self.fad_inf_steps,
            fad_inf_repeats=self.fad_inf_repeats,
            seed=self.seed,
        )

    def hypotheses(self) -> list[Hypothesis]:
        return hypotheses.check_declared([Hypothesis.parse(text) for text in self.primary])


ITEM_METRICS = [
    "clap_text_sim",
    "clap_text_sim_used",
    "clap_style_sim",
    "clap_style_sim_bankspace",
    "rms_dbfs",
    "peak_dbfs",
    "loudness_lufs",
    "clip_fraction",
]
SET_METRICS = ["fad", "fad_inf", "kad"]
PAIRED_SET_METRICS = ["fad", "kad"]
PAIRED_METRICS = [
    "clap_style_sim",
    "ast_style_sim",  # the same target, AST's embedding (rcmg.evaluation.agreement)
    "clap_text_sim",
    "rms_dbfs",
    "peak_dbfs",
    "loudness_lufs",
    "clip_fraction",
]


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


def run_record(run: dict, out_dir: Path, bench_root: Path, min_n: int = 0) -> dict:
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
        "n_prompts": len(set(ok_prompts(run["rows"]))),
        "below_min_n": int(summary.get("n_evaluated") or 0) < min_n,
        "n_skipped": summary.get("n_skipped"),
        "generated_seconds": to_float(summary.get("generated_seconds")),
        "bench_s": bench_s,
        "compute_s_per_audio_min": per_min,
        "metrics": summary.get("metrics", {}),
        "non_commercial": bool((summary.get("provenance") or {}).get("non_commercial")),
        "license_classes": "+".join((summary.get("provenance") or {}).get("license_classes") or []),
        "copy_flagged": (summary.get("copy_audit") or {}).get("n_flagged"),
        **paired_reference_fields(config),
    }


def paired_reference_fields(config: dict) -> dict:
    """A run's paired reference audio (run_config.json): the table text and the counts."""
    record = run_tables.paired_reference(config)
    return {
        "paired_reference": record["text"],
        "paired_reference_found": record["n_found"],
        "paired_reference_prompts": record["n_prompts"],
    }


def ok_values(rows: list[dict], metric: str) -> np.ndarray:
    return np.array([to_float(r.get(metric)) for r in rows if r.get("status") == "ok"])


def load_reference(path: Path | None) -> dict | None:
    """ref_stats.npz (embeddings, per-row dataset, composition) or None when not given."""
    return None if path is None else report.read_reference(Path(path))


def pooled_embeddings(runs: list[dict]) -> tuple[np.ndarray | None, list]:
    """All evaluated clips of ``runs`` (seeds pooled) and their prompt (item) labels."""
    parts, labels = [], []
    for run in runs:
        emb = run.get("embeddings")
        if emb is None:
            return None, []
        parts.append(emb["audio"])
        labels.extend(int(i) for i in emb["item"])
    return np.concatenate(parts).astype(np.float64), labels


def pooled_set_metrics(runs: list[dict], ref, options: CompareOptions) -> dict:
    """FAD (at this N), FAD-inf and KAD of all clips of a model x condition, seeds pooled."""
    gen, labels = pooled_embeddings(runs)
    reason = (
        "no --reference-stats given"
        if ref is None
        else "a run lacks metrics/embeddings.npz: re-run evaluate.py"
        if gen is None
        else ""
    )
    if reason:
        na = {"mean": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0, "reason": reason}
        return {name: dict(na) for name in SET_METRICS}
    set_options = options.set_metric_options()
    return {
        "fad": set_metrics.fad_interval(gen, ref, labels, set_options),
        "fad_inf": set_metrics.fad_infinity(gen, ref, set_options, labels),
        "kad": set_metrics.kad_interval(gen, ref, labels, set_options),
    }


CLASSIFIER_SET_METRICS = ("ast_fd", "ast_kad")


def pooled_classifier_metrics(runs: list[dict], reference, options: CompareOptions) -> dict:
    """ast_fd / ast_kad of all clips of a model x condition (seeds pooled) in the AudioSet
    classifier's space; {} when the reference or a run lacks classifier embeddings."""
    ref = None if reference is None else reference.get("classifier_embeddings")
    embs = [run.get("embeddings") or {} for run in runs]
    if ref is None or not embs or any("classifier" not in e for e in embs):
        return {}
    models = {str(e.get("classifier_model")) for e in embs}
    if models != {str(reference.get("classifier_model"))}:
        return {}
    gen = np.concatenate([e["classifier"] for e in embs]).astype(np.float64)
    labels = [int(i) for e in embs for i in e["item"]]
    ref = np.asarray(ref, dtype=np.float64)
    set_options = options.set_metric_options()
    return {
        "ast_fd": set_metrics.fad_interval(gen, ref, labels, set_options),
        "ast_kad": set_metrics.kad_interval(gen, ref, labels, set_options),
    }


def aggregate_group(runs: list[dict], records: list[dict], names, reference, options) -> dict:
    """Seed-aggregated row: per-item metrics and set metrics both pool all clips."""
    n_boot, seed = options.n_boot, options.seed
    ref = None if reference is None else np.asarray(reference["embeddings"], dtype=np.float64)
    first = records[0]
    metrics_out = {}
    pooled_sets = pooled_set_metrics(runs, ref, options)
    pooled_sets.update(pooled_classifier_metrics(runs, reference, options))
    subsets = {}
    gen, labels = pooled_embeddings(runs)
    if reference is not None and gen is not None:
        subsets = set_metrics.per_reference_subset(
            gen, labels, ref, reference["dataset"], options.set_metric_options()
        )
    for name in names:
        if name in pooled_sets:
            metrics_out[name] = pooled_sets[name]
        elif name not in ITEM_METRICS:
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
    n_evaluated = sum(int(r["n_evaluated"] or 0) for r in records)
    return {
        **{k: first[k] for k in ("model", "condition")},
        "level": "aggregate",
        "seed": "+".join(str(r["seed"]) for r in records),
        "label": f"{first['model']}/{first['condition']}",
        "link": "",
        "is_pipeline_check": any(r["is_pipeline_check"] for r in records),
        "n_evaluated": n_evaluated,
        "n_prompts": len({key for run in runs for key in ok_prompts(run["rows"])}),
        "n_skipped": sum(int(r["n_skipped"] or 0) for r in records),
        "below_min_n": n_evaluated < options.min_n,
        "generated_seconds": sum(r["generated_seconds"] for r in records),
        "bench_s": float(np.nansum([r["bench_s"] for r in records]))
        if any(math.isfinite(r["bench_s"]) for r in records)
        else math.nan,
        "compute_s_per_audio_min": float(np.nanmean(bench))
        if any(math.isfinite(b) for b in bench)
        else math.nan,
        "metrics": metrics_out,
        "reference_subsets": subsets,
        "non_commercial": any(r["non_commercial"] for r in records),
        "copy_flagged": sum(int(r["copy_flagged"] or 0) for r in records)
        if any(r["copy_flagged"] is not None for r in records)
        else None,
        "license_classes": "+".join(
            dict.fromkeys(c for r in records for c in r["license_classes"].split("+") if c)
        ),
        # seeds share the prompt set: one text when they agree, each seed's otherwise
        "paired_reference": "; ".join(dict.fromkeys(r["paired_reference"] for r in records)),
        "paired_reference_found": _same_or_none(r["paired_reference_found"] for r in records),
        "paired_reference_prompts": _same_or_none(r["paired_reference_prompts"] for r in records),
    }


def _same_or_none(values):
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def ok_prompts(rows: list[dict]) -> list[int]:
    return [item_key(r)[0] for r in rows if r.get("status") == "ok"]


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


def paired_metric_rows(
    pairs, n_flips: int, seed: int, cluster_keys=None, margins: dict | None = None
) -> list[dict]:
    """Per metric: per-prompt mean of (second - first), the sign-flip test of the mean with
    its interval (the test inverted) and smallest attainable p, and the Wilcoxon p on the
    prompt means (secondary).

    ``cluster_keys`` (one per pair; default the item index) say which pairs are one
    prompt: seeds and waveforms of a prompt are averaged before the test. ``margins``
    (metric -> margin) makes that metric's test a non-inferiority test.
    """
    keys = cluster_keys or [item_key(a)[0] for a, _ in pairs]
    margins = margins or {}
    out = []
    for metric in PAIRED_METRICS:
        diffs = [to_float(b.get(metric)) - to_float(a.get(metric)) for a, b in pairs]
        result = hypotheses.clustered_paired_test(keys, diffs, n_flips, seed, margins.get(metric))
        result["metric"] = metric
        result["p_text"] = stats.format_p(result["p_value"], result["p_reason"])
        result["wilcoxon_text"] = stats.format_p(result["wilcoxon_p"], result["wilcoxon_reason"])
        out.append(result)
    return out


def comparisons(records: list[dict], baseline: str, declared: list[Hypothesis]) -> list[tuple]:
    """(condition, baseline) pairs to test: every condition vs ``baseline`` + declared ones.

    A sweep point (``cond@knob=value,...``) is paired with its matched baseline: the
    baseline at the same guidance / steps / scheduler when that run exists.
    """
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    pairs = []
    if baseline in conditions:
        for c in conditions:
            matched = matched_baseline(c, baseline, conditions)
            if c != baseline:
                pairs.append((c, baseline if matched == c else matched))
    for h in declared:
        if (h.condition, h.baseline) not in pairs:
            pairs.append((h.condition, h.baseline))
    return pairs


def matched_runs(runs, records, condition: str, baseline: str) -> dict:
    """model -> list of (baseline run, condition run) sharing a seed."""
    index = {(r["model"], r["condition"], r["seed"]): i for i, r in enumerate(records)}
    matched: dict[str, list] = {}
    for (model, cond, seed), i in index.items():
        j = index.get((model, baseline, seed))
        if cond == condition and j is not None:
            matched.setdefault(model, []).append((runs[j], runs[i], seed))
    return matched


def paired_tests(runs, records, pairs_to_test, options: CompareOptions) -> list[dict]:
    """Clip-level paired tests per model for each (condition, baseline), seeds pooled;
    a declared non-inferiority hypothesis makes its rows non-inferiority tests."""
    declared = options.hypotheses()
    rows = []
    for condition, baseline in pairs_to_test:
        for model, matches in sorted(matched_runs(runs, records, condition, baseline).items()):
            pairs, problems, seeds = [], [], []
            for base, other, seed in matches:
                found, issues = pair_rows(base["rows"], other["rows"])
                pairs.extend(found)
                problems.extend(f"seed {seed}: {p}" for p in issues)
                seeds.append(seed)
            n_clips = min(sum(len(ok_prompts(m[i]["rows"])) for m in matches) for i in (0, 1))
            margins = {
                metric: hypotheses.margin_for(declared, model, condition, baseline, metric)
                for metric in PAIRED_METRICS
            }
            margins = {metric: m for metric, m in margins.items() if m is not None}
            for result in paired_metric_rows(pairs, options.n_flips, options.seed, None, margins):
                rows.append(
                    {
                        "model": model,
                        "condition": condition,
                        "baseline": baseline,
                        "seeds": "+".join(str(s) for s in seeds),
                        "unpaired": len(problems),
                        "below_min_n": n_clips < options.min_n,
                        **result,
                    }
                )
    return hypotheses.label_and_adjust(rows, declared)


def paired_set_rows(runs, records, pairs_to_test, ref, options: CompareOptions) -> list[dict]:
    """FAD and KAD of condition minus baseline, prompts deleted jointly (jackknife)."""
    rows = []
    if ref is None:
        return rows
    for condition, baseline in pairs_to_test:
        for model, matches in sorted(matched_runs(runs, records, condition, baseline).items()):
            gen_a, labels_a = pooled_embeddings([m[0] for m in matches])
            gen_b, labels_b = pooled_embeddings([m[1] for m in matches])
            if gen_a is None or gen_b is None:
                continue
            for metric in PAIRED_SET_METRICS:
                result = set_metrics.paired_set_difference(
                    metric, gen_a, labels_a, gen_b, labels_b, ref, options.set_metric_options()
                )
                rows.append(
                    {
                        "model": model,
                        "condition": condition,
                        "baseline": baseline,
                        "metric": metric,
                        "seeds": "+".join(str(m[2]) for m in matches),
                        "n_a": len(gen_a),
                        "n_b": len(gen_b),
                        "below_min_n": min(len(gen_a), len(gen_b)) < options.min_n,
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
    "n_prompts",
    "below_min_n",
    "n_skipped",
    "generated_seconds",
    "bench_s",
    "compute_s_per_audio_min",
    "non_commercial",
    "license_classes",
    "copy_flagged",
    "paired_reference_found",
    "paired_reference_prompts",
]
PAIRED_FIELDS = [
    "model",
    "condition",
    "baseline",
    "seeds",
    "metric",
    "family",
    "n",
    "n_pairs",
    "unpaired",
    "below_min_n",
    "mean_diff",
    "ci_low",
    "ci_high",
    "test",
    "margin",
    "ni_lower",
    "p_value",
    "min_p",
    "holm_p",
    "holm_m",
    "p_reason",
    "p_method",
    "wilcoxon_p",
    "wilcoxon_min_p",
    "wilcoxon_reason",
    "embedding_family",
    "independent_mean_diff",
    "verdict",
]
# interval ends written as inf/-inf when unbounded (too few prompts for the level), not empty
UNBOUNDED_FIELDS = ("ci_low", "ci_high", "ni_lower")
SET_DIFF_FIELDS = [
    "model",
    "condition",
    "baseline",
    "metric",
    "seeds",
    "n_a",
    "n_b",
    "below_min_n",
    "mean",
    "ci_low",
    "ci_high",
    "se",
    "method",
    "reason",
]


LISTENING_QUESTIONS = ("quality", "text", "style")
# FAD-inf's fit range in summary.csv (set_metrics.fad_infinity's fit_range), beside its value
FIT_RANGE_KEYS = ("min_n", "max_n", "steps", "repeats")


def summary_csv(records: list[dict], names: list[str], listening: dict | None = None) -> str:
    """One row per aggregate and run; with ``listening``, the aggregate rows also carry the
    rate the condition was preferred over the baseline (listening_<question>_pref*)."""
    fields = SUMMARY_FIELDS + [
        f"{n}_{part}" for n in names for part in ("mean", "ci_low", "ci_high")
    ]
    fit_fields = (
        [*(f"fad_inf_fit_{k}" for k in FIT_RANGE_KEYS), "fad_inf_reason"]
        if "fad_inf" in names
        else []
    )
    fields += fit_fields
    prefs = {}
    if listening is not None:
        fields += [
            f"listening_{q}_{part}"
            for q in LISTENING_QUESTIONS
            for part in ("pref", "ci_low", "ci_high", "baseline", "n_raters")
        ]
        for p in listening.get("preferences", []):
            prefs[(p["model"], p["condition"], p["question"])] = p
    table = []
    for record in records:
        row = {key: record.get(key) for key in SUMMARY_FIELDS}
        if record.get("level") == "aggregate":
            for q in LISTENING_QUESTIONS:
                p = prefs.get((record["model"], record["condition"], q))
                if p:
                    row.update(
                        {
                            f"listening_{q}_pref": p["preference"],
                            f"listening_{q}_ci_low": p["ci_low"],
                            f"listening_{q}_ci_high": p["ci_high"],
                            f"listening_{q}_baseline": p["baseline"],
                            f"listening_{q}_n_raters": p["n_raters"],
                        }
                    )
        for name in names:
            ci = record["metrics"].get(name) or {}
            row.update({f"{name}_{part}": ci.get(part) for part in ("mean", "ci_low", "ci_high")})
        if fit_fields:
            fit = (record["metrics"].get("fad_inf") or {}).get("fit_range") or {}
            row.update({f"fad_inf_fit_{k}": fit.get(k) for k in FIT_RANGE_KEYS})
            row["fad_inf_reason"] = (record["metrics"].get("fad_inf") or {}).get("reason")
        table.append(row)
    return rows_to_csv(table, fields)


def paired_csv(rows: list[dict]) -> str:
    """paired.csv: :data:`PAIRED_FIELDS`; an unbounded interval end is written inf/-inf."""

    def cell(value):
        return str(value) if isinstance(value, float) and math.isinf(value) else value

    return rows_to_csv(
        [{**r, **{k: cell(r.get(k)) for k in UNBOUNDED_FIELDS}} for r in rows], PAIRED_FIELDS
    )


def power_rows(paired: list[dict], records: list[dict], options: CompareOptions) -> list[dict]:
    """power.csv: per primary row, the MDE at its prompts and the prompts its configured
    effect needs (:mod:`rcmg.workflow.power`), from the SD of this comparison's own
    per-prompt differences; runs that are pipeline checks make that SD a stand-in."""
    effects = power.parse_effects(options.power_effects)
    checks = {(r["model"], r["condition"]) for r in records if r["is_pipeline_check"]}
    out = []
    for row in paired:
        if row["family"] != "primary":
            continue
        model, condition, baseline = row["model"], row["condition"], row["baseline"]
        stand_in = bool({(model, condition), (model, baseline)} & checks)
        source = (
            f"this comparison: {row['n']} per-prompt mean differences "
            f"({row['n_pairs']} clip pairs, seeds {row['seeds']})"
        )
        if stand_in:
            source += "; pipeline-check runs: a stand-in variance, not a real one"
        out.append(
            power.power_row(
                condition=condition,
                baseline=baseline,
                model=model,
                metric=row["metric"],
                test=row["test"],
                margin=row["margin"] if row["test"] == hypotheses.NONINFERIORITY else None,
                n=int(row["n"]),
                sd=to_float(row.get("sd")),
                m=int(row.get("holm_m") or 1),
                alpha=hypotheses.ALPHA,
                target=options.power_target,
                effect=effects.get(row["metric"]),
                n_flips=options.n_flips,
                variance_source=source,
                is_pipeline_check=stand_in,
            )
        )
    return out


def power_csv(rows: list[dict]) -> str:
    """power.csv: :data:`rcmg.workflow.power.FIELDS`; an infinite MDE or N needed (the
    test cannot reach the level) is written inf, not left empty."""

    def cell(value):
        return str(value) if isinstance(value, float) and math.isinf(value) else value

    infinite = ("mde", "n_needed")
    return rows_to_csv([{**r, **{k: cell(r.get(k)) for k in infinite}} for r in rows], power.FIELDS)


def rows_to_csv(rows: list[dict], fields: list[str]) -> str:
    """A comparison table as CSV (missing and non-finite values empty)."""
    return tables.csv_text(rows, fields)


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


def read_listening(path: Path | None) -> dict | None:
    """preferences.json of listening_ingest.py (None when no test was configured)."""
    if path is None:
        return None
    return report.read_json(Path(path), "run the listening_ingest step (listening_ingest.py)")


def judge_rows(runs: list[dict]) -> list[dict]:
    """One row per model: the judge, the style space and the text-tower fingerprints."""
    rows: dict[str, dict] = {}
    for run in runs:
        summary = run["summary"]
        record = summary.get("judge") or {}
        model = run["config"].get("model")
        towers = record.get("generator_text_towers") or {}
        generator = towers.get("text_encoder") or {}
        rows.setdefault(
            model,
            {
                "model": model,
                "judge": record.get("model", summary.get("clap_model")),
                "style_space": summary.get("style_space", summary.get("clap_model")),
                "judge_sha": (record.get("text_tower_sha256") or "n/a")[:12],
                "generator_sha": (generator.get("sha256") or "n/a")[:12],
                "shared": bool(record.get("shares_weights_with")),
                "classifier": (summary.get("classifier") or {}).get("model") or "off",
            },
        )
    return list(rows.values())


COPY_RATE_FIELDS = [
    "model",
    "condition",
    "baseline",
    "seeds",
    "n",
    "flagged",
    "rate",
    "rate_low",
    "rate_high",
    "n_unscored",
    "gated_patches",
    "baseline_n",
    "baseline_flagged",
    "baseline_rate",
    "baseline_low",
    "baseline_high",
    "difference",
    "difference_low",
    "difference_high",
    "thresholds",
    "null_loo_fpr",
    "interval",
]
COPY_RATE_INTERVAL = (
    "Wilson 95% per rate; difference: Newcombe hybrid score 95% (samples treated as "
    "independent; N = audited clips, seeds pooled)"
)


def _flag(value) -> bool | None:
    """A per-item copy_flag cell (parsed: 1.0/0.0, or True/False text); None: not audited."""
    if isinstance(value, str):
        text = value.strip().lower()
        return None if text == "" else text in ("1", "true", "yes")
    number = to_float(value)
    return None if not math.isfinite(number) else number != 0


def copy_counts(rows: list[dict]) -> dict:
    """Copy-audit counts of one run's per-item rows: audited clips (ok, copy_flag filled),
    flagged, unscored (no patch voted: silent or noise-gated), gated patches."""
    audited = [r for r in rows if r.get("status") == "ok" and _flag(r.get("copy_flag")) is not None]
    gated = [to_float(r.get("copy_gated_patches")) for r in audited]
    return {
        "n": len(audited),
        "flagged": sum(bool(_flag(r["copy_flag"])) for r in audited),
        "n_unscored": sum(not math.isfinite(to_float(r.get("copy_score"))) for r in audited),
        "gated_patches": int(sum(g for g in gated if math.isfinite(g))),
    }


def _pooled_copy_counts(runs, index, model, condition, seeds) -> tuple[dict, set]:
    """:func:`copy_counts` summed over ``seeds`` of one model x condition, and the
    thresholds those runs used (with their calibration's leave-one-out FPR on the
    prompt-only clips)."""
    totals = {"n": 0, "flagged": 0, "n_unscored": 0, "gated_patches": 0}
    thresholds = set()
    for seed in seeds:
        i = index.get((model, condition, seed))
        if i is None:
            continue
        for key, value in copy_counts(runs[i]["rows"]).items():
            totals[key] += value
        audit = runs[i]["summary"].get("copy_audit") or {}
        if audit.get("threshold") is not None:
            loo = (audit.get("calibration_numbers") or {}).get("generated_loo_fpr")
            thresholds.add((round(float(audit["threshold"]), 4), loo))
    return totals, thresholds


def copy_rate_rows(runs: list[dict], records: list[dict], baseline: str) -> list[dict]:
    """Per model x condition (seeds pooled): the copy rate with its Wilson interval beside
    the matched baseline's (the baseline at the point's matched knobs, same model, the
    seeds both have) and their difference (Newcombe). Runs without the audit are left out.
    """
    from rcmg.evaluation.copy_audit import newcombe_difference, wilson_interval

    index = {(r["model"], r["condition"], r["seed"]): i for i, r in enumerate(records)}
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    out = []
    for (model, condition), idx in group_runs(runs, records).items():
        is_baseline = parse_point(condition)[0] == baseline
        base = condition if is_baseline else matched_baseline(condition, baseline, conditions)
        seeds = [records[i]["seed"] for i in idx]
        if condition != base:
            seeds = [s for s in seeds if (model, base, s) in index]

        own, thresholds = _pooled_copy_counts(runs, index, model, condition, seeds)
        if own["n"] == 0:
            continue
        low, high = wilson_interval(own["flagged"], own["n"])
        row = {
            "model": model,
            "condition": condition,
            "baseline": "" if condition == base else base,
            "seeds": " ".join(map(str, seeds)),
            **own,
            "rate": own["flagged"] / own["n"],
            "rate_low": low,
            "rate_high": high,
            "interval": COPY_RATE_INTERVAL,
        }
        if condition != base:
            other, base_thresholds = _pooled_copy_counts(runs, index, model, base, seeds)
            thresholds |= base_thresholds
            if other["n"]:
                b_low, b_high = wilson_interval(other["flagged"], other["n"])
                d, d_low, d_high = newcombe_difference(
                    own["flagged"], own["n"], other["flagged"], other["n"]
                )
                row.update(
                    {
                        "baseline_n": other["n"],
                        "baseline_flagged": other["flagged"],
                        "baseline_rate": other["flagged"] / other["n"],
                        "baseline_low": b_low,
                        "baseline_high": b_high,
                        "difference": d,
                        "difference_low": d_low,
                        "difference_high": d_high,
                    }
                )
        row["thresholds"] = " ".join(f"{t:.4f}" for t in sorted({t for t, _ in thresholds}))
        loo = sorted({v for _, v in thresholds if v is not None})
        row["null_loo_fpr"] = " ".join(f"{v:.3f}" for v in loo)
        out.append(row)
    return out


def compare_runs(run_dirs, out_dir: Path, options: CompareOptions = CompareOptions()) -> dict:
    """Table mode over all ``run_dirs``: pooled aggregates, declared and exploratory tests."""
    out_dir = Path(out_dir)
    declared = options.hypotheses()  # a malformed hypothesis fails before any file is read
    runs = [report.read_evaluated_run(d) for d in run_dirs]
    # a missing adapter file fails here, before any computation
    adapters = adapter_tables.attach_runs(adapter_tables.adapter_results(options.adapters), runs)
    reference = load_reference(options.reference_stats)
    ref = None if reference is None else np.asarray(reference["embeddings"], dtype=np.float64)
    records = [run_record(run, out_dir, Path(options.bench_root), options.min_n) for run in runs]
    names = summary_metric_names(runs)
    for name in SET_METRICS:
        if name not in names:
            names.append(name)
    groups = group_runs(runs, records)
    aggregates = [
        aggregate_group(
            [runs[i] for i in idx], [records[i] for i in idx], names, reference, options
        )
        for idx in groups.values()
    ]
    to_test = comparisons(records, options.baseline_condition, declared)
    paired = agreement.attach(paired_tests(runs, records, to_test, options))
    set_diffs = paired_set_rows(runs, records, to_test, ref, options)
    models = list(dict.fromkeys(r["model"] for r in records))
    figures = write_plots(out_dir, runs, aggregates, groups, names)
    nc_groups = {(a["model"], a["condition"]) for a in aggregates if a["non_commercial"]}
    # the key tables show the configured conditions; sweep points have their own section
    configured = [a for a in aggregates if SEP not in str(a["condition"])]
    key, footnotes = overview.key_tables(configured, paired, options.baseline_condition, nc_groups)
    listening = read_listening(options.listening)
    write_text(out_dir / "summary.csv", summary_csv(aggregates + records, names, listening))
    write_text(out_dir / "paired.csv", paired_csv(paired))
    write_text(out_dir / "paired_set_metrics.csv", rows_to_csv(set_diffs, SET_DIFF_FIELDS))
    powers = power_rows(paired, records, options)
    write_text(out_dir / "power.csv", power_csv(powers))
    copy_rates = copy_rate_rows(runs, records, options.baseline_condition)
    write_text(out_dir / "copy_rates.csv", rows_to_csv(copy_rates, COPY_RATE_FIELDS))
    if adapters:
        write_text(
            out_dir / "adapter_heldout.csv",
            rows_to_csv(adapter_tables.csv_rows(adapters), adapter_tables.CSV_FIELDS),
        )
    sweeps = sweep_section(runs, records, aggregates, names, options)
    if options.sweep_points:
        metrics = [m for m, _ in sweep_curves.CURVE_METRICS]
        write_text(
            out_dir / "sweeps.csv",
            rows_to_csv(sweeps["rows"], sweep_curves.sweep_row_fields(metrics)),
        )
        write_text(
            out_dir / "best.csv",
            rows_to_csv(sweep_curves.best_csv_rows(sweeps["best"]), sweep_curves.BEST_FIELDS),
        )
    html = report.render_compare(
        {
            "mode": "table",
            "title": "Run comparison",
            "any_pipeline_check": any(r["is_pipeline_check"] for r in records),
            "metric_names": names,
            "aggregates": aggregates,
            "records": records,
            "paired": paired,
            "primary": [r for r in paired if r["family"] == "primary"],
            "exploratory": [r for r in paired if r["family"] != "primary"],
            "missing_primaries": hypotheses.missing_primaries(paired, declared, models),
            "declared": declared,
            "power": powers,
            "power_target": options.power_target,
            "set_diffs": set_diffs,
            "judges": judge_rows(runs),
            "reference": reference,
            "composition": report.composition_rows(reference["composition"]) if reference else [],
            "coverage": coverage_rows(options.coverage),
            "subset_names": list(dict.fromkeys(reference["dataset"])) if reference else [],
            "min_n": options.min_n,
            "any_below_min_n": any(a["below_min_n"] for a in aggregates),
            "baseline": options.baseline_condition,
            "plots": figures,
            "key_tables": key,
            "footnotes": footnotes,
            "key_metrics": overview.KEY_METRICS,
            "scatter": overview.tradeoff_svg(records),
            # the grid compares the configured conditions; sweep points have their section
            "grid": overview.listening_grid(
                [r for r in runs if SEP not in str(r["config"].get("condition"))],
                out_dir,
                options.baseline_condition,
                item_key,
            ),
            "any_non_commercial": bool(nc_groups),
            "listening": listening,
            "sweeps": sweeps,
            "adapters": adapters,
            "ranking": run_tables.ranking_section(runs),
            "strength": run_tables.strength_section(runs),
            "paired_refs": run_tables.paired_reference_section(runs),
            "paired_metric_names": list(run_tables.PAIRED_METRICS),
            "copy_rates": copy_rates,
            "copy_rate_interval": COPY_RATE_INTERVAL,
        }
    )
    write_text(out_dir / "index.html", html)
    return {"runs": len(runs), "groups": len(aggregates), "paired_rows": len(paired)}


def sweep_section(runs, records, aggregates, names, options: CompareOptions) -> dict:
    """The sweeps' curves, sweeps.csv rows and `best` table (empty without sweep points)."""
    groups = sweep_curves.sweep_groups(options.sweep_points, aggregates)
    by_point: dict[tuple, list[dict]] = {}
    for run, record in zip(runs, records, strict=True):
        by_point.setdefault((record["model"], record["condition"]), []).extend(run["rows"])

    def rows_of(model, condition):
        return by_point.get((model, condition), [])

    metrics = [m for m, _ in sweep_curves.CURVE_METRICS]
    return {
        "figures": sweep_curves.figures(groups),
        "rows": sweep_curves.sweep_rows(groups, metrics),
        "best": sweep_curves.best_table(
            groups, rows_of, options.selection, options.n_boot, options.seed
        ),
        "selection": options.selection,
    }


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
    records = [
        run_record(run, out_dir, Path(options.bench_root), options.min_n) for run in (run_a, run_b)
    ]
    names = summary_metric_names([run_a, run_b])
    pairs, problems = pair_rows(run_a["rows"], run_b["rows"])
    rows = side_by_side_rows(run_a, run_b, pairs, out_dir)
    paired = paired_metric_rows(pairs, options.n_flips, options.seed)
    for row in paired:
        row.update(model="", condition=records[1]["label"], baseline=records[0]["label"], seeds="")
        row.update(family="exploratory", holm_p=math.nan, below_min_n=len(pairs) < options.min_n)
    for problem in problems:
        LOG.warning("not paired: %s", problem)
    write_text(out_dir / "summary.csv", summary_csv(records, names))
    write_text(out_dir / "paired.csv", paired_csv(paired))
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
            "min_n": options.min_n,
        }
    )
    write_text(out_dir / "index.html", html)
    return {"pairs": len(rows), "unpaired": len(problems)}
