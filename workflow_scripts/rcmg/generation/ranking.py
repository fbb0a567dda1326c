"""Candidate ranking (``num_waveforms_per_prompt > 1``): which CLAP ranked (the family's
:meth:`~rcmg.generation.families.base.ModelFamily.ranking_clap`), a warning when that is
the evaluation judge, and ranks within each prompt's own candidates."""

from __future__ import annotations

from pathlib import Path

from rcmg.generation.generate_config import GenerateConfig

RANKING_SCOPE = "within prompt"


def _model_key(ref: str | None) -> str | None:
    """A model id/path compared as the same model: revision dropped, folders resolved."""
    if not ref:
        return None
    from rcmg.models.hf_loading import split_revision

    name = str(split_revision(str(ref))[0]).rstrip("/")
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def ranking_record(cfg: GenerateConfig) -> dict | None:
    """Which CLAP ranked the candidates (``run_config.ranking``); None for one waveform.

    ``warning`` is set when that CLAP is the evaluation judge's model (same id/path):
    ranking by the judge inflates the judge's own scores of the ranked candidates.
    """
    if cfg.num_waveforms_per_prompt <= 1:
        return None
    from rcmg.models.fingerprint import clap_space_fingerprint

    family = cfg.model_family
    model, sub, rev = family.ranking_clap(
        cfg.model_id, cfg.clap_model, cfg.clap_subfolder, cfg.clap_revision
    )
    clap = f"{model}/{sub}" if sub else str(model)
    fingerprint = clap_space_fingerprint(model, sub, rev)
    same = bool(cfg.judge_clap) and _model_key(model) == _model_key(cfg.judge_clap)
    return {
        "clap": clap,
        "revision": rev,
        "fingerprint": fingerprint["sha256"],
        "fingerprint_reason": fingerprint["reason"],
        "by": family.ranked_by,
        "scope": RANKING_SCOPE,
        "text": "prompt_used (the text the model was conditioned on)",
        "score": "cosine of the candidate's CLAP audio embedding with the text's",
        "judge": cfg.judge_clap,
        "warning": (
            f"candidates ranked by the evaluation judge's CLAP ({cfg.judge_clap}): ranking by "
            "the judge inflates its scores of the ranked candidates; set clap.model (the "
            "ranking CLAP) and evaluation.clap.model to different models"
        )
        if same
        else None,
    }


def ranks_within_group(scores: list[float]) -> list[int]:
    """Rank (0 = best) of each candidate among its own prompt's candidates; ties by index."""
    order = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
    ranks = [0] * len(scores)
    for position, k in enumerate(order):
        ranks[k] = position
    return ranks
