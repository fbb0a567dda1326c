"""The AudioSet-classifier view of a run: FD / KAD in its embedding space, KL to pairs.

Set metrics reuse :mod:`rcmg.evaluation.set_metrics` (the CLAP set metrics' estimators
and intervals) on the classifier's embeddings (:data:`rcmg.models.classifier.EMBEDDING`)
of the generated clips and of the reference clips (computed once, by reference_stats).

KL divergence to a paired reference clip (an item's ``reference_clip``, when the prompt
set has one), with p = the reference clip's and q = the generated clip's per-class
sigmoid probabilities (AudioSet is multi-label; the classifier is trained with one
binary cross-entropy per class, so each class is a Bernoulli variable):

* ``kl_bernoulli`` (ours, the primary): sum over classes of the Bernoulli KL
  ``p log(p/q) + (1-p) log((1-p)/(1-q))``, probabilities clipped to [eps, 1-eps].
* ``kl_sigmoid`` (the convention of the AudioLDM evaluation toolkit, audioldm_eval's
  ``calculate_kl``): ``torch.nn.functional.kl_div(log(q + eps), p, reduction="sum")``
  = sum over classes of ``p log(p / (q + eps))``, treating sigmoid outputs as masses
  (no complement term), with eps = 1e-6. Reported for comparison with papers that use
  it (which compute it with PANNs, not AST: the numbers still differ by classifier).
"""

from __future__ import annotations

import math

import numpy as np

EPS = 1e-6


def kl_bernoulli(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-row sum over classes of KL(Bernoulli(p) || Bernoulli(q)), float64."""
    p = np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    q = np.clip(np.asarray(q, np.float64), eps, 1 - eps)
    terms = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return terms.sum(axis=-1)


def kl_sigmoid(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> np.ndarray:
    """audioldm_eval's sigmoid KL per row: sum p (log p - log(q + eps)), 0 log 0 = 0."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q + eps)), 0.0)
    return terms.sum(axis=-1)


def paired_kl(rows: list[dict], probs: np.ndarray, reference_probs) -> dict:
    """Per-clip KLs to the paired reference clip: {kl_bernoulli, kl_sigmoid} arrays over
    ``rows`` (NaN where ``reference_probs``, keyed by row index, has no entry)."""
    n = len(rows)
    out = {"kl_bernoulli": np.full(n, math.nan), "kl_sigmoid": np.full(n, math.nan)}
    for i in range(n):
        ref = reference_probs.get(i)
        if ref is None:
            continue
        out["kl_bernoulli"][i] = kl_bernoulli(ref, probs[i])
        out["kl_sigmoid"][i] = kl_sigmoid(ref, probs[i])
    return out
