"""config/musicgen.yaml: the MusicGen checkpoints beside the AudioLDM models of
config/config.yaml, merged as Snakemake merges ``--configfile``.

What is checked: the merged config passes the schema and every cross-key check; the
MusicGen models plan exactly the conditions their family takes (prompt, prompt_aug, the
trained-adapter retrieval and its controls, continuation and its length sweep;
MusicGen-melody prompt, prompt_aug, melody and its random / mismatched controls at the
same prompt_seconds), the AudioLDM models keep their runs; an audio_prompt_source on a
condition without an audio prompt is named, a style condition on MusicGen-melody too; the cost planner prices a MusicGen clip by its decoder
steps (503 for 10 s), not sampling.steps; a prompt_seconds sweep on another condition
type is refused.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from rcmg.generation.config_checks import problems
from rcmg.generation.families import family_class
from rcmg.workflow import plan_cost, sweeps

MUSICGEN = ("musicgen-small", "musicgen-medium", "musicgen-large")
AUDIOLDM = ("audioldm", "audioldm2", "audioldm2-music")


@pytest.fixture(scope="module")
def configs(repo_root):
    from snakemake.utils import update_config

    base = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((repo_root / "config" / "musicgen.yaml").read_text())
    merged = copy.deepcopy(base)
    update_config(merged, overlay)
    return base, merged


def _conditions(points, model):
    return {p.condition for p in points if p.model == model}


def test_merged_config_is_valid_and_checks_clean(configs, repo_root):
    _, merged = configs
    schema = yaml.safe_load((repo_root / "config" / "schema.yaml").read_text())
    jsonschema.Draft202012Validator(schema).validate(merged)
    assert problems(merged, repo_root) == []
    for key in MUSICGEN:
        assert merged["models"][key]["family"] == "musicgen"
        assert merged["models"][key]["id"] == f"facebook/{key}"
    melody = merged["models"]["musicgen-melody"]
    assert (melody["id"], melody["family"]) == ("facebook/musicgen-melody", "musicgen_melody")


def test_musicgen_melody_runs_melody_and_its_controls_only(configs):
    from rcmg.generation.config_checks import condition_problems

    _, merged = configs
    points = sweeps.plan(merged)
    assert _conditions(points, "musicgen-melody") == {
        "prompt",
        "prompt_aug",
        "melody",
        "melody_random",
        "melody_mismatched",
    }
    conditions = merged["conditions"]
    sources = {
        c: conditions[c].get("audio_prompt_source", "top") for c in conditions if "melody" in c
    }
    assert sources == {
        "melody": "top",
        "melody_random": "random",
        "melody_mismatched": "mismatched",
    }
    assert {conditions[c]["prompt_seconds"] for c in sources} == {10.0}  # same length
    # every MusicGen-melody step is priced by its decoder steps like MusicGen's
    assert (
        family_class("musicgen_melody").planned_steps(
            merged["models"]["musicgen-melody"]["sampling"]
        )
        == 503
    )
    bad = copy.deepcopy(merged)
    bad["conditions"]["retrieval_external"]["models"].append("musicgen-melody")
    bad["conditions"]["prompt_aug"]["audio_prompt_source"] = "random"
    found = condition_problems(bad)
    assert any(
        p.startswith("conditions.retrieval_external: retrieval (a style vector in the "
                     "conditioning) is not a condition of musicgen_melody") for p in found
    ), found  # fmt: skip
    assert (
        "conditions.prompt_aug: 'audio_prompt_source' only applies to types continuation, "
        "melody (the retrieved item's audio as a prompt)"
    ) in problems(bad, Path("."))


def test_musicgen_runs_what_its_family_takes_and_audioldm_keeps_its_runs(configs):
    base, merged = configs
    points = sweeps.plan(merged)
    takes = {
        "prompt",
        "prompt_aug",
        "retrieval_external",
        "retrieval_external_random",
        "retrieval_external_mismatched",
        "continuation",
    }
    assert _conditions(points, "musicgen-medium") == takes == _conditions(points, "musicgen-large")
    k_points = {f"{c}@adapter_style_tokens={k}" for c in takes if "external" in c for k in (2, 8)}
    assert _conditions(points, "musicgen-small") == takes | k_points | {
        "continuation@prompt_seconds=1",
        "continuation@prompt_seconds=5",
    }
    before = sweeps.plan(base)
    for model in AUDIOLDM:
        assert _conditions(points, model) == _conditions(before, model)
    effective = sweeps.effective(merged, "musicgen-small", "continuation@prompt_seconds=5")
    assert effective["condition"]["prompt_seconds"] == 5.0


def test_cost_planner_prices_musicgen_by_its_decoder_steps(configs):
    _, merged = configs
    points = [p for p in sweeps.plan(merged) if p.model == "musicgen-small"]

    def steps_for(model, sampling):
        return family_class(merged["models"][model]["family"]).planned_steps(sampling)

    assert steps_for("musicgen-small", merged["models"]["musicgen-small"]["sampling"]) == 503
    assert steps_for("audioldm", merged["models"]["audioldm"]["sampling"]) == 200
    [gen, _] = plan_cost.estimate(merged, points, 10, steps_for)
    cost = merged["cost"]
    per_clip = (
        cost["generate_fixed_s"]["musicgen-small"]
        + 503 * (cost["generate_s_per_step"]["musicgen-small"])
    )
    clips = 10 * len(points)  # one seed, one waveform per prompt
    assert gen["clips"] == clips and gen["hours"] == pytest.approx(clips * per_clip / 3600)
    [naive, _] = plan_cost.estimate(merged, points, 10)  # sampling.steps (1): far too cheap
    assert naive["hours"] < gen["hours"] / 50


def test_a_prompt_seconds_sweep_on_another_condition_type_is_refused(configs):
    _, merged = configs
    bad = copy.deepcopy(merged)
    bad["sweeps"] = {
        "x": {"models": ["musicgen-small"], "conditions": ["prompt_aug"],
              "product": {"prompt_seconds": [1.0]}},
    }  # fmt: skip
    with pytest.raises(sweeps.SweepError, match="prompt_seconds applies to continuation, melody"):
        sweeps.plan(bad)


def test_k_sweep_trains_one_adapter_per_k_on_musicgen_only(configs, repo_root):
    from rcmg.generation.config_checks import adapter_option_problems, sweep_knob_problems

    base, merged = configs
    assert sweeps.adapter_variant("retrieval_external@adapter_style_tokens=8") == "@style_tokens=8"
    assert sweeps.adapter_training(merged, "@style_tokens=8")["style_tokens"] == 8
    assert sweeps.adapter_training(merged, "")["style_tokens"] == 4
    bad = copy.deepcopy(merged)
    bad["sweeps"]["style_tokens"]["models"] = ["audioldm2"]
    assert sweep_knob_problems(bad) == [
        "sweeps.style_tokens: adapter_style_tokens does not apply to audioldm2 (family "
        "audioldm2: its adapter has no style_tokens) (condition retrieval_external, model "
        "audioldm2)"
    ]
    stray = copy.deepcopy(base)
    stray["adapter_training"]["style_tokens"] = 4
    assert adapter_option_problems(stray) == [
        "adapter_training.style_tokens: no configured model's family has it (MusicGen's "
        "style tokens); remove it"
    ]
    assert adapter_option_problems(merged) == []
