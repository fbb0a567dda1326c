"""Sweep curves and choices on the comparison page (issue 14 item 4).

The points come from the plan (compare's ``--sweep-points``, written by
:func:`rcmg.workflow.sweeps.sweep_words` from the config), never from the run folders
on disk. For each sweep x model x condition: every key metric against the swept value
with its interval band and the matched baseline, and the text-vs-style trade-off with
one point per value, connected. :func:`best_table` picks, per sweep and model, the point
maximising an objective on a *tuning* split of the prompts, subject to a constraint
metric staying within a margin of the matched baseline, and reports it on the held-out
*test* split. All of it is exploratory: none of it enters the primary (Holm) family.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np

from rcmg.evaluation import stats
from rcmg.workflow.sweeps import KNOBS, parse_sweep_word

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")
CURVE_METRICS = (
    ("clap_style_sim", "CLAP style similarity"),
    ("clap_text_sim", "CLAP text similarity"),
    ("kad", "KAD"),
    ("loudness_lufs", "loudness (LUFS)"),
)


@dataclass(frozen=True)
class Selection:
    """How the ``best`` table picks a point (config evaluation.sweep_selection)."""

    objective: str = "clap_style_sim"  # maximised on the tuning prompts
    constraint: str = "clap_text_sim"  # must stay >= matched baseline - margin (tuning)
    margin: float = 0.02
    tuning_fraction: float = 0.5  # share of the prompts the choice is made on
    seed: int = 0  # seeds the prompt split


def _mean(ci) -> float:
    try:
        return float((ci or {}).get("mean"))
    except (TypeError, ValueError):
        return math.nan


def _ci(ci, part) -> float:
    try:
        return float((ci or {}).get(part))
    except (TypeError, ValueError):
        return math.nan


def _as_number(knob: str, value: str):
    return value if KNOBS[knob][1] == "scheduler" else float(value)


# ---------------------------------------------------------------- grouping


def sweep_groups(words, aggregates: list[dict]) -> list[dict]:
    """One group per sweep x model x base condition, with its x knob, its series (the
    other swept knobs' values) and, per point, its aggregate and matched baseline's."""
    by_key = {(a["model"], a["condition"]): a for a in aggregates}
    groups: dict[tuple, dict] = {}
    for word in words:
        p = parse_sweep_word(word)
        base = p["condition"].split("@", 1)[0]
        key = (p["sweep"], p["model"], base)
        group = groups.setdefault(
            key, {"sweep": p["sweep"], "model": p["model"], "condition": base, "points": []}
        )
        group["points"].append(
            {
                **p,
                "aggregate": by_key.get((p["model"], p["condition"])),
                "baseline_aggregate": by_key.get((p["model"], p["baseline"]))
                if p["baseline"]
                else None,
            }
        )
    out = []
    for group in groups.values():
        knobs = list(group["points"][0]["settings"])
        varying = [k for k in knobs if len({pt["settings"][k] for pt in group["points"]}) > 1]
        x_knob = varying[0] if varying else knobs[0]
        series_knobs = [k for k in varying if k != x_knob]
        for pt in group["points"]:
            pt["x"] = _as_number(x_knob, pt["settings"][x_knob])
            pt["series"] = ", ".join(f"{k}={pt['settings'][k]}" for k in series_knobs)
        categorical = KNOBS[x_knob][1] == "scheduler"
        order = list(dict.fromkeys(pt["x"] for pt in group["points"])) if categorical else None
        group["points"].sort(
            key=lambda pt: (pt["series"], order.index(pt["x"]) if categorical else pt["x"])
        )
        group.update(x_knob=x_knob, series_knobs=series_knobs, categorical=categorical)
        group["label"] = f"{group['sweep']}: {group['model']} / {group['condition']}"
        group["id"] = "sweep-" + "-".join(
            "".join(ch if ch.isalnum() else "_" for ch in part)
            for part in (group["sweep"], group["model"], group["condition"])
        )
        out.append(group)
    return out


def sweep_rows(groups: list[dict], metrics) -> list[dict]:
    """sweeps.csv: one row per sweep point, with its matched baseline's values."""
    rows = []
    for g in groups:
        for pt in g["points"]:
            row = {
                "sweep": g["sweep"],
                "model": g["model"],
                "condition": pt["condition"],
                "base_condition": g["condition"],
                "baseline": pt["baseline"] or "",
                "x_knob": g["x_knob"],
                "x": pt["x"],
                "settings": ",".join(f"{k}={v}" for k, v in pt["settings"].items()),
                "family": "exploratory",
            }
            for name in metrics:
                ci = ((pt["aggregate"] or {}).get("metrics") or {}).get(name)
                bci = ((pt["baseline_aggregate"] or {}).get("metrics") or {}).get(name)
                for part in ("mean", "ci_low", "ci_high"):
                    row[f"{name}_{part}"] = _ci(ci, part)
                row[f"{name}_baseline_mean"] = _mean(bci)
            rows.append(row)
    return rows


SWEEP_ROW_FIELDS = [
    "sweep",
    "model",
    "condition",
    "base_condition",
    "baseline",
    "x_knob",
    "x",
    "settings",
    "family",
]


def sweep_row_fields(metrics) -> list[str]:
    return SWEEP_ROW_FIELDS + [
        f"{n}_{part}" for n in metrics for part in ("mean", "ci_low", "ci_high", "baseline_mean")
    ]


# ---------------------------------------------------------------- SVG


def _range(values) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 0.05)
    return lo - pad, hi + pad


class _Frame:
    def __init__(self, xs, ys, width=420, height=260, left=66, right=14, top=14, bottom=40):
        self.w, self.h, self.l, self.r, self.t, self.b = width, height, left, right, top, bottom
        self.x0, self.x1 = _range(xs)
        self.y0, self.y1 = _range(ys)

    def sx(self, v):
        return self.l + (v - self.x0) / (self.x1 - self.x0) * (self.w - self.l - self.r)

    def sy(self, v):
        return self.h - self.b - (v - self.y0) / (self.y1 - self.y0) * (self.h - self.t - self.b)

    @staticmethod
    def _decimals(lo: float, hi: float) -> int:
        """Decimals that tell the 5 ticks of [lo, hi] apart (tiny demo ranges included)."""
        step = (hi - lo) / 4
        return max(0, min(6, 1 - math.floor(math.log10(step)))) if step > 0 else 3

    def axes(self, xlabel, ylabel, xticks=None) -> list[str]:
        parts = [
            f'<rect x="{self.l}" y="{self.t}" width="{self.w - self.l - self.r}" '
            f'height="{self.h - self.t - self.b}" fill="none" stroke="#999"/>'
        ]
        xd, yd = self._decimals(self.x0, self.x1), self._decimals(self.y0, self.y1)
        ticks = xticks or [
            (
                self.x0 + (self.x1 - self.x0) * k / 4,
                f"{self.x0 + (self.x1 - self.x0) * k / 4:.{xd}f}",
            )
            for k in range(5)
        ]
        for value, text in ticks:
            parts.append(
                f'<text x="{self.sx(value):.1f}" y="{self.h - self.b + 13}" font-size="10" '
                f'text-anchor="middle">{html.escape(text)}</text>'
            )
        for k in range(5):
            yv = self.y0 + (self.y1 - self.y0) * k / 4
            parts.append(
                f'<text x="{self.l - 4}" y="{self.sy(yv) + 3:.1f}" font-size="10" '
                f'text-anchor="end">{yv:.{yd}f}</text>'
            )
        mid_y = (self.t + self.h - self.b) / 2
        parts.append(
            f'<text x="{(self.l + self.w - self.r) / 2:.0f}" y="{self.h - 6}" font-size="11" '
            f'text-anchor="middle">{html.escape(xlabel)}</text>'
            f'<text x="11" y="{mid_y:.0f}" font-size="11" text-anchor="middle" '
            f'transform="rotate(-90 11 {mid_y:.0f})">{html.escape(ylabel)}</text>'
        )
        return parts


def _x_positions(group) -> tuple[dict, list | None]:
    """x position of each swept value and the ticks: one per value, labelled as named."""
    if not group["categorical"]:
        ticks = {pt["x"]: pt["settings"][group["x_knob"]] for pt in group["points"]}
        return {x: x for x in ticks}, sorted(ticks.items())
    names = list(dict.fromkeys(pt["x"] for pt in group["points"]))
    return {n: float(i) for i, n in enumerate(names)}, [(float(i), n) for i, n in enumerate(names)]


def _series(group) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for pt in group["points"]:
        out.setdefault(pt["series"], []).append(pt)
    return out


def curve_svg(group: dict, metric: str, label: str) -> str:
    """``metric`` vs the swept value: mean line, interval band, matched baseline (dashed)."""
    xpos, xticks = _x_positions(group)

    def value(pt, part, of="aggregate"):
        return _ci(((pt[of] or {}).get("metrics") or {}).get(metric), part)

    ys = [
        value(pt, part, of)
        for pt in group["points"]
        for part in ("mean", "ci_low", "ci_high")
        for of in ("aggregate", "baseline_aggregate")
    ]
    frame = _Frame(list(xpos.values()), ys)
    esc = html.escape
    parts = [
        f'<svg class="sweep-curve" data-metric="{esc(metric)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{frame.w}" height="{frame.h}" viewBox="0 0 {frame.w} {frame.h}" role="img" '
        f'aria-label="{esc(label)} vs {esc(group["x_knob"])}">',
        *frame.axes(group["x_knob"], label, xticks),
    ]
    drawn = 0
    for i, (name, pts) in enumerate(_series(group).items()):
        colour = PALETTE[i % len(PALETTE)]
        ok = [pt for pt in pts if math.isfinite(value(pt, "mean"))]
        band = [pt for pt in ok if math.isfinite(value(pt, "ci_low"))]
        if len(band) >= 2:
            upper = [
                f"{frame.sx(xpos[p['x']]):.1f},{frame.sy(value(p, 'ci_high')):.1f}" for p in band
            ]
            lower = [
                f"{frame.sx(xpos[p['x']]):.1f},{frame.sy(value(p, 'ci_low')):.1f}" for p in band
            ]
            parts.append(
                f'<polygon class="band" points="{" ".join(upper + lower[::-1])}" '
                f'fill="{colour}" fill-opacity="0.15" stroke="none"/>'
            )
        if ok:
            coords = " ".join(
                f"{frame.sx(xpos[p['x']]):.1f},{frame.sy(value(p, 'mean')):.1f}" for p in ok
            )
            parts.append(
                f'<polyline class="curve" points="{coords}" fill="none" stroke="{colour}"/>'
            )
        for p in ok:
            x, y = frame.sx(xpos[p["x"]]), frame.sy(value(p, "mean"))
            lo, hi = value(p, "ci_low"), value(p, "ci_high")
            if math.isfinite(lo) and math.isfinite(hi):
                parts.append(
                    f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.sy(lo):.1f}" y2="{frame.sy(hi):.1f}" '
                    f'stroke="{colour}"/>'
                )
            parts.append(
                f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}">'
                f"<title>{esc(p['condition'])}: {value(p, 'mean'):.4g} "
                f"[{lo:.4g}, {hi:.4g}]</title></circle>"
            )
            drawn += 1
        base = [p for p in pts if math.isfinite(value(p, "mean", "baseline_aggregate"))]
        if base:
            coords = " ".join(
                f"{frame.sx(xpos[p['x']]):.1f},{frame.sy(value(p, 'mean', 'baseline_aggregate')):.1f}"
                for p in base
            )
            parts.append(
                f'<polyline class="baseline" points="{coords}" fill="none" stroke="{colour}" '
                'stroke-dasharray="5 3" stroke-opacity="0.7"/>'
            )
            for p in base:
                parts.append(
                    f'<rect class="baseline-pt" x="{frame.sx(xpos[p["x"]]) - 3:.1f}" '
                    f'y="{frame.sy(value(p, "mean", "baseline_aggregate")) - 3:.1f}" width="6" '
                    f'height="6" fill="none" stroke="{colour}"><title>matched baseline '
                    f"{esc(p['baseline'] or '')}</title></rect>"
                )
        if name:
            parts.append(
                f'<text x="{frame.l + 6}" y="{frame.t + 12 + 12 * i}" font-size="10" '
                f'fill="{colour}">{esc(name)}</text>'
            )
    if not drawn:
        parts.append(
            f'<text x="{frame.w / 2}" y="{frame.h / 2}" text-anchor="middle" font-size="11">'
            f"{esc(metric)} is n/a for every point</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def tradeoff_curve_svg(group: dict) -> str:
    """Text similarity (x) vs style similarity (y): one point per value, connected in
    order of the swept value, labelled with it; squares: the matched baselines."""

    def xy(pt, of="aggregate"):
        metrics = (pt[of] or {}).get("metrics") or {}
        return _mean(metrics.get("clap_text_sim")), _mean(metrics.get("clap_style_sim"))

    pts = [(pt, *xy(pt)) for pt in group["points"]]
    pts = [p for p in pts if math.isfinite(p[1]) and math.isfinite(p[2])]
    bases = {}
    for pt in group["points"]:
        bx, by = xy(pt, "baseline_aggregate") if pt["baseline_aggregate"] else (math.nan, math.nan)
        if math.isfinite(bx) and math.isfinite(by):
            bases[pt["baseline"]] = (bx, by)
    frame = _Frame(
        [p[1] for p in pts] + [b[0] for b in bases.values()],
        [p[2] for p in pts] + [b[1] for b in bases.values()],
    )
    esc = html.escape
    parts = [
        f'<svg class="sweep-tradeoff" xmlns="http://www.w3.org/2000/svg" width="{frame.w}" '
        f'height="{frame.h}" viewBox="0 0 {frame.w} {frame.h}" role="img" '
        f'aria-label="{esc(group["label"])}: text vs style similarity per value">',
        *frame.axes("CLAP text similarity →", "CLAP style similarity →"),
    ]
    for i, (_name, series) in enumerate(_series(group).items()):
        colour = PALETTE[i % len(PALETTE)]
        line = [p for p in pts if p[0] in series]
        if len(line) >= 2:
            coords = " ".join(f"{frame.sx(x):.1f},{frame.sy(y):.1f}" for _, x, y in line)
            parts.append(
                f'<polyline class="curve" points="{coords}" fill="none" stroke="{colour}"/>'
            )
        for pt, x, y in line:
            parts.append(
                f'<circle class="pt" cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="4" '
                f'fill="{colour}"><title>{esc(pt["condition"])}: text {x:.4g}, style {y:.4g}'
                f'</title></circle><text x="{frame.sx(x) + 6:.1f}" y="{frame.sy(y) + 3:.1f}" '
                f'font-size="9">{esc(str(pt["settings"][group["x_knob"]]))}</text>'
            )
    for name, (bx, by) in bases.items():
        parts.append(
            f'<rect class="baseline-pt" x="{frame.sx(bx) - 4:.1f}" y="{frame.sy(by) - 4:.1f}" '
            f'width="8" height="8" fill="none" stroke="#333"><title>matched baseline '
            f"{esc(name)}</title></rect>"
        )
    if not pts:
        parts.append(
            f'<text x="{frame.w / 2}" y="{frame.h / 2}" text-anchor="middle" font-size="11">'
            "no point has both similarities</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def figures(groups: list[dict]) -> list[dict]:
    """Per group: its curves (one per key metric) and its trade-off plot, inline SVG."""
    return [
        {
            "id": g["id"],
            "label": g["label"],
            "x_knob": g["x_knob"],
            "n_points": len(g["points"]),
            "curves": [curve_svg(g, metric, label) for metric, label in CURVE_METRICS],
            "tradeoff": tradeoff_curve_svg(g),
        }
        for g in groups
    ]


# ---------------------------------------------------------------- best point


def prompt_split(items, tuning_fraction: float, seed: int) -> tuple[set, set]:
    """(tuning, test) prompt ids: a seeded permutation of the distinct ids, the first
    round(fraction * n) tuning (at least one in each when there are two or more)."""
    ids = sorted(set(items))
    if not ids:
        return set(), set()
    order = np.random.default_rng(seed).permutation(len(ids))
    n_tune = int(round(tuning_fraction * len(ids)))
    if len(ids) >= 2:
        n_tune = min(max(n_tune, 1), len(ids) - 1)
    tuning = {ids[i] for i in order[:n_tune]}
    return tuning, set(ids) - tuning


def _values(rows, metric, prompts) -> np.ndarray:
    out = []
    for r in rows:
        if r.get("status") != "ok":
            continue
        try:
            item = int(float(r["item"]))
            value = float(r.get(metric))
        except (TypeError, ValueError, KeyError):
            continue
        if item in prompts and math.isfinite(value):
            out.append(value)
    return np.asarray(out, dtype=np.float64)


def best_table(groups, rows_of, selection: Selection, n_boot: int, seed: int) -> list[dict]:
    """Per sweep x model: the point maximising ``selection.objective`` on the tuning
    prompts among those whose ``constraint`` is within ``margin`` of their matched
    baseline's (tuning), reported with bootstrap CIs on the held-out test prompts.

    ``rows_of(model, condition)`` gives the per-item rows of that point, seeds pooled.
    """
    candidates: dict[tuple, list] = {}
    for g in groups:
        for pt in g["points"]:
            candidates.setdefault((g["sweep"], g["model"]), []).append(pt)
    table = []
    for (sweep, model), pts in candidates.items():
        items = [
            int(float(r["item"]))
            for pt in pts
            for r in rows_of(model, pt["condition"])
            if r.get("status") == "ok"
        ]
        tuning, test = prompt_split(items, selection.tuning_fraction, selection.seed)
        scored = []
        for pt in pts:
            rows = rows_of(model, pt["condition"])
            base_rows = rows_of(model, pt["baseline"]) if pt["baseline"] else []
            objective = _values(rows, selection.objective, tuning)
            constraint = _values(rows, selection.constraint, tuning)
            base_constraint = _values(base_rows, selection.constraint, tuning)
            if not (objective.size and constraint.size and base_constraint.size):
                continue
            gap = float(constraint.mean() - base_constraint.mean())
            scored.append((pt, float(objective.mean()), gap))
        feasible = [s for s in scored if s[2] >= -selection.margin]
        row = {
            "sweep": sweep,
            "model": model,
            "objective": selection.objective,
            "constraint": selection.constraint,
            "margin": selection.margin,
            "n_candidates": len(pts),
            "n_feasible": len(feasible),
            "n_tuning_prompts": len(tuning),
            "n_test_prompts": len(test),
            "family": "exploratory",
        }
        if not feasible:
            row["condition"] = ""
            row["reason"] = (
                f"no point keeps {selection.constraint} within {selection.margin} of its "
                "matched baseline on the tuning prompts"
                if scored
                else "no point has tuning values for the objective, constraint and baseline"
            )
            table.append(row)
            continue
        best, tune_objective, tune_gap = max(feasible, key=lambda s: s[1])
        rows = rows_of(model, best["condition"])
        base_rows = rows_of(model, best["baseline"]) if best["baseline"] else []
        row.update(
            condition=best["condition"],
            baseline=best["baseline"] or "",
            settings=",".join(f"{k}={v}" for k, v in best["settings"].items()),
            tuning_objective=tune_objective,
            tuning_constraint_gap=tune_gap,
            reason="",
        )
        for key, metric in (
            ("objective", selection.objective),
            ("constraint", selection.constraint),
        ):
            ci = stats.bootstrap_mean_ci(_values(rows, metric, test), n_boot, seed)
            base = stats.bootstrap_mean_ci(_values(base_rows, metric, test), n_boot, seed)
            row.update(
                {
                    f"test_{key}": ci,
                    f"test_{key}_baseline": base,
                }
            )
        table.append(row)
    return table


BEST_FIELDS = [
    "sweep",
    "model",
    "condition",
    "settings",
    "baseline",
    "objective",
    "constraint",
    "margin",
    "n_candidates",
    "n_feasible",
    "n_tuning_prompts",
    "n_test_prompts",
    "tuning_objective",
    "tuning_constraint_gap",
    "test_objective_mean",
    "test_objective_ci_low",
    "test_objective_ci_high",
    "test_objective_baseline_mean",
    "test_constraint_mean",
    "test_constraint_ci_low",
    "test_constraint_ci_high",
    "test_constraint_baseline_mean",
    "family",
    "reason",
]


def best_csv_rows(table: list[dict]) -> list[dict]:
    """best.csv rows: the test CIs flattened."""
    out = []
    for row in table:
        flat = {k: v for k, v in row.items() if not isinstance(v, dict)}
        for key in ("objective", "constraint"):
            ci = row.get(f"test_{key}") or {}
            for part in ("mean", "ci_low", "ci_high"):
                flat[f"test_{key}_{part}"] = ci.get(part)
            flat[f"test_{key}_baseline_mean"] = (row.get(f"test_{key}_baseline") or {}).get("mean")
        out.append(flat)
    return out
