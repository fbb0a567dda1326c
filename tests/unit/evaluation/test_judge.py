"""The judge's text-tower fingerprint against a generator's conditioning text encoder."""

from __future__ import annotations

import shutil

import numpy as np
from rcmg.evaluation import judge
from safetensors.numpy import load_file, save_file


def test_equal_text_towers_are_flagged_and_different_ones_not(tmp_path, tiny_model):
    clap = tiny_model("clap")
    same = tmp_path / "gen_same"
    (same / "text_encoder").mkdir(parents=True)
    shutil.copy(clap / "model.safetensors", same / "text_encoder" / "model.safetensors")
    record = judge.judge_record(str(clap), str(same))
    assert record["shares_weights_with"] == ["text_encoder"]
    assert record["text_tower_sha256"] == record["generator_text_towers"]["text_encoder"]["sha256"]

    tensors = load_file(clap / "model.safetensors")
    audio_only = dict(tensors)  # changing the AUDIO tower keeps the text fingerprint
    name = next(k for k, v in tensors.items() if k.startswith("audio_") and v.dtype.kind == "f")
    audio_only[name] = audio_only[name] + np.ones_like(audio_only[name])
    other = tmp_path / "gen_audio_changed" / "text_encoder"
    other.mkdir(parents=True)
    save_file(audio_only, other / "model.safetensors")
    assert judge.judge_record(str(clap), str(other.parent))["shares_weights_with"] == [
        "text_encoder"
    ]
    text_changed = dict(tensors)
    name = next(k for k in tensors if k.startswith("text_projection."))
    text_changed[name] = text_changed[name] + np.float32(0.01)
    third = tmp_path / "gen_text_changed" / "text_encoder"
    third.mkdir(parents=True)
    save_file(text_changed, third / "model.safetensors")
    assert judge.judge_record(str(clap), str(third.parent))["shares_weights_with"] == []


def test_missing_models_give_a_reason_not_a_crash(tmp_path):
    record = judge.judge_record(str(tmp_path / "absent"), None)
    assert record["text_tower_sha256"] is None and "no local folder" in record["reason"]
    assert record["shares_weights_with"] == []
