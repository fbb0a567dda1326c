"""Sweep planning (rcmg.workflow.sweeps): canonical names, product/zip, matched baselines,
effective settings, and messages that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from rcmg.generation.config_checks import problems
from rcmg.models.pipelines import SCHEDULERS
from rcmg.workflow import sweeps

REPO = Path(__file__).resolve().parents[3]
SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text(encoding="utf-8"))
BASE = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))


def _config(**sweep_defs) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["sweeps"] = sweep_defs
    return cfg


def _names(points, model=None):
    return [p.condition for p in points if model is None or p.model == model]


@pytest.mark.parametrize(
    ("knob", "spellings", "canonical"),
    [
        ("alpha", [0.1, "0.10", "1e-1", 1.0e-1], "0.1"),
        ("guidance", [3, 3.0, "3.00", "3e0"], "3"),
        ("style_temp", [0.07, "7e-2", "0.070"], "0.07"),
        ("steps", [20, 20.0, "20"], "20"),
        ("cond_mix_beta", [0, 0.0, "0e0"], "0"),
        ("adapter_free_lr_like", None, None),
    ],
)
def test_a_value_has_one_spelling_however_written(knob, spellings, canonical):
    if spellings is None:
        with pytest.raises(sweeps.SweepError, match="unknown sweep knob"):
            sweeps.canonical_value(knob, 1)
        return
    assert {sweeps.canonical_value(knob, v) for v in spellings} == {canonical}


def test_equal_spellings_name_one_run_directory():
    names = {
        sweeps.plan(
            _config(a={"models": ["audioldm"], "conditions": ["retrieval_native"], "product": p})
        )[-1].condition
        for p in ({"alpha": [0.1]}, {"alpha": ["1e-1"]}, {"alpha": [0.10]})
    }
    assert names == {"retrieval_native@alpha=0.1"}


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("alpha", 1.5, "within [0, 1]"),
        ("steps", 2.5, "positive integer"),
        ("strength_deg", 90, "between 0 and 90"),
        ("scheduler", "ddpm", "not one of"),
        ("guidance", "three", "not a number"),
        ("style_temp", 0, "positive"),
    ],
)
def test_bad_values_are_refused_naming_the_key(knob, value, message):
    cfg = _config(s1={"conditions": ["retrieval_native"], "product": {knob: [value]}})
    msgs = problems(cfg, REPO)
    assert len(msgs) == 1 and msgs[0].startswith(f"sweeps.s1.product.{knob}") and message in msgs[0]


def test_product_is_every_combination_and_zip_pairs_the_ith_values():
    product = sweeps.sweep_settings("p", {"product": {"alpha": [0.02, 0.05], "guidance": [2.6, 3]}})
    assert product == [
        {"alpha": "0.02", "guidance": "2.6"},
        {"alpha": "0.02", "guidance": "3"},
        {"alpha": "0.05", "guidance": "2.6"},
        {"alpha": "0.05", "guidance": "3"},
    ]
    zipped = sweeps.sweep_settings(
        "z", {"zip": {"alpha": [0.02, 0.04], "cond_mix_beta": [0.1, 0.2]}}
    )
    assert zipped == [
        {"alpha": "0.02", "cond_mix_beta": "0.1"},
        {"alpha": "0.04", "cond_mix_beta": "0.2"},
    ]


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"conditions": ["retrieval_native"], "zip": {"alpha": [0.1, 0.2], "guidance": [3]}},
            "sweeps.s.zip: zipped lists must have one length",
        ),
        (
            {"conditions": ["retrieval_native"], "product": {"alpha": [0.1, "1e-1"]}},
            "sweeps.s.product.alpha: 0.1 given more than once",
        ),
        ({"conditions": ["nope"], "product": {"alpha": [0.1]}}, "sweeps.s.conditions: 'nope'"),
        (
            {"models": ["nope"], "conditions": ["retrieval_native"], "product": {"alpha": [0.1]}},
            "sweeps.s.models: 'nope'",
        ),
        (
            {"conditions": ["prompt"], "product": {"alpha": [0.1]}},
            "sweeps.s: alpha applies to style conditions",
        ),
        (
            {"conditions": ["retrieval_native"], "product": {"cond_mix_beta": [0.1]}},
            "cond_mix_beta does not apply to audioldm2",
        ),
        (
            {
                "conditions": ["retrieval_native"],
                "product": {"alpha": [0.1]},
                "zip": {"alpha": [0.2]},
            },
            "exactly one of 'product'",
        ),
        (
            {"conditions": ["retrieval_native"], "product": {"blend": ["orth"]}},
            "sweeps.s.product.blend: not a sweepable knob",
        ),
    ],
    ids=[
        "zip-lengths",
        "duplicate-spelling",
        "unknown-condition",
        "unknown-model",
        "alpha-on-prompt",
        "beta-on-aldm2",
        "product-and-zip",
        "unknown-knob",
    ],
)
def test_unplannable_sweeps_are_refused_naming_the_key(sweep, message):
    msgs = problems(_config(s=sweep), REPO)
    assert len(msgs) == 1 and message in msgs[0], msgs


def test_schema_lists_exactly_the_knobs_and_the_pipelines_schedulers():
    assert list(SCHEMA["$defs"]["sweep_lists"]["properties"]) == list(sweeps.KNOBS)
    configurable = SCHEMA["$defs"]["sampling"]["properties"]["scheduler"]["enum"]
    assert list(sweeps.SCHEDULERS) == configurable and set(configurable) <= set(SCHEDULERS)


def test_matched_baseline_is_swept_at_the_same_baseline_knob_values():
    cfg = _config(
        ag={
            "models": ["audioldm"],
            "conditions": ["retrieval_native"],
            "product": {"alpha": [0.02, 0.05], "guidance": [2.6, 3.2]},
        }
    )
    pts = {(p.model, p.condition): p for p in sweeps.plan(cfg)}
    g0 = sweeps.canonical_value("guidance", BASE["models"]["audioldm"]["sampling"]["guidance"])
    a0 = sweeps.canonical_value("alpha", BASE["models"]["audioldm"]["retrieval"]["alpha"])
    assert g0 not in ("2.6", "3.2") and a0 not in ("0.02", "0.05")
    point = pts[("audioldm", "retrieval_native@guidance=2.6,alpha=0.02")]
    assert point.baseline == "prompt@guidance=2.6"
    assert point.sweeps == (("ag", (("guidance", "2.6"), ("alpha", "0.02"))),)
    baselines = [p for p in pts.values() if "baseline" in p.roles]
    assert sorted(p.condition for p in baselines) == ["prompt@guidance=2.6", "prompt@guidance=3.2"]
    assert all(p.model == "audioldm" for p in baselines)
    # alpha is not a baseline knob: an alpha-only sweep keeps the configured baseline
    alpha_only = sweeps.plan(
        _config(
            a={
                "models": ["audioldm"],
                "conditions": ["retrieval_native"],
                "product": {"alpha": [0.02]},
            }
        )
    )
    assert [p.baseline for p in alpha_only if "sweep" in p.roles] == ["prompt"]
    assert not [p for p in alpha_only if "baseline" in p.roles]


def test_a_point_equal_to_the_configured_run_is_that_run():
    a0 = BASE["models"]["audioldm"]["retrieval"]["alpha"]
    cfg = _config(
        a={
            "models": ["audioldm"],
            "conditions": ["retrieval_native"],
            "product": {"alpha": [a0, 0.5]},
        }
    )
    pts = sweeps.plan(cfg)
    configured = sweeps.plan(_config())
    assert len(pts) == len(configured) + 1
    same = next(p for p in pts if p.model == "audioldm" and p.condition == "retrieval_native")
    assert "configured" in same.roles and "sweep" in same.roles
    assert same.sweeps == (("a", (("alpha", sweeps.canonical_value("alpha", a0)),)),)
    words = sweeps.sweep_words(pts)
    assert [sweeps.parse_sweep_word(w)["condition"] for w in words] == [
        "retrieval_native",
        "retrieval_native@alpha=0.5",
    ]
    assert sweeps.parse_sweep_word(words[1]) == {
        "sweep": "a",
        "model": "audioldm",
        "condition": "retrieval_native@alpha=0.5",
        "baseline": "prompt",
        "settings": {"alpha": "0.5"},
    }


def test_effective_settings_replace_the_configured_values():
    eff = sweeps.effective(BASE, "audioldm", "retrieval_native@guidance=2.6,alpha=0.05,steps=50")
    assert eff["sampling"]["guidance"] == 2.6 and eff["sampling"]["steps"] == 50
    assert eff["condition"]["alpha"] == 0.05
    assert eff["retrieval"] == BASE["models"]["audioldm"]["retrieval"]
    assert (
        sweeps.effective(BASE, "audioldm", "retrieval_native")["sampling"]
        == BASE["models"]["audioldm"]["sampling"]
    )


def test_names_round_trip_and_list_knobs_in_one_order():
    name = sweeps.point_name(
        "retrieval_native", {"style_temp": "0.1", "guidance": "3", "alpha": "0.05"}
    )
    assert name == "retrieval_native@guidance=3,alpha=0.05,style_temp=0.1"
    assert sweeps.parse_point(name) == (
        "retrieval_native",
        {"guidance": "3", "alpha": "0.05", "style_temp": "0.1"},
    )
    assert sweeps.parse_point("prompt") == ("prompt", {})


def test_matched_baseline_falls_back_to_the_configured_baseline():
    assert (
        sweeps.matched_baseline(
            "r@guidance=2.6,alpha=0.1", "prompt", ["prompt", "prompt@guidance=2.6"]
        )
        == "prompt@guidance=2.6"
    )
    assert (
        sweeps.matched_baseline("r@alpha=0.1", "prompt", ["prompt", "prompt@guidance=2.6"])
        == "prompt"
    )


# ---------------------------------------------------------------- adapter knobs


def test_adapter_knobs_name_the_run_and_the_adapter_folder_canonically():
    lr0 = sweeps.canonical_value("adapter_lr", BASE["adapter_training"]["lr"])
    assert lr0 == "0.0003"
    assert {sweeps.canonical_value("adapter_lr", v) for v in (1e-5, "1e-05", "0.00001")} == {"1e-5"}
    cfg = _config(
        a={
            "models": ["audioldm"],
            "conditions": ["retrieval_external"],
            "product": {"adapter_hidden": ["2.56e2"], "adapter_lr": ["1e-3", 3e-4]},
        }
    )
    swept = [p for p in sweeps.plan(cfg) if "sweep" in p.roles]
    names = [p.condition for p in swept]
    # knobs in KNOBS order (lr before hidden); the configured lr (3e-4) is left out
    assert names == [
        "retrieval_external@adapter_lr=0.001,adapter_hidden=256",
        "retrieval_external@adapter_hidden=256",
    ]
    assert [sweeps.adapter_variant(n) for n in names] == ["@lr=0.001,hidden=256", "@hidden=256"]
    assert sweeps.adapter_variant("retrieval_external") == ""
    assert sweeps.adapter_variant("retrieval_native@alpha=0.1") == ""  # not an adapter knob
    # an adapter sweep does not change the baseline: no adapter knob is a baseline knob
    assert {p.baseline for p in swept} == {"prompt"}
    trained = sweeps.adapter_training(BASE, "@lr=0.001,hidden=256")
    assert trained == {**BASE["adapter_training"], "lr": 0.001, "hidden": 256}
    assert sweeps.adapter_training(BASE, "") == BASE["adapter_training"]
    eff = sweeps.effective(BASE, "audioldm", names[0])
    assert (
        eff["adapter"] == trained and eff["condition"] == BASE["conditions"]["retrieval_external"]
    )


@pytest.mark.parametrize(
    ("condition", "knob", "message"),
    [
        ("retrieval_native", "adapter_lr", "applies to 'adapter: external' style conditions"),
        ("prompt", "adapter_hidden", "applies to 'adapter: external' style conditions"),
        ("prompt_aug", "adapter_epochs", "applies to 'adapter: external' style conditions"),
    ],
)
def test_adapter_knobs_are_refused_where_no_adapter_is_trained(condition, knob, message):
    msgs = problems(_config(s={"conditions": [condition], "product": {knob: [2]}}), REPO)
    assert len(msgs) == 1 and msgs[0].startswith("sweeps.s: ") and message in msgs[0], msgs
    assert f"condition {condition}" in msgs[0]


def test_adapter_knobs_are_refused_on_a_model_with_an_original_projector():
    cfg = _config(
        s={
            "models": ["audioldm"],
            "conditions": ["retrieval_external"],
            "product": {"adapter_lr": [1e-3]},
        }
    )
    cfg["models"]["audioldm"]["projector"] = "weights/projector.pt"
    msgs = problems(cfg, REPO)
    assert len(msgs) == 1 and "models.audioldm.projector" in msgs[0], msgs
    assert sweeps.adapter_training(BASE, "@lr=0.001")["lr"] == 0.001
    with pytest.raises(sweeps.SweepError, match="unknown setting 'batch'"):
        sweeps.adapter_training(BASE, "@batch=4")


# ---------------------------------------------------------------- sweeps.prompts (subset)


def test_a_prompt_subset_reaches_only_sweep_points_and_their_matched_baselines():
    cfg = _config(
        ag={
            "models": ["audioldm"],
            "conditions": ["retrieval_native"],
            "product": {"alpha": [BASE["models"]["audioldm"]["retrieval"]["alpha"], 0.5]},
        },
        g={
            "models": ["audioldm"],
            "conditions": ["retrieval_native"],
            "product": {"guidance": [2.6]},
        },
        prompts=8,
        prompts_seed=3,
    )
    pts = sweeps.plan(cfg)
    configured = sweeps.plan(_config())
    by_role = {
        role: sorted(p.condition for p in pts if role in p.roles and p.model == "audioldm")
        for role in ("sweep", "baseline")
    }
    # the configured alpha is a subset run too (every point of the curve on the same items)
    assert by_role == {
        "sweep": [
            "retrieval_native@alpha=0.5,prompts=8",
            "retrieval_native@guidance=2.6,prompts=8",
            "retrieval_native@prompts=8",
        ],
        "baseline": ["prompt@guidance=2.6,prompts=8", "prompt@prompts=8"],
    }
    assert {p.baseline for p in pts if "sweep" in p.roles} == {
        "prompt@prompts=8",
        "prompt@guidance=2.6,prompts=8",
    }
    for p in pts:
        subset = sweeps.effective(cfg, p.model, p.condition)["prompt_subset"]
        if "configured" in p.roles:
            assert subset is None, p  # configured runs are never subset
        else:
            assert subset == {"n": 8, "seed": 3}, p
    assert [(p.model, p.condition) for p in pts if "configured" in p.roles] == [
        (p.model, p.condition) for p in configured
    ]
    # the curves' settings are the swept knobs only; pairing finds the subset baseline
    words = [sweeps.parse_sweep_word(w) for w in sweeps.sweep_words(pts)]
    assert {tuple(w["settings"]) for w in words} == {("alpha",), ("guidance",)}
    assert (
        sweeps.matched_baseline(
            "retrieval_native@alpha=0.5,prompts=8", "prompt", [p.condition for p in pts]
        )
        == "prompt@prompts=8"
    )


@pytest.mark.parametrize("n", [0, 2.5, "all", True])
def test_a_bad_prompt_subset_is_refused_naming_the_key(n):
    cfg = _config(s={"conditions": ["retrieval_native"], "product": {"alpha": [0.5]}}, prompts=n)
    msgs = problems(cfg, REPO)
    assert len(msgs) == 1 and msgs[0].startswith("sweeps.prompts:"), msgs
