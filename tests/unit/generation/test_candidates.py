"""num_waveforms_per_prompt > 1: every candidate kept; ranked within its own prompt's group
by the model's own CLAP (AudioLDM2), never across the batch."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from rcmg.generation.job import GenerateConfig, ranks_within_group, run_generation
from rcmg.workflow.atomic import read_jsonl


def test_ranks_are_within_each_group():
    assert ranks_within_group([0.1, 0.9, 0.5]) == [2, 0, 1]
    assert ranks_within_group([0.3, 0.3]) == [0, 1]


def test_aldm2_candidates_kept_and_ranked_per_prompt(tiny_model, tmp_path):
    import torch
    from diffusers import AudioLDM2Pipeline

    prompts = tmp_path / "p.txt"
    prompts.write_text("a calm piano\nfast drums\n")
    run = run_generation(
        GenerateConfig(
            model_key="audioldm2", model_id=str(tiny_model("audioldm2")), pipeline="audioldm2",
            condition="prompt", condition_type="prompt", prompts=str(prompts),
            out_dir=str(tmp_path / "run"), seed=0, steps=1, guidance=2.0, seconds=0.5, batch=2,
            num_waveforms_per_prompt=3,
        )
    )  # fmt: skip
    rows = read_jsonl(run / "items.jsonl")
    assert len(rows) == 6 and all((run / r["wav"]).is_file() for r in rows)  # unranked kept
    pipe = AudioLDM2Pipeline.from_pretrained(str(tiny_model("audioldm2")))
    for item, text in enumerate(["a calm piano", "fast drums"]):
        group = [r for r in rows if r["item"] == item]
        assert sorted(r["rank"] for r in group) == [0, 1, 2]
        # independent score: ClapModel's own logits for this prompt against its own clips
        from rcmg.data.audio_io import resample

        clips = [sf.read(run / r["wav"], dtype="float32")[0] for r in group]
        fe = pipe.feature_extractor
        feats = fe([resample(c, 16000, fe.sampling_rate) for c in clips],
                   return_tensors="pt", sampling_rate=fe.sampling_rate).input_features  # fmt: skip
        tok = pipe.tokenizer([text], return_tensors="pt", padding=True)
        with torch.no_grad():
            logits = pipe.text_encoder(input_features=feats, **tok).logits_per_text[0].numpy()
        assert [r["rank"] for r in group] == ranks_within_group(list(logits))
    config = json.loads((run / "run_config.json").read_text())
    assert "own CLAP" in config["params"]["candidate_ranking"]
    assert np.isfinite([r["rank_score"] for r in rows]).all()
