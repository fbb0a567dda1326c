"""The adapter's shuffled-embedding arm: the uploader-respecting derangement (pure), and
known answers through the held-out comparison the job runs (item_losses ->
paired_comparison -> uses_given_item) on a toy denoiser whose loss does or does not
depend on the item the adapter is given.
"""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from rcmg.generation.adapter_training import (
    BankItem,
    fixed_draws,
    heldout_comparison,
    paired_comparison,
    shuffle_record,
    uploader_derangement,
)
from rcmg.generation.families.base import AdapterContext, ModelFamily
from rcmg.generation.heldout_verdict import uses_given_item

# ---------------------------------------------------------------- the derangement (pure)


def _check(groups, record):
    partner = record["partner"]
    assert record["available"] and record["reason"] == ""
    assert sorted(partner) == list(range(len(groups)))  # a permutation
    assert all(partner[i] != i for i in range(len(groups)))  # no fixed point
    assert all(groups[partner[i]] != groups[i] for i in range(len(groups)))  # other uploader


def test_derangement_never_pairs_an_item_with_itself_or_its_uploader():
    """Every feasible layout (largest uploader at most half the items), seeded at random:
    a permutation, no fixed point, no same-uploader pair; the boundary m = n/2 too."""
    rng = np.random.default_rng(0)
    tried = 0
    for _ in range(400):
        n = int(rng.integers(2, 30))
        groups = [f"u{int(g)}" for g in rng.integers(0, rng.integers(2, 8), n)]
        if max(Counter(groups).values()) * 2 > n:
            continue
        tried += 1
        _check(groups, uploader_derangement(groups, seed=int(rng.integers(1 << 30))))
    assert tried > 100
    _check(["a"] * 5 + ["b"] * 5, uploader_derangement(["a"] * 5 + ["b"] * 5, seed=3))
    _check(["a", "b"], uploader_derangement(["a", "b"], seed=0))


def test_derangement_is_seeded_and_the_seed_matters():
    groups = [f"u{i % 7}" for i in range(40)]
    a = uploader_derangement(groups, seed=11)
    assert a == uploader_derangement(groups, seed=11)
    others = {tuple(uploader_derangement(groups, seed=s)["partner"]) for s in range(12)}
    assert len(others) > 6  # different seeds, different pairings
    assert a["seed"] == 11 and "derangement" in a["method"] and a["n_groups"] == 7


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([], "0 held-out item(s)"),
        (["a"], "1 held-out item(s)"),
        (["a", "a", "a"], "group 'a' holds 3 of the 3 held-out items"),
        (["a", "a", "a", "b", "c"], "group 'a' holds 3 of the 5 held-out items"),
    ],
)
def test_impossible_derangement_is_a_recorded_skip(groups, message):
    record = uploader_derangement(groups, seed=0)
    assert not record["available"] and record["partner"] is None
    assert message in record["reason"]
    assert record["seed"] == 0 and record["n"] == len(groups)


def test_shuffle_record_names_partners_by_segment_and_groups_by_uploader():
    items = [
        BankItem(k, f"seg{k}", "eval", up, "rain", "s0", k, f"src{k}")
        for k, up in enumerate(["e1", "e1", "e2", "", ""])
    ]  # the two items without uploader are groups of their own (their source clip)
    record = shuffle_record(items, seed=5)
    _check([i.group for i in items], record)
    assert record["partner_segment_ids"] == [f"seg{j}" for j in record["partner"]]
    one = shuffle_record(items[:2], seed=5)
    assert not one["available"] and "'e1' holds 2 of the 2" in one["reason"]
    assert "partner_segment_ids" not in one


# ---------------------------------------------------------------- the verdict (pure)


def test_verdict_reads_the_interval_and_says_why_not():
    groups = ["a", "a", "b", "b", "c", "c"]
    lower = uses_given_item([0.5] * 6, [0.9, 1.0, 0.8, 1.1, 0.95, 0.85], groups)
    assert lower["verdict"] == "yes" and lower["diff"]["ci_high"] < 0
    assert lower["items_lower"] == 6 and "uses the item it is given: yes" in lower["text"]
    assert "3 uploader group(s)" in lower["text"]
    tie = uses_given_item([1.0, 0.9, 1.1, 1.0, 0.95, 1.05], [0.95, 1.0, 1.0, 1.05, 1.0, 1.0])
    assert tie["verdict"] == "no" and tie["diff"]["ci_low"] < 0 < tie["diff"]["ci_high"]
    assert "holds 0" in tie["text"]
    worse = uses_given_item([1.5, 1.6, 1.4, 1.5], [1.0, 1.1, 0.9, 1.0])
    assert worse["verdict"] == "no" and "above 0" in worse["text"]
    skipped = uses_given_item([1.0], None, reason="group 'a' holds 1 of the 1 held-out items")
    assert skipped["verdict"] == "not tested" and "holds 1 of the 1" in skipped["text"]
    one_group = uses_given_item([0.5, 0.6], [1.0, 1.0], ["a", "a"])
    assert one_group["verdict"] == "not tested" and "1 group" in one_group["reason"]
    assert math.isnan(one_group["diff"]["ci_low"])


# ---------------------------------------------------------------- known answers, toy denoiser


class ToyScheduler:
    """add_noise with a fixed alpha-bar schedule; the target is the noise (epsilon)."""

    def __init__(self, steps: int = 100):
        import torch

        self.config = SimpleNamespace(num_train_timesteps=steps, prediction_type="epsilon")
        self.alphas_cumprod = torch.linspace(0.9, 0.05, steps)

    def add_noise(self, z0, noise, t):
        a = self.alphas_cumprod[t].reshape(-1, *([1] * (z0.dim() - 1)))
        return a.sqrt() * z0 + (1 - a).sqrt() * noise


class ToyFamily(ModelFamily):
    """The denoiser reads the clean latent off the conditioning, ``z0_hat = cond @ W``, and
    predicts the noise that would have produced ``z_t`` from it: its loss is small exactly
    when the conditioning tells it the item's latent."""

    def __init__(self, weights):
        self.weights = weights

    def adapter_conditioning(self, direction, ctx, rows):
        return direction

    def baseline_conditioning(self, ctx, rows, arm):
        return (ctx.labels if arm == "labels_text" else ctx.untrained)[rows]

    def denoiser_eps(self, pipe, noisy, t, cond, ctx, rows):
        a = pipe.scheduler.alphas_cumprod[t].reshape(-1, 1)
        return (noisy - a.sqrt() * (cond @ self.weights)) / (1 - a).sqrt()


def _toy(seed: int, item_dependent: bool, n_uploaders: int = 6, per_uploader: int = 2):
    """Held-out items of ``n_uploaders`` uploaders; style vectors x (unit, 8-d); latents
    ``unit(x) @ W`` plus an uploader effect and item noise when ``item_dependent``, else
    the same built from an unrelated vector (the style vector says nothing about the
    item). The adapter is the identity (its unit output is unit(x))."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    n = n_uploaders * per_uploader
    items = [
        BankItem(k, f"seg{seed}-{k}", "eval", f"u{k // per_uploader}", "rain", "s0", k)
        for k in range(n)
    ]
    weights = torch.randn(8, 16, generator=gen)
    x = torch.nn.functional.normalize(torch.randn(n, 8, generator=gen), dim=-1)
    source = x if item_dependent else torch.randn(n, 8, generator=gen)
    shared = torch.randn(n_uploaders, 16, generator=gen).repeat_interleave(per_uploader, 0)
    latents = source @ weights + 0.3 * shared + 0.3 * torch.randn(n, 16, generator=gen)
    ctx = AdapterContext(latents, x, torch.zeros(n, 8), x.clone())
    pipe = SimpleNamespace(scheduler=ToyScheduler())
    draws = fixed_draws(items, latents, 4, pipe.scheduler.config.num_train_timesteps, seed)
    return pipe, ToyFamily(weights), ctx, draws, items


def _heldout(seed: int, item_dependent: bool, **kw) -> dict:
    import torch

    pipe, family, ctx, draws, items = _toy(seed, item_dependent, **kw)
    return heldout_comparison(pipe, family, ctx, draws, torch.nn.Identity(), items, seed, 3)


def test_an_adapter_whose_loss_depends_on_the_item_beats_the_shuffled_arm():
    heldout = _heldout(0, item_dependent=True)
    assert set(heldout["mean"]) == {"adapter", "labels_text", "untrained", "shuffled"}
    assert heldout["shuffle"]["available"] and heldout["n_items"] == 12
    verdict = heldout["uses_given_item"]
    assert verdict["verdict"] == "yes", verdict["text"]
    assert heldout["adapter_minus_shuffled"]["mean"] < 0
    assert verdict["diff"]["mean"] == pytest.approx(heldout["adapter_minus_shuffled"]["mean"])
    assert verdict["diff"]["n_groups"] == 6  # clustered by uploader
    # the shuffled arm is the adapter on the partner's vector, the item's own draws
    partner = heldout["shuffle"]["partner"]
    assert partner == uploader_derangement([f"u{k // 2}" for k in range(12)], 0)["partner"]


def test_an_adapter_whose_loss_ignores_the_item_ties_with_the_shuffled_arm():
    heldout = _heldout(0, item_dependent=False)
    verdict = heldout["uses_given_item"]
    assert verdict["verdict"] == "no", verdict["text"]
    assert verdict["diff"]["ci_low"] < 0 < verdict["diff"]["ci_high"]
    assert "holds 0" in verdict["text"]


def test_verdict_rates_by_simulation():
    """Through the same path, 150 fresh toy worlds each (6 uploaders x 2 items): where the
    item carries no information the verdict says "yes" near the one-sided nominal rate
    of 2.5% (measured 2/150 here; 32/1000 = 3.2% over 1000 worlds, and the two-sided
    interval held 0 in 0.956 of them), and where it does it says "yes" (measured
    150/150; 999/1000). Monte Carlo SE at 2.5% and 150 worlds: ~1.3%."""
    worlds = 150
    false_yes = sum(
        _heldout(1000 + s, item_dependent=False)["uses_given_item"]["verdict"] == "yes"
        for s in range(worlds)
    )
    true_yes = sum(
        _heldout(5000 + s, item_dependent=True)["uses_given_item"]["verdict"] == "yes"
        for s in range(worlds)
    )
    assert false_yes / worlds <= 0.05, false_yes
    assert true_yes / worlds >= 0.95, true_yes


def test_one_uploader_skips_the_arm_and_says_why():
    heldout = _heldout(0, item_dependent=True, n_uploaders=1, per_uploader=4)
    assert "shuffled" not in heldout["mean"] and "adapter_minus_shuffled" not in heldout
    assert not heldout["shuffle"]["available"]
    verdict = heldout["uses_given_item"]
    assert verdict["verdict"] == "not tested"
    assert "group 'u0' holds 4 of the 4 held-out items" in verdict["text"]


def test_shuffled_arm_needs_a_partner_per_item():
    from rcmg.generation.adapter_training import item_losses

    pipe, family, ctx, draws, _ = _toy(0, True)
    with pytest.raises(ValueError, match="one partner per item"):
        item_losses(pipe, family, ctx, draws, "shuffled", lambda v: v)


def test_paired_comparison_without_shuffled_losses_records_the_skip():
    out = paired_comparison(
        {"adapter": [1.0, 2.0], "labels_text": [2.0, 2.0], "untrained": [1.5, 1.0]},
        ["a", "b"],
        {"available": False, "reason": "group 'a' holds 2 of the 2 held-out items"},
    )
    assert out["uses_given_item"]["verdict"] == "not tested"
    assert out["shuffle"]["reason"] in out["uses_given_item"]["text"]
