"""The MusicGen family on a tiny random-weight MusicgenForConditionalGeneration with the
published structure (4 codebooks + delay pattern, EnCodec 32 kHz, T5 encoder), saved with
save_pretrained and loaded through the family's own ``load``.

What is checked: the stand-in's structure is the published one; decoder steps follow the
audio encoder's frame rate; the prompt condition through the generate CLI equals the plain
``model.generate(**processor(text=...), do_sample=True, guidance_scale=g,
max_new_tokens=n)`` with the item's seed, bit for bit, at 32 kHz mono; the weights'
licence is recorded; a hub id offline, a negative prompt, a scheduler and a too-long clip
are refused with the fix named.
"""

from __future__ import annotations

import json
from pathlib import Path

import generate as generate_cli
import numpy as np
import pytest
import soundfile as sf
from rcmg.generation.families import REGISTERED, get_family
from rcmg.generation.families.musicgen import decoder_steps
from rcmg.workflow.atomic import read_jsonl

PROMPTS = ["a calm solo piano melody", "fast jazz drums with a walking bass", "ambient pad"]
SEED, SECONDS, GUIDANCE = 11, 0.5, 3.0


@pytest.fixture(scope="module")
def model_dir(tiny_model):
    return tiny_model("musicgen")


@pytest.fixture(scope="module")
def loaded(model_dir):
    return get_family("musicgen").load(str(model_dir), "cpu", "fp32", "default")


@pytest.fixture(scope="module")
def prompt_run(model_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("musicgen")
    (work / "prompts.txt").write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    out = work / "prompt"
    argv = [
        "--model-key", "musicgen", "--model-id", str(model_dir), "--family", "musicgen",
        "--condition", "prompt", "--condition-type", "prompt",
        "--prompts", str(work / "prompts.txt"), "--seed", str(SEED),
        "--seconds", str(SECONDS), "--guidance", str(GUIDANCE), "--batch", "2",
        "--out-dir", str(out),
    ]  # fmt: skip
    assert generate_cli.main(argv) == 0
    return out


def test_registered_and_the_stand_in_has_the_published_structure(loaded):
    assert (
        REGISTERED["musicgen"].endswith(":Musicgen") and get_family("musicgen").name == "musicgen"
    )
    model = loaded.pipe.model
    codec = model.config.audio_encoder
    assert type(model).__name__ == "MusicgenForConditionalGeneration"
    assert (codec.sampling_rate, list(codec.upsampling_ratios), codec.frame_rate) == (
        32000,
        [8, 5, 4, 4],
        50,
    )
    assert codec.num_quantizers == 4 and codec.codebook_size == 2048
    assert not codec.use_causal_conv and not codec.normalize and not codec.use_conv_shortcut
    assert model.decoder.num_codebooks == 4 and model.config.decoder.vocab_size == 2048
    gen = model.generation_config
    assert gen.decoder_start_token_id == gen.pad_token_id == 2048 and gen.guidance_scale == 3.0
    assert gen.max_length == 30 * 50
    assert type(model.text_encoder).__name__ == "T5EncoderModel"
    assert model.text_encoder.config.d_model != model.decoder.config.hidden_size  # projected
    # the delay pattern: codebook k starts k steps after codebook 0
    import torch

    ids = torch.full((4, 1), 2048)
    _, mask = model.decoder.build_delay_pattern_mask(ids, pad_token_id=2048, max_length=8)
    assert [int((row == -1).nonzero()[0]) for row in mask] == [1, 2, 3, 4]


def test_decoder_steps_follow_the_frame_rate(loaded):
    pipe = loaded.pipe
    assert pipe.frame_rate == 50 and pipe.num_codebooks == 4
    assert decoder_steps(pipe, 10.0) == 500 + 3
    assert decoder_steps(pipe, 0.5) == 25 + 3
    assert decoder_steps(pipe, 2.57) == 129 + 3  # ceil: never shorter than asked
    family = get_family("musicgen")
    assert family.sample_rate(pipe) == 32000 and family.channels(pipe) == 1
    [(tok, limit, why)] = family.token_limits(pipe)
    assert limit == 512 == tok.model_max_length and "T5" in why


def test_prompt_condition_equals_the_plain_generate_call(prompt_run, loaded):
    import torch

    pipe = loaded.pipe
    rows = {r["item"]: r for r in read_jsonl(prompt_run / "items.jsonl")}
    assert len(rows) == len(PROMPTS)
    for item, prompt in enumerate(PROMPTS):
        torch.manual_seed(SEED + item)
        plain = pipe.model.generate(
            **pipe.processor(text=[prompt], padding=True, return_tensors="pt"),
            do_sample=True,
            guidance_scale=GUIDANCE,
            max_new_tokens=int(SECONDS * 50) + 3,
        )
        audio, rate = sf.read(prompt_run / rows[item]["wav"], dtype="float32")
        assert rate == 32000 and audio.ndim == 1 and len(audio) == int(SECONDS * 32000)
        np.testing.assert_array_equal(audio, plain[0, 0].numpy()[: len(audio)])
    config = json.loads((prompt_run / "run_config.json").read_text())
    assert config["family"] == "musicgen" and config["params"]["sample_rate"] == 32000
    assert config["model_license"]["license"] == "CC-BY-NC-4.0"
    assert config["is_pipeline_check"] is True
    # the decoder is the timed "denoiser": a forward per decoder step and item (+ prefill)
    steps = int(SECONDS * 50) + 3
    assert len(PROMPTS) * steps <= config["unet_forward_calls"] <= len(PROMPTS) * (steps + 1)


def test_offline_hub_id_names_the_fix(monkeypatch):
    from rcmg.models.hf_loading import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(Path("/nonexistent-hf-home")))
    with pytest.raises(ModelLoadError) as err:
        get_family("musicgen").load("facebook/musicgen-small", "cpu", "fp32", "default")
    message = str(err.value)
    assert "facebook/musicgen-small" in message and "huggingface-cli download" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--negative-prompt", "noise"], "takes no negative prompt"),
        (["--scheduler", "ddim"], "has no diffusion scheduler"),
        (["--seconds", "45"], "at most 40.88 s"),
    ],
)
def test_refusals_name_the_fix(extra, expected, model_dir, tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a piano\n", encoding="utf-8")
    argv = [
        "--model-key", "musicgen", "--model-id", str(model_dir), "--family", "musicgen",
        "--condition", "prompt", "--condition-type", "prompt", "--prompts",
        str(tmp_path / "p.txt"), "--seed", "0", "--seconds", "0.2", "--out-dir",
        str(tmp_path / "out"), *extra,
    ]  # fmt: skip
    assert generate_cli.main(argv) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out" / "run_config.json").exists()


def test_config_names_the_conditions_musicgen_cannot_take(repo_root):
    """A native-path or style-guided condition on a musicgen model is a config error that
    names the condition, the model and the fix; the adapter conditions pass."""
    import yaml
    from rcmg.generation.config_checks import condition_problems

    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    assert condition_problems(config) == []  # the AudioLDM families take every condition
    config["models"]["musicgen"] = {
        **config["models"]["audioldm"],
        "id": "facebook/musicgen-small",
        "family": "musicgen",
    }
    found = condition_problems(config)
    native = [p for p in found if p.startswith("conditions.retrieval_native:")]
    assert native == [
        "conditions.retrieval_native: adapter: native does not apply to musicgen: a 512-d "
        "CLAP style has no native path into its T5 space; use adapter: external (style "
        "tokens from a trained adapter) (model musicgen, family musicgen); set "
        "conditions.retrieval_native.models to the models that take it, or change the condition"
    ]
    assert any(
        p.startswith("conditions.retrieval_guided: style guidance is not supported on musicgen")
        for p in found
    )
    assert not [p for p in found if p.startswith("conditions.retrieval_external")]


def test_config_checks_of_the_audio_prompt_conditions(repo_root):
    """continuation is a kind with a schema entry; a family without it and a stray
    prompt_seconds are named with the fix."""
    import yaml
    from rcmg.generation.config_checks import condition_problems
    from rcmg.workflow import config_checks, kinds

    schema = yaml.safe_load((repo_root / "config" / "schema.yaml").read_text())
    conditions = schema["properties"]["conditions"]["additionalProperties"]["properties"]
    assert set(kinds.AUDIO_PROMPT_TYPES) <= set(conditions["type"]["enum"])
    assert "prompt_seconds" in conditions
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    config["models"]["musicgen"] = {**config["models"]["audioldm"], "family": "musicgen"}
    config["conditions"] = {
        "continuation": {"type": "continuation", "prompt_seconds": 2.0},
        "prompt": {"type": "prompt", "prompt_seconds": 2.0},
    }
    found = condition_problems(config)
    assert found[0].startswith(
        "conditions.continuation: continuation (the retrieved item's audio as a prompt) is "
        "not a condition of the audioldm1 family (it takes: none) (model audioldm"
    )
    assert not [p for p in found if "model musicgen" in p]
    plumbing = config_checks.problems(config, repo_root)
    assert any(p.startswith("conditions.prompt: 'prompt_seconds' only applies") for p in plumbing)
    config["conditions"]["continuation"]["models"] = ["musicgen"]
    assert condition_problems(config) == []
