"""The Stable Audio step benchmark (tests/benchmarks/bench_stable_audio.py) runs end to end on
the tiny widths; the published build it times has the published component sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_stable_audio  # noqa: E402

# Stable Audio Open (Evans et al., arXiv 2407.14358): DiT 1057M, autoencoder 156M, T5-base 109M
PUBLISHED_PARAMS_M = {"transformer": 1057.0, "vae": 156.0, "text_encoder": 109.0}


def test_the_benchmark_times_both_denoisers_and_writes_its_record(tmp_path):
    out = tmp_path / "step.json"
    assert bench_stable_audio.main(["--size", "tiny", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    models = record["models"]
    assert set(models) == {"stable-audio-open", "audioldm2"}
    assert all(m["s_per_step"] > 0 and m["params_m"] > 0 for m in models.values())
    ratio = models["stable-audio-open"]["s_per_step"] / models["audioldm2"]["s_per_step"]
    assert record["ratio_stable_audio_to_audioldm2"] == pytest.approx(ratio)
    assert record["cfg_batch"] == 2 and "timing only" in record["note"]


def test_the_published_build_has_the_published_component_sizes():
    import torch
    from diffusers import AutoencoderOobleck, StableAudioDiTModel
    from rcmg.standins.stable_audio import component_configs
    from transformers import T5Config, T5EncoderModel

    configs = component_configs("published")
    with torch.device("meta"):  # sizes only: no weights are allocated
        built = {
            "transformer": StableAudioDiTModel(**configs["transformer"]),
            "vae": AutoencoderOobleck(**configs["vae"]),
            "text_encoder": T5EncoderModel(T5Config(**configs["text_encoder"])),
        }
    for name, module in built.items():
        count = sum(p.numel() for p in module.parameters()) / 1e6
        assert count == pytest.approx(PUBLISHED_PARAMS_M[name], rel=0.01), name
