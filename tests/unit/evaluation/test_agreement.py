"""A style result is supported only where the CLAP judge and the AST view agree."""

from __future__ import annotations

from rcmg.evaluation import agreement


def _row(metric, diff, p=0.01, family="primary", condition="retrieval_native"):
    return {
        "model": "m",
        "condition": condition,
        "baseline": "prompt",
        "metric": metric,
        "mean_diff": diff,
        "holm_p": p if family == "primary" else float("nan"),
        "wilcoxon_p": p,
        "family": family,
    }


def test_supported_only_when_significant_and_both_families_agree_in_direction():
    rows = [
        _row("clap_style_sim", 0.02),
        _row("ast_style_sim", 0.5, p=0.4, family="exploratory"),  # its own p does not matter
        _row("clap_style_sim", 0.02, condition="c2"),
        _row("ast_style_sim", -0.1, condition="c2", family="exploratory"),
        _row("clap_style_sim", 0.02, p=0.2, condition="c3"),
        _row("ast_style_sim", 0.1, condition="c3", family="exploratory"),
        _row("clap_style_sim", 0.02, condition="c4"),  # no AST row: classifier off
        _row("clap_text_sim", -0.01),
    ]
    out = {(r["condition"], r["metric"]): r for r in agreement.attach(rows)}
    assert out["retrieval_native", "clap_style_sim"]["verdict"].startswith("supported")
    assert out["retrieval_native", "clap_style_sim"]["independent_mean_diff"] == 0.5
    assert out["c2", "clap_style_sim"]["verdict"].startswith("not supported")
    assert out["c3", "clap_style_sim"]["verdict"] == "not significant"
    assert out["c4", "clap_style_sim"]["verdict"].startswith("no independent view")
    assert out["retrieval_native", "clap_text_sim"]["verdict"] == ""
    assert out["retrieval_native", "ast_style_sim"]["embedding_family"].startswith("AST")
    assert out["retrieval_native", "clap_style_sim"]["embedding_family"].startswith("CLAP")


def test_a_zero_independent_difference_does_not_agree():
    rows = [_row("clap_style_sim", 0.02), _row("ast_style_sim", 0.0, family="exploratory")]
    assert agreement.attach(rows)[0]["verdict"].startswith("not supported")
