"""The planned-cost estimate (rcmg.workflow.plan_cost): a known answer by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from rcmg.workflow import plan_cost, sweeps

REPO = Path(__file__).resolve().parents[3]
BASE = yaml.safe_load((REPO / "config/config.yaml").read_text(encoding="utf-8"))


def _config() -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["models"] = {"audioldm": cfg["models"]["audioldm"]}
    cfg["models"]["audioldm"]["sampling"].update(steps=10, num_waveforms_per_prompt=2)
    cfg["conditions"] = {
        "prompt": {"type": "prompt"},
        "guided": {"type": "retrieval", "adapter": "mlp", "style_guidance": 1.0},
    }
    cfg["seeds"] = [0, 1]
    cfg["cost"] = {
        "measured_on": "test",
        "generate_fixed_s": {"default": 4.0},
        "generate_s_per_step": {"default": 9.0, "audioldm": 1.0},
        "evaluate_s_per_clip": 0.5,
    }
    cfg["sweeps"] = {"s": {"conditions": ["prompt"], "product": {"steps": [10, 20]}}}
    return cfg


def test_hours_are_clips_times_fixed_plus_steps_times_rate():
    cfg = _config()
    points = sweeps.plan(cfg)
    assert [p.condition for p in points] == ["prompt", "guided", "prompt@steps=20"]
    gen, ev = plan_cost.estimate(cfg, points, n_prompts=3)
    clips = 3 * 2 * 2  # prompts x waveforms x seeds, per point
    seconds = clips * (4 + 10 * 1.0) + clips * (4 + 10 * 1.0 * 1.5) + clips * (4 + 20 * 1.0)
    assert gen == {
        "rule": "generate",
        "jobs": 6,
        "clips": 3 * clips,
        "hours": pytest.approx(seconds / 3600),
    }
    assert ev["clips"] == 3 * clips and ev["hours"] == pytest.approx(3 * clips * 0.5 / 3600)
    text = plan_cost.table(cfg, points, 3)
    assert "3 points x 2 seed(s), 3 prompts" in text and "measured on: test" in text
