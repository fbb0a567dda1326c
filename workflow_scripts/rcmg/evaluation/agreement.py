"""Judge independence: a style result is called supported only where two embedding
families agree.

The judge (``evaluation.clap``, e.g. ``laion/larger_clap_music``) is of the same LAION-CLAP
family as the encoders the generators condition on, so a CLAP-measured style gain could
be the judge agreeing with its relatives. ``ast_style_sim`` measures the same target in
the AudioSet classifier's embedding (AST, not a CLAP). Each paired row says which family
its number comes from; a ``clap_style_sim`` row gets a verdict: supported (significant,
Holm-adjusted for a primary, and the AST difference has the same sign), not supported
(AST disagrees in direction), not significant, or no independent view.
"""

from __future__ import annotations

import math

EMBEDDING_FAMILY = {
    "clap_style_sim": "CLAP (judge)",
    "clap_text_sim": "CLAP (judge)",
    "ast_style_sim": "AST (AudioSet classifier)",
}
INDEPENDENT = {"clap_style_sim": "ast_style_sim"}
ALPHA = 0.05


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def row_p(row: dict) -> float:
    """The p a row is judged by: Holm-adjusted for a primary, else its own test's."""
    if row.get("family") == "primary":
        return _float(row.get("holm_p"))
    return _float(row.get("p_value", row.get("wilcoxon_p")))


def verdict(row: dict, other: dict | None, alpha: float = ALPHA) -> str:
    if other is None:
        return "no independent view (evaluation.classifier off)"
    p = row_p(row)
    if not (math.isfinite(p) and p < alpha):
        return "not significant"
    mine, theirs = _float(row.get("mean_diff")), _float(other.get("mean_diff"))
    if math.isfinite(theirs) and theirs != 0 and math.copysign(1, theirs) == math.copysign(1, mine):
        return "supported: CLAP and AST agree in direction"
    return "not supported: AST disagrees in direction"


def attach(rows: list[dict], alpha: float = ALPHA) -> list[dict]:
    """Add ``embedding_family`` to every paired row; ``independent_mean_diff`` and
    ``verdict`` to each row that has an independent metric (in place)."""
    index = {(r["model"], r["condition"], r["baseline"], r["metric"]): r for r in rows}
    for row in rows:
        row["embedding_family"] = EMBEDDING_FAMILY.get(row["metric"], "")
        other_metric = INDEPENDENT.get(row["metric"])
        if other_metric is None:
            row.setdefault("verdict", "")
            continue
        other = index.get((row["model"], row["condition"], row["baseline"], other_metric))
        row["independent_mean_diff"] = None if other is None else other.get("mean_diff")
        row["verdict"] = verdict(row, other, alpha)
    return rows
