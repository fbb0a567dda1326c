"""config/stable_audio.yaml's init-audio route (issue 26): ``conditions.<c>.init_noise_level``
with ``adapter: none`` and the ``init_noise_level`` sweep knob, merged onto config/config.yaml
as Snakemake merges ``--configfile``.

What is checked: the merged config passes the schema and every cross-key check; the init
conditions and their controls plan on stable-audio-open only, at the configured level and
each swept one (the controls at the run's level); a family without the route (AudioLDM,
MusicGen), an adapter other than ``none``, ``adapter: none`` without a level, a control at
another level and the knob on a condition without the route are refused, each naming the
key and the fix.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml
from rcmg.generation.config_checks import problems
from rcmg.workflow import sweeps

SAO = "stable-audio-open"
INIT = ("init_audio", "init_audio_random", "init_audio_mismatched")


@pytest.fixture(scope="module")
def merged(repo_root):
    from snakemake.utils import update_config

    base = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((repo_root / "config" / "stable_audio.yaml").read_text())
    out = copy.deepcopy(base)
    update_config(out, overlay)
    return out


def test_merged_config_is_valid_and_checks_clean(merged, repo_root):
    schema = yaml.safe_load((repo_root / "config" / "schema.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(merged)
    assert problems(merged, repo_root) == []
    for name in INIT:
        cond = merged["conditions"][name]
        assert cond["adapter"] == "none" and cond["init_noise_level"] == 10.0


def test_init_conditions_plan_on_stable_audio_at_each_level_with_their_controls(merged):
    points = sweeps.plan(merged)
    init = {(p.model, p.condition) for p in points if p.base in INIT}
    assert {m for m, _ in init} == {SAO}
    levels = ("", "@init_noise_level=1", "@init_noise_level=3", "@init_noise_level=30")
    assert init == {(SAO, name + level) for name in INIT for level in levels}
    # the configured level (10) is the configured run, not a second point
    assert not [c for _, c in init if "init_noise_level=10" in c]
    for name in INIT:
        settings = sweeps.effective(merged, SAO, f"{name}@init_noise_level=3")
        assert settings["condition"]["init_noise_level"] == 3.0
        assert settings["condition"]["adapter"] == "none"
    by_condition = {p.condition: p for p in points if p.model == SAO}
    assert by_condition["init_audio@init_noise_level=30"].baseline == "prompt"


def _edited(merged, edit):
    cfg = copy.deepcopy(merged)
    edit(cfg)
    return cfg


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["conditions"]["init_audio"].update(models=[SAO, "audioldm2"]),
            "init_noise_level (the retrieved item's audio as the pipeline's initial audio) is "
            "not a route of the audioldm2 family",
        ),
        (
            lambda c: c["conditions"]["init_audio"].update(adapter="external"),
            "conditions.init_audio: the init-audio route (init_noise_level) conditions on the "
            "retrieved audio, not on a style vector: set 'adapter: none'",
        ),
        (
            lambda c: c["conditions"]["init_audio"].pop("init_noise_level"),
            "conditions.init_audio: 'adapter: none' is the init-audio route; give init_noise_level",
        ),
        (
            lambda c: c["conditions"]["init_audio_random"].update(init_noise_level=3.0),
            "conditions.init_audio_random.init_noise_level: 3.0 differs from its control_of "
            "'init_audio' (10.0): a control keeps the run's strength",
        ),
        (
            lambda c: c["conditions"]["init_audio"].update(strength_deg=10),
            "conditions.init_audio.strength_deg: has no effect on the init-audio route",
        ),
        (
            lambda c: c["conditions"].update(
                init_prompt={"type": "prompt", "init_noise_level": 1.0}
            ),
            "conditions.init_prompt.init_noise_level: retrieval types only (not prompt)",
        ),
        (
            lambda c: c["sweeps"]["init_noise_level"].update(
                conditions=["init_audio", "retrieval_external"]
            ),
            "init_noise_level applies to init-audio conditions (conditions.<c>.init_noise_level "
            "with adapter: none), not 'retrieval_external'",
        ),
        (
            lambda c: c["sweeps"]["init_noise_level"].update(product={"alpha": [0.5, 1.0]}),
            "alpha has no effect on the init-audio route (sweep init_noise_level)",
        ),
    ],
    ids=[
        "family-without-the-route",
        "adapter-external",
        "adapter-none-without-level",
        "control-at-another-level",
        "strength-deg-on-init",
        "init-on-prompt",
        "level-sweep-on-style-tokens",
        "alpha-sweep-on-init",
    ],
)
def test_init_audio_misconfigurations_are_refused_naming_the_fix(merged, repo_root, edit, expected):
    found = problems(_edited(merged, edit), repo_root)
    assert any(expected in p for p in found), found


def test_musicgen_refuses_the_init_audio_route():
    from rcmg.generation.families import get_family

    why = get_family("musicgen").condition_problem(
        {"type": "retrieval", "adapter": "none", "init_noise_level": 1.0}
    )
    assert why and "not a route of the musicgen family" in why
    assert (
        get_family("stable_audio").condition_problem(
            {"type": "retrieval", "adapter": "none", "init_noise_level": 1.0}
        )
        is None
    )
