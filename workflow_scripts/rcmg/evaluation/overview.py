"""What a person reads first on the comparison page: key tables, trade-off scatter, listening grid.

* :func:`key_tables`: per model, conditions as rows and the key metrics (text and style
  similarity, KAD, loudness) with intervals; the best value per column marked and the
  primary tests' significance marks with their Holm-adjusted p as footnotes.
* :func:`tradeoff_svg`: text vs style similarity, one point per run, sweep points
  (conditions ``name<number>`` of one model and seed) connected in order.
* :func:`listening_grid`: rows = prompts, columns = conditions, one model and seed at a
  time; each cell the wav, its mel, the prompt used and the bank items it was given.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

from rcmg.evaluation import report

# (metric, column title, which way is better: "max", "min" or None = no best)
KEY_METRICS = (
    ("clap_text_sim", "text sim ↑", "max"),
    ("clap_style_sim", "style sim ↑", "max"),
    ("kad", "KAD ×100 ↓", "min"),
    ("loudness_lufs", "loudness LUFS", None),
)
ALPHA = 0.05
GRID_PAGE = 10  # prompts per page of the listening grid
_SWEEP = re.compile(r"^(?P<stem>.*?)[_-]?(?P<value>\d+(?:\.\d+)?)$")
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2")


def _mean(ci: dict | None) -> float:
    try:
        value = float((ci or {}).get("mean"))
    except (TypeError, ValueError):
        return math.nan
    return value


def condition_order(conditions, baseline: str) -> list[str]:
    """Baseline first, the rest in first-seen order."""
    unique = list(dict.fromkeys(conditions))
    return sorted(unique, key=lambda c: (c != baseline, unique.index(c)))


def best_conditions(rows: list[dict], metric: str, direction: str | None) -> set[str]:
    """Conditions holding the best finite mean of ``metric`` (ties all marked)."""
    if direction is None:
        return set()
    values = {r["condition"]: _mean(r["metrics"].get(metric)) for r in rows}
    finite = {c: v for c, v in values.items() if math.isfinite(v)}
    if len(finite) < 2:
        return set()
    best = max(finite.values()) if direction == "max" else min(finite.values())
    return {c for c, v in finite.items() if v == best}


def _test_text(row: dict) -> str:
    """The kind of test in a footnote: non-inferiority names its margin and bound."""
    if row.get("test") != "noninferiority":
        return ""
    return (
        f"non-inferiority (margin {report.format_number(row.get('margin'))}: one-sided 95% "
        f"lower bound {report.format_bound(row.get('ni_lower'))}), "
    )


def key_tables(aggregates, paired, baseline: str, nc_groups: set) -> tuple[list[dict], list[dict]]:
    """Per model ``{model, columns, rows}`` and the footnotes of the significance marks."""
    footnotes: list[dict] = []
    marks: dict[tuple, dict] = {}
    for row in paired:
        if row.get("family") != "primary":
            continue
        holm = row.get("holm_p")
        holm = float(holm) if isinstance(holm, int | float) else math.nan
        significant = math.isfinite(holm) and holm < ALPHA
        footnotes.append(
            {
                "n": len(footnotes) + 1,
                "text": (
                    f"{row['model']}: {row['condition']} − {row['baseline']} on {row['metric']}: "
                    f"mean difference per prompt {report.format_number(row.get('mean_diff'))}, "
                    + _test_text(row)
                    + f"Holm-adjusted p = {report.format_number(holm)}"
                    + (f" (m = {row['holm_m']})" if row.get("holm_m") else "")
                    + (f"; {row['p_reason']}" if row.get("p_reason") else "")
                ),
                "significant": significant,
            }
        )
        marks[(row["model"], row["condition"], row["metric"])] = {
            "symbol": "*" if significant else "n.s.",
            "n": len(footnotes),
            "significant": significant,
        }
    tables = []
    models = list(dict.fromkeys(a["model"] for a in aggregates))
    for model in models:
        rows = [a for a in aggregates if a["model"] == model]
        order = condition_order([r["condition"] for r in rows], baseline)
        rows = sorted(rows, key=lambda r: order.index(r["condition"]))
        best = {m: best_conditions(rows, m, d) for m, _, d in KEY_METRICS}
        table_rows = []
        for r in rows:
            cells = []
            for metric, _, _ in KEY_METRICS:
                ci = r["metrics"].get(metric) or {}
                cells.append(
                    {
                        "metric": metric,
                        "ci": ci,
                        "best": r["condition"] in best[metric],
                        "mark": marks.get((model, r["condition"], metric)),
                    }
                )
            table_rows.append(
                {
                    "condition": r["condition"],
                    "is_baseline": r["condition"] == baseline,
                    "n": r.get("n_evaluated"),
                    "seeds": r.get("seed"),
                    "below_min_n": r.get("below_min_n"),
                    "non_commercial": (model, r["condition"]) in nc_groups,
                    "copy_flagged": r.get("copy_flagged"),
                    "cells": cells,
                }
            )
        tables.append(
            {
                "model": model,
                "columns": [{"metric": m, "title": t} for m, t, _ in KEY_METRICS],
                "rows": table_rows,
            }
        )
    return tables, footnotes


# ---------------------------------------------------------------- scatter


def sweep_key(condition: str) -> tuple[str, float] | None:
    match = _SWEEP.match(condition)
    if not match or not match.group("stem"):
        return None
    return match.group("stem"), float(match.group("value"))


def _nice_range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.08 or 0.05
    return lo - pad, hi + pad


def tradeoff_svg(records: list[dict], width: int = 620, height: int = 380) -> str:
    """Inline SVG: x = text similarity, y = style similarity, one circle per run."""
    points = []
    for r in records:
        x, y = _mean(r["metrics"].get("clap_text_sim")), _mean(r["metrics"].get("clap_style_sim"))
        if math.isfinite(x) and math.isfinite(y):
            points.append((r, x, y))
    left, right, top, bottom = 56, 150, 14, 42
    x0, x1 = _nice_range([p[1] for p in points])
    y0, y1 = _nice_range([p[2] for p in points])

    def sx(v):
        return left + (v - x0) / (x1 - x0) * (width - left - right)

    def sy(v):
        return height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)

    models = list(dict.fromkeys(r["model"] for r, _, _ in points))
    colour = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}
    esc = html.escape
    parts = [
        f'<svg id="tradeoff" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="text similarity vs style similarity, one point per run">',
        f'<rect x="{left}" y="{top}" width="{width - left - right}" '
        f'height="{height - top - bottom}" fill="none" stroke="#999"/>',
    ]
    for k in range(5):
        xv = x0 + (x1 - x0) * k / 4
        yv = y0 + (y1 - y0) * k / 4
        parts.append(
            f'<text x="{sx(xv):.1f}" y="{height - bottom + 14}" font-size="10" '
            f'text-anchor="middle">{xv:.3f}</text>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{sy(yv) + 3:.1f}" font-size="10" '
            f'text-anchor="end">{yv:.3f}</text>'
        )
    parts.append(
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 6}" font-size="12" '
        'text-anchor="middle">CLAP text similarity →</text>'
    )
    parts.append(
        f'<text x="12" y="{(top + height - bottom) / 2:.0f}" font-size="12" '
        f'text-anchor="middle" transform="rotate(-90 12 {(top + height - bottom) / 2:.0f})">'
        "CLAP style similarity →</text>"
    )
    sweeps: dict[tuple, list] = {}
    for r, x, y in points:
        key = sweep_key(str(r["condition"]))
        if key:
            sweeps.setdefault((r["model"], r["seed"], key[0]), []).append((key[1], x, y))
    for (model, _seed, _stem), line in sweeps.items():
        if len(line) < 2:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for _, x, y in sorted(line))
        parts.append(
            f'<polyline class="sweep" points="{coords}" fill="none" '
            f'stroke="{colour[model]}" stroke-dasharray="4 3"/>'
        )
    for r, x, y in points:
        label = f"{r['model']} / {r['condition']} / seed {r['seed']}"
        parts.append(
            f'<circle class="pt" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" '
            f'fill="{colour[r["model"]]}" fill-opacity="0.8"><title>{esc(label)}: text '
            f"{x:.3f}, style {y:.3f}</title></circle>"
        )
        parts.append(
            f'<text x="{sx(x) + 7:.1f}" y="{sy(y) + 3:.1f}" font-size="10">'
            f"{esc(str(r['condition']))}</text>"
        )
    for i, model in enumerate(models):
        ly = top + 14 + 16 * i
        parts.append(
            f'<circle cx="{width - right + 14}" cy="{ly}" r="5" fill="{colour[model]}"/>'
            f'<text x="{width - right + 24}" y="{ly + 4}" font-size="11">{esc(model)}</text>'
        )
    left_out = [r for r in records if not any(r is p[0] for p in points)]
    if left_out:
        names = ", ".join(f"{r['model']}/{r['condition']}/seed{r['seed']}" for r in left_out)
        parts.append(
            f'<text class="left-out" x="{left + 4}" y="{top + 12}" font-size="10">'
            f"not shown (a similarity is n/a): {esc(names[:90])}</text>"
        )
    if not points:
        parts.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
            "no run has both similarities</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- listening grid


def read_bank_items(run_dir: Path) -> dict[tuple, list[dict]]:
    """(item, waveform_index) -> bank items used (evaluate's metrics/bank_items.jsonl)."""
    path = Path(run_dir) / "metrics" / "bank_items.jsonl"
    if not path.is_file():
        return {}
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                out[(int(row["item"]), int(row.get("waveform_index") or 0))] = row["bank_items"]
    return out


def _hover(row: dict, used: list[dict]) -> str:
    lines = []
    if row.get("prompt_used") and row.get("prompt_used") != row.get("prompt"):
        lines.append(f"prompt used: {row['prompt_used']}")
    for b in used:
        score = report.format_number(b.get("score"))
        lines.append(
            f"{b.get('clip_id')} @{report.format_number(b.get('offset_s'))} s (score {score}): "
            f"{', '.join(b.get('labels') or [])}; {b.get('license_class')} "
            f"{b.get('license_version') or ''} {('by ' + b['uploader']) if b.get('uploader') else ''}"
        )
    return "\n".join(line.strip() for line in lines)


def listening_grid(runs: list[dict], out_dir: Path, baseline: str, item_key) -> dict:
    """``{views: [{key, label, rows}], conditions, page}``: one view per model x seed."""
    conditions = condition_order([r["config"].get("condition") for r in runs], baseline)
    views: dict[tuple, dict] = {}
    for run in runs:
        config = run["config"]
        key = (config.get("model"), config.get("seed"))
        view = views.setdefault(key, {"prompts": {}, "cells": {}})
        used = read_bank_items(run["dir"])
        for row in run["rows"]:
            item, waveform = item_key(row)
            if waveform != 0:
                continue
            view["prompts"].setdefault(item, row.get("prompt"))
            cell = {"status": row.get("status")}
            if row.get("status") == "ok":
                mel = row.get("mel")
                cell.update(
                    wav=report.relative_link(run["dir"] / str(row["wav"]), out_dir),
                    mel=report.relative_link(run["dir"] / str(mel), out_dir)
                    if isinstance(mel, str) and mel
                    else "",
                    hover=_hover(row, used.get((item, 0), [])),
                    n_bank=len(used.get((item, 0), [])),
                )
            else:
                cell["reason"] = row.get("skip_reason") or "skipped"
            view["cells"][(item, config.get("condition"))] = cell
    out = []
    for index, ((model, seed), view) in enumerate(sorted(views.items(), key=lambda kv: str(kv[0]))):
        rows = [
            {
                "item": item,
                "prompt": prompt,
                "cells": [view["cells"].get((item, c)) for c in conditions],
            }
            for item, prompt in sorted(view["prompts"].items())
        ]
        out.append({"key": f"v{index}", "label": f"{model} / seed {seed}", "rows": rows})
    return {"views": out, "conditions": conditions, "page": GRID_PAGE}
