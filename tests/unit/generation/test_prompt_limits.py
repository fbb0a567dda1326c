"""Prompt text at the edges, on every model: emoji, 5000 characters, nothing visible;
and the AudioLDM2 language-model context budget (checked before generating)."""

from __future__ import annotations

import json

import pytest
from rcmg.generation.job import GenerateConfig, run_generation
from rcmg.workflow.atomic import read_jsonl

EMOJI = "🎹 piano under the rain 🌧️ with bells 🔔✨"
LONG = ("a slow, warm, detailed orchestral piece with soaring strings and soft brass " * 80)[:5000]
INVISIBLE = "\u200b\u200d\u2060\u200b"  # zero-width characters only: an item, but empty
MODELS = [("audioldm", "audioldm1"), ("audioldm2", "audioldm2"), ("audioldm2-music", "audioldm2")]


def _run(model_dir, pipeline, prompts, out):
    return run_generation(
        GenerateConfig(
            model_key=pipeline, model_id=str(model_dir), family=pipeline, condition="prompt",
            condition_type="prompt", prompts=str(prompts), out_dir=str(out), seed=0, steps=1,
            guidance=2.0, seconds=0.25, batch=2,
        )
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "pipeline"), MODELS)
def test_emoji_long_and_invisible_prompts(tiny_model, tmp_path, kind, pipeline):
    assert len(LONG) == 5000
    prompts = tmp_path / "edge.txt"
    prompts.write_text(f"{EMOJI}\n{LONG}\n   \t  \n{INVISIBLE}\n", encoding="utf-8")
    run = _run(tiny_model(kind), pipeline, prompts, tmp_path / "run")
    rows = {r["item"]: r for r in read_jsonl(run / "items.jsonl")}
    assert rows[0]["status"] == "ok" and rows[0]["prompt_used"] == EMOJI
    assert rows[0]["truncated"] is False
    long = rows[1]
    assert long["status"] == "ok" and long["truncated"] is True
    assert LONG.startswith(long["prompt_used"]) and len(long["prompt_used"]) < len(LONG)
    assert any("prompt truncated to" in note for note in long["notes"])
    assert rows[2]["status"] == "skipped" and "no visible characters" in rows[2]["skip_reason"]
    assert rows[2]["wav"] is None
    config = json.loads((run / "run_config.json").read_text())
    assert config["blank_lines_skipped"] == 1  # the whitespace-only line: counted, not an item
    assert (config["n_clips_ok"], config["n_clips_skipped"]) == (2, 1)
    if pipeline == "audioldm2":
        for row in (rows[0], long):
            ctx = row["lm_context"]
            assert ctx["fits"] and ctx["lm_positions_used"] <= ctx["n_positions"]
        assert 400 < long["lm_context"]["t5_tokens"] <= 512  # cut by T5, as on the real models
        ctx = long["lm_context"]
        assert ctx["n_positions"] == 8 * 512  # the real models' ratio: 1024 / 128
    else:
        assert rows[0]["lm_context"] is None


def test_short_lm_context_truncates_instead_of_crashing(tiny_model, tmp_path):
    """GPT-2 with 64 positions (< 512 T5 tokens): the long prompt is cut to fit its context.

    Without the check GPT-2's position embedding raises IndexError (the bug this guards)."""
    import torch
    from diffusers import AudioLDM2Pipeline

    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_model("audioldm2")))
    lm = pipe.language_model
    keep = 64
    wpe = torch.nn.Embedding(keep, lm.config.n_embd)
    wpe.weight.data.copy_(lm.transformer.wpe.weight.data[:keep])
    lm.transformer.wpe = wpe
    lm.config.n_positions = keep
    model_dir = tmp_path / "short_lm"
    pipe.save_pretrained(model_dir)
    prompts = tmp_path / "long.txt"
    prompts.write_text(LONG + "\n", encoding="utf-8")
    run = _run(model_dir, "audioldm2", prompts, tmp_path / "run")
    row = read_jsonl(run / "items.jsonl")[0]
    assert row["status"] == "ok" and row["truncated"]
    ctx = row["lm_context"]
    assert ctx["n_positions"] == keep and ctx["t5_token_limit"] == keep - 8 - 5
    assert ctx["t5_tokens"] <= ctx["t5_token_limit"] and ctx["fits"]
    assert any("language-model context" in note for note in row["notes"])
