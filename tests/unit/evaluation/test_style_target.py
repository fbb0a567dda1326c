"""Scoring against a model's style target (rcmg.evaluation.style_target): the same bank
rows for every condition, the carried style as its own column, and the bank-space figure
in the bank's space with the target's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rcmg.bank.blend import style_vector
from rcmg.evaluation import style_target


def _bank(tmp_path, n=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    bank = rng.standard_normal((n, d)).astype(np.float32)
    np.save(tmp_path / "bank.npy", bank)
    return bank, tmp_path / "bank.npy"


def test_bankspace_similarity_is_the_cosine_to_the_targets_style_vector(tmp_path):
    bank, path = _bank(tmp_path)
    hits = [[{"row": 1, "score": 0.9}, {"row": 4, "score": 0.5}], []]
    audio = np.random.default_rng(1).standard_normal((2, 8))
    sims = style_target.bankspace_sims(audio, hits, path, temperature=0.1)
    unit = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    # the generate step's rule on unit bank rows (the bank is L2-normalised when built)
    expected_style = style_vector(unit[[1, 4]], np.array([0.9, 0.5]), 0.1)
    expected = float(audio[0] @ expected_style / np.linalg.norm(audio[0]))
    assert sims[0] == pytest.approx(expected, abs=1e-6)
    assert math.isnan(sims[1])  # no target: empty, never a made-up value


def test_bankspace_similarity_refuses_another_dimension(tmp_path):
    _, path = _bank(tmp_path, d=8)
    with pytest.raises(ValueError, match="evaluate with the CLAP the bank was built with"):
        style_target.bankspace_sims(np.ones((1, 4)), [[{"row": 0, "score": 1.0}]], path, 0.1)


def test_target_hits_follow_the_item_and_skip_what_the_target_skipped():
    targets = {
        0: {"prompt": "a", "status": "ok", "target": [{"row": 3, "score": 0.2}]},
        1: {"prompt": "b", "status": "skipped", "target": []},
    }
    rows = [{"item": 1, "prompt": "b"}, {"item": 0, "prompt": "a"}]
    assert style_target.target_hits(rows, targets, "t.jsonl") == [[], [{"row": 3, "score": 0.2}]]
    with pytest.raises(ValueError, match="item 2 is missing"):
        style_target.target_hits([{"item": 2, "prompt": "c"}], targets, "t.jsonl")


def test_carries_target_compares_rows_not_order_or_scores():
    target = [[{"row": 2, "score": 0.1}, {"row": 5, "score": 0.3}], [{"row": 1, "score": 1}], []]
    carried = [[{"row": 5, "score": 9}, {"row": 2, "score": 8}], [{"row": 0, "score": 1}], []]
    flags = style_target.carries_target(carried, target)
    assert flags == ["1", "0", ""]
    record = style_target.summary(flags, target, "t.jsonl")
    assert record["carried_fraction"] == 0.5
    assert (record["n_with_target"], record["n_without_target"]) == (2, 1)


def test_bankspace_similarity_refuses_a_target_row_the_bank_lacks(tmp_path):
    _, path = _bank(tmp_path, n=6)
    with pytest.raises(ValueError, match="names bank row 9 but .* has 6 rows"):
        style_target.bankspace_sims(np.ones((1, 8)), [[{"row": 9, "score": 1.0}]], path, 0.1)
